package chat_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/audit"
	"github.com/unhidra/unhidra/internal/broker"
	"github.com/unhidra/unhidra/internal/chat"
	"github.com/unhidra/unhidra/internal/inmem"
	"github.com/unhidra/unhidra/internal/sqlite"
	"github.com/unhidra/unhidra/internal/sqlitetest"
	"github.com/unhidra/unhidra/wire"
)

type env struct {
	svc *chat.Service
	st  *sqlite.ChatStore
	db  *sqlite.DB
	bus *inmem.Broker
	ev  *recorder
}

type recorder struct {
	mu  sync.Mutex
	evs []audit.Event
}

func (r *recorder) Audit(_ context.Context, ev audit.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, ev)
}

func (r *recorder) actions() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.evs {
		a := e.Action + ":" + e.Details["user"]
		if e.Outcome != audit.Success {
			a += " " + e.Outcome
		}
		out = append(out, a)
	}
	return out
}

func newEnv(t testing.TB, opts chat.Options) *env {
	t.Helper()
	ctx := context.Background()
	db := sqlitetest.Open(t)
	st, err := sqlite.NewChatStore(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	bus := inmem.NewBroker()
	rec := &recorder{}
	opts.Audit = rec
	svc := chat.NewService(st, bus, opts)
	t.Cleanup(func() {
		svc.Wait()
		st.Close()
		db.Close()
	})
	return &env{svc: svc, st: st, db: db, bus: bus, ev: rec}
}

func usr(name string, roles ...string) unhidra.Identity {
	return unhidra.Identity{Principal: wire.Principal{Kind: wire.KindUser, ID: name}, Roles: roles}
}

func dev(id string) unhidra.Identity {
	return unhidra.Identity{Principal: wire.Principal{Kind: wire.KindDevice, ID: id}}
}

var (
	alice = usr("alice")
	bob   = usr("bob")
	carol = usr("carol")
	root  = usr("root", unhidra.RoleAdmin)
)

func txt(s string) *string { return &s }

func (e *env) channel(t testing.TB, who unhidra.Identity, kind string, members ...string) chat.Channel {
	t.Helper()
	ch, _, err := e.svc.CreateChannel(context.Background(), who, chat.CreateChannel{Name: "room " + kind, Kind: kind, Members: members})
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// frames subscribes to a channel topic and collects the frames.
type frames struct {
	mu  sync.Mutex
	got [][]byte
}

func (f *frames) all() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]byte(nil), f.got...)
}

func (e *env) watch(t testing.TB, channel string) *frames {
	f := &frames{}
	unsub, err := e.bus.Subscribe(broker.ChannelTopic(channel), func(ev *broker.Event) {
		p, err := json.Marshal(ev.Frame()) // the frame a WebSocket client receives
		if err != nil {
			t.Errorf("event %v: %v", ev.Kind, err)
		}
		f.mu.Lock()
		f.got = append(f.got, p)
		f.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(unsub)
	return f
}

func code(err error) string { return unhidra.ErrorCode(err) }

// MSG-1: the same client_msg_id 10 times, one after the other and
// concurrently, is stored once and always answered with the first ack.
func TestPublishIsIdempotentOnClientMsgID(t *testing.T) {
	ctx := context.Background()
	for _, concurrent := range []bool{false, true} {
		t.Run(fmt.Sprintf("concurrent=%v", concurrent), func(t *testing.T) {
			e := newEnv(t, chat.Options{})
			ch := e.channel(t, alice, chat.KindPrivate)
			f := e.watch(t, ch.ID)
			in := wire.Publish{Channel: ch.ID, ClientMsgID: "cm-1", Text: txt("hello")}
			acks := make([]wire.Ack, 10)
			errs := make([]error, 10)
			var wg sync.WaitGroup
			for i := range acks {
				if concurrent {
					wg.Add(1)
					go func() {
						defer wg.Done()
						acks[i], errs[i] = e.svc.Publish(ctx, alice, in)
					}()
				} else {
					acks[i], errs[i] = e.svc.Publish(ctx, alice, in)
				}
			}
			wg.Wait()
			for i := range acks {
				if errs[i] != nil {
					t.Fatalf("publish %d: %v", i, errs[i])
				}
				if acks[i] != acks[0] || acks[i].Offset != 1 {
					t.Errorf("ack %d = %+v, want the first ack %+v at offset 1", i, acks[i], acks[0])
				}
			}
			msgs, err := e.st.MessagesAfter(ctx, ch.ID, 0, 100)
			if err != nil || len(msgs) != 1 {
				t.Fatalf("stored %d messages (%v), want 1", len(msgs), err)
			}
			if n := len(f.all()); n != 1 {
				t.Errorf("%d message frames published, want 1", n)
			}
		})
	}
}

// MSG-2: 50 concurrent publishers on one channel: offsets 1..N with no gap
// and every subscriber of the topic sees the same order. The full 100,000
// runs under make soak (UNHIDRA_SOAK=1).
func TestConcurrentPublishersGetGaplessOffsetsInOneOrder(t *testing.T) {
	runOrdering(t, 10_000)
}

func TestSoakConcurrentPublishers100k(t *testing.T) {
	if os.Getenv("UNHIDRA_SOAK") == "" {
		t.Skip("set UNHIDRA_SOAK=1 (make soak)")
	}
	runOrdering(t, 100_000)
}

func runOrdering(t *testing.T, total int) {
	ctx := context.Background()
	e := newEnv(t, chat.Options{})
	ch := e.channel(t, alice, chat.KindPublic)
	const publishers = 50
	ids := make([]unhidra.Identity, publishers)
	for i := range ids {
		ids[i] = usr(fmt.Sprintf("p%02d", i))
		if _, err := e.svc.Join(ctx, ids[i], ch.ID); err != nil {
			t.Fatal(err)
		}
	}
	const subscribers = 3
	subs := make([]*frames, subscribers)
	for i := range subs {
		subs[i] = e.watch(t, ch.ID)
	}
	start := time.Now()
	var wg sync.WaitGroup
	ackOffsets := make([][]int64, publishers)
	errc := make(chan error, publishers)
	for p := 0; p < publishers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := p; i < total; i += publishers {
				ack, err := e.svc.Publish(ctx, ids[p], wire.Publish{Channel: ch.ID, ClientMsgID: fmt.Sprint(i), Text: txt(fmt.Sprint("m", i))})
				if err != nil {
					errc <- err
					return
				}
				ackOffsets[p] = append(ackOffsets[p], ack.Offset)
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatalf("publish: %v", err)
	}
	elapsed := time.Since(start)
	t.Logf("%d messages from %d publishers in %v (%.0f msg/s)", total, publishers, elapsed, float64(total)/elapsed.Seconds())

	seen := make([]bool, total+1)
	for p, offs := range ackOffsets {
		last := int64(0)
		for _, o := range offs {
			if o < 1 || o > int64(total) || seen[o] {
				t.Fatalf("ack offset %d out of range or acked twice", o)
			}
			if o <= last {
				t.Fatalf("publisher %d got offset %d after %d", p, o, last)
			}
			seen[o], last = true, o
		}
	}
	msgs, err := e.st.MessagesAfter(ctx, ch.ID, 0, total+10)
	if err != nil || len(msgs) != total {
		t.Fatalf("stored %d (%v), want %d", len(msgs), err, total)
	}
	for i, m := range msgs {
		if m.Offset != int64(i+1) {
			t.Fatalf("stored offset %d at %d: gap", m.Offset, i)
		}
	}
	var first []string
	for s, f := range subs {
		got := f.all()
		if len(got) != total {
			t.Fatalf("subscriber %d saw %d frames, want %d", s, len(got), total)
		}
		var order []string
		for i, raw := range got {
			var fr wire.MessageFrame
			if err := json.Unmarshal(raw, &fr); err != nil {
				t.Fatal(err)
			}
			if fr.Type != wire.TypeMessage || fr.Offset != int64(i+1) || fr.Message.Offset != fr.Offset {
				t.Fatalf("subscriber %d frame %d: type %q offset %d, want message at offset %d", s, i, fr.Type, fr.Offset, i+1)
			}
			order = append(order, fr.Message.ID)
		}
		if s == 0 {
			first = order
		} else if fmt.Sprint(order) != fmt.Sprint(first) {
			t.Fatalf("subscriber %d saw another order than subscriber 0", s)
		}
	}
}

// MSG-4: a subscriber that missed more than the recovery window gets
// recovered:false and no messages; within the window, exactly the missed
// messages in order.
func TestRecoveryIsAllOrNothing(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, chat.Options{RecoveryWindow: 10})
	ch := e.channel(t, alice, chat.KindPrivate)
	for i := 0; i < 25; i++ {
		if _, err := e.svc.Publish(ctx, alice, wire.Publish{Channel: ch.ID, Text: txt(fmt.Sprint(i + 1))}); err != nil {
			t.Fatal(err)
		}
	}
	i64 := func(n int64) *int64 { return &n }
	tests := []struct {
		name      string
		since     *int64
		recovered bool
		first     int64
		n         int
	}{
		{"no since: nothing to recover", nil, false, 0, 0},
		{"up to date: recovered and empty", i64(25), true, 0, 0},
		{"missed 10 (the window): all of them in order", i64(15), true, 16, 10},
		{"missed 11 (beyond the window): none", i64(14), false, 0, 0},
		{"since 0 with 25 messages: none", i64(0), false, 0, 0},
		{"since beyond the last offset: none", i64(40), false, 0, 0},
		{"missed 1: exactly that one", i64(24), true, 25, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := e.svc.Subscribe(ctx, alice, ch.ID, tc.since)
			if err != nil {
				t.Fatal(err)
			}
			if r.Offset != 25 || r.Recovered != tc.recovered || len(r.Messages) != tc.n {
				t.Fatalf("Subscribe = offset %d recovered %v %d msgs; want 25 %v %d", r.Offset, r.Recovered, len(r.Messages), tc.recovered, tc.n)
			}
			for i, m := range r.Messages {
				if m.Offset != tc.first+int64(i) {
					t.Errorf("message %d has offset %d, want %d", i, m.Offset, tc.first+int64(i))
				}
			}
		})
	}
	if _, err := e.svc.Subscribe(ctx, alice, ch.ID, i64(-1)); code(err) != unhidra.EINVALID {
		t.Errorf("since -1: %v, want invalid", err)
	}
}

func TestRecoveryRefusesBatchesLargerThanTheByteBudget(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, chat.Options{RecoveryMaxBytes: 8 << 10})
	ch := e.channel(t, alice, chat.KindPrivate)
	for range 4 {
		if _, err := e.svc.Publish(ctx, alice, wire.Publish{Channel: ch.ID, Text: txt(stringOf('y', 3000))}); err != nil {
			t.Fatal(err)
		}
	}
	since := int64(0)
	r, err := e.svc.Subscribe(ctx, alice, ch.ID, &since)
	if err != nil || r.Recovered || len(r.Messages) != 0 {
		t.Fatalf("4 × 3 KB against an 8 KiB budget: recovered %v with %d msgs, %v; want false, 0", r.Recovered, len(r.Messages), err)
	}
	since = 2
	r, err = e.svc.Subscribe(ctx, alice, ch.ID, &since)
	if err != nil || !r.Recovered || len(r.Messages) != 2 {
		t.Fatalf("2 × 3 KB: recovered %v with %d msgs, %v; want true, 2", r.Recovered, len(r.Messages), err)
	}
}

func stringOf(c byte, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = c
	}
	return string(b)
}

// MSG-5: history, thread, publish, subscribe, typing and member routes on a
// channel one may not read are forbidden, and a missing channel answers the
// same.
func TestNonMembersAreForbiddenAndLearnNothing(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, chat.Options{})
	priv := e.channel(t, alice, chat.KindPrivate, "bob")
	ack, err := e.svc.Publish(ctx, alice, wire.Publish{Channel: priv.ID, Text: txt("secret")})
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range []string{priv.ID, "01JAAAAAAAAAAAAAAAAAAAAAAA"} {
		calls := map[string]func() error{
			"subscribe": func() error { _, err := e.svc.Subscribe(ctx, carol, ch, nil); return err },
			"publish": func() error {
				_, err := e.svc.Publish(ctx, carol, wire.Publish{Channel: ch, Text: txt("x")})
				return err
			},
			"history": func() error { _, _, err := e.svc.History(ctx, carol, ch, chat.Page{Limit: 10}); return err },
			"thread": func() error {
				_, _, _, err := e.svc.Thread(ctx, carol, ch, ack.MessageID, 0, 10)
				return err
			},
			"typing":  func() error { return e.svc.Typing(ctx, carol, ch) },
			"members": func() error { _, err := e.svc.Members(ctx, carol, ch); return err },
			"put member": func() error {
				_, err := e.svc.PutMember(ctx, carol, ch, "carol", "")
				return err
			},
			"join":   func() error { _, err := e.svc.Join(ctx, carol, ch); return err },
			"get":    func() error { _, err := e.svc.GetChannel(ctx, carol, ch); return err },
			"delete": func() error { return e.svc.DeleteChannel(ctx, carol, ch) },
			"edit": func() error {
				_, err := e.svc.EditMessage(ctx, carol, ch, ack.MessageID, chat.Edit{Text: txt("x")})
				return err
			},
			"del msg": func() error { _, err := e.svc.DeleteMessage(ctx, carol, ch, ack.MessageID); return err },
			"search":  func() error { _, err := e.svc.Search(ctx, carol, "secret", ch, 10); return err },
			"device":  func() error { _, err := e.svc.Subscribe(ctx, dev("d1"), ch, nil); return err },
		}
		for name, call := range calls {
			t.Run(name+" on "+ch, func(t *testing.T) {
				if err := call(); code(err) != unhidra.EFORBIDDEN {
					t.Errorf("error = %v, want forbidden", err)
				}
			})
		}
	}
	if hits, err := e.svc.Search(ctx, carol, "secret", "", 10); err != nil || len(hits) != 0 {
		t.Errorf("carol's search finds %d private messages (%v)", len(hits), err)
	}
}

func TestPublicChannelsAreReadableButPostingNeedsJoining(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, chat.Options{})
	pub := e.channel(t, alice, chat.KindPublic)
	if _, err := e.svc.Subscribe(ctx, bob, pub.ID, nil); err != nil {
		t.Errorf("a non-member subscribing to a public channel: %v", err)
	}
	if _, err := e.svc.Publish(ctx, bob, wire.Publish{Channel: pub.ID, Text: txt("hi")}); code(err) != unhidra.EFORBIDDEN {
		t.Errorf("a non-member posting: %v, want forbidden", err)
	}
	if _, err := e.svc.Join(ctx, bob, pub.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Publish(ctx, bob, wire.Publish{Channel: pub.ID, Text: txt("hi")}); err != nil {
		t.Errorf("posting after joining: %v", err)
	}
	if err := e.svc.Leave(ctx, bob, pub.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Publish(ctx, bob, wire.Publish{Channel: pub.ID, Text: txt("hi")}); code(err) != unhidra.EFORBIDDEN {
		t.Errorf("posting after leaving: %v, want forbidden", err)
	}
	want := []string{"channel_create:", "member_join:bob", "member_leave:bob"}
	if got := e.ev.actions(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("events = %v, want %v", got, want)
	}
}

func TestBodiesAreValidated(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, chat.Options{})
	ch := e.channel(t, alice, chat.KindPrivate)
	sec, _, err := e.svc.CreateChannel(ctx, alice, chat.CreateChannel{Name: "secret", Kind: chat.KindPrivate, E2EE: ptr(true)})
	if err != nil {
		t.Fatal(err)
	}
	long := stringOf('a', wire.MaxTextBytes+1)
	tests := []struct {
		name string
		in   wire.Publish
		want string
	}{
		{"no body is invalid", wire.Publish{Channel: ch.ID}, unhidra.EINVALID},
		{"text and data together are invalid", wire.Publish{Channel: ch.ID, Text: txt("a"), Data: json.RawMessage(`1`)}, unhidra.EINVALID},
		{"blank text is invalid", wire.Publish{Channel: ch.ID, Text: txt("  ")}, unhidra.EINVALID},
		{"text over 16 KiB is too large", wire.Publish{Channel: ch.ID, Text: &long}, unhidra.ETOOLARGE},
		{"invalid UTF-8 is invalid", wire.Publish{Channel: ch.ID, Text: txt("a\xffb")}, unhidra.EINVALID},
		{"data that is not JSON is invalid", wire.Publish{Channel: ch.ID, Data: json.RawMessage(`{nope`)}, unhidra.EINVALID},
		{"null data counts as absent", wire.Publish{Channel: ch.ID, Data: json.RawMessage(`null`)}, unhidra.EINVALID},
		{"e2ee in a plaintext channel is refused", wire.Publish{Channel: ch.ID, E2EE: json.RawMessage(`{"c":"x"}`)}, unhidra.EINVALID},
		{"text in an e2ee channel is refused", wire.Publish{Channel: sec.ID, Text: txt("plain")}, unhidra.EINVALID},
		{"an e2ee body that is not an object is refused", wire.Publish{Channel: sec.ID, E2EE: json.RawMessage(`"x"`)}, unhidra.EINVALID},
		{"a long client_msg_id is invalid", wire.Publish{Channel: ch.ID, Text: txt("a"), ClientMsgID: stringOf('c', 129)}, unhidra.EINVALID},
		{"a thread_id that is no message is invalid", wire.Publish{Channel: ch.ID, Text: txt("a"), ThreadID: "01JAAAAAAAAAAAAAAAAAAAAAAA"}, unhidra.EINVALID},
		{"a malformed thread_id is invalid", wire.Publish{Channel: ch.ID, Text: txt("a"), ThreadID: "../x"}, unhidra.EINVALID},
		{"an empty channel is invalid", wire.Publish{Text: txt("a")}, unhidra.EINVALID},
		{"text is accepted", wire.Publish{Channel: ch.ID, Text: txt("ok")}, ""},
		{"data is accepted", wire.Publish{Channel: ch.ID, Data: json.RawMessage(`{"temp":21.5}`)}, ""},
		{"an e2ee envelope is accepted in an e2ee channel", wire.Publish{Channel: sec.ID, E2EE: json.RawMessage(`{"v":1, "ct":"AAAA"}`)}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.svc.Publish(ctx, alice, tc.in)
			if got := code(err); got != tc.want {
				t.Errorf("error = %v, want code %q", err, tc.want)
			}
		})
	}
	// e2ee bodies are kept byte-exact (spacing included).
	h, _, err := e.svc.History(ctx, alice, sec.ID, chat.Page{Limit: 1})
	if err != nil || len(h) != 1 || string(h[0].E2EE) != `{"v":1, "ct":"AAAA"}` {
		t.Errorf("stored e2ee = %q (%v), want byte-exact", h[0].E2EE, err)
	}
}

func ptr[T any](v T) *T { return &v }

func TestE2EEEnforcedRefusesPlaintextOutsideDeviceChannels(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, chat.Options{E2EEEnforced: true})
	if _, _, err := e.svc.CreateChannel(ctx, alice, chat.CreateChannel{Name: "x", Kind: chat.KindPublic, E2EE: ptr(false)}); code(err) != unhidra.EINVALID {
		t.Errorf("creating an explicit plaintext channel: %v, want invalid", err)
	}
	ch := e.channel(t, alice, chat.KindPrivate)
	if !ch.E2EE {
		t.Errorf("a new channel under E2EE_ENFORCED has e2ee=false")
	}
	if _, err := e.svc.Publish(ctx, alice, wire.Publish{Channel: ch.ID, Text: txt("plain")}); code(err) != unhidra.EINVALID {
		t.Errorf("plaintext: %v, want invalid", err)
	}
	if _, err := e.svc.Publish(ctx, alice, wire.Publish{Channel: ch.ID, E2EE: json.RawMessage(`{"ct":"x"}`)}); err != nil {
		t.Errorf("e2ee: %v", err)
	}
	dc, err := e.svc.EnsureDeviceChannel(ctx, "d1", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Publish(ctx, dev("d1"), wire.Publish{Channel: dc.ID, Data: json.RawMessage(`{"t":1}`)}); err != nil {
		t.Errorf("device data in its channel under E2EE_ENFORCED: %v", err)
	}
}

func TestDeviceChannels(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, chat.Options{})
	ch, err := e.svc.EnsureDeviceChannel(ctx, "sensor-1", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if ch.ID != "device:sensor-1" || ch.Kind != chat.KindDevice {
		t.Fatalf("device channel = %+v", ch)
	}
	again, err := e.svc.EnsureDeviceChannel(ctx, "sensor-1", "alice")
	if err != nil || again.ID != ch.ID {
		t.Fatalf("EnsureDeviceChannel twice = %+v, %v", again, err)
	}
	tests := []struct {
		name    string
		who     unhidra.Identity
		canRead bool
		canPost bool
	}{
		{"the owner reads and posts", alice, true, true},
		{"an admin reads and posts", root, true, true},
		{"the device itself reads and posts", dev("sensor-1"), true, true},
		{"another user may not read", bob, false, false},
		{"another device may not read", dev("sensor-2"), false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.svc.Subscribe(ctx, tc.who, ch.ID, nil)
			if (err == nil) != tc.canRead {
				t.Errorf("subscribe: %v, want allowed=%v", err, tc.canRead)
			}
			_, err = e.svc.Publish(ctx, tc.who, wire.Publish{Channel: ch.ID, Data: json.RawMessage(`{"temp":1}`)})
			if (err == nil) != tc.canPost {
				t.Errorf("publish: %v, want allowed=%v", err, tc.canPost)
			}
		})
	}
	if err := e.svc.DeleteChannel(ctx, root, ch.ID); code(err) != unhidra.EINVALID {
		t.Errorf("deleting a device channel via chat: %v, want invalid", err)
	}
	if _, err := e.svc.PutMember(ctx, alice, ch.ID, "bob", ""); code(err) != unhidra.EINVALID {
		t.Errorf("adding members to a device channel: %v, want invalid", err)
	}
	list, err := e.svc.ListChannels(ctx, dev("sensor-1"))
	if err != nil || len(list) != 1 || list[0].ID != ch.ID {
		t.Errorf("a device's channel list = %+v, %v", list, err)
	}
}

func TestDirectChannelsAreDeduplicatedPairs(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, chat.Options{})
	a, created, err := e.svc.CreateChannel(ctx, alice, chat.CreateChannel{Kind: chat.KindDirect, Members: []string{"bob"}})
	if err != nil || !created {
		t.Fatalf("first direct: %v created=%v", err, created)
	}
	b, created, err := e.svc.CreateChannel(ctx, bob, chat.CreateChannel{Kind: chat.KindDirect, Members: []string{"alice", "bob"}})
	if err != nil || created || b.ID != a.ID {
		t.Fatalf("the same pair from the other side = %s created=%v %v, want %s reused", b.ID, created, err, a.ID)
	}
	for _, in := range []chat.CreateChannel{
		{Kind: chat.KindDirect},
		{Kind: chat.KindDirect, Members: []string{"alice"}},
		{Kind: chat.KindDirect, Members: []string{"bob", "carol"}},
	} {
		if _, _, err := e.svc.CreateChannel(ctx, alice, in); code(err) != unhidra.EINVALID {
			t.Errorf("direct with members %v: %v, want invalid", in.Members, err)
		}
	}
	if _, err := e.svc.Subscribe(ctx, carol, a.ID, nil); code(err) != unhidra.EFORBIDDEN {
		t.Errorf("a third user reading a direct channel: %v, want forbidden", err)
	}
}

func TestMembershipRoles(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, chat.Options{})
	ch := e.channel(t, alice, chat.KindPrivate, "bob")
	if _, err := e.svc.PutMember(ctx, bob, ch.ID, "carol", ""); code(err) != unhidra.EFORBIDDEN {
		t.Errorf("a plain member adding someone: %v, want forbidden", err)
	}
	if _, err := e.svc.PutMember(ctx, alice, ch.ID, "bob", chat.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.PutMember(ctx, bob, ch.ID, "carol", ""); err != nil {
		t.Errorf("a channel admin adding a member: %v", err)
	}
	if _, err := e.svc.PutMember(ctx, bob, ch.ID, "carol", chat.RoleAdmin); code(err) != unhidra.EFORBIDDEN {
		t.Errorf("a channel admin granting admin: %v, want forbidden", err)
	}
	if err := e.svc.RemoveMember(ctx, bob, ch.ID, "alice"); code(err) != unhidra.EFORBIDDEN {
		t.Errorf("an admin removing the owner: %v, want forbidden", err)
	}
	if err := e.svc.Leave(ctx, alice, ch.ID); code(err) != unhidra.ECONFLICT {
		t.Errorf("the only owner leaving a channel with members: %v, want conflict", err)
	}
	if _, err := e.svc.PutMember(ctx, alice, ch.ID, "alice", chat.RoleMember); code(err) != unhidra.ECONFLICT {
		t.Errorf("the only owner demoting themselves: %v, want conflict", err)
	}
	if _, err := e.svc.PutMember(ctx, alice, ch.ID, "Bad User!", ""); code(err) != unhidra.EINVALID {
		t.Errorf("an invalid user name: %v, want invalid", err)
	}
	if _, err := e.svc.PutMember(ctx, alice, ch.ID, "dave", "king"); code(err) != unhidra.EINVALID {
		t.Errorf("an unknown role: %v, want invalid", err)
	}
	if err := e.svc.RemoveMember(ctx, bob, ch.ID, "carol"); err != nil {
		t.Errorf("an admin removing a member: %v", err)
	}
	if _, err := e.svc.Subscribe(ctx, carol, ch.ID, nil); code(err) != unhidra.EFORBIDDEN {
		t.Errorf("a removed member subscribing: %v, want forbidden", err)
	}
	ms, err := e.svc.Members(ctx, alice, ch.ID)
	if err != nil || len(ms) != 2 {
		t.Errorf("members = %+v, %v; want alice and bob", ms, err)
	}
	// Every change once, and every refusal for want of permission once (not
	// the conflicts and invalid input).
	want := []string{"channel_create:", "member_add:bob", "member_add:carol failure", "member_role:bob", "member_add:carol",
		"member_role:carol failure", "member_remove:alice failure", "member_remove:carol"}
	if got := e.ev.actions(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("events = %v, want %v", got, want)
	}
}

func TestEditAndDeletePublishChangeFrames(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, chat.Options{})
	ch := e.channel(t, alice, chat.KindPrivate, "bob")
	if _, err := e.svc.PutMember(ctx, alice, ch.ID, "carol", chat.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	ack, err := e.svc.Publish(ctx, bob, wire.Publish{Channel: ch.ID, Text: txt("typo")})
	if err != nil {
		t.Fatal(err)
	}
	f := e.watch(t, ch.ID)
	if _, err := e.svc.EditMessage(ctx, alice, ch.ID, ack.MessageID, chat.Edit{Text: txt("x")}); code(err) != unhidra.EFORBIDDEN {
		t.Errorf("someone else editing: %v, want forbidden", err)
	}
	m, err := e.svc.EditMessage(ctx, bob, ch.ID, ack.MessageID, chat.Edit{Text: txt("fixed")})
	if err != nil || *m.Text != "fixed" || m.EditedAt == nil {
		t.Fatalf("author edit = %+v, %v", m, err)
	}
	if _, err := e.svc.DeleteMessage(ctx, usr("dave"), ch.ID, ack.MessageID); code(err) != unhidra.EFORBIDDEN {
		t.Errorf("a stranger deleting: %v, want forbidden", err)
	}
	m, err = e.svc.DeleteMessage(ctx, carol, ch.ID, ack.MessageID)
	if err != nil || !m.Deleted || m.Text != nil {
		t.Fatalf("channel admin delete = %+v, %v", m, err)
	}
	if _, err := e.svc.EditMessage(ctx, bob, ch.ID, ack.MessageID, chat.Edit{Text: txt("again")}); code(err) != unhidra.ECONFLICT {
		t.Errorf("editing a tombstone: %v, want conflict", err)
	}
	got := f.all()
	if len(got) != 2 {
		t.Fatalf("%d frames, want message_updated and message_deleted", len(got))
	}
	var up, del wire.MessageChangeFrame
	_ = json.Unmarshal(got[0], &up)
	_ = json.Unmarshal(got[1], &del)
	if up.Type != wire.TypeMessageUpdated || *up.Message.Text != "fixed" || del.Type != wire.TypeMessageDeleted || !del.Message.Deleted || del.Message.Offset != ack.Offset {
		t.Errorf("frames = %s / %s", got[0], got[1])
	}
}

func TestThreadsAndHistoryThroughTheService(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, chat.Options{})
	ch := e.channel(t, alice, chat.KindPublic)
	r, err := e.svc.Publish(ctx, alice, wire.Publish{Channel: ch.ID, Text: txt("root")})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := e.svc.Publish(ctx, alice, wire.Publish{Channel: ch.ID, Text: txt("reply"), ThreadID: r.MessageID}); err != nil {
			t.Fatal(err)
		}
	}
	other := e.channel(t, alice, chat.KindPublic)
	if _, err := e.svc.Publish(ctx, alice, wire.Publish{Channel: other.ID, Text: txt("x"), ThreadID: r.MessageID}); code(err) != unhidra.EINVALID {
		t.Errorf("a thread root from another channel: %v, want invalid", err)
	}
	rootMsg, replies, more, err := e.svc.Thread(ctx, bob, ch.ID, r.MessageID, 0, 2)
	if err != nil || rootMsg.ID != r.MessageID || len(replies) != 2 || !more {
		t.Errorf("thread = %v %d replies more=%v %v", rootMsg.ID, len(replies), more, err)
	}
	if _, _, _, err := e.svc.Thread(ctx, bob, ch.ID, "01JAAAAAAAAAAAAAAAAAAAAAAA", 0, 2); code(err) != unhidra.ENOTFOUND {
		t.Errorf("thread of a missing message: %v, want not_found", err)
	}
	if _, _, err := e.svc.History(ctx, bob, ch.ID, chat.Page{Limit: 201}); code(err) != unhidra.EINVALID {
		t.Errorf("limit 201: %v, want invalid", err)
	}
	h, more, err := e.svc.History(ctx, bob, ch.ID, chat.Page{Limit: 3})
	if err != nil || len(h) != 3 || h[0].Offset != 4 || !more {
		t.Errorf("history = %d msgs first %d more %v %v", len(h), h[0].Offset, more, err)
	}
}

func TestTypingIsForMembersAndRateLimited(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	e := newEnv(t, chat.Options{Now: clock, TypingInterval: 2 * time.Second})
	ch := e.channel(t, alice, chat.KindPublic)
	f := e.watch(t, ch.ID)
	if err := e.svc.Typing(ctx, bob, ch.ID); code(err) != unhidra.EFORBIDDEN {
		t.Errorf("a non-member typing: %v, want forbidden", err)
	}
	for i := 0; i < 5; i++ {
		if err := e.svc.Typing(ctx, alice, ch.ID); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	now = now.Add(2 * time.Second)
	mu.Unlock()
	if err := e.svc.Typing(ctx, alice, ch.ID); err != nil {
		t.Fatal(err)
	}
	got := f.all()
	if len(got) != 2 {
		t.Fatalf("%d typing frames, want 2 (one per interval)", len(got))
	}
	var tf wire.TypingFrame
	if err := json.Unmarshal(got[0], &tf); err != nil || tf.Type != wire.TypeTyping || tf.User != "alice" || tf.Channel != ch.ID {
		t.Errorf("typing frame = %s", got[0])
	}
	if msgs, _ := e.st.MessagesAfter(ctx, ch.ID, 0, 10); len(msgs) != 0 {
		t.Errorf("typing stored %d messages", len(msgs))
	}
}

func TestSearchThroughTheService(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, chat.Options{})
	pub := e.channel(t, alice, chat.KindPublic)
	if _, err := e.svc.Publish(ctx, alice, wire.Publish{Channel: pub.ID, Text: txt("deploy the rocket")}); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`"`, `*`, `(`, `)`, "   ", `" * ( ) : ^ -`} {
		if _, err := e.svc.Search(ctx, bob, q, "", 10); code(err) != unhidra.EINVALID {
			t.Errorf("Search(%q) = %v, want invalid", q, err)
		}
	}
	hits, err := e.svc.Search(ctx, bob, `rock* "deploy`, "", 10)
	if err != nil || len(hits) != 1 {
		t.Errorf("Search with a prefix and a stray quote: %d hits, %v; want 1", len(hits), err)
	}
	hits, err = e.svc.Search(ctx, bob, `NEAR(rocket deploy)`, "", 10)
	if err != nil || len(hits) != 0 {
		t.Errorf("NEAR( is the plain word near: %d hits, %v; want 0", len(hits), err)
	}
	if _, err := e.svc.Search(ctx, bob, "x", "", 101); code(err) != unhidra.EINVALID {
		t.Errorf("limit 101: %v, want invalid", err)
	}
}

func TestCancelledPublishIsNotAcked(t *testing.T) {
	e := newEnv(t, chat.Options{})
	ch := e.channel(t, alice, chat.KindPrivate)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.svc.Publish(ctx, alice, wire.Publish{Channel: ch.ID, Text: txt("x")}); code(err) != unhidra.EUNAVAILABLE {
		t.Errorf("publish with a cancelled context: %v, want unavailable", err)
	}
}

func BenchmarkPublishGroupCommit(b *testing.B) {
	for _, publishers := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("publishers=%d", publishers), func(b *testing.B) {
			e := newEnv(b, chat.Options{})
			ch := e.channel(b, alice, chat.KindPrivate)
			ctx := context.Background()
			var wg sync.WaitGroup
			work := make(chan int, b.N)
			for i := 0; i < b.N; i++ {
				work <- i
			}
			close(work)
			b.ResetTimer()
			for p := 0; p < publishers; p++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range work {
						if _, err := e.svc.Publish(ctx, alice, wire.Publish{Channel: ch.ID, Text: txt("benchmark message body")}); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// Losing the right to read a channel is announced on its topic, so that
// transports end live subscriptions: a removed or departed member of a
// private channel, and every subscriber of a deleted channel.
func TestLosingReadAccessIsPublishedOnTheChannelTopic(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, chat.Options{})
	priv := e.channel(t, alice, chat.KindPrivate, "bob", "carol")
	pub := e.channel(t, alice, chat.KindPublic, "bob")
	fPriv, fPub := e.watch(t, priv.ID), e.watch(t, pub.ID)

	if err := e.svc.RemoveMember(ctx, alice, priv.ID, "bob"); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Leave(ctx, carol, priv.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.RemoveMember(ctx, alice, pub.ID, "bob"); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.DeleteChannel(ctx, alice, priv.ID); err != nil {
		t.Fatal(err)
	}

	var got []string
	for _, b := range fPriv.all() {
		var f struct{ Type, Channel, User string }
		if err := json.Unmarshal(b, &f); err != nil {
			t.Fatal(err)
		}
		if f.Channel != priv.ID {
			t.Errorf("frame %s names channel %q, want %q", b, f.Channel, priv.ID)
		}
		got = append(got, f.Type+":"+f.User)
	}
	want := []string{"member_removed:bob", "member_removed:carol", "channel_deleted:"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("private channel frames = %v, want %v", got, want)
	}
	if n := len(fPub.all()); n != 0 {
		t.Errorf("leaving a public channel (still readable) published %d frames, want 0", n)
	}
}
