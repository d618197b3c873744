package presence

import (
	"sync/atomic"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/wire"
)

// Transports a connection can use.
const (
	TransportWS   = "ws"
	TransportMQTT = "mqtt"
)

// Conn is one live connection of a user or device on any transport. The
// transport creates it, registers it with Service.Connect, bumps the counters
// as frames pass, and unregisters it with Service.Disconnect. The presence
// service derives online/offline and last_seen from the set of live Conns,
// and GET /api/v1/admin/connections lists them.
type Conn struct {
	SessionID   string
	Identity    unhidra.Identity
	RemoteIP    string
	Transport   string
	ConnectedAt time.Time

	MsgsIn  atomic.Int64
	MsgsOut atomic.Int64

	// Subscriptions, when set, returns the channels the connection is
	// subscribed to. It must be safe to call from any goroutine.
	Subscriptions func() []string
}

// ConnInfo is a snapshot of a Conn, as GET /api/v1/admin/connections shows it.
type ConnInfo struct {
	SessionID     string         `json:"session_id"`
	Principal     wire.Principal `json:"principal"`
	RemoteIP      string         `json:"remote_ip"`
	Transport     string         `json:"transport"`
	ConnectedAt   time.Time      `json:"connected_at"`
	Subscriptions []string       `json:"subscriptions"`
	MsgsIn        int64          `json:"msgs_in"`
	MsgsOut       int64          `json:"msgs_out"`
}

// Info snapshots c.
func (c *Conn) Info() ConnInfo {
	subs := []string{}
	if c.Subscriptions != nil {
		subs = c.Subscriptions()
	}
	return ConnInfo{
		SessionID:     c.SessionID,
		Principal:     c.Identity.Principal,
		RemoteIP:      c.RemoteIP,
		Transport:     c.Transport,
		ConnectedAt:   c.ConnectedAt,
		Subscriptions: subs,
		MsgsIn:        c.MsgsIn.Load(),
		MsgsOut:       c.MsgsOut.Load(),
	}
}
