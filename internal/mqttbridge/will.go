package mqttbridge

import (
	"strings"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/unhidra/unhidra"
)

// Wills (Last Will and Testament).
//
// The embedded broker would publish a Will by itself, raw, to every
// subscriber of its topic, without the publish hook: a non-member could
// drop a forged message into a private channel, or a device a non-JSON
// status. So the bridge owns Wills. At CONNECT a Will must be a publish the
// principal could make: its topic passes the ACL, its payload parses
// (parsePublish), and a channel Will needs read access to its channel;
// otherwise the CONNECT is refused (v5: CONNACK 0x87 not authorized, 0x99
// payload format invalid or 0x95 too large; 3.1.1: 0x05 not authorized).
// The broker's copy is then cleared. When the connection ends without a
// normal DISCONNECT (or with v5's "disconnect with Will message"), the
// Will goes through applyPublish like any publish, as of that moment
// (a member removed since then, a revoked device: dropped and logged): a
// channel Will becomes a stored message delivered from history, a device
// Will is delivered as sent (a status Will retained when asked).
//
// A v5 Will Delay Interval is honoured up to MaxWillDelay: a new
// connection with the same client id before then cancels the Will
// [MQTT-3.1.3-9]. Wills are not sent when the server itself shuts down.

// MaxWillDelay bounds a v5 Will Delay Interval.
const MaxWillDelay = time.Hour

// pendingWill is a session's Will, checked at CONNECT.
type pendingWill struct {
	topic   string
	payload []byte
	qos     byte
	retain  bool
	delay   time.Duration
	op      publishOp
}

// takeWill checks the Will of an accepted CONNECT and moves it from the
// broker to the session.
func (s *Server) takeWill(cl *mqtt.Client, pk packets.Packet, ss *session) error {
	c := pk.Connect
	if !allowed(aclRequest{who: ss.who, topic: c.WillTopic, write: true}) {
		return unhidra.Errorf(unhidra.EFORBIDDEN, "the Will's topic is not one this client may publish to")
	}
	op, err := parsePublish(ss.who, c.WillTopic, c.WillPayload)
	if err != nil {
		return err
	}
	if op.kind == opChannel && !s.canRead(ss, op.message.Channel) {
		return unhidra.Errorf(unhidra.EFORBIDDEN, "the Will's channel is not one this client belongs to")
	}
	delay := time.Duration(c.WillProperties.WillDelayInterval) * time.Second
	ss.will = &pendingWill{
		topic:   c.WillTopic,
		payload: append([]byte(nil), c.WillPayload...),
		qos:     c.WillQos,
		retain:  c.WillRetain && op.retainable(),
		delay:   min(delay, MaxWillDelay),
		op:      op,
	}
	cl.Properties.Will = mqtt.Will{}
	return nil
}

// refuseWill answers a CONNECT whose Will takeWill refused.
func (s *Server) refuseWill(cl *mqtt.Client, v5 bool, err error) {
	code := unhidra.ErrorCode(err)
	if code == unhidra.EFORBIDDEN {
		s.m.aclDenials.Inc()
	}
	if !v5 {
		refuse(cl, 0x05) // not authorized: 3.1.1 has nothing closer
		return
	}
	reason := packets.ErrNotAuthorized
	switch code {
	case unhidra.EINVALID:
		reason = packets.ErrPayloadFormatInvalid
	case unhidra.ETOOLARGE:
		reason = packets.ErrPacketTooLarge
	}
	_ = s.mq.SendConnack(cl, reason, false, nil)
	cl.Stop(reason)
}

// willDue is called when a session ends: abnormal says the connection
// ended without a normal DISCONNECT.
func (s *Server) willDue(cl *mqtt.Client, ss *session, abnormal bool) {
	w := ss.will
	if w == nil || !abnormal || s.closed.Load() {
		return
	}
	if w.delay <= 0 {
		s.sendWill(ss, w)
		return
	}
	id := cl.ID
	s.willMu.Lock()
	defer s.willMu.Unlock()
	if old := s.wills[id]; old != nil {
		old.Stop()
	}
	var t *time.Timer
	t = time.AfterFunc(w.delay, func() {
		s.willMu.Lock()
		due := s.wills[id] == t
		if due {
			delete(s.wills, id)
		}
		s.willMu.Unlock()
		if due {
			s.enqueue(func() { s.sendWill(ss, w) })
		}
	})
	s.wills[id] = t
}

// cancelWill drops the delayed Will of client id (a new connection took
// the client id over).
func (s *Server) cancelWill(id string) {
	s.willMu.Lock()
	defer s.willMu.Unlock()
	if t := s.wills[id]; t != nil {
		t.Stop()
		delete(s.wills, id)
	}
}

// stopWills drops every delayed Will (the server is shutting down).
func (s *Server) stopWills() {
	s.willMu.Lock()
	defer s.willMu.Unlock()
	for id, t := range s.wills {
		t.Stop()
		delete(s.wills, id)
	}
}

// sendWill publishes a Will through the publish path.
func (s *Server) sendWill(ss *session, w *pendingWill) {
	if s.closed.Load() {
		return
	}
	ctx, cancel := s.opCtx()
	defer cancel()
	if err := s.applyPublish(ctx, ss.who, w.op, 1); err != nil {
		code := unhidra.ErrorCode(err)
		s.m.rejected.WithLabelValues(code).Inc()
		s.log.Info("mqtt will refused", "principal", ss.who.Principal.String(), "topic", w.topic, "code", code)
		return
	}
	s.log.Debug("mqtt will sent", "principal", ss.who.Principal.String(), "topic", w.topic)
	if !w.op.forward() {
		return
	}
	if err := s.mq.Publish(w.topic, w.payload, w.retain, w.qos); err != nil {
		s.log.Warn("mqtt will publish", "principal", ss.who.Principal.String(), "topic", w.topic, "err", err)
	}
}

// PendingWills returns the number of delayed Wills waiting to be sent.
func (s *Server) PendingWills() int {
	s.willMu.Lock()
	defer s.willMu.Unlock()
	return len(s.wills)
}

// RetainedMessages returns the number of retained messages clients left in
// the broker (not its own $SYS topics): at most one per device, its status.
func (s *Server) RetainedMessages() int {
	n := 0
	for topic := range s.mq.Topics.Retained.GetAll() {
		if !strings.HasPrefix(topic, "$") {
			n++
		}
	}
	return n
}
