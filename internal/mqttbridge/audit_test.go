package mqttbridge_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/audit"
	"github.com/unhidra/unhidra/internal/mqttbridge"
)

// Every refused CONNECT (bad credentials, the per-IP rate, the per-user
// connection limit) is one audit event with its reason, the client's IP and
// the principal when it authenticated; an accepted CONNECT is none.
func TestRefusedConnectsAreAuditedOnce(t *testing.T) {
	h := newHarness(t, harnessOpts{cfg: mqttbridge.Config{MaxConnsPerUser: 1, RateLimitIPPerMinute: 4}})
	addr := h.srv.Addr()
	ok := dialRaw(t, addr)
	if code := ok.connack(t, connectPkt(5, "a", "d1", h.keys["d1"], 30, nil)); code != 0 {
		t.Fatalf("first connection refused: 0x%02x", code)
	}
	bad := dialRaw(t, addr)
	if code := bad.connack(t, connectPkt(5, "x", "d1", "not-the-key", 30, nil)); code == 0 {
		t.Fatal("a bad key was accepted")
	}
	over := dialRaw(t, addr)
	if code := over.connack(t, connectPkt(5, "b", "d1", h.keys["d1"], 30, nil)); code != 0x97 {
		t.Fatalf("over the connection limit: CONNACK 0x%02x, want 0x97", code)
	}
	dialRaw(t, addr).connack(t, connectPkt(5, "c", "d2", h.keys["d2"], 30, nil)) // the 4th of the minute: allowed
	rated := dialRaw(t, addr)
	if code := rated.connack(t, connectPkt(5, "e", "d2", h.keys["d2"], 30, nil)); code == 0 {
		t.Fatal("the 5th CONNECT of the minute was accepted")
	}
	want := []string{
		"auth credentials  127.0.0.1",
		"limit connections_per_user device:d1 127.0.0.1",
		"limit connect_rate  127.0.0.1",
	}
	var got []string
	waitFor(t, 5*time.Second, "three audit events", func() bool { return len(h.audit.events()) >= len(want) })
	time.Sleep(100 * time.Millisecond) // nothing more arrives
	for _, e := range h.audit.events() {
		if e.Action != audit.ActionConnectionRefused || e.Outcome != audit.Failure || e.Details["transport"] != "mqtt" {
			t.Errorf("unexpected audit event %+v", e)
		}
		actor := ""
		if e.Actor.ID != "" {
			actor = e.Actor.String()
		}
		got = append(got, fmt.Sprintf("%s %s %s %s", e.Reason, e.Details["cause"], actor, e.IP))
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("audit events:\n%q\nwant\n%q", got, want)
	}
}
