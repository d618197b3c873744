package gateway

import (
	"context"
	"errors"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/audit"
	"github.com/unhidra/unhidra/wire"
)

// handle decodes one client frame and makes the one service call it maps to.
func (c *conn) handle(b []byte) {
	s := c.srv
	f, err := wire.DecodeClientFrame(b)
	if err == nil && f.Type == wire.TypePublish {
		if q, ok := s.deps.Chat.(PublishQueuer); ok {
			c.queuePublish(q, c.identity(), f)
			return
		}
	}
	// Any other reply follows the acks of the publishes before it.
	c.awaitAcks()
	if err != nil {
		var fe *wire.FrameError
		if errors.As(err, &fe) {
			c.sendError(f.ID, fe.Code, fe.Message)
		} else {
			c.sendError(f.ID, unhidra.EINVALID, "invalid frame")
		}
		return
	}
	ctx, cancel := context.WithTimeout(audit.WithSource(s.base, c.src), callTimeout)
	defer cancel()
	who := c.identity()
	switch f.Type {
	case wire.TypeSubscribe:
		c.subscribe(ctx, who, f)
	case wire.TypeUnsubscribe:
		c.unsubscribe(f.Channel)
		c.send(wire.Unsubscribed{Type: wire.TypeUnsubscribed, ID: f.ID, Channel: f.Channel})
	case wire.TypePublish:
		ack, err := s.deps.Chat.Publish(ctx, who, f.Publish)
		if err != nil {
			c.sendErr(f.ID, err)
			return
		}
		c.send(wire.AckFrame{Type: wire.TypeAck, ID: f.ID, Ack: ack})
	case wire.TypeTyping:
		if err := s.deps.Chat.Typing(ctx, who, f.Channel); err != nil {
			c.sendErr(f.ID, err)
		}
	case wire.TypePresence:
		if s.deps.Presence == nil {
			c.sendError(f.ID, unhidra.EUNAVAILABLE, "presence is not available")
			return
		}
		if err := s.deps.Presence.SetStatus(ctx, who, f.Status); err != nil {
			c.sendErr(f.ID, err)
		}
	case wire.TypeHeartbeat, wire.TypeTelemetry, wire.TypeCommandResult:
		c.deviceFrame(ctx, who, f)
	case wire.TypeRefresh:
		c.refresh(ctx, who, f)
	}
}

func (c *conn) deviceFrame(ctx context.Context, who unhidra.Identity, f wire.ClientFrame) {
	d := c.srv.deps.Devices
	if d == nil {
		c.sendError(f.ID, unhidra.EUNAVAILABLE, "device frames are not available")
		return
	}
	switch f.Type {
	case wire.TypeHeartbeat:
		if err := d.Heartbeat(ctx, who, f); err != nil {
			c.sendErr(f.ID, err)
			return
		}
		c.send(wire.HeartbeatAck{Type: wire.TypeHeartbeatAck, ID: f.ID, ServerTime: time.Now().UTC()})
	case wire.TypeTelemetry:
		ack, err := d.Telemetry(ctx, who, f)
		if err != nil {
			c.sendErr(f.ID, err)
			return
		}
		c.send(wire.AckFrame{Type: wire.TypeAck, ID: f.ID, Ack: ack})
	case wire.TypeCommandResult:
		if err := d.CommandResult(ctx, who, f); err != nil {
			c.sendErr(f.ID, err)
		}
	}
}

// refresh replaces the connection's access token in band (docs/protocol.md#connection).
func (c *conn) refresh(ctx context.Context, who unhidra.Identity, f wire.ClientFrame) {
	if who.IsDevice() {
		c.sendError(f.ID, unhidra.EINVALID, "devices do not refresh tokens")
		return
	}
	id, err := c.srv.deps.Tokens.AuthenticateToken(ctx, f.Token)
	if err != nil || id.Principal != who.Principal || c.srv.expired(id) {
		c.sendError(f.ID, unhidra.EUNAUTHORIZED, "invalid token")
		return
	}
	c.mu.Lock()
	c.ident = id
	if c.expiryTimer != nil {
		c.expiryTimer.Stop()
	}
	if until := c.srv.validUntil(id); !until.IsZero() {
		c.expiryTimer = time.AfterFunc(until.Sub(c.srv.cfg.Now()), c.onExpiry)
	}
	c.mu.Unlock()
	c.send(wire.Refreshed{Type: wire.TypeRefreshed, ID: f.ID, ExpiresAt: id.ExpiresAt.UTC()})
}
