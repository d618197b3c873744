package mqttbridge

import (
	"context"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/unhidra/unhidra"
)

// Pipelined QoS 1 acknowledgements.
//
// mochi calls OnPublish on the connection's read loop and sends the PUBACK
// when it returns. Waiting there for the group commit would leave one
// publish of each connection in flight: a client that keeps ten QoS 1
// publishes in flight would get them committed one fsync at a time. So a
// QoS 1 telemetry point or channel message is only checked and queued for
// the group commit in OnPublish, which returns at once (telling mochi to do
// nothing more); the session's acker then waits for the commits in the
// order the publishes arrived and sends each PUBACK (or, when the service
// refused at commit time, the refusal) after its commit, so every publish
// still in flight on the connection joins the same commit.
//
// What stays true:
//   - a PUBACK is sent only once its message is committed and on disk;
//   - PUBACKs leave in the order of their PUBLISHes (MQTT 4.6): a publish
//     answered on the read loop (a refusal, a heartbeat, a status) first
//     waits for the acknowledgements queued before it (drain);
//   - a connection has at most MaxQueuedAcks publishes queued; the next one
//     waits on the read loop, which stops reading the socket
//     (backpressure, for 3.1.1 clients that have no Receive Maximum);
//   - a device topic's raw forward to MQTT subscribers happens after the
//     commit, in commit order.

// MaxQueuedAcks is how many QoS 1 publishes of one connection may wait for
// their commit at once: the Receive Maximum the broker announces.
const MaxQueuedAcks = 1024

// queuedAck is one QoS 1 publish waiting for its commit.
type queuedAck struct {
	pk     packets.Packet
	op     publishOp
	wait   func(ctx context.Context) error
	ctx    context.Context
	cancel context.CancelFunc
}

// acks is a session's queue of QoS 1 publishes waiting for their commit,
// and its acker: a goroutine that runs only while the queue is not empty.
// push and drain are called only from the connection's read loop.
type acks struct {
	mu      sync.Mutex
	q       []*queuedAck
	running bool
	kick    chan struct{} // wakes a lingering acker (buffered 1)
	room    chan struct{} // a token per queued publish, MaxQueuedAcks at most
	pending sync.WaitGroup
}

// ackerLinger is how long an acker with nothing to do waits for the next
// publish before it ends: a device publishing steadily keeps one goroutine
// instead of starting one per message; an idle connection has none.
const ackerLinger = 2 * time.Second

// push queues a publish whose service call is queued (wait gives its
// outcome) and makes sure the acker runs. It blocks while MaxQueuedAcks
// publishes of the connection are queued.
func (s *Server) pushAck(ss *session, a *queuedAck) {
	q := &ss.acks
	q.room <- struct{}{}
	q.pending.Add(1)
	q.mu.Lock()
	q.q = append(q.q, a)
	start := !q.running
	q.running = true
	if q.kick == nil {
		q.kick = make(chan struct{}, 1)
	}
	q.mu.Unlock()
	if start {
		go s.ackLoop(ss)
		return
	}
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

// drain waits until every queued publish of the session is answered.
func (q *acks) drain() { q.pending.Wait() }

func (s *Server) ackLoop(ss *session) {
	q := &ss.acks
	var linger *time.Timer
	defer func() {
		if linger != nil {
			linger.Stop()
		}
	}()
	for {
		q.mu.Lock()
		if len(q.q) == 0 {
			q.mu.Unlock()
			if linger == nil {
				linger = time.NewTimer(ackerLinger)
			} else {
				linger.Reset(ackerLinger)
			}
			select {
			case <-q.kick:
				continue
			case <-linger.C:
			}
			q.mu.Lock()
			if len(q.q) == 0 {
				q.running = false
				q.q = nil
				q.mu.Unlock()
				return
			}
		}
		a := q.q[0]
		q.q[0] = nil
		q.q = q.q[1:]
		q.mu.Unlock()
		s.answer(ss.cl, a, a.wait(a.ctx))
		a.cancel()
		<-q.room
		q.pending.Done()
	}
}

// answer sends the PUBACK of a committed publish and forwards a device
// topic's payload, or refuses the publish as rejectPublish does.
func (s *Server) answer(cl *mqtt.Client, a *queuedAck, err error) {
	if err != nil {
		code := s.rejectPublish(cl, a.pk, err)
		if c, ok := code.(packets.Code); ok && cl.Properties.ProtocolVersion == 5 {
			s.writeAck(cl, a.pk.PacketID, c)
		}
		return
	}
	s.writeAck(cl, a.pk.PacketID, packets.CodeSuccess)
	if a.op.forward() {
		retain := a.pk.FixedHeader.Retain && a.op.retainable()
		if err := s.mq.Publish(a.pk.TopicName, a.pk.Payload, retain, a.pk.FixedHeader.Qos); err != nil {
			s.log.Debug("mqtt forward", "topic", a.pk.TopicName, "err", err)
		}
	}
}

// writeAck writes a PUBACK with reason code c (a failure carries its reason
// string, as mochi's own acknowledgements do).
func (s *Server) writeAck(cl *mqtt.Client, id uint16, c packets.Code) {
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Puback},
		PacketID:    id,
		ReasonCode:  c.Code,
	}
	if c.Code >= packets.ErrUnspecifiedError.Code {
		pk.Properties.ReasonString = c.Reason
	}
	if err := cl.WritePacket(pk); err != nil {
		s.log.Debug("mqtt puback", "client", cl.ID, "err", err)
	}
}

// queuePublish checks a QoS 1 publish and queues it for the group commit
// when its service can (telemetry, channel messages): queued false means
// it must be answered on the read loop.
func (s *Server) queuePublish(ctx context.Context, ss *session, op publishOp) (wait func(context.Context) error, queued bool, err error) {
	switch op.kind {
	case opTelemetry:
		w, err := s.deps.Fleet.QueueTelemetry(ctx, ss.who, op.point)
		if err != nil {
			return nil, true, err
		}
		return func(ctx context.Context) error { _, err := w(ctx); return err }, true, nil
	case opChannel:
		if s.deps.Chat == nil {
			return nil, true, unhidra.Errorf(unhidra.EFORBIDDEN, "channels are not available over MQTT here")
		}
		w, err := s.deps.Chat.QueuePublish(ctx, ss.who, op.message)
		if err != nil {
			return nil, true, err
		}
		return func(ctx context.Context) error { _, err := w(ctx); return err }, true, nil
	}
	return nil, false, nil
}
