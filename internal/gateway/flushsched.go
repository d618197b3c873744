package gateway

import (
	"sync"
	"time"
)

// flushScheduler batches the writes of fan-out. A connection whose queue
// goes from empty to non-empty with a broker event's frame is not written
// at once: it joins the scheduler's list, and when the list's timer fires
// every connection on it gets its flusher, which writes everything queued
// by then with one writev. A round waits minFlushDelay, then flushPerConn
// for every connection that first millisecond brought (at most
// FlushDelay): a lone subscriber, or sparse fan-out over many channels,
// waits about a millisecond; 1,000 subscribers of a busy channel get one
// write for every ~70 ms of its events instead of one for each event, and
// their clients as many fewer wake-ups. The writes, not the fan-out itself,
// are what a delivery costs (a loopback writev costs ~10–15 µs, so a round
// of n connections spends at most about a fifth of its wait writing).
// Replies, pings, pongs and closes are written at once (enqueueLocked),
// taking what waits with them; the slow-consumer limit counts what waits.
//
// Lock order: conn.mu → flushScheduler.mu; a round takes each conn.mu
// without holding its own.
type flushScheduler struct {
	min, max time.Duration

	mu       sync.Mutex
	due      []*conn
	timer    *time.Timer
	armed    bool
	extended bool // this round's wait was set from its length
	armedAt  time.Time
}

const (
	// flushPerConn is the wait per connection of a round.
	flushPerConn = 70 * time.Microsecond
	// minFlushDelay is the shortest wait: long enough to queue one event
	// on a few thousand subscribers, so that the round sees how many.
	minFlushDelay = time.Millisecond
)

func newFlushScheduler(max time.Duration) *flushScheduler {
	if max <= 0 {
		return nil
	}
	f := &flushScheduler{min: min(minFlushDelay, max), max: max}
	f.timer = time.AfterFunc(time.Hour, f.run)
	f.timer.Stop()
	return f
}

// schedule puts c on the list; c.mu is held and c.flushDue was just set.
func (f *flushScheduler) schedule(c *conn) {
	f.mu.Lock()
	f.due = append(f.due, c)
	if !f.armed {
		f.armed = true
		f.extended = false
		f.armedAt = time.Now()
		f.timer.Reset(f.min)
	}
	f.mu.Unlock()
}

// run is the timer: after the first wait it sets the round's wait from
// the connections on the list, then starts the round.
func (f *flushScheduler) run() {
	f.mu.Lock()
	if !f.extended {
		f.extended = true
		want := min(f.max, time.Duration(len(f.due))*flushPerConn)
		if waited := time.Since(f.armedAt); waited < want {
			f.timer.Reset(want - waited)
			f.mu.Unlock()
			return
		}
	}
	f.mu.Unlock()
	f.flushNow()
}

// flushNow starts the flusher of every connection on the list.
func (f *flushScheduler) flushNow() {
	f.mu.Lock()
	due := f.due
	f.due = make([]*conn, 0, len(due))
	f.armed = false
	f.mu.Unlock()
	for _, c := range due {
		c.mu.Lock()
		c.flushDue = false
		c.kickLocked()
		c.mu.Unlock()
	}
}
