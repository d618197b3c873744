package presence_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/broker"
	"github.com/unhidra/unhidra/internal/chat"
	"github.com/unhidra/unhidra/internal/inmem"
	"github.com/unhidra/unhidra/internal/presence"
	"github.com/unhidra/unhidra/internal/sqlite"
	"github.com/unhidra/unhidra/internal/sqlitetest"
	"github.com/unhidra/unhidra/wire"
)

type fixture struct {
	db   *sqlite.DB
	st   *sqlite.ChatStore
	bus  *inmem.Broker
	chat *chat.Service
	now  time.Time
	mu   sync.Mutex
}

func (f *fixture) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fixture) advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	db := sqlitetest.Open(t)
	st, err := sqlite.NewChatStore(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	bus := inmem.NewBroker()
	f := &fixture{db: db, st: st, bus: bus, chat: chat.NewService(st, bus, chat.Options{}),
		now: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	t.Cleanup(func() {
		f.chat.Wait()
		st.Close()
		db.Close()
	})
	return f
}

func (f *fixture) service(opts presence.Options) *presence.Service {
	opts.Store, opts.Channels, opts.Publisher, opts.Now = f.st, f.st, f.bus, f.clock
	return presence.NewService(opts)
}

func ident(kind, id string, roles ...string) unhidra.Identity {
	return unhidra.Identity{Principal: wire.Principal{Kind: kind, ID: id}, Roles: roles}
}

func conn(who unhidra.Identity, session string) *presence.Conn {
	return &presence.Conn{SessionID: session, Identity: who, RemoteIP: "127.0.0.1", Transport: presence.TransportWS,
		ConnectedAt: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
}

type tap struct {
	mu     sync.Mutex
	frames []wire.PresenceFrame
}

func (tp *tap) statuses() []string {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	var out []string
	for _, f := range tp.frames {
		out = append(out, f.User+"="+f.Status)
	}
	return out
}

func (f *fixture) tap(t *testing.T, channel string) *tap {
	tp := &tap{}
	unsub, err := f.bus.Subscribe(broker.ChannelTopic(channel), func(ev *broker.Event) {
		if fr, ok := ev.Frame().(wire.PresenceFrame); ok && ev.Kind == broker.Presence {
			tp.mu.Lock()
			tp.frames = append(tp.frames, fr)
			tp.mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(unsub)
	return tp
}

var (
	alice = ident(wire.KindUser, "alice")
	bob   = ident(wire.KindUser, "bob")
)

func TestPresenceFollowsConnectionsOnEveryTransport(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	s := f.service(presence.Options{})
	ws, mq := conn(alice, "s1"), conn(alice, "s2")
	mq.Transport = presence.TransportMQTT
	if err := s.Connect(ctx, ws); err != nil {
		t.Fatal(err)
	}
	if err := s.Connect(ctx, mq); err != nil {
		t.Fatal(err)
	}
	if err := s.Connect(ctx, ws); unhidra.ErrorCode(err) != unhidra.ECONFLICT {
		t.Errorf("registering a connection twice: %v, want conflict", err)
	}
	if got := s.Get(ctx, []string{"alice"}); got[0].Status != wire.StatusOnline {
		t.Errorf("with two connections: %+v, want online", got)
	}
	s.Disconnect(ctx, ws)
	if got := s.Get(ctx, []string{"alice"}); got[0].Status != wire.StatusOnline {
		t.Errorf("with the MQTT connection left: %+v, want online", got)
	}
	f.advance(time.Minute)
	s.Disconnect(ctx, mq)
	s.Disconnect(ctx, mq) // a second disconnect is a no-op
	got := s.Get(ctx, []string{"alice", "bob"})
	if got[0].Status != wire.StatusOffline || got[0].LastSeen == nil || !got[0].LastSeen.Equal(f.clock()) {
		t.Errorf("after the last disconnect: %+v, want offline with last_seen %v", got[0], f.clock())
	}
	if got[1].Status != wire.StatusOffline || got[1].LastSeen != nil {
		t.Errorf("a user never seen: %+v, want offline without last_seen", got[1])
	}
	// last_seen is persisted: a new service (a restart) still knows it.
	s2 := f.service(presence.Options{})
	if got := s2.Get(ctx, []string{"alice"}); got[0].LastSeen == nil || !got[0].LastSeen.Equal(f.clock()) {
		t.Errorf("after a restart: %+v, want the persisted last_seen", got[0])
	}
}

func TestSetStatus(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	s := f.service(presence.Options{})
	if err := s.SetStatus(ctx, alice, wire.StatusAway); unhidra.ErrorCode(err) != unhidra.ECONFLICT {
		t.Errorf("setting a status with no connection: %v, want conflict", err)
	}
	c := conn(alice, "s1")
	if err := s.Connect(ctx, c); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"offline", "busy", ""} {
		if err := s.SetStatus(ctx, alice, bad); unhidra.ErrorCode(err) != unhidra.EINVALID {
			t.Errorf("SetStatus(%q) = %v, want invalid", bad, err)
		}
	}
	if err := s.SetStatus(ctx, ident(wire.KindDevice, "d1"), wire.StatusAway); unhidra.ErrorCode(err) != unhidra.EFORBIDDEN {
		t.Errorf("a device setting a status: %v, want forbidden", err)
	}
	if err := s.SetStatus(ctx, alice, wire.StatusDND); err != nil {
		t.Fatal(err)
	}
	if got := s.Get(ctx, []string{"alice"}); got[0].Status != wire.StatusDND {
		t.Errorf("status = %q, want dnd", got[0].Status)
	}
	s.Disconnect(ctx, c)
	if err := s.Connect(ctx, c); err != nil {
		t.Fatal(err)
	}
	if got := s.Get(ctx, []string{"alice"}); got[0].Status != wire.StatusOnline {
		t.Errorf("after reconnecting: %q, want online", got[0].Status)
	}
}

func TestPresenceFramesReachPrivateAndDirectChannelsInOrder(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	s := f.service(presence.Options{})
	priv, _, err := f.chat.CreateChannel(ctx, bob, chat.CreateChannel{Name: "p", Kind: chat.KindPrivate, Members: []string{"alice"}})
	if err != nil {
		t.Fatal(err)
	}
	dm, _, err := f.chat.CreateChannel(ctx, bob, chat.CreateChannel{Kind: chat.KindDirect, Members: []string{"alice"}})
	if err != nil {
		t.Fatal(err)
	}
	pub, _, err := f.chat.CreateChannel(ctx, alice, chat.CreateChannel{Name: "pub", Kind: chat.KindPublic})
	if err != nil {
		t.Fatal(err)
	}
	// alice accepts what bob added her to (presence needs consent).
	for _, ch := range []chat.Channel{priv, dm} {
		if _, err := f.chat.Accept(ctx, alice, ch.ID); err != nil {
			t.Fatal(err)
		}
	}
	tp, td, tpub := f.tap(t, priv.ID), f.tap(t, dm.ID), f.tap(t, pub.ID)
	c1, c2 := conn(alice, "s1"), conn(alice, "s2")
	_ = s.Connect(ctx, c1)
	_ = s.Connect(ctx, c2) // not a transition: no frame
	_ = s.SetStatus(ctx, alice, wire.StatusAway)
	_ = s.SetStatus(ctx, alice, wire.StatusAway) // unchanged: no frame
	s.Disconnect(ctx, c1)
	s.Disconnect(ctx, c2)
	want := fmt.Sprint([]string{"alice=online", "alice=away", "alice=offline"})
	for name, tp := range map[string]*tap{"private": tp, "direct": td} {
		if got := fmt.Sprint(tp.statuses()); got != want {
			t.Errorf("%s channel saw %s, want %s", name, got, want)
		}
	}
	if got := tpub.statuses(); len(got) != 0 {
		t.Errorf("the public channel saw %v, want nothing", got)
	}
	tp.mu.Lock()
	last := tp.frames[len(tp.frames)-1]
	tp.mu.Unlock()
	if last.LastSeen == nil {
		t.Errorf("the offline frame has no last_seen")
	}
}

func TestPresenceFanOutIsBounded(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	s := f.service(presence.Options{MaxFanoutChannels: 2})
	var taps []*tap
	for i := 0; i < 3; i++ {
		ch, _, err := f.chat.CreateChannel(ctx, alice, chat.CreateChannel{Name: fmt.Sprint("p", i), Kind: chat.KindPrivate})
		if err != nil {
			t.Fatal(err)
		}
		taps = append(taps, f.tap(t, ch.ID))
	}
	_ = s.Connect(ctx, conn(alice, "s1"))
	reached := 0
	for _, tp := range taps {
		if len(tp.statuses()) > 0 {
			reached++
		}
	}
	if reached != 2 {
		t.Errorf("presence reached %d channels, want the bound of 2", reached)
	}
}

func TestConcurrentConnectsEndInOneConsistentState(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	s := f.service(presence.Options{})
	ch, _, err := f.chat.CreateChannel(ctx, alice, chat.CreateChannel{Name: "p", Kind: chat.KindPrivate})
	if err != nil {
		t.Fatal(err)
	}
	tp := f.tap(t, ch.ID)
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 10; j++ {
				c := conn(alice, fmt.Sprint(i, "-", j))
				_ = s.Connect(ctx, c)
				s.Disconnect(ctx, c)
			}
		}()
	}
	wg.Wait()
	if s.Online(alice.Principal) || s.Count() != 0 {
		t.Errorf("after every connection closed: online=%v count=%d", s.Online(alice.Principal), s.Count())
	}
	got := tp.statuses()
	if len(got) == 0 || got[len(got)-1] != "alice=offline" {
		t.Errorf("the last presence frame is %v, want offline", got)
	}
	for i := 1; i < len(got); i++ {
		if got[i] == got[i-1] {
			t.Errorf("frames %d and %d repeat %s: transitions out of order", i-1, i, got[i])
		}
	}
}

func TestAdminConnections(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	s := f.service(presence.Options{})
	d := conn(ident(wire.KindDevice, "d1"), "s-dev")
	d.Transport = presence.TransportMQTT
	d.Subscriptions = func() []string { return []string{"device:d1"} }
	d.MsgsIn.Add(3)
	u := conn(alice, "s-user")
	u.ConnectedAt = u.ConnectedAt.Add(time.Second)
	_ = s.Connect(ctx, d)
	_ = s.Connect(ctx, u)
	if !s.Online(d.Identity.Principal) {
		t.Errorf("the device is not online")
	}
	if _, err := s.AdminConnections(alice); unhidra.ErrorCode(err) != unhidra.EFORBIDDEN {
		t.Errorf("a user listing connections: %v, want forbidden", err)
	}
	got, err := s.AdminConnections(ident(wire.KindUser, "root", unhidra.RoleAdmin))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].SessionID != "s-dev" || got[0].MsgsIn != 3 || fmt.Sprint(got[0].Subscriptions) != "[device:d1]" ||
		got[1].SessionID != "s-user" || len(got[1].Subscriptions) != 0 || got[1].Subscriptions == nil {
		t.Errorf("connections = %+v", got)
	}
	s.Disconnect(ctx, d)
	ls, err := f.st.LastSeen(ctx, wire.KindDevice, []string{"d1"})
	if err != nil || ls["d1"].IsZero() {
		t.Errorf("a device's last_seen is not recorded: %v %v", ls, err)
	}
}

// GET /api/v1/presence: a user sees the presence of the people they share a
// channel with (and their own); admins see everyone; the others are left
// out, so nobody can watch when a stranger comes and goes.
func TestGetForShowsOnlyPeopleWhoShareAChannel(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	opts := presence.Options{}
	opts.Peers = f.st
	s := f.service(opts)
	carol, root := ident(wire.KindUser, "carol"), ident(wire.KindUser, "root", unhidra.RoleAdmin)
	for _, who := range []unhidra.Identity{bob, carol} {
		if err := s.Connect(ctx, conn(who, "s-"+who.Principal.ID)); err != nil {
			t.Fatal(err)
		}
	}
	ab, _, err := f.chat.CreateChannel(ctx, alice, chat.CreateChannel{Name: "a-b", Kind: chat.KindPrivate, Members: []string{"bob"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.chat.Accept(ctx, bob, ab.ID); err != nil {
		t.Fatal(err)
	}
	users := func(ps []presence.Presence) []string {
		var out []string
		for _, p := range ps {
			out = append(out, p.User+"="+p.Status)
		}
		return out
	}
	tests := []struct {
		name string
		who  unhidra.Identity
		want []string
	}{
		{"a user sees a channel peer and themself, not a stranger", alice, []string{"bob=online", "alice=offline"}},
		{"a stranger sees only themself", carol, []string{"carol=online"}},
		{"an admin sees everyone", root, []string{"bob=online", "carol=online", "alice=offline"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.GetFor(ctx, tc.who, []string{"bob", "carol", "alice"})
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(users(got)) != fmt.Sprint(tc.want) {
				t.Errorf("got %v, want %v", users(got), tc.want)
			}
		})
	}
	if _, err := s.GetFor(ctx, ident(wire.KindDevice, "d1"), []string{"bob"}); unhidra.ErrorCode(err) != unhidra.EFORBIDDEN {
		t.Errorf("a device asking: %v, want forbidden", err)
	}
}

// TestDirectChannelSharesNoPresenceUntilAccepted: opening a direct channel
// with someone shows neither side's presence to the other (no frames on
// the channel, nothing from GET /presence) until the other side posts or
// accepts; a block stops it again.
func TestDirectChannelSharesNoPresenceUntilAccepted(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	opts := presence.Options{}
	opts.Peers = f.st
	s := f.service(opts)
	dm, _, err := f.chat.CreateChannel(ctx, bob, chat.CreateChannel{Kind: chat.KindDirect, Members: []string{"alice"}})
	if err != nil {
		t.Fatal(err)
	}
	td := f.tap(t, dm.ID)
	visible := func(who unhidra.Identity, user string) bool {
		t.Helper()
		ps, err := s.GetFor(ctx, who, []string{user})
		if err != nil {
			t.Fatal(err)
		}
		return len(ps) == 1
	}
	cycle := func(who unhidra.Identity, session string) {
		c := conn(who, session)
		if err := s.Connect(ctx, c); err != nil {
			t.Fatal(err)
		}
		s.Disconnect(ctx, c)
	}

	cycle(alice, "a1")
	cycle(bob, "b1")
	if got := td.statuses(); len(got) != 0 {
		t.Errorf("before alice accepted, the direct channel carried %v, want nothing", got)
	}
	if visible(bob, "alice") {
		t.Errorf("bob (who opened the channel) sees alice's presence and last_seen before she accepted")
	}
	if visible(alice, "bob") {
		t.Errorf("alice sees bob's presence before she accepted")
	}

	// alice answers: posting accepts.
	if _, err := f.chat.Publish(ctx, alice, wire.Publish{Channel: dm.ID, Text: ptr("hi bob")}); err != nil {
		t.Fatal(err)
	}
	cycle(alice, "a2")
	cycle(bob, "b2")
	if got, want := fmt.Sprint(td.statuses()), "[alice=online alice=offline bob=online bob=offline]"; got != want {
		t.Errorf("after alice posted, the direct channel carried %s, want %s", got, want)
	}
	if !visible(bob, "alice") || !visible(alice, "bob") {
		t.Errorf("after alice posted, presence is not visible both ways")
	}

	// alice blocks bob: nothing either way.
	if _, err := f.chat.Block(ctx, alice, "bob"); err != nil {
		t.Fatal(err)
	}
	before := len(td.statuses())
	cycle(alice, "a3")
	cycle(bob, "b3")
	if got := td.statuses()[before:]; len(got) != 0 {
		t.Errorf("after the block, the direct channel carried %v, want nothing", got)
	}
	if visible(bob, "alice") || visible(alice, "bob") {
		t.Errorf("after the block, presence is still visible")
	}
}

// TestBeingAddedToAChannelSharesNoPresenceUntilAccepted: a stranger who
// puts someone into a private channel of theirs does not get to watch them.
func TestBeingAddedToAChannelSharesNoPresenceUntilAccepted(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	opts := presence.Options{}
	opts.Peers = f.st
	s := f.service(opts)
	carol := ident(wire.KindUser, "carol")
	trap, _, err := f.chat.CreateChannel(ctx, carol, chat.CreateChannel{Name: "trap", Kind: chat.KindPrivate, Members: []string{"alice"}})
	if err != nil {
		t.Fatal(err)
	}
	pub, _, err := f.chat.CreateChannel(ctx, carol, chat.CreateChannel{Name: "lobby", Kind: chat.KindPublic, Members: []string{"alice"}})
	if err != nil {
		t.Fatal(err)
	}
	tp := f.tap(t, trap.ID)
	c := conn(alice, "a1")
	if err := s.Connect(ctx, c); err != nil {
		t.Fatal(err)
	}
	if got := tp.statuses(); len(got) != 0 {
		t.Errorf("the stranger's channel carried %v, want nothing", got)
	}
	if ps, _ := s.GetFor(ctx, carol, []string{"alice"}); len(ps) != 0 {
		t.Errorf("the stranger sees %+v, want nobody", ps)
	}
	// Joining the public channel alice was put in is alice's consent there.
	if _, err := f.chat.Join(ctx, alice, pub.ID); err != nil {
		t.Fatal(err)
	}
	if ps, _ := s.GetFor(ctx, carol, []string{"alice"}); len(ps) != 1 || ps[0].Status != wire.StatusOnline {
		t.Errorf("after alice joined a channel with carol: %+v, want alice online", ps)
	}
	if _, err := f.chat.Accept(ctx, alice, trap.ID); err != nil {
		t.Fatal(err)
	}
	s.Disconnect(ctx, c)
	if got, want := fmt.Sprint(tp.statuses()), "[alice=offline]"; got != want {
		t.Errorf("after alice accepted, the channel carried %s, want %s", got, want)
	}
}

func ptr(s string) *string { return &s }
