package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/netip"
	"sort"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/broker"
	"github.com/unhidra/unhidra/internal/presence"
	"github.com/unhidra/unhidra/internal/redact"
	"github.com/unhidra/unhidra/wire"
)

// maxInbound is how many decoded-but-unhandled frames a connection may have
// queued before its reader stops reading (TCP backpressure).
const maxInbound = 16

// callTimeout bounds one service call made for a frame.
const callTimeout = 30 * time.Second

// outFrame is one queued server frame: its header and a payload that may be
// shared with other connections (fan-out) and is never modified.
type outFrame struct {
	hdr     [10]byte
	hn      uint8
	isClose bool
	data    bool
	payload []byte
}

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
	hdr       [14]byte

	mu          sync.Mutex
	cond        sync.Cond // inbound queue space, processor idle
	ident       unhidra.Identity
	out         []outFrame
	outBytes    int
	flushing    bool
	closeSent   bool // our close frame is queued; nothing may follow it
	peerClosed  bool // the peer's close frame arrived first
	dead        bool // the TCP connection is closed
	closeReason string
	draining    bool
	inq         [][]byte
	processing  bool
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
	s.events.Accepted(c.ip, c.ident, c.id)
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

// ---- reading ----

// readLoop is the connection's one permanent goroutine. It reads frames
// straight from the socket through a 14-byte header buffer (no bufio),
// answers control frames, enforces the size, UTF-8 and rate rules and hands
// complete text messages to the processor. Anything that can grow a stack
// (JSON, service calls) runs elsewhere, so this goroutine stays small.
func (c *conn) readLoop() {
	defer c.srv.wg.Done()
	defer c.finish()
	var msg []byte
	inMessage := false
	for {
		h, err := readHeader(c.rd, c.hdr[:])
		if err != nil {
			if errors.Is(err, errProtocol) {
				c.fail(CloseProtocolError, "protocol error", "protocol_error")
			} else {
				c.abort("read")
			}
			return
		}
		closing := c.isClosing()
		if !closing {
			switch h.op {
			case opBinary:
				c.fail(CloseUnsupportedData, "binary frames are not accepted", "binary")
				return
			case opText:
				if inMessage {
					c.fail(CloseProtocolError, "protocol error", "protocol_error")
					return
				}
				if h.length > wire.MaxFrameBytes {
					c.fail(CloseTooLarge, "message too large", "too_large")
					return
				}
			case opContinuation:
				if !inMessage {
					c.fail(CloseProtocolError, "protocol error", "protocol_error")
					return
				}
				if int64(len(msg))+h.length > wire.MaxFrameBytes {
					c.fail(CloseTooLarge, "message too large", "too_large")
					return
				}
			}
		}
		if closing && h.op < opClose {
			// Closing: data is discarded, only the peer's close matters.
			if _, err := io.CopyN(io.Discard, c.rd, h.length); err != nil {
				c.abort("read")
				return
			}
			continue
		}
		var p []byte
		if h.length > 0 {
			p = make([]byte, h.length)
			if _, err := io.ReadFull(c.rd, p); err != nil {
				c.abort("read")
				return
			}
			maskBytes(h.mask, 0, p)
		}
		switch h.op {
		case opPing:
			c.mu.Lock()
			c.enqueueLocked(opPong, p, false)
			c.mu.Unlock()
		case opPong:
			c.gotPong()
		case opClose:
			if !c.gotClose(p) {
				return
			}
		case opText:
			if !h.fin {
				msg, inMessage = p, true
				continue
			}
			if !c.dispatch(p) {
				return
			}
		case opContinuation:
			msg = append(msg, p...)
			if h.fin {
				m := msg
				msg, inMessage = nil, false
				if !c.dispatch(m) {
					return
				}
			}
		}
	}
}

func (c *conn) isClosing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeSent || c.dead
}

// fail closes the connection for a violation: it queues the close frame and
// then drains the socket raw until the peer hangs up or CloseTimeout passes,
// so the peer reads our close code rather than a reset.
func (c *conn) fail(code int, reason, why string) {
	c.closeWith(code, reason, why)
	_ = c.nc.SetReadDeadline(time.Now().Add(c.srv.cfg.CloseTimeout))
	var buf [256]byte
	for {
		if _, err := c.rd.Read(buf[:]); err != nil {
			return
		}
	}
}

// gotClose handles the peer's close frame; it reports whether to keep
// reading (until the echo is written and the socket closed).
func (c *conn) gotClose(p []byte) bool {
	code, violation := parseClosePayload(p)
	c.mu.Lock()
	if c.closeSent {
		c.mu.Unlock()
		c.abort("closed")
		return false
	}
	c.mu.Unlock()
	if violation != 0 {
		c.fail(violation, "invalid close frame", "protocol_error")
		return false
	}
	c.mu.Lock()
	c.peerClosed = true
	echo := code
	if code == CloseNoStatus {
		echo = CloseNormal
	}
	c.closeLocked(echo, "", "client", false)
	c.mu.Unlock()
	return true
}

func (c *conn) gotPong() {
	c.mu.Lock()
	c.awaitingPong = false
	c.pingDue = time.Now().Add(c.srv.cfg.PingInterval)
	c.mu.Unlock()
}

// dispatch validates a complete text message and queues it for the
// processor, applying the inbound rate limit. It reports whether to keep
// reading.
func (c *conn) dispatch(b []byte) bool {
	s := c.srv
	if !utf8.Valid(b) {
		c.fail(CloseInvalidPayload, "invalid UTF-8", "invalid_utf8")
		return false
	}
	s.met.framesIn.Inc()
	c.pc.MsgsIn.Add(1)
	c.mu.Lock()
	if c.closeSent || c.dead {
		c.mu.Unlock()
		return true
	}
	if c.draining {
		c.mu.Unlock()
		c.refuseFrame(b, unhidra.EUNAVAILABLE, "server is shutting down")
		return true
	}
	switch c.flood.admit(s.cfg.Now(), s.cfg.InboundRate, float64(s.cfg.InboundBurst), s.cfg.FloodCloseAfter) {
	case admitRefuse:
		c.mu.Unlock()
		s.met.rateLimited.Inc()
		c.refuseFrame(b, unhidra.ERATELIMITED, "too many frames; slow down")
		return true
	case admitClose:
		s.met.rateLimited.Inc()
		c.closeLocked(ClosePolicyViolation, "rate limit exceeded", "flood", false)
		c.mu.Unlock()
		return true
	}
	c.inq = append(c.inq, b)
	if !c.processing {
		c.processing = true
		s.wg.Add(1)
		go c.process()
	}
	for len(c.inq) >= maxInbound && !c.dead && !c.closeSent {
		c.cond.Wait()
	}
	c.mu.Unlock()
	return true
}

// refuseFrame answers a frame that will not be handled with an error frame
// carrying its id.
func (c *conn) refuseFrame(b []byte, code, message string) {
	f, _ := wire.DecodeClientFrame(b)
	c.sendError(f.ID, code, message)
}

// ---- handling ----

// process handles queued frames in order and exits when the queue is empty.
func (c *conn) process() {
	defer c.srv.wg.Done()
	for {
		c.mu.Lock()
		if len(c.inq) == 0 || c.dead {
			c.inq = nil
			c.processing = false
			if c.draining {
				c.closeLocked(CloseGoingAway, "server shutting down", "going_away", false)
			}
			c.cond.Broadcast()
			c.mu.Unlock()
			return
		}
		b := c.inq[0]
		c.inq[0] = nil
		c.inq = c.inq[1:]
		draining := c.draining
		c.cond.Broadcast()
		c.mu.Unlock()
		if draining {
			c.refuseFrame(b, unhidra.EUNAVAILABLE, "server is shutting down")
			continue
		}
		c.handle(b)
	}
}

// handle decodes one client frame and makes the one service call it maps to.
func (c *conn) handle(b []byte) {
	s := c.srv
	f, err := wire.DecodeClientFrame(b)
	if err != nil {
		var fe *wire.FrameError
		if errors.As(err, &fe) {
			c.sendError(f.ID, fe.Code, fe.Message)
		} else {
			c.sendError(f.ID, unhidra.EINVALID, "invalid frame")
		}
		return
	}
	ctx, cancel := context.WithTimeout(s.base, callTimeout)
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
	c.enqueueLocked(opText, ev.payload, true)
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

// refresh replaces the connection's access token in band (SPEC §5.2).
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

// ---- writing ----

func (c *conn) send(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		c.srv.log.Error("encode frame", "conn", c.id, "err", err)
		return
	}
	c.mu.Lock()
	c.enqueueLocked(opText, b, true)
	c.mu.Unlock()
}

func (c *conn) sendErr(id json.RawMessage, err error) {
	code := unhidra.ErrorCode(err)
	if code == unhidra.EINTERNAL {
		c.srv.log.Error("frame failed", "conn", c.id, "err", err)
	}
	c.sendError(id, code, unhidra.ErrorMessage(err))
}

func (c *conn) sendError(id json.RawMessage, code, message string) {
	c.send(wire.ErrorFrame{Type: wire.TypeError, ID: id, Code: code, Message: message})
}

// enqueueLocked queues a frame and makes sure a flusher runs. Past
// MaxQueueBytes the connection is a slow consumer: its queue is dropped and
// it is closed with 4008.
func (c *conn) enqueueLocked(op byte, payload []byte, data bool) {
	if c.closeSent || c.dead {
		return
	}
	var f outFrame
	f.hn = uint8(putHeader(&f.hdr, op, len(payload)))
	f.payload = payload
	f.data = data
	n := int(f.hn) + len(payload)
	if c.outBytes+n > c.srv.cfg.MaxQueueBytes {
		c.slowLocked()
		return
	}
	c.out = append(c.out, f)
	c.outBytes += n
	c.srv.met.queued.Add(int64(n))
	c.kickLocked()
}

func (c *conn) slowLocked() {
	if c.closeSent || c.dead {
		return
	}
	c.srv.met.slowConsumer.Inc()
	c.closeLocked(CloseSlowConsumer, "slow consumer", "slow_consumer", true)
}

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

func (c *conn) dropQueueLocked() {
	n := 0
	for i := range c.out {
		n += int(c.out[i].hn) + len(c.out[i].payload)
	}
	c.out = nil
	c.outBytes -= n
	c.srv.met.queued.Add(int64(-n))
}

func (c *conn) kickLocked() {
	if c.flushing || c.dead || len(c.out) == 0 {
		return
	}
	c.flushing = true
	c.srv.wg.Add(1)
	go c.flush()
}

// flush writes queued frames in batches, one writev each, and exits when the
// queue is empty: an idle connection has no writer goroutine.
func (c *conn) flush() {
	defer c.srv.wg.Done()
	s := c.srv
	// spare and bufs are reused while this flusher lives, so a busy
	// connection does not reallocate its queue for every batch; both are
	// dropped when the flusher exits, so an idle connection holds neither.
	var spare []outFrame
	var bufs net.Buffers
	for {
		c.mu.Lock()
		if c.dead || len(c.out) == 0 {
			c.flushing = false
			c.out = nil
			c.mu.Unlock()
			return
		}
		batch := c.out
		c.out = spare
		c.mu.Unlock()

		bufs = bufs[:0]
		n, data, wroteClose := 0, 0, false
		for i := range batch {
			f := &batch[i]
			bufs = append(bufs, f.hdr[:f.hn])
			if len(f.payload) > 0 {
				bufs = append(bufs, f.payload)
			}
			n += int(f.hn) + len(f.payload)
			if f.data {
				data++
			}
			if f.isClose {
				wroteClose = true
			}
		}
		_ = c.nc.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
		w := bufs // WriteTo consumes its receiver
		_, err := w.WriteTo(c.nc)
		clear(bufs)
		clear(batch)
		spare = batch[:0]
		c.mu.Lock()
		c.outBytes -= n
		c.mu.Unlock()
		s.met.queued.Add(int64(-n))
		if err != nil {
			c.abort("write")
			continue
		}
		s.met.framesOut.Add(float64(len(batch)))
		c.pc.MsgsOut.Add(int64(data))
		if wroteClose {
			c.mu.Lock()
			peer := c.peerClosed
			if !peer && !c.dead {
				c.closeTimer = time.AfterFunc(s.cfg.CloseTimeout, func() { c.abort("close_timeout") })
			}
			c.mu.Unlock()
			if peer {
				c.abort("closed")
			}
		}
	}
}

// ---- closing ----

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
	s.events.Closed(ident, c.id, why)
	s.log.Info("websocket client disconnected", append(c.logAttrs(),
		"reason", why, "duration", time.Since(c.pc.ConnectedAt).Round(time.Millisecond).String())...)
	s.unregister(c) // last: a drain waits for this
}

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
