package chat_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/chat"
	"github.com/unhidra/unhidra/wire"
)

// accepted returns "user=accepted|pending" for each member of ch.
func (e *env) accepted(t *testing.T, ch string) string {
	t.Helper()
	ms, err := e.st.Members(context.Background(), ch)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range ms {
		state := "pending"
		if m.Accepted() {
			state = "accepted"
		}
		out = append(out, m.User+"="+state)
	}
	return fmt.Sprint(out)
}

func TestAddedMembersArePendingUntilTheyAcceptOrPost(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, chat.Options{})
	dm := e.channel(t, alice, chat.KindDirect, "bob")
	if got, want := e.accepted(t, dm.ID), "[alice=accepted bob=pending]"; got != want {
		t.Errorf("a new direct channel: %s, want %s (the opener accepted, the other pending)", got, want)
	}
	if _, err := e.svc.Publish(ctx, bob, wire.Publish{Channel: dm.ID, Text: txt("hi alice")}); err != nil {
		t.Fatal(err)
	}
	if got, want := e.accepted(t, dm.ID), "[alice=accepted bob=accepted]"; got != want {
		t.Errorf("after bob posted: %s, want %s", got, want)
	}

	priv := e.channel(t, alice, chat.KindPrivate, "carol")
	if _, err := e.svc.PutMember(ctx, alice, priv.ID, "bob", ""); err != nil {
		t.Fatal(err)
	}
	if got, want := e.accepted(t, priv.ID), "[alice=accepted bob=pending carol=pending]"; got != want {
		t.Errorf("a private channel with added members: %s, want %s", got, want)
	}
	m, err := e.svc.Accept(ctx, carol, priv.ID)
	if err != nil || m.AcceptedAt == nil || m.User != "carol" {
		t.Fatalf("Accept = %+v, %v", m, err)
	}
	again, err := e.svc.Accept(ctx, carol, priv.ID)
	if err != nil || !again.AcceptedAt.Equal(*m.AcceptedAt) {
		t.Errorf("Accept again = %+v, %v; want the first acceptance kept", again, err)
	}
	if got, want := e.accepted(t, priv.ID), "[alice=accepted bob=pending carol=accepted]"; got != want {
		t.Errorf("after carol accepted: %s, want %s", got, want)
	}
	for name, who := range map[string]unhidra.Identity{"a stranger": usr("zed"), "a device": dev("d1"), "an admin who is not a member": root} {
		if _, err := e.svc.Accept(ctx, who, priv.ID); code(err) != unhidra.EFORBIDDEN {
			t.Errorf("%s accepting: %v, want forbidden", name, err)
		}
	}

	pub := e.channel(t, alice, chat.KindPublic, "bob")
	if _, err := e.svc.Join(ctx, bob, pub.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Join(ctx, carol, pub.ID); err != nil {
		t.Fatal(err)
	}
	if got, want := e.accepted(t, pub.ID), "[alice=accepted bob=accepted carol=accepted]"; got != want {
		t.Errorf("joining a public channel (bob was added, carol joined): %s, want %s", got, want)
	}
}

func TestEitherSideCanLeaveADirectChannel(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, chat.Options{})
	dm := e.channel(t, alice, chat.KindDirect, "bob")
	for _, who := range []unhidra.Identity{alice, bob} {
		if _, err := e.svc.Publish(ctx, who, wire.Publish{Channel: dm.ID, Text: txt("from " + who.Principal.ID)}); err != nil {
			t.Fatal(err)
		}
	}
	fr := e.watch(t, dm.ID)

	// bob leaves (DELETE /members/bob is the same as leave).
	if err := e.svc.RemoveMember(ctx, bob, dm.ID, "bob"); err != nil {
		t.Fatalf("bob leaving the direct channel: %v", err)
	}
	if _, err := e.svc.Subscribe(ctx, bob, dm.ID, nil); code(err) != unhidra.EFORBIDDEN {
		t.Errorf("bob reading after leaving: %v, want forbidden", err)
	}
	msgs, _, err := e.svc.History(ctx, alice, dm.ID, chat.Page{Limit: 10})
	if err != nil || len(msgs) != 2 {
		t.Errorf("alice's history after bob left = %d messages, %v; want both kept", len(msgs), err)
	}
	if _, err := e.svc.Publish(ctx, alice, wire.Publish{Channel: dm.ID, Text: txt("still there?")}); code(err) != unhidra.EFORBIDDEN {
		t.Errorf("alice posting to nobody: %v, want forbidden", err)
	}

	// alice opens it again: the same channel, bob invited back (pending).
	again, created, err := e.svc.CreateChannel(ctx, alice, chat.CreateChannel{Kind: chat.KindDirect, Members: []string{"bob"}})
	if err != nil || created || again.ID != dm.ID {
		t.Fatalf("reopening = %s created=%v %v; want %s reused", again.ID, created, err, dm.ID)
	}
	if got, want := e.accepted(t, dm.ID), "[alice=accepted bob=pending]"; got != want {
		t.Errorf("after reopening: %s, want %s", got, want)
	}
	if msgs, _, err := e.svc.History(ctx, bob, dm.ID, chat.Page{Limit: 10}); err != nil || len(msgs) != 2 {
		t.Errorf("bob's history after being invited back = %d, %v; want 2", len(msgs), err)
	}

	// alice leaves too; she can come back by opening it herself.
	if err := e.svc.Leave(ctx, alice, dm.ID); err != nil {
		t.Fatalf("alice leaving: %v", err)
	}
	if _, created, err := e.svc.CreateChannel(ctx, alice, chat.CreateChannel{Kind: chat.KindDirect, Members: []string{"bob"}}); err != nil || created {
		t.Fatalf("alice reopening after leaving: created=%v %v", created, err)
	}
	if got, want := e.accepted(t, dm.ID), "[alice=accepted bob=pending]"; got != want {
		t.Errorf("after alice came back: %s, want %s", got, want)
	}

	// The last member leaving deletes the channel; opening it again starts
	// an empty one.
	if err := e.svc.Leave(ctx, bob, dm.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Leave(ctx, alice, dm.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.GetChannel(ctx, dm.ID); code(err) != unhidra.ENOTFOUND {
		t.Errorf("the direct channel after both left: %v, want it deleted", err)
	}
	fresh, created, err := e.svc.CreateChannel(ctx, bob, chat.CreateChannel{Kind: chat.KindDirect, Members: []string{"alice"}})
	if err != nil || !created || fresh.ID == dm.ID || fresh.LastOffset != 0 {
		t.Errorf("opening after both left = %+v created=%v %v; want a new empty channel", fresh, created, err)
	}

	var got []string
	for _, b := range fr.all() {
		var f struct{ Type, User string }
		_ = json.Unmarshal(b, &f)
		got = append(got, f.Type+":"+f.User)
	}
	want := "[member_removed:bob member_removed:alice member_removed:bob member_removed:alice channel_deleted:]"
	if fmt.Sprint(got) != want {
		t.Errorf("frames = %v, want %s", got, want)
	}
	if err := e.svc.RemoveMember(ctx, alice, fresh.ID, "bob"); code(err) != unhidra.EINVALID {
		t.Errorf("removing the other side of a direct channel: %v, want invalid", err)
	}
}

func TestBlockingStopsDirectChannelsMessagesAndInvitations(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, chat.Options{})
	dm := e.channel(t, bob, chat.KindDirect, "alice")
	m, err := e.svc.Publish(ctx, bob, wire.Publish{Channel: dm.ID, Text: txt("hello")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Block(ctx, alice, "bob"); err != nil {
		t.Fatal(err)
	}
	fr := e.watch(t, dm.ID)
	refused := []struct {
		name string
		err  func() error
	}{
		{"bob publishing (WebSocket, MQTT)", func() error {
			_, err := e.svc.Publish(ctx, bob, wire.Publish{Channel: dm.ID, Text: txt("let me in")})
			return err
		}},
		{"bob posting (REST)", func() error {
			_, _, err := e.svc.Post(ctx, bob, wire.Publish{Channel: dm.ID, Data: json.RawMessage(`{"x":1}`)})
			return err
		}},
		{"bob editing an old message", func() error {
			_, err := e.svc.EditMessage(ctx, bob, dm.ID, m.MessageID, chat.Edit{Text: txt("edited")})
			return err
		}},
		{"bob typing", func() error { return e.svc.Typing(ctx, bob, dm.ID) }},
		{"alice writing to whom she blocked", func() error {
			_, err := e.svc.Publish(ctx, alice, wire.Publish{Channel: dm.ID, Text: txt("hi")})
			return err
		}},
		{"bob reopening the direct channel", func() error {
			_, _, err := e.svc.CreateChannel(ctx, bob, chat.CreateChannel{Kind: chat.KindDirect, Members: []string{"alice"}})
			return err
		}},
		{"bob putting alice in a new private channel", func() error {
			_, _, err := e.svc.CreateChannel(ctx, bob, chat.CreateChannel{Name: "trap", Kind: chat.KindPrivate, Members: []string{"alice"}})
			return err
		}},
	}
	for _, tc := range refused {
		if err := tc.err(); code(err) != unhidra.EFORBIDDEN {
			t.Errorf("%s: %v, want forbidden", tc.name, err)
		}
	}
	if n := len(fr.all()); n != 0 {
		t.Errorf("%d frames reached the direct channel after the block, want 0", n)
	}
	room := e.channel(t, bob, chat.KindPrivate)
	if _, err := e.svc.PutMember(ctx, bob, room.ID, "alice", ""); code(err) != unhidra.EFORBIDDEN {
		t.Errorf("bob adding alice to his channel: %v, want forbidden", err)
	}
	if _, err := e.svc.PutMember(ctx, bob, room.ID, "carol", ""); err != nil {
		t.Errorf("bob adding carol, who did not block him: %v", err)
	}
	// A stranger blocked before any conversation cannot open one.
	if _, err := e.svc.Block(ctx, carol, "bob"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.svc.CreateChannel(ctx, bob, chat.CreateChannel{Kind: chat.KindDirect, Members: []string{"carol"}}); code(err) != unhidra.EFORBIDDEN {
		t.Errorf("bob opening a direct channel with carol, who blocks him: %v, want forbidden", err)
	}
	if _, _, err := e.svc.CreateChannel(ctx, carol, chat.CreateChannel{Kind: chat.KindDirect, Members: []string{"bob"}}); code(err) != unhidra.EFORBIDDEN {
		t.Errorf("carol opening a direct channel with bob, whom she blocks: %v, want forbidden", err)
	}

	bs, err := e.svc.Blocks(ctx, alice)
	if err != nil || len(bs) != 1 || bs[0].User != "bob" {
		t.Errorf("alice's blocks = %+v, %v; want bob", bs, err)
	}
	if b, err := e.svc.Block(ctx, alice, "BOB"); err != nil || b.User != "bob" || !b.CreatedAt.Equal(bs[0].CreatedAt) {
		t.Errorf("blocking again = %+v, %v; want the first block", b, err)
	}
	if err := e.svc.Unblock(ctx, alice, "bob"); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Unblock(ctx, alice, "bob"); err != nil {
		t.Errorf("unblocking twice: %v, want no error", err)
	}
	if _, err := e.svc.Publish(ctx, bob, wire.Publish{Channel: dm.ID, Text: txt("thanks")}); err != nil {
		t.Errorf("bob posting after the unblock: %v", err)
	}
	for name, f := range map[string]func() error{
		"blocking oneself": func() error { _, err := e.svc.Block(ctx, alice, "alice"); return err },
		"an invalid name":  func() error { _, err := e.svc.Block(ctx, alice, "No Such!"); return err },
	} {
		if err := f(); code(err) != unhidra.EINVALID {
			t.Errorf("%s: %v, want invalid", name, err)
		}
	}
	if _, err := e.svc.Block(ctx, dev("d1"), "alice"); code(err) != unhidra.EFORBIDDEN {
		t.Errorf("a device blocking: %v, want forbidden", err)
	}
}

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func TestChannelCreationIsBoundedPerUser(t *testing.T) {
	ctx := context.Background()
	clk := &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	e := newEnv(t, chat.Options{Now: clk.now})
	create := func(who unhidra.Identity, i int) error {
		kind := []string{chat.KindPublic, chat.KindPrivate, chat.KindDirect}[i%3]
		in := chat.CreateChannel{Name: fmt.Sprint("room ", i), Kind: kind}
		if kind == chat.KindDirect {
			in.Members = []string{fmt.Sprint("peer", i)}
		}
		_, _, err := e.svc.CreateChannel(ctx, who, in)
		return err
	}
	first := clk.now()
	for i := 0; i < chat.MaxChannelsPerDay; i++ {
		if err := create(alice, i); err != nil {
			t.Fatalf("channel %d: %v", i+1, err)
		}
		clk.add(time.Minute)
	}
	err := create(alice, chat.MaxChannelsPerDay)
	if code(err) != unhidra.ERATELIMITED {
		t.Fatalf("channel %d in a day: %v, want rate_limited", chat.MaxChannelsPerDay+1, err)
	}
	if got, want := unhidra.RetryAfter(err), int(first.Add(chat.QuotaWindow).Sub(clk.now())/time.Second); got != want {
		t.Errorf("Retry-After = %d s, want %d s (until the first creation leaves the window)", got, want)
	}
	// Reopening an existing direct channel creates nothing and is allowed.
	if _, created, err := e.svc.CreateChannel(ctx, alice, chat.CreateChannel{Kind: chat.KindDirect, Members: []string{"peer2"}}); err != nil || created {
		t.Errorf("reopening a direct channel at the quota: created=%v %v; want the existing one", created, err)
	}
	// Deleting gives nothing back.
	chs, err := e.svc.ListChannels(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range chs {
		if ch.Kind == chat.KindPublic {
			if err := e.svc.DeleteChannel(ctx, alice, ch.ID); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	if err := create(alice, 0); code(err) != unhidra.ERATELIMITED {
		t.Errorf("creating after deleting one: %v, want rate_limited", err)
	}
	if err := create(bob, 0); err != nil {
		t.Errorf("another user: %v", err)
	}
	if err := create(root, 0); err != nil {
		t.Errorf("an admin (exempt): %v", err)
	}
	// The window slides: once the first creation is a day old, one more.
	clk.t = first.Add(chat.QuotaWindow)
	if err := create(alice, 1); err != nil {
		t.Errorf("a day after the first creation: %v", err)
	}
	if err := create(alice, 1); code(err) != unhidra.ERATELIMITED {
		t.Errorf("the next one right after: %v, want rate_limited (the second creation is still in the window)", err)
	}
}

func TestCreatedChannelsAreCapped(t *testing.T) {
	if testing.Short() {
		t.Skip("creates 500 channels")
	}
	ctx := context.Background()
	clk := &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	e := newEnv(t, chat.Options{Now: clk.now})
	var last chat.Channel
	for i := 0; i < chat.MaxCreatedChannels; i++ {
		if i > 0 && i%chat.MaxChannelsPerDay == 0 {
			clk.add(chat.QuotaWindow)
		}
		ch, _, err := e.svc.CreateChannel(ctx, alice, chat.CreateChannel{Name: fmt.Sprint("room ", i), Kind: chat.KindPrivate})
		if err != nil {
			t.Fatalf("channel %d: %v", i+1, err)
		}
		last = ch
	}
	clk.add(chat.QuotaWindow)
	_, _, err := e.svc.CreateChannel(ctx, alice, chat.CreateChannel{Name: "one more", Kind: chat.KindPublic})
	if code(err) != unhidra.ERATELIMITED {
		t.Fatalf("channel %d: %v, want rate_limited", chat.MaxCreatedChannels+1, err)
	}
	if _, _, err := e.svc.CreateChannel(ctx, alice, chat.CreateChannel{Kind: chat.KindDirect, Members: []string{"bob"}}); err != nil {
		t.Errorf("a direct channel beyond the cap (only the daily quota applies): %v", err)
	}
	if err := e.svc.DeleteChannel(ctx, alice, last.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.svc.CreateChannel(ctx, alice, chat.CreateChannel{Name: "one more", Kind: chat.KindPublic}); err != nil {
		t.Errorf("creating after deleting one: %v", err)
	}
}

func nest(depth int) string {
	return strings.Repeat("[", depth) + "1" + strings.Repeat("]", depth)
}

// TestDataDepthAndUnicodeAreCheckedInTheDomain: every transport ends in
// these calls, so REST, WebSocket and MQTT refuse the same values.
func TestDataDepthAndUnicodeAreCheckedInTheDomain(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, chat.Options{})
	ch := e.channel(t, alice, chat.KindPrivate)
	sec, _, err := e.svc.CreateChannel(ctx, alice, chat.CreateChannel{Name: "secret", Kind: chat.KindPrivate, E2EE: ptr(true)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.EnsureDeviceChannel(ctx, "d1", "alice"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		in   wire.Publish
		want string
	}{
		{"data nested 32 levels is accepted", wire.Publish{Channel: ch.ID, Data: json.RawMessage(nest(wire.MaxDepth))}, ""},
		{"data nested 33 levels is refused", wire.Publish{Channel: ch.ID, Data: json.RawMessage(nest(wire.MaxDepth + 1))}, unhidra.EINVALID},
		{"data nested 10,000 levels is refused", wire.Publish{Channel: ch.ID, Data: json.RawMessage(nest(10_000))}, unhidra.EINVALID},
		{"data with invalid UTF-8 is refused", wire.Publish{Channel: ch.ID, Data: json.RawMessage("\"a\xffb\"")}, unhidra.EINVALID},
		{"data with a lone surrogate escape is refused", wire.Publish{Channel: ch.ID, Data: json.RawMessage(`{"s":"\ud800"}`)}, unhidra.EINVALID},
		{"an e2ee envelope nested 33 levels is refused", wire.Publish{Channel: sec.ID, E2EE: json.RawMessage(`{"a":` + nest(wire.MaxDepth) + `}`)}, unhidra.EINVALID},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.svc.Publish(ctx, alice, tc.in)
			if got := code(err); got != tc.want {
				t.Errorf("error = %v, want code %q", err, tc.want)
			}
		})
	}
	ack, err := e.svc.Publish(ctx, alice, wire.Publish{Channel: ch.ID, Data: json.RawMessage(`{"ok":true}`)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.EditMessage(ctx, alice, ch.ID, ack.MessageID, chat.Edit{Data: json.RawMessage(nest(wire.MaxDepth + 1))}); code(err) != unhidra.EINVALID {
		t.Errorf("an edit to data nested 33 levels: %v, want invalid", err)
	}
	if _, err := e.svc.QueueDeviceData(ctx, "d1", json.RawMessage(`{"t":`+nest(wire.MaxDepth)+`}`), nil); code(err) != unhidra.EINVALID {
		t.Errorf("device data nested 33 levels: %v, want invalid", err)
	}
	msgs, _, err := e.svc.History(ctx, alice, ch.ID, chat.Page{Limit: 10})
	if err != nil || len(msgs) != 2 {
		t.Errorf("history = %d messages, %v; want the 32-level one and the last one only", len(msgs), err)
	}
}
