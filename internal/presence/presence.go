// Package presence tracks who is connected, on every transport, and derives
// each user's presence from it: online, away or dnd (chosen by the user)
// while at least one connection is live, offline with last_seen otherwise.
// last_seen is written to the store when a principal's last connection
// closes, so it survives restarts. The registry of live connections also
// serves GET /api/v1/admin/connections and is usable for devices.
//
// Fan-out: a user's presence changes are published as `presence` frames on
// the topics of the user's private and direct channels (at most
// Options.MaxFanoutChannels, default 100): the people who share a
// conversation with them. Public channels are not used (their audience is
// unbounded); clients ask GET /api/v1/presence for the others they share a
// channel with (GetFor: strangers are left out, admins see everyone). Only
// transitions are published (first connection, last disconnection, a status
// change), in the order they happened per user.
//
// Consent: both paths ask the chat store (Channels, Peers), which counts
// only channels the user has accepted (a member added by someone else is
// pending until they post or accept; a direct channel counts once both
// members accepted) and never a channel shared with someone the user blocks
// or is blocked by (see internal/chat's direct.go). So opening a direct
// channel with a stranger, or putting them into a channel, shows nothing of
// their presence or last_seen.
//
// Concurrency contract: a Service is safe for concurrent use. Connect and
// Disconnect are cheap unless they change the user's presence; then they do
// one store read (the channels) and publish synchronously on the caller's
// goroutine.
package presence

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/broker"
	"github.com/unhidra/unhidra/wire"
)

// Store persists last_seen per principal (kind and id: users and devices
// apart). SetLastSeen moves it forward only: an earlier time than the one
// stored leaves it. LastSeen returns the ids that have one (an id never
// seen is absent from the map). A Store is safe for concurrent use;
// implementations pass the conformance suite storetest.Presence.
type Store interface {
	SetLastSeen(ctx context.Context, kind, id string, t time.Time) error
	LastSeen(ctx context.Context, kind string, ids []string) (map[string]time.Time, error)
}

// Channels lists the channels whose members see a user's presence.
type Channels interface {
	PresenceChannels(ctx context.Context, user string, limit int) ([]string, error)
}

// Peers tells whether two users share a channel: GET /api/v1/presence
// shows a user's presence only to the people who share a channel with them
// (and to admins).
type Peers interface {
	SharesChannel(ctx context.Context, a, b string) (bool, error)
}

// Publisher publishes presence events on broker topics.
type Publisher = broker.Publisher

// Presence is one user's presence (GET /api/v1/presence, the presence frame).
type Presence struct {
	User     string     `json:"user"`
	Status   string     `json:"status"`
	LastSeen *time.Time `json:"last_seen,omitempty"`
}

// MaxQueryUsers bounds one Get.
const MaxQueryUsers = 100

// Options configure a Service.
type Options struct {
	Store     Store
	Channels  Channels  // optional: no fan-out without it
	Publisher Publisher // optional: no fan-out without it
	// Peers limits GetFor to the people a user shares a channel with;
	// without it GetFor shows every user.
	Peers  Peers
	Logger *slog.Logger
	Now    func() time.Time
	// MaxFanoutChannels bounds the channels a presence change is published
	// on (default 100).
	MaxFanoutChannels int
}

type state struct {
	n      int
	status string
	gen    uint64
}

// Service is the presence service.
type Service struct {
	opts  Options
	log   *slog.Logger
	now   func() time.Time
	mu    sync.Mutex
	conns map[*Conn]struct{}
	users map[wire.Principal]*state
	// pubMu orders announcements: they are published one at a time, an
	// announcement overtaken by a newer transition is dropped, and a status
	// equal to the last one published for the user is not repeated.
	pubMu sync.Mutex
	sent  map[wire.Principal]string // guarded by pubMu
}

// NewService returns a presence Service.
func NewService(opts Options) *Service {
	if opts.MaxFanoutChannels <= 0 {
		opts.MaxFanoutChannels = 100
	}
	s := &Service{opts: opts, log: opts.Logger, now: opts.Now,
		conns: make(map[*Conn]struct{}), users: make(map[wire.Principal]*state),
		sent: make(map[wire.Principal]string)}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = func() time.Time { return time.Now().UTC() }
	}
	return s
}

// Connect registers a live connection. The first connection of a user
// makes them online.
func (s *Service) Connect(ctx context.Context, c *Conn) error {
	if c == nil || c.Identity.Principal.ID == "" {
		return unhidra.Errorf(unhidra.EINVALID, "connection without a principal")
	}
	p := c.Identity.Principal
	s.mu.Lock()
	if _, dup := s.conns[c]; dup {
		s.mu.Unlock()
		return unhidra.Errorf(unhidra.ECONFLICT, "connection already registered")
	}
	s.conns[c] = struct{}{}
	st := s.users[p]
	if st == nil {
		st = &state{}
		s.users[p] = st
	}
	st.n++
	var gen uint64
	if st.n == 1 {
		st.status = wire.StatusOnline
		st.gen++
		gen = st.gen
	}
	s.mu.Unlock()
	if gen != 0 {
		s.announce(ctx, p, gen)
	}
	return nil
}

// Disconnect unregisters a connection. The last connection of a principal
// going away records last_seen and makes a user offline.
func (s *Service) Disconnect(ctx context.Context, c *Conn) {
	if c == nil {
		return
	}
	p := c.Identity.Principal
	s.mu.Lock()
	if _, ok := s.conns[c]; !ok {
		s.mu.Unlock()
		return
	}
	delete(s.conns, c)
	st := s.users[p]
	st.n--
	var gen uint64
	if st.n == 0 {
		st.gen++
		gen = st.gen
	}
	s.mu.Unlock()
	if gen == 0 {
		return
	}
	if s.opts.Store != nil {
		if err := s.opts.Store.SetLastSeen(context.WithoutCancel(ctx), p.Kind, p.ID, s.now()); err != nil {
			s.log.Warn("presence: record last_seen", "principal", p.String(), "err", err)
		}
	}
	s.announce(ctx, p, gen)
}

// SetStatus sets a connected user's status: online, away or dnd.
func (s *Service) SetStatus(ctx context.Context, who unhidra.Identity, status string) error {
	switch status {
	case wire.StatusOnline, wire.StatusAway, wire.StatusDND:
	default:
		return unhidra.Errorf(unhidra.EINVALID, "status must be online, away or dnd")
	}
	if who.IsDevice() {
		return unhidra.Errorf(unhidra.EFORBIDDEN, "devices have no chat presence")
	}
	s.mu.Lock()
	st := s.users[who.Principal]
	if st == nil || st.n == 0 {
		s.mu.Unlock()
		return unhidra.Errorf(unhidra.ECONFLICT, "no live connection")
	}
	if st.status == status {
		s.mu.Unlock()
		return nil
	}
	st.status = status
	st.gen++
	gen := st.gen
	s.mu.Unlock()
	s.announce(ctx, who.Principal, gen)
	return nil
}

// announce publishes the user's presence unless a newer transition
// overtook it.
func (s *Service) announce(ctx context.Context, p wire.Principal, gen uint64) {
	if p.Kind != wire.KindUser {
		s.forget(p, gen)
		return
	}
	var chans []string
	if s.opts.Channels != nil && s.opts.Publisher != nil {
		var err error
		chans, err = s.opts.Channels.PresenceChannels(context.WithoutCancel(ctx), p.ID, s.opts.MaxFanoutChannels)
		if err != nil {
			s.log.Warn("presence: list channels", "user", p.ID, "err", err)
		}
	}
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	s.mu.Lock()
	st := s.users[p]
	current := st != nil && st.gen == gen
	frame := wire.PresenceFrame{Type: wire.TypePresence, User: p.ID, Status: wire.StatusOffline}
	if current {
		if st.n > 0 {
			frame.Status = st.status
		} else {
			t := s.now()
			frame.LastSeen = &t
			delete(s.users, p)
		}
	}
	s.mu.Unlock()
	if !current || s.sent[p] == frame.Status {
		return
	}
	s.sent[p] = frame.Status // one small entry per user seen since start
	if len(chans) == 0 {
		return
	}
	for _, ch := range chans {
		ev := &broker.Event{Kind: broker.Presence, Channel: ch, User: frame.User, Status: frame.Status, LastSeen: frame.LastSeen}
		if err := s.opts.Publisher.Publish(context.WithoutCancel(ctx), broker.ChannelTopic(ch), ev); err != nil {
			s.log.Warn("presence: publish", "channel", ch, "err", err)
		}
	}
}

// forget drops the state of a principal that went offline, if no newer
// transition happened.
func (s *Service) forget(p wire.Principal, gen uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.users[p]; st != nil && st.gen == gen && st.n == 0 {
		delete(s.users, p)
	}
}

// Online reports whether principal p has a live connection on any
// transport.
func (s *Service) Online(p wire.Principal) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.users[p]
	return st != nil && st.n > 0
}

// Get returns the presence of each named user (deduplicated, in the order
// given, at most MaxQueryUsers): their status while connected, otherwise
// offline with the persisted last_seen.
func (s *Service) Get(ctx context.Context, users []string) []Presence {
	seen := map[string]bool{}
	out := []Presence{}
	var offline []string
	now := s.now()
	s.mu.Lock()
	for _, u := range users {
		if seen[u] || len(out) == MaxQueryUsers {
			continue
		}
		seen[u] = true
		p := Presence{User: u, Status: wire.StatusOffline}
		if st := s.users[wire.Principal{Kind: wire.KindUser, ID: u}]; st != nil && st.n > 0 {
			p.Status = st.status
			t := now
			p.LastSeen = &t
		} else {
			offline = append(offline, u)
		}
		out = append(out, p)
	}
	s.mu.Unlock()
	if len(offline) > 0 && s.opts.Store != nil {
		ls, err := s.opts.Store.LastSeen(ctx, wire.KindUser, offline)
		if err != nil {
			s.log.Warn("presence: read last_seen", "err", err)
		}
		for i := range out {
			if t, ok := ls[out[i].User]; ok && out[i].Status == wire.StatusOffline {
				t := t
				out[i].LastSeen = &t
			}
		}
	}
	return out
}

// GetFor is Get for who (GET /api/v1/presence): a user sees their own
// presence and that of the users they share a channel with; an admin sees
// everyone. Users who may not be seen are left out of the answer, so
// strangers cannot watch each other come and go. Devices have no presence
// view.
func (s *Service) GetFor(ctx context.Context, who unhidra.Identity, users []string) ([]Presence, error) {
	if who.IsDevice() || who.Principal.ID == "" {
		return nil, unhidra.Errorf(unhidra.EFORBIDDEN, "devices have no presence view")
	}
	if s.opts.Peers != nil && !who.IsAdmin() {
		visible := make([]string, 0, len(users))
		checked := map[string]bool{}
		for _, u := range users {
			if len(checked) == MaxQueryUsers {
				break
			}
			ok, done := checked[u]
			if !done {
				ok = u == who.Principal.ID
				if !ok {
					var err error
					if ok, err = s.opts.Peers.SharesChannel(ctx, who.Principal.ID, u); err != nil {
						return nil, err
					}
				}
				checked[u] = ok
			}
			if ok {
				visible = append(visible, u)
			}
		}
		users = visible
	}
	return s.Get(ctx, users), nil
}

// Connections snapshots every live connection, oldest first.
func (s *Service) Connections() []ConnInfo {
	s.mu.Lock()
	conns := make([]*Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	out := make([]ConnInfo, 0, len(conns))
	for _, c := range conns {
		out = append(out, c.Info())
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].ConnectedAt.Equal(out[j].ConnectedAt) {
			return out[i].ConnectedAt.Before(out[j].ConnectedAt)
		}
		return out[i].SessionID < out[j].SessionID
	})
	return out
}

// AdminConnections is Connections for GET /api/v1/admin/connections:
// admins only.
func (s *Service) AdminConnections(who unhidra.Identity) ([]ConnInfo, error) {
	if who.IsDevice() || !who.IsAdmin() {
		return nil, unhidra.Errorf(unhidra.EFORBIDDEN, "admins only")
	}
	return s.Connections(), nil
}

// Count returns the number of live connections.
func (s *Service) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}
