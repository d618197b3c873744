package chat

// Membership: who is in a channel with which role, and every change of it.

import (
	"context"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/audit"
	"github.com/unhidra/unhidra/internal/broker"
)

// Members lists the members of a channel who may read.
func (s *Service) Members(ctx context.Context, who unhidra.Identity, id string) ([]Member, error) {
	a, err := s.accessTo(ctx, who, id)
	if err != nil {
		return nil, err
	}
	return s.store.Members(ctx, a.ch.ID)
}

// PutMember adds user to a public or private channel or changes their role
// (default member). Channel admins add and remove members; only owners (and
// global admins) grant or take the owner and admin roles. The last owner
// keeps their role.
func (s *Service) PutMember(ctx context.Context, who unhidra.Identity, channel, user, role string) (Member, error) {
	m, err := s.putMember(ctx, who, channel, user, role)
	action := audit.ActionMemberAdd
	if role != "" && role != RoleMember {
		action = audit.ActionMemberRole
	}
	s.refused(ctx, action, who, channel, user, err)
	return m, err
}

func (s *Service) putMember(ctx context.Context, who unhidra.Identity, channel, user, role string) (Member, error) {
	a, err := s.accessTo(ctx, who, channel)
	if err != nil {
		return Member{}, err
	}
	if a.role == "" && !who.IsAdmin() {
		return Member{}, errNoAccess
	}
	if user, err = ValidateUserID(user); err != nil {
		return Member{}, err
	}
	if role == "" {
		role = RoleMember
	}
	if !ValidRole(role) {
		return Member{}, unhidra.Errorf(unhidra.EINVALID, "role must be owner, admin or member")
	}
	if a.ch.Kind == KindDirect || a.ch.Kind == KindDevice {
		return Member{}, unhidra.Errorf(unhidra.EINVALID, "the members of %s channels are fixed", a.ch.Kind)
	}
	if !a.manage {
		return Member{}, unhidra.Errorf(unhidra.EFORBIDDEN, "only channel owners and admins manage members")
	}
	isOwner := a.role == RoleOwner || who.IsAdmin()
	cur, err := s.store.GetMember(ctx, channel, user)
	exists := err == nil
	if err != nil && unhidra.ErrorCode(err) != unhidra.ENOTFOUND {
		return Member{}, err
	}
	if (role != RoleMember || (exists && cur.Role != RoleMember)) && !isOwner {
		return Member{}, unhidra.Errorf(unhidra.EFORBIDDEN, "only channel owners grant or change the owner and admin roles")
	}
	if exists && cur.Role == role {
		return cur, nil
	}
	if exists && cur.Role == RoleOwner && role != RoleOwner {
		if err := s.keepAnOwner(ctx, channel, user); err != nil {
			return Member{}, err
		}
	}
	if !exists {
		if err := s.checkUser(ctx, user); err != nil {
			return Member{}, err
		}
		if err := s.checkInvite(ctx, who.Principal.ID, user); err != nil {
			return Member{}, err
		}
	}
	now := s.now()
	// Someone added by another is pending until they accept.
	m := Member{User: user, Role: role, JoinedAt: now}
	if user == who.Principal.ID {
		m.AcceptedAt = &now
	}
	if exists {
		m.JoinedAt, m.AcceptedAt = cur.JoinedAt, cur.AcceptedAt
	}
	added, err := s.store.PutMember(ctx, channel, m)
	if err != nil {
		return Member{}, err
	}
	action := audit.ActionMemberRole
	if added {
		action = audit.ActionMemberAdd
	}
	s.emit(ctx, change{Action: action, Actor: who, Channel: channel, Target: user, Role: role})
	return m, nil
}

// keepAnOwner refuses to take the owner role from user when they are the
// channel's only owner.
func (s *Service) keepAnOwner(ctx context.Context, channel, user string) error {
	ms, err := s.store.Members(ctx, channel)
	if err != nil {
		return err
	}
	owners, others := 0, 0
	for _, m := range ms {
		if m.Role == RoleOwner && m.User != user {
			owners++
		}
		if m.User != user {
			others++
		}
	}
	if owners == 0 && others > 0 {
		return unhidra.Errorf(unhidra.ECONFLICT, "the channel needs another owner first")
	}
	return nil
}

// RemoveMember removes user from a channel. Removing oneself is leaving.
func (s *Service) RemoveMember(ctx context.Context, who unhidra.Identity, channel, user string) error {
	err := s.removeMember(ctx, who, channel, user)
	s.refused(ctx, audit.ActionMemberRemove, who, channel, user, err)
	return err
}

func (s *Service) removeMember(ctx context.Context, who unhidra.Identity, channel, user string) error {
	user, err := ValidateUserID(user)
	if err != nil {
		return err
	}
	if !who.IsDevice() && user == who.Principal.ID {
		return s.leave(ctx, who, channel)
	}
	a, err := s.accessTo(ctx, who, channel)
	if err != nil {
		return err
	}
	if a.role == "" && !who.IsAdmin() {
		return errNoAccess
	}
	if a.ch.Kind == KindDirect || a.ch.Kind == KindDevice {
		return unhidra.Errorf(unhidra.EINVALID, "the members of %s channels are fixed", a.ch.Kind)
	}
	if !a.manage {
		return unhidra.Errorf(unhidra.EFORBIDDEN, "only channel owners and admins manage members")
	}
	cur, err := s.store.GetMember(ctx, channel, user)
	if err != nil {
		return err
	}
	if cur.Role != RoleMember && a.role != RoleOwner && !who.IsAdmin() {
		return unhidra.Errorf(unhidra.EFORBIDDEN, "only channel owners remove owners and admins")
	}
	if cur.Role == RoleOwner {
		if err := s.keepAnOwner(ctx, channel, user); err != nil {
			return err
		}
	}
	if err := s.store.RemoveMember(ctx, channel, user); err != nil {
		return err
	}
	s.memberGone(a.ch, user)
	s.emit(ctx, change{Action: audit.ActionMemberRemove, Actor: who, Channel: channel, Target: user})
	return nil
}

// Join makes who a member of a public channel (idempotent).
func (s *Service) Join(ctx context.Context, who unhidra.Identity, channel string) (Member, error) {
	m, err := s.join(ctx, who, channel)
	s.refused(ctx, audit.ActionMemberJoin, who, channel, who.Principal.ID, err)
	return m, err
}

func (s *Service) join(ctx context.Context, who unhidra.Identity, channel string) (Member, error) {
	if who.IsDevice() {
		return Member{}, errNoAccess
	}
	a, err := s.accessTo(ctx, who, channel)
	if err != nil {
		return Member{}, err
	}
	if a.role != "" {
		// Joining a channel one was added to accepts it.
		return s.accept(ctx, who, a)
	}
	if a.ch.Kind != KindPublic {
		return Member{}, unhidra.Errorf(unhidra.EFORBIDDEN, "only public channels can be joined; ask a channel admin")
	}
	now := s.now()
	m := Member{User: who.Principal.ID, Role: RoleMember, JoinedAt: now, AcceptedAt: &now}
	added, err := s.store.PutMember(ctx, channel, m)
	if err != nil {
		return Member{}, err
	}
	if added {
		s.emit(ctx, change{Action: audit.ActionMemberJoin, Actor: who, Channel: channel, Target: m.User, Role: m.Role})
	}
	return m, nil
}

// Leave removes who from a public, private or direct channel. The only
// owner of a channel with other members must hand the owner role on first.
// Either member may leave a direct channel: the other keeps it and its
// history, cannot post there until they open it again (which invites the
// leaver back as a pending member), and the last member leaving deletes it
// with its messages (opening it again then starts a new, empty one).
func (s *Service) Leave(ctx context.Context, who unhidra.Identity, channel string) error {
	err := s.leave(ctx, who, channel)
	s.refused(ctx, audit.ActionMemberLeave, who, channel, who.Principal.ID, err)
	return err
}

func (s *Service) leave(ctx context.Context, who unhidra.Identity, channel string) error {
	if who.IsDevice() {
		return errNoAccess
	}
	a, err := s.accessTo(ctx, who, channel)
	if err != nil {
		return err
	}
	if a.role == "" {
		return errNoAccess
	}
	if a.ch.Kind == KindDevice {
		return unhidra.Errorf(unhidra.EINVALID, "the members of device channels are fixed")
	}
	if a.ch.Kind == KindDirect {
		return s.leaveDirect(ctx, who, a.ch)
	}
	if a.role == RoleOwner {
		if err := s.keepAnOwner(ctx, channel, who.Principal.ID); err != nil {
			return err
		}
	}
	if err := s.store.RemoveMember(ctx, channel, who.Principal.ID); err != nil {
		if unhidra.ErrorCode(err) == unhidra.ENOTFOUND {
			return nil
		}
		return err
	}
	s.memberGone(a.ch, who.Principal.ID)
	s.emit(ctx, change{Action: audit.ActionMemberLeave, Actor: who, Channel: channel, Target: who.Principal.ID})
	return nil
}

// memberGone announces on the channel's topic that user, no longer a member,
// may not read ch any more (every kind but public), so transports end the
// user's live subscriptions instead of relaying further messages to them.
func (s *Service) memberGone(ch Channel, user string) {
	if ch.Kind == KindPublic {
		return
	}
	s.publishEvent(&broker.Event{Kind: broker.MemberRemoved, Channel: ch.ID, User: user})
}

// UserChannels lists the ids of every channel user is a member of, of any
// kind, ordered by id (at most MaxListedChannels): where news about the
// user that their channels' members need is published, such as a change of
// the user's end-to-end encryption keys. It answers the server itself, not
// a caller, so it checks no permission.
func (s *Service) UserChannels(ctx context.Context, user string) ([]string, error) {
	// ListChannels gives the user's own channels first, then the other
	// public channels: a public channel is the user's only if the user is
	// a member, and the first public one that is not ends the user's part.
	chs, err := s.store.ListChannels(ctx, user, false, MaxListedChannels)
	if err != nil {
		return nil, err
	}
	out := []string{}
	for _, ch := range chs {
		if ch.Kind == KindPublic {
			_, err := s.store.GetMember(ctx, ch.ID, user)
			if unhidra.ErrorCode(err) == unhidra.ENOTFOUND {
				break
			}
			if err != nil {
				return nil, err
			}
		}
		out = append(out, ch.ID)
	}
	return out, nil
}
