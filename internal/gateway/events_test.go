package gateway

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/audit"
	"github.com/unhidra/unhidra/internal/wstest"
	"github.com/unhidra/unhidra/wire"
)

// recordAudit records what the gateway reports to the audit seam.
type recordAudit struct {
	mu  sync.Mutex
	evs []audit.Event
}

func (r *recordAudit) Audit(_ context.Context, e audit.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, e)
}

func (r *recordAudit) snapshot() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.evs {
		actor := ""
		if e.Actor.ID != "" {
			actor = e.Actor.String()
		}
		out = append(out, strings.Join([]string{e.Action, e.Outcome, e.Reason, e.Details["cause"], e.Details["transport"], actor, e.IP}, " "))
	}
	return out
}

// Every handshake refused for a credential, an origin or a limit is one
// audit event with its reason, the client's IP and the principal when it
// authenticated; refusals that are not security events (not a WebSocket
// handshake) and accepted connections and their closes are none (those two
// are logged).
func TestRefusedHandshakesAreAuditedOnce(t *testing.T) {
	rec := &recordAudit{}
	e := newEnv(t, func(c *Config, d *Deps) {
		d.Audit = rec
		c.MaxConnsPerUser = 1
		c.AllowedOrigins = []string{"https://app.example.com"}
	})
	tok := e.user("alice", "s1", time.Hour)
	c := e.dial(t, tok)
	e.handshake(t, e.url, wstest.Options{Header: protoHeader("unhidra.v1, bearer." + tok)}) // over the per-user limit
	e.handshake(t, e.url, wstest.Options{})                                                 // no credential
	h := protoHeader("unhidra.v1, bearer." + tok)
	h.Set("Origin", "https://evil.example.com")
	e.handshake(t, e.url, wstest.Options{Header: h}) // a page of another origin
	if res, err := http.Get(strings.Replace(e.url, "ws://", "http://", 1)); err == nil {
		res.Body.Close() // a plain GET of /ws: refused, not a security event
	}
	c.WriteClose(1000, "")
	expectClose(t, c, 1000)
	eventually(t, 5*time.Second, "close logged", func() bool {
		return strings.Contains(e.logs.String(), "websocket client disconnected")
	})
	want := []string{
		"connection_refused failure limit user_limit websocket user:alice 127.0.0.1",
		"connection_refused failure auth unauthorized websocket  127.0.0.1",
		"connection_refused failure origin origin websocket  127.0.0.1",
	}
	if got := rec.snapshot(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("audit events:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	logs := e.logs.String()
	if strings.Count(logs, `msg="websocket client connected" kind=user id=alice`) != 1 {
		t.Errorf("the accepted connection was not logged once:\n%s", logs)
	}
	if strings.Count(logs, `msg="websocket client disconnected" kind=user id=alice`) != 1 || !strings.Contains(logs, "reason=client") {
		t.Errorf("the close was not logged once with its reason:\n%s", logs)
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
