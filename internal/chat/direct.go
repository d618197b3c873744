package chat

// Consent, blocks and the creation quota.
//
// Consent: a member added by someone else (a direct channel's other user,
// the members named at creation, PUT /channels/{id}/members/{user}) is
// pending until they accept the channel: POST /channels/{id}/accept, a
// message they post there, joining it, or opening the direct channel
// themselves. Their presence travels through no channel they have not
// accepted, and a direct channel shares presence in neither direction until
// both members have accepted (Store.PresenceChannels, Store.SharesChannel).
//
// Blocks: when A blocks B, neither can open a direct channel with the
// other, neither can post, edit or type in their direct channel, B cannot
// add A to any channel, and presence is shared between them through no
// channel (also not through a private channel they are both in: their
// presence frames are not published there at all, since a channel topic
// has one audience). Messages in shared public and private channels are
// not filtered (the others in the channel read them); clients may hide
// them.
//
// Quota: see MaxChannelsPerDay and MaxCreatedChannels.

import (
	"context"
	"fmt"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/audit"
	"github.com/unhidra/unhidra/internal/broker"
)

// checkDirectBlock refuses a direct conversation between me and other when
// either blocks the other.
func (s *Service) checkDirectBlock(ctx context.Context, me, other string) error {
	mine, theirs, err := s.store.BlockBetween(ctx, me, other)
	if err != nil {
		return err
	}
	switch {
	case mine:
		return unhidra.Errorf(unhidra.EFORBIDDEN, "you blocked %s; unblock them first", other)
	case theirs:
		return unhidra.Errorf(unhidra.EFORBIDDEN, "%s does not accept direct messages from you", other)
	}
	return nil
}

// checkInvite refuses adding user to a channel when user blocks actor.
func (s *Service) checkInvite(ctx context.Context, actor, user string) error {
	if actor == user {
		return nil
	}
	_, theirs, err := s.store.BlockBetween(ctx, actor, user)
	if err != nil {
		return err
	}
	if theirs {
		return unhidra.Errorf(unhidra.EFORBIDDEN, "%s does not accept invitations from you", user)
	}
	return nil
}

// checkQuota enforces MaxChannelsPerDay and MaxCreatedChannels on who
// creating a channel of kind at now. The caller holds createMu.
func (s *Service) checkQuota(ctx context.Context, who unhidra.Identity, kind string, now time.Time) error {
	if who.IsAdmin() {
		return nil
	}
	user := who.Principal.ID
	n, oldest, err := s.store.CreationsSince(ctx, user, now.Add(-QuotaWindow))
	if err != nil {
		return err
	}
	if n >= MaxChannelsPerDay {
		wait := oldest.Add(QuotaWindow).Sub(now)
		return &unhidra.Error{Code: unhidra.ERATELIMITED, RetryAfter: max(1, int((wait+time.Second-1)/time.Second)),
			Message: fmt.Sprintf("you created %d channels in the last 24 hours, the most allowed; try again later", MaxChannelsPerDay)}
	}
	if kind == KindDirect {
		return nil
	}
	owned, err := s.store.CreatedChannels(ctx, user)
	if err != nil {
		return err
	}
	if owned >= MaxCreatedChannels {
		return unhidra.Errorf(unhidra.ERATELIMITED, "you have created %d channels, the most allowed; delete one first", MaxCreatedChannels)
	}
	return nil
}

// reopenDirect answers a create of the direct channel ch between who and
// other that exists already: who (re)joins as an accepted member, other is
// added back as a pending member if they had left.
func (s *Service) reopenDirect(ctx context.Context, who unhidra.Identity, ch Channel, other string) (Channel, bool, error) {
	me := who.Principal.ID
	now := s.now()
	mine, err := s.store.GetMember(ctx, ch.ID, me)
	switch {
	case unhidra.ErrorCode(err) == unhidra.ENOTFOUND:
		if _, err := s.store.PutMember(ctx, ch.ID, Member{User: me, Role: RoleMember, JoinedAt: now, AcceptedAt: &now}); err != nil {
			return Channel{}, false, err
		}
		s.emit(ctx, change{Action: audit.ActionMemberJoin, Actor: who, Channel: ch.ID, Target: me, Role: RoleMember})
	case err != nil:
		return Channel{}, false, err
	case !mine.Accepted():
		if _, err := s.store.AcceptMember(ctx, ch.ID, me, now); err != nil {
			return Channel{}, false, err
		}
	}
	if _, err := s.store.GetMember(ctx, ch.ID, other); unhidra.ErrorCode(err) == unhidra.ENOTFOUND {
		if _, err := s.store.PutMember(ctx, ch.ID, Member{User: other, Role: RoleMember, JoinedAt: now}); err != nil {
			return Channel{}, false, err
		}
		s.emit(ctx, change{Action: audit.ActionMemberAdd, Actor: who, Channel: ch.ID, Target: other, Role: RoleMember})
	} else if err != nil {
		return Channel{}, false, err
	}
	return ch, false, nil
}

// leaveDirect removes who from direct channel ch; the last member leaving
// deletes the channel.
func (s *Service) leaveDirect(ctx context.Context, who unhidra.Identity, ch Channel) error {
	me := who.Principal.ID
	if err := s.store.RemoveMember(ctx, ch.ID, me); err != nil {
		if unhidra.ErrorCode(err) == unhidra.ENOTFOUND {
			return nil
		}
		return err
	}
	s.memberGone(ch, me)
	s.emit(ctx, change{Action: audit.ActionMemberLeave, Actor: who, Channel: ch.ID, Target: me})
	rest, err := s.store.Members(ctx, ch.ID)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return nil
	}
	if err := s.store.DeleteChannel(ctx, ch.ID); err != nil && unhidra.ErrorCode(err) != unhidra.ENOTFOUND {
		return err
	}
	s.publishEvent(&broker.Event{Kind: broker.ChannelDeleted, Channel: ch.ID})
	s.emit(ctx, change{Action: audit.ActionChannelDelete, Actor: who, Channel: ch.ID})
	return nil
}

// checkDirectPost refuses posting, editing and typing in a direct channel
// when either member blocks the other or the other member has left.
func (s *Service) checkDirectPost(ctx context.Context, who unhidra.Identity, ch Channel) error {
	if ch.Kind != KindDirect {
		return nil
	}
	me := who.Principal.ID
	other := directPeer(ch, me)
	if other == "" {
		return nil
	}
	mine, theirs, err := s.store.BlockBetween(ctx, me, other)
	if err != nil {
		return err
	}
	switch {
	case mine:
		return unhidra.Errorf(unhidra.EFORBIDDEN, "you blocked %s; unblock them to send", other)
	case theirs:
		return unhidra.Errorf(unhidra.EFORBIDDEN, "blocked: %s does not accept messages from you", other)
	}
	if _, err := s.store.GetMember(ctx, ch.ID, other); unhidra.ErrorCode(err) == unhidra.ENOTFOUND {
		return unhidra.Errorf(unhidra.EFORBIDDEN, "%s left this conversation; open a direct channel with them again to invite them back", other)
	} else if err != nil {
		return err
	}
	return nil
}

// Accept records that who accepts a channel they are a member of
// (POST /api/v1/channels/{id}/accept): from then on their presence travels
// through it (a direct channel: once both members have accepted).
// Idempotent; the membership is returned.
func (s *Service) Accept(ctx context.Context, who unhidra.Identity, channel string) (Member, error) {
	if who.IsDevice() {
		return Member{}, errNoAccess
	}
	a, err := s.accessTo(ctx, who, channel)
	if err != nil {
		return Member{}, err
	}
	if a.role == "" {
		return Member{}, errNoAccess
	}
	return s.accept(ctx, who, a)
}

func (s *Service) accept(ctx context.Context, who unhidra.Identity, a access) (Member, error) {
	if a.member.Accepted() {
		return a.member, nil
	}
	return s.store.AcceptMember(ctx, a.ch.ID, who.Principal.ID, s.now())
}

// Block makes who block user (POST /api/v1/users/{id}/block): see the file
// comment for what it stops. Idempotent.
func (s *Service) Block(ctx context.Context, who unhidra.Identity, user string) (Block, error) {
	if who.IsDevice() || who.Principal.ID == "" {
		return Block{}, unhidra.Errorf(unhidra.EFORBIDDEN, "only users block users")
	}
	user, err := ValidateUserID(user)
	if err != nil {
		return Block{}, err
	}
	if user == who.Principal.ID {
		return Block{}, unhidra.Errorf(unhidra.EINVALID, "you cannot block yourself")
	}
	if err := s.checkUser(ctx, user); err != nil {
		return Block{}, err
	}
	bs, err := s.store.Blocks(ctx, who.Principal.ID, MaxListedBlocks)
	if err != nil {
		return Block{}, err
	}
	for _, b := range bs {
		if b.User == user {
			return b, nil
		}
	}
	if len(bs) >= MaxListedBlocks {
		return Block{}, unhidra.Errorf(unhidra.ERATELIMITED, "you block %d users, the most allowed; unblock one first", MaxListedBlocks)
	}
	now := s.now()
	if _, err := s.store.Block(ctx, who.Principal.ID, user, now); err != nil {
		return Block{}, err
	}
	return Block{User: user, CreatedAt: now}, nil
}

// Unblock removes who's block of user (DELETE /api/v1/users/{id}/block).
// Idempotent.
func (s *Service) Unblock(ctx context.Context, who unhidra.Identity, user string) error {
	if who.IsDevice() || who.Principal.ID == "" {
		return unhidra.Errorf(unhidra.EFORBIDDEN, "only users block users")
	}
	user, err := ValidateUserID(user)
	if err != nil {
		return err
	}
	_, err = s.store.Unblock(ctx, who.Principal.ID, user)
	return err
}

// Blocks lists the users who blocks (GET /api/v1/blocks), ordered by user.
func (s *Service) Blocks(ctx context.Context, who unhidra.Identity) ([]Block, error) {
	if who.IsDevice() || who.Principal.ID == "" {
		return nil, unhidra.Errorf(unhidra.EFORBIDDEN, "only users block users")
	}
	return s.store.Blocks(ctx, who.Principal.ID, MaxListedBlocks)
}
