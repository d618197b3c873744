package gateway

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/broker"
	"github.com/unhidra/unhidra/internal/wstest"
	"github.com/unhidra/unhidra/wire"
)

// readUntil reads text frames until one of type typ arrives and returns it
// with the types of the frames read before it.
func readUntil(t *testing.T, c *wstest.Conn, typ string) (json.RawMessage, []string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	var before []string
	for {
		var raw json.RawMessage
		got, err := c.ReadJSON(&raw)
		if err != nil {
			t.Fatalf("waiting for %s: %v (read %v)", typ, err, before)
		}
		if got == typ {
			return raw, before
		}
		before = append(before, got)
	}
}

// textsUntilPong sends a ping and returns the types of the text frames that
// arrive before its pong: everything queued for the client by then.
func textsUntilPong(t *testing.T, c *wstest.Conn) []string {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	if err := c.WriteFrame(wstest.Frame{Fin: true, Op: wstest.OpPing, Payload: []byte("q")}); err != nil {
		t.Fatal(err)
	}
	var types []string
	for {
		f, err := c.ReadFrame()
		if err != nil {
			t.Fatalf("waiting for pong: %v", err)
		}
		switch f.Op {
		case wstest.OpPong:
			return types
		case wstest.OpText:
			var head struct{ Type string }
			_ = json.Unmarshal(f.Payload, &head)
			types = append(types, head.Type)
		}
	}
}

func subscribeTo(t *testing.T, c *wstest.Conn, channel string) {
	t.Helper()
	if err := c.WriteJSON(map[string]any{"type": "subscribe", "id": 1, "channel": channel}); err != nil {
		t.Fatal(err)
	}
	readUntil(t, c, wire.TypeSubscribed)
}

// A user removed from a private channel (or one that left it) must stop
// receiving its frames on a live connection at once, and every subscriber of
// a deleted channel is unsubscribed; the client is told why.
func TestLosingReadAccessEndsLiveSubscriptions(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.dial(t, e.user("alice", "s1", time.Hour))
	bob := e.dial(t, e.user("bob", "s2", time.Hour))
	subscribeTo(t, alice, "room")
	subscribeTo(t, bob, "room")
	ctx := context.Background()
	publish := func(ev *broker.Event) {
		t.Helper()
		if err := e.broker.Publish(ctx, broker.ChannelTopic("room"), ev); err != nil {
			t.Fatal(err)
		}
	}

	publish(&broker.Event{Kind: broker.MemberRemoved, Channel: "room", User: "bob"})
	raw, _ := readUntil(t, bob, wire.TypeUnsubscribed)
	var u wire.Unsubscribed
	if err := json.Unmarshal(raw, &u); err != nil || u.Channel != "room" || u.Reason != wire.UnsubscribedRemoved || u.ID != nil {
		t.Errorf("bob got %s, want an unasked unsubscribed for room with reason removed", raw)
	}
	readUntil(t, alice, wire.TypeMemberRemoved)

	if _, err := e.chat.Publish(ctx, e.srvIdentity("alice"), wire.Publish{Channel: "room", Text: ptrTo("after bob left")}); err != nil {
		t.Fatal(err)
	}
	if _, before := readUntil(t, alice, wire.TypeMessage); len(before) != 0 {
		t.Errorf("alice got %v before the message", before)
	}
	if got := textsUntilPong(t, bob); len(got) != 0 {
		t.Errorf("bob, removed, still received %v", got)
	}
	eventually(t, 5*time.Second, "bob's connection to stop listing room", func() bool {
		for _, ci := range e.srvConnSubs() {
			if ci.user == "bob" && len(ci.subs) != 0 {
				return false
			}
		}
		return true
	})

	publish(&broker.Event{Kind: broker.ChannelDeleted, Channel: "room"})
	raw, _ = readUntil(t, alice, wire.TypeUnsubscribed)
	if err := json.Unmarshal(raw, &u); err != nil || u.Reason != wire.UnsubscribedDeleted {
		t.Errorf("alice got %s, want unsubscribed with reason deleted", raw)
	}

	// Subscribing again works as before (and is again authorized by chat).
	subscribeTo(t, alice, "room")
	if _, err := e.chat.Publish(ctx, e.srvIdentity("alice"), wire.Publish{Channel: "room", Text: ptrTo("again")}); err != nil {
		t.Fatal(err)
	}
	readUntil(t, alice, wire.TypeMessage)
}

func ptrTo[T any](v T) *T { return &v }

func (e *env) srvIdentity(user string) unhidra.Identity {
	return unhidra.Identity{Principal: wire.Principal{Kind: wire.KindUser, ID: user}}
}

type connSubs struct {
	user string
	subs []string
}

// srvConnSubs lists the live connections' users and the channels they are
// subscribed to, as GET /api/v1/admin/connections reports them.
func (e *env) srvConnSubs() []connSubs {
	e.srv.mu.Lock()
	conns := e.srv.connsSnapshot(nil)
	e.srv.mu.Unlock()
	var out []connSubs
	for _, c := range conns {
		out = append(out, connSubs{user: c.principal.ID, subs: c.channels()})
	}
	return out
}
