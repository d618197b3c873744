package mqttbridge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/audit"
	"github.com/unhidra/unhidra/internal/device"
	"github.com/unhidra/unhidra/internal/presence"
	"github.com/unhidra/unhidra/internal/redact"
	"github.com/unhidra/unhidra/wire"
)

// hook plugs the bridge into mochi.
type hook struct {
	mqtt.HookBase
	s *Server
}

func (h *hook) ID() string { return "unhidra" }

func (h *hook) Provides(b byte) bool {
	return bytes.Contains([]byte{
		mqtt.OnConnect,
		mqtt.OnConnectAuthenticate,
		mqtt.OnACLCheck,
		mqtt.OnSessionEstablished,
		mqtt.OnDisconnect,
		mqtt.OnPublish,
		mqtt.OnSubscribed,
		mqtt.OnUnsubscribed,
		mqtt.OnPacketRead,
		mqtt.OnPacketSent,
		mqtt.OnPacketEncode,
	}, []byte{b})
}

// MaxCredentialBytes bounds the password (token or key) looked at.
const MaxCredentialBytes = 8 << 10

// OnConnect applies the CONNECT rate limit per client IP (limits.go) and
// the keep-alive policy: a client that asks for no
// keep-alive (or, in v5, for more than MaxKeepalive) gets MaxKeepalive, so
// no connection can sit idle forever.
func (h *hook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	s := h.s
	if !s.allowConnect(cl) {
		s.m.limited.WithLabelValues("connect_rate").Inc()
		id := s.auditRefused(cl, wire.Principal{}, audit.RefusedLimit, "connect_rate")
		s.log.Info("mqtt connection refused: connect rate per IP exceeded", "remote", cl.Net.Remote, "conn", id, "limit_per_minute", s.cfg.RateLimitIPPerMinute)
		s.refuseLimited(cl, pk.ProtocolVersion == 5, packets.ErrConnectionRateExceeded)
		return packets.ErrConnectionRateExceeded
	}
	limit := h.s.cfg.MaxKeepalive
	if cl.State.Keepalive == 0 || (pk.ProtocolVersion == 5 && cl.State.Keepalive > limit) {
		cl.State.Keepalive = limit
		cl.State.ServerKeepalive = true
	}
	return nil
}

// OnConnectAuthenticate checks username and password (docs/protocol.md#mqtt-auth): a device
// id with its API key, or a username with an access token.
func (h *hook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	s := h.s
	who, ok := s.authenticate(string(pk.Connect.Username), pk.Connect.Password)
	if !ok {
		s.m.authFailures.Inc()
		// The username may be a key or token typed in the wrong field, or a
		// password: only its short hash is logged (as for REST logins).
		id := s.auditRefused(cl, wire.Principal{}, audit.RefusedAuth, "credentials")
		s.log.Info("mqtt connection refused: bad credentials", "remote", cl.Net.Remote, "conn", id, "username", redact.Hash(string(pk.Connect.Username)))
		if pk.ProtocolVersion < 5 {
			// mochi would answer 3.1.1 clients 0x05 (not authorized); the
			// reference (docs/protocol.md#mqtt-reason-codes) says 0x04 (bad user name or password).
			refuse(cl, 0x04)
		}
		return false
	}
	// Client ids live in a namespace per principal, so nobody can take over
	// (or inherit the subscriptions of) another principal's session.
	cl.ID = clientPrefix(who) + cl.ID
	ss := &session{cl: cl, who: who, v5: pk.ProtocolVersion == 5, readable: map[string]cached{}, started: s.now()}
	ss.acks.room = make(chan struct{}, MaxQueuedAcks)
	if pk.Connect.WillFlag {
		if err := s.takeWill(cl, pk, ss); err != nil {
			id := s.auditRefused(cl, who.Principal, audit.RefusedAuth, "will")
			s.log.Info("mqtt connection refused: will not accepted", "remote", cl.Net.Remote, "conn", id, "principal", who.Principal.String(), "code", unhidra.ErrorCode(err), "err", err)
			s.refuseWill(cl, pk.ProtocolVersion == 5, err)
			return false
		}
	}
	if !s.reserveSession(cl, ss) {
		s.m.limited.WithLabelValues("connections_per_user").Inc()
		id := s.auditRefused(cl, who.Principal, audit.RefusedLimit, "connections_per_user")
		s.log.Info("mqtt connection refused: too many connections", "remote", cl.Net.Remote, "conn", id, "principal", who.Principal.String(), "limit", s.cfg.MaxConnsPerUser)
		s.refuseLimited(cl, pk.ProtocolVersion == 5, packets.ErrQuotaExceeded)
		return false
	}
	// A new connection with the client id cancels its delayed Will.
	s.cancelWill(cl.ID)
	return true
}

// auditRefused records a refused CONNECT: who is the zero principal when
// the client did not authenticate, cause names the rule (connect_rate,
// credentials, will, connections_per_user). The event's request id is the
// connection id the refused connection would have had; it returns it for
// the log line.
func (s *Server) auditRefused(cl *mqtt.Client, who wire.Principal, reason, cause string) string {
	ip := cl.Net.Remote
	if host, _, err := net.SplitHostPort(ip); err == nil {
		ip = host
	}
	id := newConnID()
	ctx := audit.WithSource(context.Background(), audit.Source{Transport: audit.TransportMQTT, RequestID: id, IP: ip})
	s.deps.Audit.Audit(ctx, audit.Event{
		Action: audit.ActionConnectionRefused, Actor: who, IP: ip, Outcome: audit.Failure, Reason: reason,
		Details: map[string]string{"transport": "mqtt", "cause": cause},
	})
	return id
}

// refuse answers a 3.1.1 CONNECT with return code rc and closes the
// connection; mochi's own CONNACK then finds it closed and is not sent.
func refuse(cl *mqtt.Client, rc byte) {
	_ = cl.WritePacket(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, ReasonCode: rc})
	cl.Stop(packets.ErrBadUsernameOrPassword)
}

func clientPrefix(who unhidra.Identity) string {
	k := "u"
	if who.IsDevice() {
		k = "d"
	}
	return k + ":" + who.Principal.ID + "/"
}

func (s *Server) authenticate(username string, password []byte) (unhidra.Identity, bool) {
	if username == "" || len(password) == 0 || len(password) > MaxCredentialBytes {
		return unhidra.Identity{}, false
	}
	ctx, cancel := s.opCtx()
	defer cancel()
	pass := string(password)
	if strings.HasPrefix(pass, device.KeyPrefix) {
		who, err := s.deps.DeviceKeys.AuthenticateDeviceKey(ctx, pass)
		if err != nil || !who.IsDevice() || !device.SameID(who.Principal.ID, username) {
			return unhidra.Identity{}, false
		}
		return who, true
	}
	if s.deps.Tokens == nil {
		return unhidra.Identity{}, false
	}
	who, err := s.deps.Tokens.AuthenticateToken(ctx, pass)
	if err != nil || who.IsDevice() || !strings.EqualFold(who.Principal.ID, username) {
		return unhidra.Identity{}, false
	}
	return who, true
}

// OnSessionEstablished runs once the CONNACK is sent: the connection is
// live for presence and the fleet, commands can flow.
func (h *hook) OnSessionEstablished(cl *mqtt.Client, pk packets.Packet) {
	s := h.s
	ss := s.session(cl)
	if ss == nil {
		return
	}
	ctx, cancel := s.opCtx()
	defer cancel()
	remote, _, err := net.SplitHostPort(cl.Net.Remote)
	if err != nil {
		remote = cl.Net.Remote
	}
	ss.mu.Lock()
	ss.established = true
	ss.conn = &presence.Conn{
		SessionID:   newConnID(),
		Identity:    ss.who,
		RemoteIP:    remote,
		Transport:   presence.TransportMQTT,
		ConnectedAt: s.now(),
		Subscriptions: func() []string {
			var out []string
			for f := range cl.State.Subscriptions.GetAll() {
				out = append(out, f)
			}
			return out
		},
	}
	if !ss.who.ExpiresAt.IsZero() {
		ss.expiry = time.AfterFunc(ss.who.ExpiresAt.Sub(s.now()), func() {
			s.enqueue(func() {
				s.log.Info("mqtt session ended: access token expired", "principal", ss.who.Principal.String())
				s.disconnect(cl, packets.ErrNotAuthorized)
			})
		})
	}
	conn := ss.conn
	ss.mu.Unlock()
	if s.deps.Presence != nil {
		if err := s.deps.Presence.Connect(ctx, conn); err != nil {
			s.log.Warn("mqtt presence connect", "err", err)
		}
	}
	if ss.who.IsDevice() {
		id := ss.who.Principal.ID
		if err := s.deps.Fleet.Connected(device.WithTransport(ctx, "mqtt"), id); err != nil {
			s.log.Warn("mqtt device connected", "device", id, "err", err)
		}
		s.acquireDeviceCommands(id)
		s.enqueue(func() { s.deliverPending(id) })
	}
	s.log.Info("mqtt client connected", "kind", ss.who.Principal.Kind, "id", redact.Name(ss.who.Principal.ID), "session", conn.SessionID, "remote", remote, "v", pk.ProtocolVersion)
}

// OnDisconnect ends the session.
func (h *hook) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	s := h.s
	s.sessMu.Lock()
	ss := s.sessions[cl]
	if ss != nil {
		s.dropSessionLocked(cl, ss)
	}
	s.sessMu.Unlock()
	if ss == nil {
		return
	}
	ss.mu.Lock()
	est := ss.established
	if ss.expiry != nil {
		ss.expiry.Stop()
	}
	conn := ss.conn
	ss.mu.Unlock()
	if !est {
		return
	}
	reason := "client disconnect"
	if err != nil {
		reason = redact.Scrub(err.Error())
	}
	s.log.Info("mqtt client disconnected", "kind", ss.who.Principal.Kind, "id", redact.Name(ss.who.Principal.ID), "session", conn.SessionID,
		"reason", reason, "connected_s", int(s.now().Sub(conn.ConnectedAt)/time.Second))
	// Before the device goes offline, as a publish just before the drop
	// would be.
	s.willDue(cl, ss, err != nil)
	ctx, cancel := s.opCtx()
	defer cancel()
	if s.deps.Presence != nil {
		s.deps.Presence.Disconnect(ctx, conn)
	}
	if ss.who.IsDevice() {
		id := ss.who.Principal.ID
		s.releaseDeviceCommands(id)
		if err := s.deps.Fleet.Disconnected(device.WithTransport(ctx, "mqtt"), id); err != nil {
			s.log.Warn("mqtt device disconnected", "device", id, "err", err)
		}
	}
}

// OnACLCheck answers for subscriptions (filter), publishes and deliveries
// (topic name).
func (h *hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	s := h.s
	ss := s.session(cl)
	if ss == nil {
		return false
	}
	ok := allowed(aclRequest{who: ss.who, topic: topic, write: write, readsDevice: func(d string) bool { return s.readsDevice(ss, d) }, canRead: func(c string) bool { return s.canRead(ss, c) }})
	if !ok {
		s.m.aclDenials.Inc()
		if write {
			// mochi refuses the publish on the read loop: after the
			// acknowledgements queued before it.
			ss.acks.drain()
		}
	}
	return ok
}

// readsDevice answers whether the session may read device deviceID's
// topics: the rule of its device channel device:<id> in the chat service
// (its owner, a member, and admins), the same rule, asked the same way, as
// for a WebSocket or MQTT subscriber of device:<id>, so a device's live data
// reaches every transport under one rule.
func (s *Server) readsDevice(ss *session, deviceID string) bool {
	return device.CheckID(deviceID) == nil && s.canRead(ss, wire.DeviceChannel(deviceID))
}

func (s *Server) canRead(ss *session, channel string) bool {
	now := s.now()
	ss.mu.Lock()
	c, ok := ss.readable[channel]
	ss.mu.Unlock()
	if ok && now.Sub(c.at) < PermissionTTL {
		return c.ok
	}
	if s.deps.Chat == nil {
		return false
	}
	ctx, cancel := s.opCtx()
	defer cancel()
	_, err := s.deps.Chat.Subscribe(ctx, ss.who, channel, nil)
	switch code := unhidra.ErrorCode(err); code {
	case "", unhidra.EFORBIDDEN, unhidra.ENOTFOUND:
		s.remember(ss, ss.readable, channel, err == nil, now)
	}
	return err == nil
}

// remember caches a permission answer, within a bound per session.
func (s *Server) remember(ss *session, m map[string]cached, key string, ok bool, now time.Time) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if _, exists := m[key]; exists || len(m) < maxCachedPerSession {
		m[key] = cached{ok: ok, at: now}
	}
}

const maxCachedPerSession = 1024

// OnPublish hands a client's PUBLISH to its service. A QoS 1 telemetry
// point or channel message is queued for the group commit and acknowledged
// by the session's acker after its commit (acks.go); anything else is
// answered here, synchronously, before mochi sends the PUBACK, once the
// acknowledgements queued before it are sent.
func (h *hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil
	}
	s := h.s
	ss := s.session(cl)
	if ss == nil {
		return pk, packets.ErrRejectPacket
	}
	op, err := parsePublish(ss.who, pk.TopicName, pk.Payload)
	if err == nil && pk.FixedHeader.Qos == 1 {
		ctx, cancel := s.opCtx()
		wait, queued, qerr := s.queuePublish(ctx, ss, op)
		if queued && qerr == nil {
			s.pushAck(ss, &queuedAck{pk: pk, op: op, wait: wait, ctx: ctx, cancel: cancel})
			return pk, packets.ErrRejectPacket // answered by the acker
		}
		cancel()
		if queued {
			err = qerr
		}
	}
	ss.acks.drain()
	if err == nil {
		ctx, cancel := s.opCtx()
		err = s.applyPublish(ctx, ss.who, op, pk.FixedHeader.Qos)
		cancel()
	}
	if err != nil {
		return pk, s.rejectPublish(cl, pk, err)
	}
	if !op.forward() {
		// Subscribers get the stored Message through the bridge, not the
		// raw body; nothing is retained.
		return pk, packets.CodeSuccessIgnore
	}
	pk.FixedHeader.Retain = pk.FixedHeader.Retain && op.retainable()
	return pk, nil
}

// decodeChannelPublish reads {text}|{data}|{e2ee} with optional
// client_msg_id and thread_id, refusing invalid Unicode and nesting past
// wire.MaxDepth.
func decodeChannelPublish(b []byte) (wire.Publish, error) {
	var in wire.Publish
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return in, unhidra.Errorf(unhidra.EINVALID, "payload must be a JSON object {text}|{data}|{e2ee}")
	}
	// Before decoding, which would turn invalid UTF-8 into U+FFFD and
	// recurse without bound: the same rule as every transport.
	var je *wire.JSONError
	if err := wire.CheckJSONBody(b); errors.As(err, &je) && je.Reason != wire.JSONSyntax {
		return in, unhidra.Wrap(unhidra.EINVALID, "payload: "+err.Error(), err)
	}
	if err := json.Unmarshal(b, &in); err != nil {
		return in, unhidra.Errorf(unhidra.EINVALID, "payload must be a JSON object {text}|{data}|{e2ee}")
	}
	return in, nil
}

// rejectPublish refuses a publish the service did not accept: v5 QoS > 0
// gets a PUBACK with a failure reason; 3.1.1 QoS > 0 is disconnected without
// a PUBACK (it has no failure PUBACK), so the client sends it again; QoS 0
// is dropped.
func (s *Server) rejectPublish(cl *mqtt.Client, pk packets.Packet, err error) error {
	code := unhidra.ErrorCode(err)
	s.m.rejected.WithLabelValues(code).Inc()
	s.log.Debug("mqtt publish refused", "client", cl.ID, "topic", pk.TopicName, "code", code, "err", err)
	if pk.FixedHeader.Qos == 0 {
		return packets.ErrRejectPacket
	}
	if cl.Properties.ProtocolVersion == 5 {
		return reasonFor(code)
	}
	cl.Stop(reasonFor(code))
	return packets.ErrRejectPacket
}

// reasonFor maps an error code to an MQTT v5 PUBACK reason code.
func reasonFor(code string) packets.Code {
	switch code {
	case unhidra.EFORBIDDEN, unhidra.EUNAUTHORIZED:
		return packets.ErrNotAuthorized
	case unhidra.EINVALID:
		return packets.ErrPayloadFormatInvalid
	case unhidra.ETOOLARGE:
		return packets.ErrPacketTooLarge
	case unhidra.ERATELIMITED:
		return packets.ErrQuotaExceeded
	case unhidra.ENOTFOUND, unhidra.ECONFLICT:
		return packets.ErrImplementationSpecificError
	default:
		return packets.ErrUnspecifiedError
	}
}

// OnSubscribed wires granted channel subscriptions to the broker and
// offers pending commands to a device that subscribed to its commands.
func (h *hook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	s := h.s
	ss := s.session(cl)
	if ss == nil {
		return
	}
	for i, f := range pk.Filters {
		if i >= len(codes) || codes[i] >= 0x80 {
			continue
		}
		t := parseTopic(f.Filter)
		switch {
		case t.kind == topicChannel && t.literal:
			s.acquireChannel(t.id, channelSubscriber(cl.ID, t.sub))
		case ss.who.IsDevice() && t.kind == topicDevice:
			id := ss.who.Principal.ID
			s.enqueue(func() { s.deliverPending(id) })
		}
	}
}

// OnUnsubscribed releases channel subscriptions.
func (h *hook) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	if cl.Net.Inline {
		return
	}
	for _, f := range pk.Filters {
		if t := parseTopic(f.Filter); t.kind == topicChannel && t.literal {
			h.s.releaseChannel(t.id, channelSubscriber(cl.ID, t.sub))
		}
	}
}

func (h *hook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	h.s.m.packetsIn.Inc()
	return pk, nil
}

func (h *hook) OnPacketSent(cl *mqtt.Client, pk packets.Packet, b []byte) {
	h.s.m.packetsOut.Inc()
}

// OnPacketEncode keeps a 3.1.1 CONNACK within 3.1.1's return codes (0–5):
// the broker answers some refusals with MQTT 5 reason codes it has no 3.1.1
// mapping for (a protocol violation, "server busy", "unspecified error").
func (h *hook) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type == packets.Connack && pk.ReasonCode > 0x05 && cl.Properties.ProtocolVersion < 5 {
		pk.ReasonCode = v3ConnackCode(pk.ReasonCode, cl.Properties.Clean)
	}
	return pk
}

// v3ConnackCode maps an MQTT 5 CONNACK reason code to a 3.1.1 return code.
func v3ConnackCode(code byte, clean bool) byte {
	switch code {
	case packets.ErrUnsupportedProtocolVersion.Code:
		return 0x01 // unacceptable protocol version
	case packets.ErrClientIdentifierNotValid.Code:
		return 0x02 // identifier rejected
	case packets.ErrUnspecifiedError.Code:
		if !clean {
			// The broker's only "unspecified" CONNACK to 3.1.1 is a
			// persistent session without a client id [MQTT-3.1.3-8].
			return 0x02
		}
	case packets.ErrBadUsernameOrPassword.Code, packets.ErrMalformedUsername.Code, packets.ErrMalformedPassword.Code:
		return 0x04 // bad user name or password
	case packets.ErrNotAuthorized.Code, packets.ErrBanned.Code:
		return 0x05 // not authorized
	}
	return 0x03 // server unavailable
}
