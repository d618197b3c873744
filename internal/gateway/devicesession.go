package gateway

import (
	"context"
	"encoding/json"

	"github.com/unhidra/unhidra/internal/broker"
)

// deviceSessions returns the optional device session tracker, or nil.
func (s *Server) deviceSessions() DeviceSessions {
	ds, _ := s.deps.Devices.(DeviceSessions)
	return ds
}

// deviceOnline marks a device connection online and hands it the commands
// that waited while it was away, oldest first.
func (c *conn) deviceOnline(ds DeviceSessions) {
	ctx, cancel := context.WithTimeout(c.srv.base, callTimeout)
	defer cancel()
	cmds, err := ds.DeviceConnected(ctx, c.identity())
	if err != nil {
		c.srv.log.Warn("device connect bookkeeping failed", "conn", c.id, "err", err)
		return
	}
	for _, f := range cmds {
		payload, err := json.Marshal(f)
		if err != nil {
			continue
		}
		c.claimCommandFrame(ctx, ds, f.CommandID, payload)
	}
}

// claimCommand delivers a command frame offered on the device's broker
// topic, once this connection has won it.
func (c *conn) claimCommand(ds DeviceSessions, ev event) {
	if ev.src.Kind != broker.Command || ev.src.Command == nil || ev.src.Command.ID == "" {
		return
	}
	ctx, cancel := context.WithTimeout(c.srv.base, callTimeout)
	defer cancel()
	c.claimCommandFrame(ctx, ds, ev.src.Command.ID, ev.payload)
}

func (c *conn) claimCommandFrame(ctx context.Context, ds DeviceSessions, commandID string, payload []byte) {
	c.mu.Lock()
	gone := c.closeSent || c.dead
	c.mu.Unlock()
	if gone {
		return // stays pending for the device's next connection
	}
	won, err := ds.CommandDelivered(ctx, c.principal.ID, commandID)
	if err != nil {
		c.srv.log.Warn("command delivery bookkeeping failed", "conn", c.id, "command", commandID, "err", err)
		return
	}
	if !won {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closeSent || c.dead {
		return
	}
	c.enqueueLocked(opText, payload, true)
}
