package client

import (
	"sync"

	"github.com/unhidra/unhidra/wire"
)

// outItem is one frame waiting in the outbox: a publish or telemetry frame
// (acked by the server) or a command result (not acked).
type outItem struct {
	typ     string
	body    map[string]any // frame fields except type and id
	needAck bool
	done    chan result // buffered 1; nil when nobody waits
	seq     uint64      // enqueue order
}

type result struct {
	ack wire.Ack
	err error
}

func (it *outItem) finish(r result) {
	if it.done != nil {
		select {
		case it.done <- r:
		default:
		}
	}
}

// outbox keeps frames in the order they were produced until the server has
// acknowledged them. It is bounded: when full the oldest unsent frame is
// dropped (and counted). Frames sent on a connection that then failed go
// back to the front, in order, to be sent again on the next connection.
// Safe for concurrent use.
type outbox struct {
	mu       sync.Mutex
	limit    int
	queue    []*outItem // not yet sent on the current connection, oldest first
	inflight []*outItem // sent, waiting for an ack, oldest first
	next     uint64
	dropped  uint64
	notify   chan struct{} // closed and replaced when queue grows
}

func newOutbox(limit int) *outbox {
	if limit < 1 {
		limit = 1
	}
	return &outbox{limit: limit, notify: make(chan struct{})}
}

// push appends it, dropping the oldest unsent items beyond the limit.
func (o *outbox) push(it *outItem) {
	o.mu.Lock()
	o.next++
	it.seq = o.next
	o.queue = append(o.queue, it)
	dropped := o.trimLocked()
	o.wakeLocked()
	o.mu.Unlock()
	for _, d := range dropped {
		d.finish(result{err: ErrDropped})
	}
}

func (o *outbox) trimLocked() []*outItem {
	var dropped []*outItem
	for len(o.queue)+len(o.inflight) > o.limit && len(o.queue) > 0 {
		dropped = append(dropped, o.queue[0])
		o.queue[0] = nil
		o.queue = o.queue[1:]
		o.dropped++
	}
	return dropped
}

func (o *outbox) wakeLocked() {
	close(o.notify)
	o.notify = make(chan struct{})
}

// take removes the oldest unsent item and, when it needs an ack, records it
// as in flight. window bounds the frames in flight at once. It returns nil
// and a channel that is closed when something changes.
func (o *outbox) take(window int) (*outItem, <-chan struct{}) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.queue) == 0 || len(o.inflight) >= window {
		return nil, o.notify
	}
	it := o.queue[0]
	o.queue[0] = nil
	o.queue = o.queue[1:]
	if it.needAck {
		o.inflight = append(o.inflight, it)
	}
	return it, nil
}

// complete removes an in-flight item by its enqueue order and reports whether
// it was in flight.
func (o *outbox) complete(seq uint64) (*outItem, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for i, it := range o.inflight {
		if it.seq == seq {
			o.inflight = append(o.inflight[:i], o.inflight[i+1:]...)
			o.wakeLocked()
			return it, true
		}
	}
	return nil, false
}

// requeue puts every in-flight item back in front of the queue, in order,
// after a connection ended.
func (o *outbox) requeue() {
	o.mu.Lock()
	if len(o.inflight) > 0 {
		q := make([]*outItem, 0, len(o.inflight)+len(o.queue))
		q = append(q, o.inflight...)
		q = append(q, o.queue...)
		o.queue = q
		o.inflight = nil
	}
	dropped := o.trimLocked()
	o.wakeLocked()
	o.mu.Unlock()
	for _, d := range dropped {
		d.finish(result{err: ErrDropped})
	}
}

// failAll ends every waiting item with err (the client is stopping).
func (o *outbox) failAll(err error) {
	o.mu.Lock()
	items := append(append([]*outItem{}, o.inflight...), o.queue...)
	o.inflight, o.queue = nil, nil
	o.wakeLocked()
	o.mu.Unlock()
	for _, it := range items {
		it.finish(result{err: err})
	}
}

func (o *outbox) stats() (queued, inflight int, dropped uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.queue), len(o.inflight), o.dropped
}

// pushFront puts an item taken from the queue back at its head.
func (o *outbox) pushFront(it *outItem) {
	o.mu.Lock()
	for i, x := range o.inflight {
		if x == it {
			o.inflight = append(o.inflight[:i], o.inflight[i+1:]...)
			break
		}
	}
	o.queue = append([]*outItem{it}, o.queue...)
	o.wakeLocked()
	o.mu.Unlock()
}
