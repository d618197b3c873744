package gateway

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/wstest"
	"github.com/unhidra/unhidra/wire"
)

func nestedJSON(depth int) string {
	return strings.Repeat("[", depth) + "1" + strings.Repeat("]", depth)
}

// readReply reads frames until one of type ack or error and returns it.
func readReply(t *testing.T, c *wstest.Conn) (typ string, ef wire.ErrorFrame) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	for {
		var f wire.ErrorFrame
		typ, err := c.ReadJSON(&f)
		if err != nil {
			t.Fatalf("waiting for a reply: %v", err)
		}
		if typ == wire.TypeAck || typ == wire.TypeError {
			return typ, f
		}
	}
}

// One depth limit, wire.MaxDepth, over WebSocket as on REST and MQTT:
// message data (or e2ee) nested 32 levels is stored, 33 gets an error frame
// with code invalid and the frame's id, nothing is stored and the connection
// stays.
func TestPublishDepthLimitOverWebSocket(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial(t, e.user("alice", "s1", time.Hour))
	if err := c.WriteText(`{"type":"publish","channel":"c1","id":"ok","data":` + nestedJSON(wire.MaxDepth) + `}`); err != nil {
		t.Fatal(err)
	}
	if typ, ef := readReply(t, c); typ != wire.TypeAck {
		t.Fatalf("data of depth %d: %q %+v, want ack", wire.MaxDepth, typ, ef)
	}
	for i, body := range []string{
		`"data":` + nestedJSON(wire.MaxDepth+1),
		`"e2ee":{"v":` + nestedJSON(wire.MaxDepth) + `}`,
		`"data":` + nestedJSON(10000),
	} {
		if err := c.WriteText(`{"type":"publish","channel":"c1","id":"deep",` + body + `}`); err != nil {
			t.Fatal(err)
		}
		typ, ef := readReply(t, c)
		if typ != wire.TypeError || ef.Code != unhidra.EINVALID || string(ef.ID) != `"deep"` {
			t.Fatalf("body %d nested deeper than %d: %q %+v, want an invalid error frame with id \"deep\"", i, wire.MaxDepth, typ, ef)
		}
		mustContain(t, ef.Message, "deeper than 32")
	}
	roundTrip(t, c)
	if n := len(e.chat.stored("c1")); n != 1 {
		t.Errorf("%d messages stored, want only the one of depth %d", n, wire.MaxDepth)
	}
}

// Telemetry over WebSocket has the same limit.
func TestTelemetryDepthLimitOverWebSocket(t *testing.T) {
	dev := &fakeDevices{}
	e := newEnv(t, func(_ *Config, d *Deps) { d.Devices = dev })
	c := e.dialWith(t, wstest.Options{Header: protoHeader("unhidra.v1, apikey." + e.device("d1"))})
	obj := func(depth int) string { return strings.Repeat(`{"a":`, depth) + "1" + strings.Repeat("}", depth) }
	if err := c.WriteText(`{"type":"telemetry","id":1,"data":` + obj(wire.MaxDepth) + `}`); err != nil {
		t.Fatal(err)
	}
	if typ, ef := readReply(t, c); typ != wire.TypeAck {
		t.Fatalf("telemetry of depth %d: %q %+v, want ack", wire.MaxDepth, typ, ef)
	}
	if err := c.WriteText(`{"type":"telemetry","id":2,"data":` + obj(wire.MaxDepth+1) + `}`); err != nil {
		t.Fatal(err)
	}
	if typ, ef := readReply(t, c); typ != wire.TypeError || ef.Code != unhidra.EINVALID || string(ef.ID) != "2" {
		t.Fatalf("telemetry of depth %d: %q %+v, want an invalid error frame", wire.MaxDepth+1, typ, ef)
	}
	if n := dev.telemetryCount(); n != 1 {
		t.Errorf("%d telemetry frames reached the device service, want 1", n)
	}
}

// Invalid Unicode is refused, never stored as U+FFFD: a lone surrogate
// escape (valid UTF-8 on the wire, which encoding/json would decode to
// U+FFFD) gets an error frame; invalid UTF-8 bytes close with 1007 (RFC 6455).
func TestInvalidUnicodeIsRefusedOverWebSocket(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial(t, e.user("alice", "s1", time.Hour))
	for _, body := range []string{
		`"text":"a\ud800b"`,
		`"text":"\udc00"`,
		`"data":{"k":"\ud83d"}`,
		`"data":{"\ud800":1}`,
	} {
		if err := c.WriteText(`{"type":"publish","channel":"c1","id":"u",` + body + `}`); err != nil {
			t.Fatal(err)
		}
		if typ, ef := readReply(t, c); typ != wire.TypeError || ef.Code != unhidra.EINVALID || string(ef.ID) != `"u"` {
			t.Fatalf("%s: %q %+v, want an invalid error frame", body, typ, ef)
		}
	}
	// A surrogate pair is a valid character and is kept exactly.
	if err := c.WriteText(`{"type":"publish","channel":"c1","text":"\ud83d\ude00"}`); err != nil {
		t.Fatal(err)
	}
	if typ, ef := readReply(t, c); typ != wire.TypeAck {
		t.Fatalf("surrogate pair: %q %+v, want ack", typ, ef)
	}
	msgs := e.chat.stored("c1")
	if len(msgs) != 1 || msgs[0].Text == nil || *msgs[0].Text != "😀" {
		t.Fatalf("stored %+v, want only the 😀 message", msgs)
	}
	if err := c.WriteText("{\"type\":\"publish\",\"channel\":\"c1\",\"text\":\"a\xffb\"}"); err != nil {
		t.Fatal(err)
	}
	expectClose(t, c, CloseInvalidPayload)
	if n := len(e.chat.stored("c1")); n != 1 {
		t.Errorf("%d messages stored after invalid UTF-8, want 1", n)
	}
}

// fakeDevices counts telemetry frames and acks them.
type fakeDevices struct {
	telemetry atomic.Int64
}

func (d *fakeDevices) Heartbeat(context.Context, unhidra.Identity, wire.ClientFrame) error {
	return nil
}

func (d *fakeDevices) Telemetry(_ context.Context, who unhidra.Identity, _ wire.ClientFrame) (wire.Ack, error) {
	n := d.telemetry.Add(1)
	return wire.Ack{Channel: "device:" + who.Principal.ID, MessageID: "t", Offset: n}, nil
}

func (d *fakeDevices) CommandResult(context.Context, unhidra.Identity, wire.ClientFrame) error {
	return nil
}

func (d *fakeDevices) telemetryCount() int { return int(d.telemetry.Load()) }
