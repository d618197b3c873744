package gateway

import (
	"context"
	"encoding/json"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/broker"
	"github.com/unhidra/unhidra/wire"
)

// sub is a connection's subscription to one topic. While buffering (during
// subscribe recovery) live events are kept aside; afterwards events with an
// offset at or below last are dropped as already delivered. Guarded by the
// connection's mu.
type sub struct {
	topic     string
	channel   string // "" for the device command topic
	active    bool   // false once removed from the connection
	buffering bool
	buf       []event
	bufBytes  int
	last      int64
}

// subscribe joins the hub first (buffering live events), asks the chat
// service for recovery, then delivers `subscribed`, the recovered messages
// and the buffered events above the last delivered offset: no duplicate, no
// gap, in order.
func (c *conn) subscribe(ctx context.Context, who unhidra.Identity, f wire.ClientFrame) {
	s := c.srv
	t := broker.ChannelTopic(f.Channel)
	c.unsubscribe(f.Channel)
	sb := &sub{topic: t, channel: f.Channel, buffering: true}
	c.mu.Lock()
	if c.dead || c.closeSent {
		c.mu.Unlock()
		return
	}
	if len(c.subs) >= s.cfg.MaxSubscriptions {
		c.mu.Unlock()
		c.sendError(f.ID, unhidra.ETOOLARGE, "too many subscriptions")
		return
	}
	if c.subs == nil {
		c.subs = make(map[string]*sub)
	}
	sb.active = true
	c.subs[t] = sb
	c.mu.Unlock()
	if err := s.hub.add(t, c, sb); err != nil {
		c.dropSub(t, sb)
		s.log.Error("hub subscribe failed", "conn", c.id, "err", err)
		c.sendError(f.ID, unhidra.EUNAVAILABLE, "subscriptions are unavailable")
		return
	}
	rec, err := s.deps.Chat.Subscribe(ctx, who, f.Channel, f.Since)
	if err != nil {
		c.dropSub(t, sb)
		c.sendErr(f.ID, err)
		return
	}
	ack, _ := json.Marshal(wire.Subscribed{Type: wire.TypeSubscribed, ID: f.ID, Channel: f.Channel, Offset: rec.Offset, Recovered: rec.Recovered})
	last := rec.Offset
	recovered := make([][]byte, 0, len(rec.Messages))
	for _, m := range rec.Messages {
		b, err := json.Marshal(wire.MessageFrame{Type: wire.TypeMessage, Channel: f.Channel, Offset: m.Offset, Message: m})
		if err != nil {
			continue
		}
		recovered = append(recovered, b)
		if m.Offset > last {
			last = m.Offset
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !sb.active {
		return // unsubscribed or closed meanwhile
	}
	c.enqueueLocked(opText, ack, true)
	for _, b := range recovered {
		c.enqueueLocked(opText, b, true)
	}
	sb.last = last
	for _, ev := range sb.buf {
		if c.accessEndedLocked(sb, ev) {
			break
		}
		if ev.offset > 0 {
			if ev.offset <= sb.last {
				continue
			}
			sb.last = ev.offset
		}
		c.enqueueLocked(opText, ev.payload, true)
	}
	sb.buf, sb.bufBytes, sb.buffering = nil, 0, false
}

// dropSub undoes a subscription that failed.
func (c *conn) dropSub(t string, sb *sub) {
	c.mu.Lock()
	if c.subs[t] == sb {
		delete(c.subs, t)
	}
	sb.active = false
	c.mu.Unlock()
	c.srv.hub.remove(t, c)
}

func (c *conn) unsubscribe(channel string) {
	t := broker.ChannelTopic(channel)
	c.mu.Lock()
	sb, ok := c.subs[t]
	if ok {
		sb.active = false
	}
	delete(c.subs, t)
	c.mu.Unlock()
	if ok {
		c.srv.hub.remove(t, c)
	}
}

// deliver is called by the hub for each event of a subscribed topic.
func (c *conn) deliver(sb *sub, ev event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closeSent || c.dead || !sb.active {
		return
	}
	if sb.buffering {
		sb.buf = append(sb.buf, ev)
		sb.bufBytes += len(ev.payload)
		if c.outBytes+sb.bufBytes > c.srv.cfg.MaxQueueBytes {
			c.slowLocked()
		}
		return
	}
	if c.accessEndedLocked(sb, ev) {
		return
	}
	if sb.channel == "" && c.principal.IsDevice() {
		if ds := c.srv.deviceSessions(); ds != nil {
			// A command offered on the broker: claim it first, so that only
			// one transport (and one connection) delivers it.
			c.srv.wg.Add(1)
			go func() {
				defer c.srv.wg.Done()
				c.claimCommand(ds, ev)
			}()
			return
		}
	}
	if ev.offset > 0 {
		if ev.offset <= sb.last {
			return
		}
		sb.last = ev.offset
	}
	c.enqueueFanoutLocked(ev.payload)
}

// accessEndedLocked reports whether ev ends subscription sb: the channel
// was deleted, or this connection's user was removed from it (or left) and
// may no longer read it. It then stops sb, whose later events are dropped,
// and tells the client with an unasked `unsubscribed` frame.
func (c *conn) accessEndedLocked(sb *sub, ev event) bool {
	var reason string
	switch {
	case sb.channel == "":
		return false
	case ev.deleted:
		reason = wire.UnsubscribedDeleted
	case ev.removed != "" && c.principal.Kind == wire.KindUser && c.principal.ID == ev.removed:
		reason = wire.UnsubscribedRemoved
	default:
		return false
	}
	sb.active = false
	sb.buf, sb.bufBytes = nil, 0
	b, err := json.Marshal(wire.Unsubscribed{Type: wire.TypeUnsubscribed, Channel: sb.channel, Reason: reason})
	if err == nil {
		c.enqueueLocked(opText, b, true)
	}
	return true
}
