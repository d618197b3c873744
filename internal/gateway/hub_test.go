package gateway

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/unhidra/unhidra/internal/broker"
	"github.com/unhidra/unhidra/internal/brokertest"
)

// The hub encodes each broker event into the frame clients receive, once,
// and reads its offset and access end from the event's fields, not from the
// bytes.
func TestHubEncodesEveryEventKindToItsFrame(t *testing.T) {
	h := newHub(nil, nil, slog.New(slog.DiscardHandler))
	for _, src := range brokertest.Samples() {
		ev, ok := h.encode(src)
		if src.Kind == broker.Revoke {
			if ok {
				t.Errorf("a revocation became a client frame: %s", ev.payload)
			}
			continue
		}
		if !ok {
			t.Fatalf("%v: not encoded", src.Kind)
		}
		var head struct {
			Type   string `json:"type"`
			Offset int64  `json:"offset"`
		}
		if err := json.Unmarshal(ev.payload, &head); err != nil || head.Type != src.Kind.String() {
			t.Fatalf("%v encoded as %s (%v)", src.Kind, ev.payload, err)
		}
		if !bytes.Equal(ev.payload, brokertest.FrameJSON(src)) {
			t.Errorf("%v: %s, want %s", src.Kind, ev.payload, brokertest.FrameJSON(src))
		}
		wantOffset := int64(0)
		if src.Kind == broker.Message {
			wantOffset = src.Offset
		}
		if ev.offset != wantOffset || head.Offset != wantOffset {
			t.Errorf("%v: offset %d (frame %d), want %d", src.Kind, ev.offset, head.Offset, wantOffset)
		}
		if (ev.removed != "") != (src.Kind == broker.MemberRemoved) || ev.deleted != (src.Kind == broker.ChannelDeleted) {
			t.Errorf("%v: removed %q deleted %v", src.Kind, ev.removed, ev.deleted)
		}
		if ev.src != src {
			t.Errorf("%v: the queued event lost its source", src.Kind)
		}
	}
}
