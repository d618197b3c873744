package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/audit"
	"github.com/unhidra/unhidra/internal/broker"
	"github.com/unhidra/unhidra/internal/presence"
	"github.com/unhidra/unhidra/internal/redact"
	"github.com/unhidra/unhidra/wire"
)

// callTimeout bounds one service call made for a frame.
const callTimeout = 30 * time.Second

// conn is one WebSocket connection. Its only permanent goroutine is the
// reader; the writer (flush) and the frame handler (process) are started on
// demand and exit when their queue is empty.
type conn struct {
	srv       *Server
	nc        net.Conn
	rd        io.Reader
	principal wire.Principal
	id        string
	ip        netip.Addr
	pc        *presence.Conn
	// src is the handshake's audit Source (websocket, its request id, the
	// client IP): the service calls of the connection carry it.
	src audit.Source
	hdr [14]byte

	mu          sync.Mutex
	cond        sync.Cond // inbound queue space, processor idle
	ident       unhidra.Identity
	out         []outFrame
	outBytes    int
	flushing    bool
	flushDue    bool // on the flush scheduler's list (flushsched.go)
	closeSent   bool // our close frame is queued; nothing may follow it
	peerClosed  bool // the peer's close frame arrived first
	dead        bool // the TCP connection is closed
	closeReason string
	draining    bool
	inq         [][]byte
	processing  bool
	pipe        *pubPipe // publishes in flight (publish.go)
	subs        map[string]*sub
	flood       floodGuard

	awaitingPong bool
	pingDue      time.Time
	pongDue      time.Time
	pingTimer    *time.Timer
	expiryTimer  *time.Timer
	closeTimer   *time.Timer
}

func newConn(s *Server, nc net.Conn, early []byte, id unhidra.Identity, ip netip.Addr) *conn {
	c := &conn{srv: s, nc: nc, rd: nc, principal: id.Principal, id: newSessionID(), ip: ip, ident: id}
	if len(early) > 0 {
		c.rd = io.MultiReader(bytes.NewReader(early), nc)
	}
	c.cond.L = &c.mu
	// Until start has written the handshake response, frames queued by
	// others (a revocation, a drain) wait for it.
	c.flushing = true
	c.pc = &presence.Conn{
		SessionID:     c.id,
		Identity:      id,
		RemoteIP:      ip.String(),
		Transport:     presence.TransportWS,
		ConnectedAt:   time.Now().UTC(),
		Subscriptions: c.channels,
	}
	return c
}

// start writes the handshake response and welcome, registers presence and
// timers and starts the reader. It runs on the handshake's goroutine.
func (c *conn) start(resp []byte) {
	s := c.srv
	cfg := &s.cfg
	welcome, _ := json.Marshal(wire.Welcome{
		Type:              wire.TypeWelcome,
		SessionID:         c.id,
		Principal:         c.principal,
		ServerTime:        time.Now().UTC(),
		PingInterval:      seconds(cfg.PingInterval),
		HeartbeatInterval: seconds(cfg.HeartbeatInterval),
	})
	var hdr [10]byte
	hn := putHeader(&hdr, opText, len(welcome))
	buf := make([]byte, 0, len(resp)+hn+len(welcome))
	buf = append(append(append(buf, resp...), hdr[:hn]...), welcome...)
	_ = c.nc.SetWriteDeadline(time.Now().Add(cfg.WriteTimeout))
	_, err := c.nc.Write(buf)
	if err != nil {
		c.mu.Lock()
		c.dead = true
		c.mu.Unlock()
		_ = c.nc.Close()
		s.unregister(c)
		return
	}
	c.pc.MsgsOut.Add(1)
	s.met.framesOut.Inc()
	s.met.handshakes.Inc()
	s.met.connections.WithLabelValues(c.principal.Kind).Inc()
	// Never the credential: only who it proved, and where from.
	s.log.Info("websocket client connected", c.logAttrs()...)

	if s.deps.Presence != nil {
		ctx, cancel := context.WithTimeout(s.base, callTimeout)
		if err := s.deps.Presence.Connect(ctx, c.pc); err != nil {
			s.log.Warn("presence connect failed", "conn", c.id, "err", err)
		}
		cancel()
	}
	if c.principal.IsDevice() {
		t := broker.DeviceCommandTopic(c.principal.ID)
		sb := &sub{topic: t, active: true}
		c.mu.Lock()
		c.subs = map[string]*sub{t: sb}
		c.mu.Unlock()
		if err := s.hub.add(t, c, sb); err != nil {
			s.log.Error("device command subscription failed", "conn", c.id, "err", err)
		}
		if ds := s.deviceSessions(); ds != nil {
			// Tracked like the reader, so a drain waits for it and nothing
			// reaches the services after the gateway stopped.
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				c.deviceOnline(ds)
			}()
		}
	}

	now := time.Now()
	c.mu.Lock()
	c.pingDue = now.Add(cfg.PingInterval)
	c.pingTimer = time.AfterFunc(cfg.PingInterval, c.onPingTimer)
	if until := s.validUntil(c.ident); !until.IsZero() {
		c.expiryTimer = time.AfterFunc(until.Sub(cfg.Now()), c.onExpiry)
	}
	c.flushing = false
	if len(c.out) > 0 || c.dead {
		c.kickLocked()
	}
	c.mu.Unlock()

	s.wg.Add(1)
	go c.readLoop()
}

// logAttrs identify the connection in the connect and disconnect lines:
// principal kind and id (client-chosen, so through redact.Name), the
// connection's session id (the welcome's), the client IP and the socket's
// peer address.
func (c *conn) logAttrs() []any {
	return []any{
		"kind", c.principal.Kind,
		"id", redact.Name(c.principal.ID),
		"session", c.id,
		"remote", c.ip.String(),
		"peer", c.nc.RemoteAddr().String(),
	}
}

func seconds(d time.Duration) int {
	if d < time.Second {
		return 1
	}
	return int(d / time.Second)
}

// channels lists the chat channels c is subscribed to (for admin views).
func (c *conn) channels() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.subs))
	for _, s := range c.subs {
		if s.channel != "" && s.active {
			out = append(out, s.channel)
		}
	}
	sort.Strings(out)
	return out
}

func (c *conn) identity() unhidra.Identity {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ident
}

func (c *conn) sessionID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ident.SessionID
}

// ---- timers ----

func (c *conn) onExpiry() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.srv.expired(c.ident) {
		return // refreshed meanwhile
	}
	c.closeLocked(CloseTokenExpired, "token expired", "token_expired", false)
}

// onPingTimer sends a ping when one is due and closes the connection when
// the previous one went unanswered past PongTimeout.
func (c *conn) onPingTimer() {
	c.mu.Lock()
	if c.dead || c.closeSent {
		c.mu.Unlock()
		return
	}
	now := time.Now()
	if c.awaitingPong {
		if !now.Before(c.pongDue) {
			c.mu.Unlock()
			c.abort("dead_peer")
			return
		}
		c.pingTimer.Reset(c.pongDue.Sub(now))
		c.mu.Unlock()
		return
	}
	if now.Before(c.pingDue) {
		c.pingTimer.Reset(c.pingDue.Sub(now))
		c.mu.Unlock()
		return
	}
	c.awaitingPong = true
	c.pongDue = now.Add(c.srv.cfg.PongTimeout)
	c.enqueueLocked(opPing, nil, false)
	c.pingTimer.Reset(c.srv.cfg.PongTimeout)
	c.mu.Unlock()
}
