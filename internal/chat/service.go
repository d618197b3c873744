package chat

import (
	"context"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/audit"
	"github.com/unhidra/unhidra/internal/broker"
	"github.com/unhidra/unhidra/wire"
)

// Publisher publishes events on broker topics (satisfied by
// broker.Broker and *inmem.Broker).
type Publisher = broker.Publisher

// Users answers whether a user account exists; the Service uses it to
// refuse memberships for unknown users. Optional.
type Users interface {
	UserExists(ctx context.Context, username string) (bool, error)
}

// Options configure a Service. Zero values take the defaults.
type Options struct {
	// E2EEEnforced is E2EE_ENFORCED: every non-device channel accepts only
	// e2ee bodies and new non-device channels are created e2ee.
	E2EEEnforced bool
	// RecoveryWindow is the most missed messages a subscribe replays
	// (default 1,000).
	RecoveryWindow int
	// RecoveryMaxBytes bounds the approximate size of a replayed batch
	// (default 768 KiB, below the gateway's 1 MiB slow-consumer threshold);
	// a larger gap answers recovered:false.
	RecoveryMaxBytes int
	// MaxBatch is the most appends committed in one transaction (default 512).
	MaxBatch int
	// TypingInterval is the least time between two typing frames of one
	// user in one channel; extra typing notices are dropped (default 2 s).
	TypingInterval time.Duration
	// CommitTimeout bounds one group-commit transaction (default 30 s).
	CommitTimeout time.Duration
	// Audit records channel and membership changes, and refusals of them
	// (default: audit.Log on Logger).
	Audit  audit.Recorder
	Users  Users
	Logger *slog.Logger
	// Registerer receives the service's metrics (unhidra_chat_*); optional.
	Registerer prometheus.Registerer
	Now        func() time.Time
}

// Service is the chat domain service. Create it with NewService.
type Service struct {
	store Store
	pub   Publisher
	audit audit.Recorder
	users Users
	log   *slog.Logger
	now   func() time.Time
	opts  Options
	m     *metrics

	typingMu sync.Mutex
	typing   map[string]time.Time

	// createMu serializes channel creation, so the quota check and the
	// create it admits cannot interleave with another create.
	createMu sync.Mutex

	// group commit (commit.go)
	qmu      sync.Mutex
	queue    []*pending
	running  bool
	loops    sync.WaitGroup
	deferred DeferredStore // the store, when it can defer durability
}

// NewService returns a Service over store that publishes frames with pub.
func NewService(store Store, pub Publisher, opts Options) *Service {
	if opts.RecoveryWindow <= 0 {
		opts.RecoveryWindow = 1000
	}
	if opts.RecoveryMaxBytes <= 0 {
		opts.RecoveryMaxBytes = 768 << 10
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 512
	}
	if opts.TypingInterval <= 0 {
		opts.TypingInterval = 2 * time.Second
	}
	if opts.CommitTimeout <= 0 {
		opts.CommitTimeout = 30 * time.Second
	}
	s := &Service{
		store:  store,
		pub:    pub,
		audit:  opts.Audit,
		users:  opts.Users,
		log:    opts.Logger,
		now:    opts.Now,
		opts:   opts,
		typing: make(map[string]time.Time),
		m:      newMetrics(opts.Registerer),
	}
	s.deferred, _ = store.(DeferredStore)
	if s.audit == nil {
		s.audit = audit.Slog{Log: s.log}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = func() time.Time { return time.Now().UTC() }
	}
	return s
}

// Wait blocks until no group commit is in flight (for shutdown and tests).
func (s *Service) Wait() { s.loops.Wait() }

// RecoveryWindow returns the most missed messages a subscribe replays.
func (s *Service) RecoveryWindow() int { return s.opts.RecoveryWindow }

// emit is the one place committed changes leave the service: an audit
// event with its outcome, success.
func (s *Service) emit(ctx context.Context, c change) {
	e := audit.Event{Action: c.Action, Actor: c.Actor.Principal, Target: c.Channel, Outcome: audit.Success}
	if c.Target != "" || c.Role != "" {
		e.Details = map[string]string{}
		if c.Target != "" {
			e.Details["user"] = c.Target
		}
		if c.Role != "" {
			e.Details["role"] = c.Role
		}
	}
	s.audit.Audit(context.WithoutCancel(ctx), e)
}

// refused records a change that was refused for want of permission (an
// audit event with outcome failure); other errors (bad input, a missing
// channel, an unavailable store) are not security events. Exported methods
// that change channels or memberships defer it once.
func (s *Service) refused(ctx context.Context, action string, who unhidra.Identity, channel, user string, err error) {
	if code := unhidra.ErrorCode(err); code != unhidra.EFORBIDDEN && code != unhidra.EUNAUTHORIZED {
		return
	}
	e := audit.Event{Action: action, Actor: who.Principal, Target: channel, Outcome: audit.Failure, Reason: unhidra.ErrorMessage(err)}
	if user != "" {
		e.Details = map[string]string{"user": user}
	}
	s.audit.Audit(context.WithoutCancel(ctx), e)
}

var errNoAccess = unhidra.Errorf(unhidra.EFORBIDDEN, "not allowed on this channel")

// access is what an identity may do on one channel.
type access struct {
	ch     Channel
	role   string // channel role, "" when not a member
	member Member // the caller's membership (Role "" when none)
	read   bool
	post   bool
	manage bool // rename, set topic, add/remove members, delete others' messages
}

// accessTo loads channel id and works out what who may do there. A channel
// that does not exist and one the caller may not read both give forbidden.
func (s *Service) accessTo(ctx context.Context, who unhidra.Identity, id string) (access, error) {
	if err := ValidateChannelID(id); err != nil {
		return access{}, err
	}
	user := ""
	if who.Principal.Kind == wire.KindUser {
		user = who.Principal.ID
	}
	ch, m, err := s.store.ChannelAccess(ctx, id, user)
	if err != nil {
		if unhidra.ErrorCode(err) == unhidra.ENOTFOUND {
			return access{}, errNoAccess
		}
		return access{}, err
	}
	a := access{ch: ch}
	if who.IsDevice() {
		if ch.Kind == KindDevice && deviceOf(ch.ID) == who.Principal.ID {
			a.read, a.post = true, true
			return a, nil
		}
		return access{}, errNoAccess
	}
	if user == "" {
		return access{}, errNoAccess
	}
	a.role, a.member = m.Role, m
	member := a.role != ""
	admin := who.IsAdmin()
	switch ch.Kind {
	case KindPublic:
		a.read, a.post = true, member
	case KindPrivate, KindDirect:
		a.read, a.post = member, member
	case KindDevice:
		a.read, a.post = member || admin, member || admin
	}
	a.manage = roleRank(a.role) >= roleRank(RoleAdmin) || admin
	if ch.Kind == KindDirect {
		a.manage = admin
	}
	if !a.read {
		return access{}, errNoAccess
	}
	return a, nil
}

// requiresE2EE reports whether ch accepts only e2ee bodies.
func (s *Service) requiresE2EE(ch Channel) bool {
	return ch.E2EE || (s.opts.E2EEEnforced && ch.Kind != KindDevice)
}

func (s *Service) checkBodyForChannel(ch Channel, b Body) error {
	if s.requiresE2EE(ch) {
		if b.E2EE == nil {
			return unhidra.Errorf(unhidra.EINVALID, "this channel is end-to-end encrypted: only e2ee messages are accepted")
		}
		return nil
	}
	if b.E2EE != nil {
		return unhidra.Errorf(unhidra.EINVALID, "this channel is not end-to-end encrypted: send text or data")
	}
	return nil
}

func newID() string { return ulid.Make().String() }

// CreateChannel is the body of POST /api/v1/channels.
type CreateChannel struct {
	Name    string   `json:"name"`
	Kind    string   `json:"kind"`
	E2EE    *bool    `json:"e2ee,omitempty"`
	Topic   string   `json:"topic,omitempty"`
	Members []string `json:"members,omitempty"`
}

// CreateChannel creates a public, private or direct channel owned by who.
// For a direct channel, Members names the one other user; an existing
// direct channel between the two is returned instead (created false), with
// whichever of the two had left it added back: who as an accepted member
// (opening a conversation is consenting to it), the other as a pending one.
// Users who block each other cannot open a direct channel, and nobody can
// add a user who blocks them. Creating is bounded by MaxChannelsPerDay and
// MaxCreatedChannels (admins are exempt).
func (s *Service) CreateChannel(ctx context.Context, who unhidra.Identity, in CreateChannel) (Channel, bool, error) {
	ch, created, err := s.createChannel(ctx, who, in)
	s.refused(ctx, audit.ActionChannelCreate, who, "", "", err)
	return ch, created, err
}

func (s *Service) createChannel(ctx context.Context, who unhidra.Identity, in CreateChannel) (Channel, bool, error) {
	if who.IsDevice() || who.Principal.ID == "" {
		return Channel{}, false, unhidra.Errorf(unhidra.EFORBIDDEN, "only users create channels")
	}
	switch in.Kind {
	case KindPublic, KindPrivate, KindDirect:
	case KindDevice:
		return Channel{}, false, unhidra.Errorf(unhidra.EINVALID, "device channels are created with their device")
	default:
		return Channel{}, false, unhidra.Errorf(unhidra.EINVALID, "kind must be public, private or direct")
	}
	e2ee := in.E2EE != nil && *in.E2EE
	if s.opts.E2EEEnforced {
		if in.E2EE != nil && !*in.E2EE {
			return Channel{}, false, unhidra.Errorf(unhidra.EINVALID, "end-to-end encryption is enforced on this server")
		}
		e2ee = true
	}
	topic, err := ValidateTopic(in.Topic)
	if err != nil {
		return Channel{}, false, err
	}
	if len(in.Members) > MaxCreateMembers {
		return Channel{}, false, unhidra.Errorf(unhidra.EINVALID, "at most %d members at creation", MaxCreateMembers)
	}
	me := who.Principal.ID
	others := map[string]bool{}
	for _, u := range in.Members {
		u, err := ValidateUserID(u)
		if err != nil {
			return Channel{}, false, err
		}
		if u != me {
			others[u] = true
		}
	}
	users := make([]string, 0, len(others))
	for u := range others {
		users = append(users, u)
	}
	sort.Strings(users)
	for _, u := range users {
		if err := s.checkUser(ctx, u); err != nil {
			return Channel{}, false, err
		}
	}
	now := s.now()
	ch := Channel{Kind: in.Kind, E2EE: e2ee, Topic: topic, CreatedBy: me, CreatedAt: now}
	var members []Member
	var directKey string
	if in.Kind == KindDirect {
		if len(users) != 1 {
			return Channel{}, false, unhidra.Errorf(unhidra.EINVALID, "a direct channel needs exactly one other member")
		}
		other := users[0]
		if err := s.checkDirectBlock(ctx, me, other); err != nil {
			return Channel{}, false, err
		}
		directKey = directKeyOf(me, other)
		if existing, err := s.store.FindDirect(ctx, directKey); err == nil {
			return s.reopenDirect(ctx, who, existing, other)
		} else if unhidra.ErrorCode(err) != unhidra.ENOTFOUND {
			return Channel{}, false, err
		}
		pair := []string{me, other}
		sort.Strings(pair)
		ch.Name = pair[0] + ", " + pair[1]
		if strings.TrimSpace(in.Name) != "" {
			if ch.Name, err = ValidateName(in.Name); err != nil {
				return Channel{}, false, err
			}
		}
		members = []Member{{User: me, Role: RoleMember, JoinedAt: now, AcceptedAt: &now}, {User: other, Role: RoleMember, JoinedAt: now}}
		sort.Slice(members, func(i, j int) bool { return members[i].User < members[j].User })
	} else {
		if ch.Name, err = ValidateName(in.Name); err != nil {
			return Channel{}, false, err
		}
		for _, u := range users {
			if err := s.checkInvite(ctx, me, u); err != nil {
				return Channel{}, false, err
			}
		}
		members = append(members, Member{User: me, Role: RoleOwner, JoinedAt: now, AcceptedAt: &now})
		for _, u := range users {
			members = append(members, Member{User: u, Role: RoleMember, JoinedAt: now})
		}
	}
	ch.ID = newID()
	ch.DirectKey = directKey
	s.createMu.Lock()
	err = s.checkQuota(ctx, who, in.Kind, now)
	if err == nil {
		err = s.store.CreateChannel(ctx, ch, directKey, members)
	}
	s.createMu.Unlock()
	if err != nil {
		if directKey != "" && unhidra.ErrorCode(err) == unhidra.ECONFLICT {
			// A concurrent create of the same direct channel won.
			if existing, ferr := s.store.FindDirect(ctx, directKey); ferr == nil {
				return s.reopenDirect(ctx, who, existing, users[0])
			}
		}
		return Channel{}, false, err
	}
	s.emit(ctx, change{Action: audit.ActionChannelCreate, Actor: who, Channel: ch.ID})
	for _, m := range members {
		if m.User != me {
			s.emit(ctx, change{Action: audit.ActionMemberAdd, Actor: who, Channel: ch.ID, Target: m.User, Role: m.Role})
		}
	}
	return ch, true, nil
}

func (s *Service) checkUser(ctx context.Context, user string) error {
	if s.users == nil {
		return nil
	}
	ok, err := s.users.UserExists(ctx, user)
	if err != nil {
		return err
	}
	if !ok {
		return unhidra.Errorf(unhidra.EINVALID, "unknown user %q", user)
	}
	return nil
}

// EnsureDeviceChannel creates the channel "device:<deviceID>" (kind device,
// owner as its owner-member) if it does not exist yet, and makes sure owner
// is a member. Admins read every device channel without being members.
func (s *Service) EnsureDeviceChannel(ctx context.Context, deviceID, owner string) (Channel, error) {
	if deviceID == "" || len(DeviceChannelID(deviceID)) > 128 {
		return Channel{}, unhidra.Errorf(unhidra.EINVALID, "invalid device id")
	}
	id := DeviceChannelID(deviceID)
	if err := ValidateChannelID(id); err != nil {
		return Channel{}, err
	}
	owner, err := ValidateUserID(owner)
	if err != nil {
		return Channel{}, err
	}
	now := s.now()
	ch, err := s.store.GetChannel(ctx, id)
	if unhidra.ErrorCode(err) == unhidra.ENOTFOUND {
		ch = Channel{ID: id, Name: deviceID, Kind: KindDevice, CreatedBy: owner, CreatedAt: now}
		err = s.store.CreateChannel(ctx, ch, "", []Member{{User: owner, Role: RoleOwner, JoinedAt: now, AcceptedAt: &now}})
		if err == nil {
			s.emit(ctx, change{Action: audit.ActionChannelCreate, Actor: unhidra.Identity{Principal: wire.Principal{Kind: wire.KindUser, ID: owner}}, Channel: id})
			return ch, nil
		}
		if unhidra.ErrorCode(err) != unhidra.ECONFLICT {
			return Channel{}, err
		}
		ch, err = s.store.GetChannel(ctx, id)
	}
	if err != nil {
		return Channel{}, err
	}
	if ch.Kind != KindDevice {
		return Channel{}, unhidra.Errorf(unhidra.ECONFLICT, "channel %s exists and is not a device channel", id)
	}
	if _, err := s.store.GetMember(ctx, id, owner); unhidra.ErrorCode(err) == unhidra.ENOTFOUND {
		if _, err := s.store.PutMember(ctx, id, Member{User: owner, Role: RoleOwner, JoinedAt: now, AcceptedAt: &now}); err != nil {
			return Channel{}, err
		}
	} else if err != nil {
		return Channel{}, err
	}
	return ch, nil
}

// GetChannel returns a channel who may read.
func (s *Service) GetChannel(ctx context.Context, who unhidra.Identity, id string) (Channel, error) {
	a, err := s.accessTo(ctx, who, id)
	if err != nil {
		return Channel{}, err
	}
	return a.ch, nil
}

// ListChannels returns the channels who belongs to plus every public
// channel (admins also see every device channel; a device sees its own).
func (s *Service) ListChannels(ctx context.Context, who unhidra.Identity) ([]Channel, error) {
	if who.IsDevice() {
		ch, err := s.store.GetChannel(ctx, DeviceChannelID(who.Principal.ID))
		if unhidra.ErrorCode(err) == unhidra.ENOTFOUND {
			return []Channel{}, nil
		}
		if err != nil {
			return nil, err
		}
		return []Channel{ch}, nil
	}
	return s.store.ListChannels(ctx, who.Principal.ID, who.IsAdmin(), MaxListedChannels)
}

// UpdateChannel renames a channel and/or sets its topic (channel owners and
// admins, and global admins). Direct channels are not renamed.
func (s *Service) UpdateChannel(ctx context.Context, who unhidra.Identity, id string, name, topic *string) (Channel, error) {
	a, err := s.accessTo(ctx, who, id)
	if err != nil {
		return Channel{}, err
	}
	if !a.manage {
		return Channel{}, unhidra.Errorf(unhidra.EFORBIDDEN, "only channel owners and admins may change the channel")
	}
	newName, newTopic := a.ch.Name, a.ch.Topic
	if name != nil {
		if a.ch.Kind == KindDirect || a.ch.Kind == KindDevice {
			return Channel{}, unhidra.Errorf(unhidra.EINVALID, "%s channels cannot be renamed", a.ch.Kind)
		}
		if newName, err = ValidateName(*name); err != nil {
			return Channel{}, err
		}
	}
	if topic != nil {
		if newTopic, err = ValidateTopic(*topic); err != nil {
			return Channel{}, err
		}
	}
	return s.store.UpdateChannel(ctx, id, newName, newTopic)
}

// DeleteChannel deletes a channel with all its messages (its owner, or a
// global admin). Device channels go with their device and are not deleted
// here.
func (s *Service) DeleteChannel(ctx context.Context, who unhidra.Identity, id string) error {
	err := s.deleteChannel(ctx, who, id)
	s.refused(ctx, audit.ActionChannelDelete, who, id, "", err)
	return err
}

func (s *Service) deleteChannel(ctx context.Context, who unhidra.Identity, id string) error {
	a, err := s.accessTo(ctx, who, id)
	if err != nil {
		return err
	}
	if a.role != RoleOwner && !who.IsAdmin() {
		return unhidra.Errorf(unhidra.EFORBIDDEN, "only the channel owner may delete the channel")
	}
	if a.ch.Kind == KindDevice {
		return unhidra.Errorf(unhidra.EINVALID, "device channels are deleted with their device")
	}
	if err := s.store.DeleteChannel(ctx, id); err != nil {
		return err
	}
	s.publishEvent(&broker.Event{Kind: broker.ChannelDeleted, Channel: id})
	s.emit(ctx, change{Action: audit.ActionChannelDelete, Actor: who, Channel: id})
	return nil
}
