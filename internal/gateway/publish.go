package gateway

import (
	"context"
	"encoding/json"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/chat"
	"github.com/unhidra/unhidra/wire"
)

// PublishQueuer is optionally implemented by Chat (*chat.Service does):
// Publish in two steps, so that several publishes of one connection are in
// flight together and share a group commit. The gateway then queues each
// `publish` frame for the commit as it is handled and answers it from the
// connection's acker, in frame order; without it every publish waits for
// its commit before the connection's next frame is handled.
type PublishQueuer interface {
	QueuePublish(ctx context.Context, who unhidra.Identity, in wire.Publish) (chat.PublishWait, error)
}

// maxPipelined bounds the publishes of one connection that are queued for
// their commit and not yet answered. With the inbound queue (maxInbound)
// it bounds what one connection holds: past it the processor waits for the
// oldest ack, the reader for the processor, and TCP pushes back.
const maxPipelined = 32

// pubPipe is a connection's publishes in flight, answered in frame order by
// one acker goroutine that runs while it is non-empty. Allocated on a
// connection's first pipelined publish, so connections that never publish
// do not carry it. Guarded by conn.mu.
type pubPipe struct {
	acks   []pendingAck
	acking bool // the acker goroutine runs
}

// pendingAck is one publish waiting for its answer: its commit (wait) or
// the error that refused it before it was queued.
type pendingAck struct {
	id     json.RawMessage
	wait   chat.PublishWait
	err    error
	cancel context.CancelFunc
	ctx    context.Context
}

// acksPendingLocked reports whether publishes of c still wait for their
// answer.
func (c *conn) acksPendingLocked() bool {
	return c.pipe != nil && c.pipe.acking
}

// awaitAcks waits until every pipelined publish handled before has been
// answered, so that the reply to the frame about to be handled follows
// their acks: a connection's replies leave in the order of its frames.
func (c *conn) awaitAcks() {
	c.mu.Lock()
	for c.acksPendingLocked() && !c.dead {
		c.cond.Wait()
	}
	c.mu.Unlock()
}

// queuePublish handles one `publish` frame without waiting for its commit:
// it is authorized, validated and queued for the group commit now, in
// frame order (so one connection's messages are stored in the order it
// sent them), and answered by the acker once committed.
func (c *conn) queuePublish(q PublishQueuer, who unhidra.Identity, f wire.ClientFrame) {
	c.mu.Lock()
	for c.pipe != nil && len(c.pipe.acks) >= maxPipelined && !c.dead {
		c.cond.Wait()
	}
	c.mu.Unlock()
	// The context lives until the acker has its answer: it bounds the
	// queued message too (the commit skips it once ctx has ended).
	ctx, cancel := context.WithTimeout(c.srv.base, callTimeout)
	wait, err := q.QueuePublish(ctx, who, f.Publish)
	c.mu.Lock()
	if c.pipe == nil {
		c.pipe = &pubPipe{}
	}
	p := c.pipe
	p.acks = append(p.acks, pendingAck{id: f.ID, wait: wait, err: err, ctx: ctx, cancel: cancel})
	if !p.acking {
		p.acking = true
		c.srv.wg.Add(1)
		go c.ackLoop(p)
	}
	c.mu.Unlock()
}

// ackLoop answers the connection's pipelined publishes in order, each once
// its commit is done, and exits when none is left.
func (c *conn) ackLoop(p *pubPipe) {
	defer c.srv.wg.Done()
	for {
		c.mu.Lock()
		if len(p.acks) == 0 {
			p.acking = false
			p.acks = nil
			c.cond.Broadcast()
			c.mu.Unlock()
			return
		}
		a := p.acks[0]
		c.mu.Unlock()

		err := a.err
		var ack wire.Ack
		if err == nil {
			ack, err = a.wait(a.ctx)
		}
		a.cancel()
		if err != nil {
			c.sendErr(a.id, err)
		} else {
			c.send(wire.AckFrame{Type: wire.TypeAck, ID: a.id, Ack: ack})
		}

		c.mu.Lock()
		p.acks[0] = pendingAck{}
		p.acks = p.acks[1:]
		c.cond.Broadcast()
		c.mu.Unlock()
	}
}
