package gateway

import (
	"errors"
	"io"
	"time"
	"unicode/utf8"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/wire"
)

// maxInbound is how many decoded-but-unhandled frames a connection may have
// queued before its reader stops reading (TCP backpressure).
const maxInbound = 16

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
	} else if c.acksPendingLocked() {
		c.cond.Broadcast() // the processor may be waiting for acks or for this frame
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

// process handles queued frames in order and exits when the queue is empty
// and every pipelined publish has been answered (so a drain's 1001 follows
// the last ack, and finish waits for them as for the frame in progress).
func (c *conn) process() {
	defer c.srv.wg.Done()
	for {
		c.mu.Lock()
		for len(c.inq) == 0 && !c.dead && c.acksPendingLocked() {
			c.cond.Wait()
		}
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
			c.awaitAcks()
			c.refuseFrame(b, unhidra.EUNAVAILABLE, "server is shutting down")
			continue
		}
		c.handle(b)
	}
}
