package gateway

import (
	"encoding/json"
	"net"
	"sync"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/wire"
)

// outFrame is one queued server frame: its header and a payload that may be
// shared with other connections (fan-out) and is never modified.
type outFrame struct {
	hdr     [10]byte
	hn      uint8
	isClose bool
	data    bool
	payload []byte
}

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
	if c.queueLocked(op, payload, data) {
		c.kickLocked()
	}
}

// enqueueFanoutLocked queues a frame of a broker event: its write may wait
// up to FlushDelay, so that the frames of the events that follow it leave
// in the same write (flushScheduler). A flusher already running takes it
// with its next write.
func (c *conn) enqueueFanoutLocked(payload []byte) {
	if !c.queueLocked(opText, payload, true) || c.flushing || c.flushDue {
		return
	}
	if c.srv.flushes == nil {
		c.kickLocked()
		return
	}
	c.flushDue = true
	c.srv.flushes.schedule(c)
}

// queueLocked appends a frame to the outbound queue; false when nothing was
// queued (closing, or the connection became a slow consumer).
func (c *conn) queueLocked(op byte, payload []byte, data bool) bool {
	if c.closeSent || c.dead {
		return false
	}
	var f outFrame
	f.hn = uint8(putHeader(&f.hdr, op, len(payload)))
	f.payload = payload
	f.data = data
	n := int(f.hn) + len(payload)
	if c.outBytes+n > c.srv.cfg.MaxQueueBytes {
		c.slowLocked()
		return false
	}
	if c.out == nil {
		if q, ok := outPool.Get().(*[]outFrame); ok {
			c.out = *q
		}
	}
	c.out = append(c.out, f)
	c.outBytes += n
	c.srv.met.queued.Add(int64(n))
	return true
}

// outPool keeps the queue arrays of connections whose flusher has exited,
// for the next connection that queues a frame: a round of fan-out does not
// grow 1,000 queues from nothing, and an idle connection holds none.
var outPool sync.Pool

// maxPooledFrames bounds the arrays kept (a burst's queue is not).
const maxPooledFrames = 256

func putOut(q []outFrame) {
	if cap(q) == 0 || cap(q) > maxPooledFrames {
		return
	}
	clear(q)
	q = q[:0]
	outPool.Put(&q)
}

// bufsPool does the same for the flushers' writev vectors.
var bufsPool sync.Pool

func (c *conn) slowLocked() {
	if c.closeSent || c.dead {
		return
	}
	c.srv.met.slowConsumer.Inc()
	c.closeLocked(CloseSlowConsumer, "slow consumer", "slow_consumer", true)
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
	// connection does not reallocate its queue for every batch; both go
	// back to their pools when the flusher exits, so an idle connection
	// holds neither.
	var spare []outFrame
	var bufs net.Buffers
	if p, ok := bufsPool.Get().(*net.Buffers); ok {
		bufs = *p
	}
	for {
		c.mu.Lock()
		if c.dead || len(c.out) == 0 {
			c.flushing = false
			q := c.out
			c.out = nil
			c.mu.Unlock()
			putOut(q)
			putOut(spare)
			if cap(bufs) <= 2*maxPooledFrames {
				bufs = bufs[:0]
				bufsPool.Put(&bufs)
			}
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
		// Counted before the write: once a peer has read a frame, the
		// write that carried it is in the metric.
		s.met.writes.Inc()
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
