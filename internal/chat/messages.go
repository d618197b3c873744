package chat

import (
	"context"
	"encoding/json"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/audit"
	"github.com/unhidra/unhidra/internal/broker"
	"github.com/unhidra/unhidra/wire"
)

// Publish stores a message and returns its ack once it is durably stored
// (the WebSocket `publish` frame, MQTT channel publishes). The same
// (channel, sender, client_msg_id) again returns the first ack and stores
// nothing.
func (s *Service) Publish(ctx context.Context, who unhidra.Identity, in wire.Publish) (wire.Ack, error) {
	m, _, err := s.Post(ctx, who, in)
	if err != nil {
		return wire.Ack{}, err
	}
	return wire.Ack{Channel: m.Channel, MessageID: m.ID, Offset: m.Offset}, nil
}

// Post is Publish returning the whole stored message and whether it was a
// duplicate of an earlier publish (POST /api/v1/channels/{id}/messages).
func (s *Service) Post(ctx context.Context, who unhidra.Identity, in wire.Publish) (wire.Message, bool, error) {
	wait, err := s.queuePost(ctx, who, in)
	if err != nil {
		return wire.Message{}, false, err
	}
	return wait(ctx)
}

// PublishWait waits for the outcome of QueuePublish: the ack once the
// message is committed, unavailable when ctx ends first.
type PublishWait = func(ctx context.Context) (wire.Ack, error)

// QueuePublish is Publish in two steps, for a transport that keeps several
// acknowledged publishes of one connection in flight (MQTT QoS 1): it
// authorizes and validates the publish and queues it for the group commit,
// then returns; the wait gives the ack once it is committed. Publishes are
// committed, and their waits answered, in the order they were queued. ctx
// bounds the queued message as well: the commit skips it if ctx has ended
// by then.
func (s *Service) QueuePublish(ctx context.Context, who unhidra.Identity, in wire.Publish) (PublishWait, error) {
	wait, err := s.queuePost(ctx, who, in)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) (wire.Ack, error) {
		m, _, err := wait(ctx)
		if err != nil {
			return wire.Ack{}, err
		}
		return wire.Ack{Channel: m.Channel, MessageID: m.ID, Offset: m.Offset}, nil
	}, nil
}

// queuePost checks and queues a post; the wait returns the stored message
// and whether it was a duplicate, and accepts an invitation the post
// implies.
func (s *Service) queuePost(ctx context.Context, who unhidra.Identity, in wire.Publish) (func(ctx context.Context) (wire.Message, bool, error), error) {
	fail := func(err error) (func(ctx context.Context) (wire.Message, bool, error), error) { return nil, err }
	if err := ValidateChannelID(in.Channel); err != nil {
		return fail(err)
	}
	body, err := bodyOf(in.Text, in.Data, in.E2EE)
	if err != nil {
		return fail(err)
	}
	if err := ValidateClientMsgID(in.ClientMsgID); err != nil {
		return fail(err)
	}
	if in.ThreadID != "" {
		if err := validateMessageID(in.ThreadID); err != nil {
			return fail(unhidra.Errorf(unhidra.EINVALID, "thread_id is not a message id"))
		}
	}
	a, err := s.accessTo(ctx, who, in.Channel)
	if err != nil {
		return fail(err)
	}
	if !a.post {
		if a.ch.Kind == KindPublic {
			return fail(unhidra.Errorf(unhidra.EFORBIDDEN, "join the channel before posting"))
		}
		return fail(errNoAccess)
	}
	if err := s.checkBodyForChannel(a.ch, body); err != nil {
		return fail(err)
	}
	if err := s.checkDirectPost(ctx, who, a.ch); err != nil {
		return fail(err)
	}
	msg := wire.Message{
		ID:          newID(),
		Channel:     a.ch.ID,
		Sender:      who.Principal,
		CreatedAt:   s.now(),
		ClientMsgID: in.ClientMsgID,
		ThreadID:    in.ThreadID,
		Text:        body.Text,
		Data:        body.Data,
		E2EE:        body.E2EE,
	}
	p := s.enqueue(ctx, Append{Msg: msg, Index: body.Text != nil && !s.requiresE2EE(a.ch)})
	return func(ctx context.Context) (wire.Message, bool, error) {
		r, err := p.wait(ctx)
		if err != nil {
			return wire.Message{}, false, err
		}
		if a.role != "" && !a.member.Accepted() {
			// Posting in a channel one was added to accepts it.
			if _, err := s.accept(ctx, who, a); err != nil {
				s.log.Warn("chat: accept on post", "channel", a.ch.ID, "err", err)
			}
		}
		return r.Msg, r.Duplicate, nil
	}, nil
}

// validateMessageID checks the shape of a message id from a request.
func validateMessageID(id string) error {
	if id == "" || len(id) > 64 {
		return unhidra.Errorf(unhidra.EINVALID, "invalid message id")
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			return unhidra.Errorf(unhidra.EINVALID, "invalid message id")
		}
	}
	return nil
}

// Subscribe authorizes who to receive channel's frames and answers with the
// channel's last offset and, when since is given, the recovery (see
// Recovery). since must be ≥ 0; since beyond the last offset (history was
// reset) or more than the recovery window behind it answers
// Recovered:false with no messages.
func (s *Service) Subscribe(ctx context.Context, who unhidra.Identity, channel string, since *int64) (Recovery, error) {
	a, err := s.accessTo(ctx, who, channel)
	if err != nil {
		return Recovery{}, err
	}
	last := a.ch.LastOffset
	if since == nil {
		return Recovery{Offset: last}, nil
	}
	if *since < 0 {
		return Recovery{}, unhidra.Errorf(unhidra.EINVALID, "since must be a non-negative offset")
	}
	missed := last - *since
	switch {
	case missed == 0:
		return Recovery{Offset: last, Recovered: true, Messages: []wire.Message{}}, nil
	case missed < 0 || missed > int64(s.opts.RecoveryWindow):
		return Recovery{Offset: last}, nil
	}
	msgs, err := s.store.MessagesAfter(ctx, a.ch.ID, *since, int(missed))
	if err != nil {
		return Recovery{}, err
	}
	if int64(len(msgs)) != missed || (len(msgs) > 0 && msgs[len(msgs)-1].Offset != last) {
		// Not every missed message is there: never a partial batch.
		return Recovery{Offset: last}, nil
	}
	size := 0
	for _, m := range msgs {
		size += approxSize(m)
	}
	if size > s.opts.RecoveryMaxBytes {
		return Recovery{Offset: last}, nil
	}
	return Recovery{Offset: last, Recovered: true, Messages: msgs}, nil
}

func approxSize(m wire.Message) int {
	n := 256 + len(m.ID) + len(m.Channel) + len(m.ClientMsgID) + len(m.ThreadID) + len(m.Data) + len(m.E2EE)
	if m.Text != nil {
		n += len(*m.Text)
	}
	return n
}

// History returns a page of a channel's messages (see Page) and whether
// more lie beyond it.
func (s *Service) History(ctx context.Context, who unhidra.Identity, channel string, p Page) ([]wire.Message, bool, error) {
	if p.Limit <= 0 || p.Limit > MaxPageLimit || p.Before < 0 || p.After < 0 {
		return nil, false, unhidra.Errorf(unhidra.EINVALID, "limit must be 1 to %d and offsets non-negative", MaxPageLimit)
	}
	a, err := s.accessTo(ctx, who, channel)
	if err != nil {
		return nil, false, err
	}
	return s.store.History(ctx, a.ch.ID, p)
}

// Thread returns the root message and a page of its replies, oldest first
// after offset after.
func (s *Service) Thread(ctx context.Context, who unhidra.Identity, channel, root string, after int64, limit int) (wire.Message, []wire.Message, bool, error) {
	if limit <= 0 || limit > MaxPageLimit || after < 0 {
		return wire.Message{}, nil, false, unhidra.Errorf(unhidra.EINVALID, "limit must be 1 to %d and offsets non-negative", MaxPageLimit)
	}
	a, err := s.accessTo(ctx, who, channel)
	if err != nil {
		return wire.Message{}, nil, false, err
	}
	if err := validateMessageID(root); err != nil {
		return wire.Message{}, nil, false, unhidra.Errorf(unhidra.ENOTFOUND, "message not found")
	}
	rm, err := s.store.GetMessage(ctx, a.ch.ID, root)
	if err != nil {
		return wire.Message{}, nil, false, err
	}
	replies, more, err := s.store.Thread(ctx, a.ch.ID, rm.ID, after, limit)
	if err != nil {
		return wire.Message{}, nil, false, err
	}
	return rm, replies, more, nil
}

// Edit is the body of PATCH /api/v1/channels/{id}/messages/{mid}.
type Edit struct {
	Text *string         `json:"text,omitempty"`
	Data json.RawMessage `json:"data,omitempty"`
	E2EE json.RawMessage `json:"e2ee,omitempty"`
}

// EditMessage replaces the body of a message (its author only) and
// publishes `message_updated` on the channel.
func (s *Service) EditMessage(ctx context.Context, who unhidra.Identity, channel, id string, e Edit) (wire.Message, error) {
	body, err := bodyOf(e.Text, e.Data, e.E2EE)
	if err != nil {
		return wire.Message{}, err
	}
	a, cur, err := s.messageFor(ctx, who, channel, id)
	if err != nil {
		return wire.Message{}, err
	}
	if cur.Sender != who.Principal {
		return wire.Message{}, unhidra.Errorf(unhidra.EFORBIDDEN, "only the author may edit a message")
	}
	if !a.post {
		return wire.Message{}, unhidra.Errorf(unhidra.EFORBIDDEN, "only members may edit their messages")
	}
	if cur.Deleted {
		return wire.Message{}, unhidra.Errorf(unhidra.ECONFLICT, "the message was deleted")
	}
	if err := s.checkBodyForChannel(a.ch, body); err != nil {
		return wire.Message{}, err
	}
	if err := s.checkDirectPost(ctx, who, a.ch); err != nil {
		return wire.Message{}, err
	}
	m, err := s.store.EditMessage(ctx, a.ch.ID, id, body, s.now())
	if err != nil {
		return wire.Message{}, err
	}
	s.publishEvent(&broker.Event{Kind: broker.MessageUpdated, Channel: m.Channel, Message: &m})
	return m, nil
}

// DeleteMessage turns a message into a tombstone (its author, a channel
// owner or admin, or a global admin) and publishes `message_deleted`.
// Deleting a tombstone again returns it unchanged.
func (s *Service) DeleteMessage(ctx context.Context, who unhidra.Identity, channel, id string) (wire.Message, error) {
	a, cur, err := s.messageFor(ctx, who, channel, id)
	if err != nil {
		return wire.Message{}, err
	}
	author := cur.Sender == who.Principal && a.post
	if !author && !a.manage {
		err := unhidra.Errorf(unhidra.EFORBIDDEN, "only the author or a channel admin may delete a message")
		s.auditDelete(ctx, who, cur, audit.Failure, unhidra.ErrorMessage(err))
		return wire.Message{}, err
	}
	if cur.Deleted {
		return cur, nil
	}
	m, err := s.store.DeleteMessage(ctx, a.ch.ID, id, s.now())
	if err != nil {
		return wire.Message{}, err
	}
	s.publishEvent(&broker.Event{Kind: broker.MessageDeleted, Channel: m.Channel, Message: &m})
	s.auditDelete(ctx, who, cur, audit.Success, "")
	return m, nil
}

// auditDelete records the deletion of m by who, or its refusal, when who
// is not its author (audit.ActionMessageDelete: a moderation); authors
// deleting their own messages are not security events.
func (s *Service) auditDelete(ctx context.Context, who unhidra.Identity, m wire.Message, outcome, reason string) {
	if m.Sender == who.Principal {
		return
	}
	s.audit.Audit(context.WithoutCancel(ctx), audit.Event{
		Action: audit.ActionMessageDelete, Actor: who.Principal, Target: m.Channel, Outcome: outcome, Reason: reason,
		Details: map[string]string{"message": m.ID, "author": m.Sender.String()},
	})
}

func (s *Service) messageFor(ctx context.Context, who unhidra.Identity, channel, id string) (access, wire.Message, error) {
	a, err := s.accessTo(ctx, who, channel)
	if err != nil {
		return access{}, wire.Message{}, err
	}
	if err := validateMessageID(id); err != nil {
		return access{}, wire.Message{}, unhidra.Errorf(unhidra.ENOTFOUND, "message not found")
	}
	m, err := s.store.GetMessage(ctx, a.ch.ID, id)
	if err != nil {
		return access{}, wire.Message{}, err
	}
	return a, m, nil
}

// Search runs a full-text search over the text of the undeleted messages
// who may read, newest first; e2ee channels are never searched. query is
// user text (see SanitizeQuery); channel optionally narrows the search.
func (s *Service) Search(ctx context.Context, who unhidra.Identity, query, channel string, limit int) ([]wire.Message, error) {
	match, err := SanitizeQuery(query)
	if err != nil {
		return nil, err
	}
	if limit <= 0 || limit > MaxSearchLimit {
		return nil, unhidra.Errorf(unhidra.EINVALID, "limit must be 1 to %d", MaxSearchLimit)
	}
	q := SearchQuery{Match: match, Limit: limit, OnlyDeviceChannels: s.opts.E2EEEnforced}
	if who.IsDevice() {
		q.Reader = Reader{Device: who.Principal.ID}
	} else {
		q.Reader = Reader{User: who.Principal.ID, Admin: who.IsAdmin()}
	}
	if channel != "" {
		a, err := s.accessTo(ctx, who, channel)
		if err != nil {
			return nil, err
		}
		if s.requiresE2EE(a.ch) {
			return []wire.Message{}, nil
		}
		q.Channel = a.ch.ID
	}
	return s.store.Search(ctx, q)
}

// Typing tells the channel's subscribers that who is typing. Members only;
// nothing is stored; at most one notice per user and channel per
// TypingInterval goes out, extra ones are dropped silently.
func (s *Service) Typing(ctx context.Context, who unhidra.Identity, channel string) error {
	if who.IsDevice() {
		return errNoAccess
	}
	a, err := s.accessTo(ctx, who, channel)
	if err != nil {
		return err
	}
	if !a.post {
		return errNoAccess
	}
	if err := s.checkDirectPost(ctx, who, a.ch); err != nil {
		return err
	}
	if !s.allowTyping(who.Principal.ID + "\x00" + a.ch.ID) {
		return nil
	}
	s.publishEvent(&broker.Event{Kind: broker.Typing, Channel: a.ch.ID, User: who.Principal.ID})
	return nil
}

// maxTypingEntries bounds the typing limiter's memory.
const maxTypingEntries = 100_000

func (s *Service) allowTyping(key string) bool {
	now := s.now()
	s.typingMu.Lock()
	defer s.typingMu.Unlock()
	if last, ok := s.typing[key]; ok && now.Sub(last) < s.opts.TypingInterval {
		return false
	}
	if len(s.typing) >= maxTypingEntries {
		for k, t := range s.typing {
			if now.Sub(t) >= s.opts.TypingInterval {
				delete(s.typing, k)
			}
		}
		if len(s.typing) >= maxTypingEntries {
			return false
		}
	}
	s.typing[key] = now
	return true
}
