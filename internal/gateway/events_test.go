package gateway

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/wstest"
	"github.com/unhidra/unhidra/wire"
)

// recordEvents records what the audit hook is told.
type recordEvents struct {
	mu       sync.Mutex
	refused  []string
	accepted []string
	closed   []string
}

func (r *recordEvents) Refused(ip netip.Addr, reason string, who wire.Principal) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refused = append(r.refused, reason+" "+who.String())
}

func (r *recordEvents) Accepted(ip netip.Addr, who unhidra.Identity, sessionID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.accepted = append(r.accepted, who.Principal.String())
}

func (r *recordEvents) Closed(who unhidra.Identity, sessionID, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = append(r.closed, who.Principal.String()+" "+reason)
}

func (r *recordEvents) snapshot() (refused, accepted, closed []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.refused...), append([]string(nil), r.accepted...), append([]string(nil), r.closed...)
}

func TestEventsHookSeesRefusalsAcceptsAndCloses(t *testing.T) {
	ev := &recordEvents{}
	e := newEnv(t, func(c *Config, d *Deps) { d.Events = ev; c.MaxConnsPerUser = 1 })
	tok := e.user("alice", "s1", time.Hour)
	c := e.dial(t, tok)
	e.handshake(t, e.url, wstest.Options{Header: protoHeader("unhidra.v1, bearer." + tok)}) // over the per-user limit
	e.handshake(t, e.url, wstest.Options{})                                                 // no credential
	c.WriteClose(1000, "")
	expectClose(t, c, 1000)
	eventually(t, 5*time.Second, "close reported", func() bool {
		_, _, closed := ev.snapshot()
		return len(closed) == 1
	})
	refused, accepted, closed := ev.snapshot()
	if len(accepted) != 1 || accepted[0] != "user:alice" {
		t.Errorf("accepted = %q", accepted)
	}
	if len(refused) != 2 || refused[0] != "user_limit user:alice" || refused[1] != "unauthorized :" {
		t.Errorf("refused = %q", refused)
	}
	if closed[0] != "user:alice client" {
		t.Errorf("closed = %q", closed)
	}
}

// MSG-5 at the WebSocket edge: the service's refusal reaches the client as
// a forbidden error frame with the frame's id, and nothing is acked.
func TestPublishToAForbiddenChannelGetsForbidden(t *testing.T) {
	e := newEnv(t, nil)
	e.chat.forbidden["private"] = true
	c := e.dial(t, e.user("alice", "s1", time.Hour))
	c.WriteText(`{"type":"publish","channel":"private","text":"x","id":"p"}`)
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	var ef wire.ErrorFrame
	if typ, err := c.ReadJSON(&ef); err != nil || typ != wire.TypeError || ef.Code != "forbidden" || string(ef.ID) != `"p"` {
		t.Fatalf("got %q %+v %v, want forbidden with id p", typ, ef, err)
	}
	if n := len(e.chat.stored("private")); n != 0 {
		t.Errorf("%d messages stored", n)
	}
}
