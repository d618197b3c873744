package gateway

import (
	"context"
	"time"
)

// closeLocked queues our close frame (after the queue, or instead of it when
// dropQueue) and stops further frames.
func (c *conn) closeLocked(code int, reason, why string, dropQueue bool) {
	if c.closeSent || c.dead {
		return
	}
	c.closeSent = true
	if c.closeReason == "" {
		c.closeReason = why
	}
	if dropQueue {
		c.dropQueueLocked()
	}
	for _, sb := range c.subs {
		sb.buf, sb.bufBytes = nil, 0
	}
	f := outFrame{isClose: true, payload: closePayload(code, reason)}
	f.hn = uint8(putHeader(&f.hdr, opClose, len(f.payload)))
	n := int(f.hn) + len(f.payload)
	c.out = append(c.out, f)
	c.outBytes += n
	c.srv.met.queued.Add(int64(n))
	c.cond.Broadcast()
	c.kickLocked()
}

func (c *conn) closeWith(code int, reason, why string) {
	c.mu.Lock()
	c.closeLocked(code, reason, why, false)
	c.mu.Unlock()
}

// abort closes the TCP connection at once. The reader then exits and
// finishes the connection.
func (c *conn) abort(why string) {
	c.mu.Lock()
	if c.dead {
		c.mu.Unlock()
		return
	}
	c.dead = true
	if c.closeReason == "" {
		c.closeReason = why
	}
	c.dropQueueLocked()
	c.cond.Broadcast()
	c.mu.Unlock()
	_ = c.nc.Close()
}

// drain begins a graceful close: frames not yet started are refused, the
// one in progress finishes, then 1001 follows its reply.
func (c *conn) drain() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.draining = true
	if !c.processing {
		c.closeLocked(CloseGoingAway, "server shutting down", "going_away", false)
	}
}

// finish runs when the reader exits: it releases everything the connection
// holds. It waits for a running frame handler so no subscription is added
// after the hub entries are removed.
func (c *conn) finish() {
	s := c.srv
	c.abort("closed")
	c.mu.Lock()
	for c.processing {
		c.cond.Wait()
	}
	for _, t := range []*time.Timer{c.pingTimer, c.expiryTimer, c.closeTimer} {
		if t != nil {
			t.Stop()
		}
	}
	subs := c.subs
	for _, sb := range subs {
		sb.active = false
	}
	c.subs = nil
	why := c.closeReason
	ident := c.ident
	c.mu.Unlock()
	for t := range subs {
		s.hub.remove(t, c)
	}
	if s.deps.Presence != nil {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(s.base), callTimeout)
		s.deps.Presence.Disconnect(ctx, c.pc)
		cancel()
	}
	if ds := s.deviceSessions(); ds != nil && c.principal.IsDevice() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(s.base), callTimeout)
		ds.DeviceDisconnected(ctx, ident)
		cancel()
	}
	s.met.connections.WithLabelValues(c.principal.Kind).Dec()
	s.met.closes.WithLabelValues(why).Inc()
	s.log.Info("websocket client disconnected", append(c.logAttrs(),
		"reason", why, "duration", time.Since(c.pc.ConnectedAt).Round(time.Millisecond).String())...)
	s.unregister(c) // last: a drain waits for this
}
