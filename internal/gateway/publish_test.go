package gateway

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/chat"
	"github.com/unhidra/unhidra/internal/inmem"
	"github.com/unhidra/unhidra/internal/sqlite"
	"github.com/unhidra/unhidra/internal/sqlitetest"
	"github.com/unhidra/unhidra/internal/wstest"
	"github.com/unhidra/unhidra/wire"
)

// serialChat is the fake chat service without QueuePublish: a Chat that
// only has the one-step Publish.
type serialChat struct{ f *fakeChat }

func (s serialChat) Subscribe(ctx context.Context, who unhidra.Identity, channel string, since *int64) (chat.Recovery, error) {
	return s.f.Subscribe(ctx, who, channel, since)
}
func (s serialChat) Publish(ctx context.Context, who unhidra.Identity, in wire.Publish) (wire.Ack, error) {
	return s.f.Publish(ctx, who, in)
}
func (s serialChat) Typing(ctx context.Context, who unhidra.Identity, channel string) error {
	return s.f.Typing(ctx, who, channel)
}

// readReply reads the next data frame and returns its type, its id (as JSON
// text) and, for an ack, its offset; for an error, its code.
func nextReply(t *testing.T, c *wstest.Conn) (typ, id string, offset int64, code string) {
	t.Helper()
	var f struct {
		ID     any    `json:"id"`
		Offset int64  `json:"offset"`
		Code   string `json:"code"`
	}
	typ, err := c.ReadJSON(&f)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if f.ID != nil {
		id = fmt.Sprint(f.ID)
	}
	return typ, id, f.Offset, f.Code
}

func holdCommits(e *env) (release func()) {
	gate := make(chan struct{})
	e.chat.mu.Lock()
	e.chat.gate = gate
	e.chat.mu.Unlock()
	return func() { close(gate) }
}

// Several publishes of one connection are queued for the commit together
// (they are all queued while the first commit is held), stored in the
// order sent, and answered in that order with their offsets; a subscriber
// gets them in the same order.
func TestPublishesOfOneConnectionArePipelinedAndAnsweredInOrder(t *testing.T) {
	e := newEnv(t, nil)
	sub := e.dial(t, e.user("bob", "s", time.Hour))
	if err := sub.WriteText(`{"type":"subscribe","id":"s","channel":"pipe"}`); err != nil {
		t.Fatal(err)
	}
	if err := sub.ReadUntil(wire.TypeSubscribed, nil); err != nil {
		t.Fatal(err)
	}
	release := holdCommits(e)
	c := e.dial(t, e.user("alice", "s", time.Hour))
	const n = 10
	for i := range n {
		if err := c.WriteText(fmt.Sprintf(`{"type":"publish","id":%d,"channel":"pipe","text":"m%d"}`, i, i)); err != nil {
			t.Fatal(err)
		}
	}
	// Every publish reaches the chat service while no commit can finish:
	// the connection does not wait for one publish's commit to queue the
	// next.
	eventually(t, 10*time.Second, "all publishes queued while the commit is held", func() bool {
		_, total := e.chat.inFlight()
		return total == n
	})
	release()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	for i := range n {
		typ, id, off, _ := nextReply(t, c)
		if typ != wire.TypeAck || id != fmt.Sprint(i) || off != int64(i+1) {
			t.Fatalf("reply %d = %s id %s offset %d, want ack id %d offset %d", i, typ, id, off, i, i+1)
		}
	}
	_ = sub.SetDeadline(time.Now().Add(10 * time.Second))
	for i := range n {
		var m wire.MessageFrame
		if err := sub.ReadUntil(wire.TypeMessage, &m); err != nil {
			t.Fatal(err)
		}
		if m.Offset != int64(i+1) || m.Message.Text == nil || *m.Message.Text != fmt.Sprint("m", i) {
			t.Fatalf("message %d = offset %d %v, want offset %d m%d", i, m.Offset, m.Message.Text, i+1, i)
		}
	}
}

// A reply to any other frame, and a publish refused before its commit,
// come after the acks of the publishes sent before them: a connection's
// replies keep the order of its frames.
func TestRepliesFollowTheAcksOfEarlierPublishes(t *testing.T) {
	e := newEnv(t, nil)
	e.chat.forbidden["closed"] = true
	release := holdCommits(e)
	c := e.dial(t, e.user("alice", "s", time.Hour))
	for _, f := range []string{
		`{"type":"publish","id":"p1","channel":"ch","text":"a"}`,
		`{"type":"publish","id":"p2","channel":"closed","text":"b"}`,
		`{"type":"publish","id":"p3","channel":"ch","text":"c"}`,
		`{"type":"subscribe","id":"s1","channel":"other"}`,
		`{"type":"nonsense","id":"x1"}`,
		`{"type":"publish","id":"p4","channel":"ch","text":"d"}`,
	} {
		if err := c.WriteText(f); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, "the first publishes queued", func() bool {
		_, total := e.chat.inFlight()
		return total >= 2
	})
	release()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	want := []struct{ typ, id, code string }{
		{wire.TypeAck, "p1", ""},
		{wire.TypeError, "p2", unhidra.EFORBIDDEN},
		{wire.TypeAck, "p3", ""},
		{wire.TypeSubscribed, "s1", ""},
		{wire.TypeError, "x1", unhidra.EINVALID},
		{wire.TypeAck, "p4", ""},
	}
	for i, w := range want {
		typ, id, _, code := nextReply(t, c)
		if typ != w.typ || id != w.id || code != w.code {
			t.Fatalf("reply %d = %s %s %q, want %s %s %q", i, typ, id, code, w.typ, w.id, w.code)
		}
	}
}

// A drain waits for the publishes in flight: each is answered with its ack
// before the 1001.
func TestDrainAnswersEveryPipelinedPublishBeforeGoingAway(t *testing.T) {
	e := newEnv(t, nil)
	release := holdCommits(e)
	c := e.dial(t, e.user("alice", "s", time.Hour))
	const n = 5
	for i := range n {
		if err := c.WriteText(fmt.Sprintf(`{"type":"publish","id":%d,"channel":"d","text":"m"}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, "all publishes queued", func() bool {
		_, total := e.chat.inFlight()
		return total == n
	})
	stopped := make(chan struct{})
	go func() { e.shutdown(); close(stopped) }()
	eventually(t, 10*time.Second, "draining", e.srv.Draining)
	release()
	defer func() { <-stopped }()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	for i := range n {
		typ, id, off, _ := nextReply(t, c)
		if typ != wire.TypeAck || id != fmt.Sprint(i) || off != int64(i+1) {
			t.Fatalf("reply %d = %s id %s offset %d, want ack id %d offset %d", i, typ, id, off, i, i+1)
		}
	}
	expectClose(t, c, CloseGoingAway)
	if got := len(e.chat.stored("d")); got != n {
		t.Fatalf("stored %d, want %d", got, n)
	}
}

// A Chat without QueuePublish is called one publish at a time, as before,
// with the same replies in the same order.
func TestPublishWithoutQueuePublishWaitsForEachCommit(t *testing.T) {
	var f *fakeChat
	e := newEnv(t, func(_ *Config, d *Deps) {
		f = d.Chat.(*fakeChat)
		d.Chat = serialChat{f}
	})
	c := e.dial(t, e.user("alice", "s", time.Hour))
	for i := range 5 {
		if err := c.WriteText(fmt.Sprintf(`{"type":"publish","id":%d,"channel":"ser","text":"m"}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	for i := range 5 {
		typ, id, off, _ := nextReply(t, c)
		if typ != wire.TypeAck || id != fmt.Sprint(i) || off != int64(i+1) {
			t.Fatalf("reply %d = %s id %s offset %d, want ack id %d offset %d", i, typ, id, off, i, i+1)
		}
	}
	if _, total := f.inFlight(); total != 0 {
		t.Fatalf("QueuePublish was used %d times by a Chat without it", total)
	}
}

// Through the real chat service on SQLite (group commit, deferred sync):
// one connection's back-to-back publishes are stored with gapless offsets
// in the order sent and acknowledged in that order, and a subscriber reads
// the same sequence.
func TestPipelinedPublishesThroughTheChatService(t *testing.T) {
	ctx := context.Background()
	db := sqlitetest.Open(t)
	sqlitetest.AddUsers(t, db, "alice", "bob")
	cs, err := sqlite.NewChatStore(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	b := inmem.NewBroker()
	svc := chat.NewService(cs, b, chat.Options{Users: everyUser{}})
	t.Cleanup(svc.Wait)
	alice := unhidra.Identity{Principal: wire.Principal{Kind: wire.KindUser, ID: "alice"}}
	bob := unhidra.Identity{Principal: wire.Principal{Kind: wire.KindUser, ID: "bob"}}
	ch, _, err := svc.CreateChannel(ctx, alice, chat.CreateChannel{Name: "pipe", Kind: chat.KindPublic})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Join(ctx, bob, ch.ID); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *Config, d *Deps) {
		d.Chat = svc
		d.Broker = b
		c.InboundBurst = 1000
		c.InboundRate = 1000
	})
	sub := e.dial(t, e.user("bob", "s", time.Hour))
	if err := sub.WriteText(`{"type":"subscribe","id":"s","channel":"` + ch.ID + `"}`); err != nil {
		t.Fatal(err)
	}
	if err := sub.ReadUntil(wire.TypeSubscribed, nil); err != nil {
		t.Fatal(err)
	}
	c := e.dial(t, e.user("alice", "s", time.Hour))
	const n = 200
	go func() {
		for i := range n {
			if err := c.WriteText(fmt.Sprintf(`{"type":"publish","id":%d,"channel":"%s","text":"m%d"}`, i, ch.ID, i)); err != nil {
				return
			}
		}
	}()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	for i := 0; i < n; {
		typ, id, off, code := nextReply(t, c)
		if typ == wire.TypeMessage {
			continue // alice's own messages
		}
		if typ != wire.TypeAck || id != fmt.Sprint(i) || off != int64(i+1) {
			t.Fatalf("reply %d = %s id %s offset %d %s, want ack id %d offset %d", i, typ, id, off, code, i, i+1)
		}
		i++
	}
	_ = sub.SetDeadline(time.Now().Add(30 * time.Second))
	for i := range n {
		var m wire.MessageFrame
		if err := sub.ReadUntil(wire.TypeMessage, &m); err != nil {
			t.Fatal(err)
		}
		if m.Offset != int64(i+1) || m.Message.Text == nil || *m.Message.Text != fmt.Sprint("m", i) {
			t.Fatalf("message %d = offset %d %v, want offset %d m%d", i, m.Offset, m.Message.Text, i+1, i)
		}
	}
}
