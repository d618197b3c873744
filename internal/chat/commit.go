package chat

import (
	"context"
	"sync"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/broker"
)

// Group commit.
//
// Every durable commit costs an fsync, so committing each
// message on its own caps a channel at a few hundred messages per second.
// Instead every append joins a queue; a single commit loop takes everything
// queued (up to MaxBatch) and stores it in one transaction; its delivery
// stage then publishes the events of the stored messages on the broker, in
// batch order, and only then completes each waiter with its ack, while the
// loop commits the next batch. Because there is only ever one loop and one
// delivery stage, offsets are assigned and events published in one order:
// per channel, events leave in offset order.
//
// The loop runs only while the queue is non-empty: the append that finds no
// loop running starts one, and the loop exits when it empties the queue.

type pending struct {
	ctx  context.Context
	app  Append
	done chan AppendResult // buffered 1
}

// enqueue queues one message for the next group commit. Appends are
// committed in the order they were queued. The commit skips an append
// whose ctx has ended by then.
func (s *Service) enqueue(ctx context.Context, app Append) *pending {
	p := &pending{ctx: ctx, app: app, done: make(chan AppendResult, 1)}
	s.qmu.Lock()
	s.queue = append(s.queue, p)
	if !s.running {
		s.running = true
		s.loops.Add(1)
		go s.commitLoop()
	}
	s.qmu.Unlock()
	return p
}

// wait returns the outcome of a queued append, or unavailable when ctx
// ends first (the message may still be stored; a retry with the same
// client_msg_id returns its ack).
func (p *pending) wait(ctx context.Context) (AppendResult, error) {
	select {
	case r := <-p.done:
		return r, r.Err
	case <-ctx.Done():
		return AppendResult{}, unhidra.Wrap(unhidra.EUNAVAILABLE, "request ended before the message was stored", ctx.Err())
	}
}

func (s *Service) commitLoop() {
	defer s.loops.Done()
	// Two stages: this goroutine commits batch after batch; the delivery
	// goroutine makes the committed batches durable (one Sync for all the
	// batches committed by then, with a DeferredStore), then publishes each
	// batch's events and answers its waiters, in commit order. So one
	// batch's flush to disk overlaps the next batch's writes, delivery
	// never waits for a later batch, and no waiter hears of a message
	// before it is durable.
	deliveries := make(chan *committed, 4)
	var inflight sync.WaitGroup
	go s.deliverLoop(deliveries, &inflight)
	defer close(deliveries)
	for {
		s.qmu.Lock()
		if len(s.queue) == 0 {
			s.qmu.Unlock()
			// Let every delivery finish before this loop may end, so that
			// the next loop's deliveries cannot overtake this one's.
			inflight.Wait()
			s.qmu.Lock()
			if len(s.queue) == 0 {
				s.running = false
				s.queue = nil
				s.qmu.Unlock()
				return
			}
		}
		n := min(len(s.queue), s.opts.MaxBatch)
		batch := make([]*pending, n)
		copy(batch, s.queue)
		clear(s.queue[:n])
		s.queue = s.queue[n:]
		s.qmu.Unlock()
		if c := s.commitBatch(batch); c != nil {
			inflight.Add(1)
			deliveries <- c
		}
	}
}

// committed is a batch the store has written: its waiters and results, or
// the error that stored nothing; deferred when it still needs a Sync.
type committed struct {
	live     []*pending
	results  []AppendResult
	err      error
	deferred bool
}

// deliverLoop delivers committed batches in order, syncing once for all
// those that are waiting.
func (s *Service) deliverLoop(in <-chan *committed, inflight *sync.WaitGroup) {
	var group []*committed
	for c := range in {
		group = append(group[:0], c)
	more:
		for {
			select {
			case c, ok := <-in:
				if !ok {
					break more
				}
				group = append(group, c)
			default:
				break more
			}
		}
		var syncErr error
		for _, c := range group {
			if c.deferred {
				syncErr = s.sync()
				break
			}
		}
		for i, c := range group {
			if c.deferred && syncErr != nil && c.err == nil {
				c.err = syncErr
			}
			s.deliver(c)
			group[i] = nil
			inflight.Done()
		}
	}
}

// sync makes the deferred appends durable.
func (s *Service) sync() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.CommitTimeout)
	defer cancel()
	start := time.Now()
	err := s.deferred.Sync(ctx)
	if s.m != nil {
		s.m.sync.Observe(time.Since(start).Seconds())
	}
	if err != nil {
		s.log.Error("chat: flushing committed messages to disk failed; they are not acknowledged", "err", err)
		if s.m != nil {
			s.m.failures.WithLabelValues(unhidra.ErrorCode(err)).Inc()
		}
		return unhidra.Wrap(unhidra.EUNAVAILABLE, "the message could not be made durable", err)
	}
	return nil
}

// commitBatch writes a batch to the store. nil: nothing to deliver.
func (s *Service) commitBatch(batch []*pending) *committed {
	live := batch[:0]
	for _, p := range batch {
		if err := p.ctx.Err(); err != nil {
			// The caller has gone: store nothing it was not told about.
			continue
		}
		live = append(live, p)
	}
	if len(live) == 0 {
		return nil
	}
	apps := make([]Append, len(live))
	for i, p := range live {
		apps[i] = p.app
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.CommitTimeout)
	defer cancel()
	start := time.Now()
	c := &committed{live: live, deferred: s.deferred != nil}
	if c.deferred {
		c.results, c.err = s.deferred.AppendMessagesDeferred(ctx, apps)
	} else {
		c.results, c.err = s.store.AppendMessages(ctx, apps)
	}
	if s.m != nil {
		s.m.commit.Observe(time.Since(start).Seconds())
		s.m.batch.Observe(float64(len(apps)))
	}
	if c.err == nil && len(c.results) != len(live) {
		c.err = unhidra.Errorf(unhidra.EINTERNAL, "store returned %d results for %d appends", len(c.results), len(live))
	}
	if c.err != nil {
		if unhidra.ErrorCode(c.err) == unhidra.EINTERNAL {
			s.log.Error("chat: group commit failed", "messages", len(live), "err", c.err)
		} else {
			s.log.Warn("chat: group commit refused", "messages", len(live), "err", c.err)
		}
		if s.m != nil {
			s.m.failures.WithLabelValues(unhidra.ErrorCode(c.err)).Inc()
		}
		c.deferred = false // nothing to make durable
	}
	return c
}

// deliver publishes the events of a durable batch in batch order (= offset
// order per channel), then answers each waiter; a batch that failed answers
// every waiter with the error.
func (s *Service) deliver(c *committed) {
	if c.err != nil {
		for _, p := range c.live {
			p.done <- AppendResult{Err: c.err}
		}
		return
	}
	for _, r := range c.results {
		if r.Duplicate && s.m != nil {
			s.m.duplicates.Inc()
		}
		if r.Err != nil || r.Duplicate {
			continue
		}
		if s.m != nil {
			s.m.stored.Inc()
		}
		msg := r.Msg
		s.publishEvent(&broker.Event{Kind: broker.Message, Channel: msg.Channel, Offset: msg.Offset, Message: &msg})
	}
	for i, p := range c.live {
		p.done <- c.results[i]
	}
}

// publishEvent publishes an event of a channel on its topic. What it
// reports is already stored, so a broker failure is logged; subscribers
// catch up with `since`.
func (s *Service) publishEvent(ev *broker.Event) {
	if err := s.pub.Publish(context.Background(), broker.ChannelTopic(ev.Channel), ev); err != nil {
		s.log.Warn("chat: broker publish failed", "channel", ev.Channel, "kind", ev.Kind, "err", err)
	}
}
