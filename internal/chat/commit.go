package chat

import (
	"context"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/broker"
)

// Group commit.
//
// With synchronous=FULL every commit costs an fsync, so committing each
// message on its own caps a channel at a few hundred messages per second.
// Instead every append joins a queue; a single commit loop takes everything
// queued (up to MaxBatch), stores it in one transaction, then publishes the
// `message` frames of the stored messages on the broker, in batch order, and
// only then completes each waiter with its ack. Because there is only ever
// one loop, offsets are assigned and frames published in one order: per
// channel, frames leave in offset order.
//
// The loop runs only while the queue is non-empty: the append that finds no
// loop running starts one, and the loop exits when it empties the queue.

type pending struct {
	ctx  context.Context
	app  Append
	done chan AppendResult // buffered 1
}

// appendMessage queues one message for the next group commit and waits for
// its outcome. When ctx ends first the caller gets unavailable (the message
// may still be stored; a retry with the same client_msg_id returns its ack).
func (s *Service) appendMessage(ctx context.Context, app Append) (AppendResult, error) {
	return s.enqueue(ctx, app).wait(ctx)
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
// ends first.
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
	for {
		s.qmu.Lock()
		if len(s.queue) == 0 {
			s.running = false
			s.queue = nil
			s.qmu.Unlock()
			return
		}
		n := min(len(s.queue), s.opts.MaxBatch)
		batch := make([]*pending, n)
		copy(batch, s.queue)
		clear(s.queue[:n])
		s.queue = s.queue[n:]
		s.qmu.Unlock()
		s.commitBatch(batch)
	}
}

func (s *Service) commitBatch(batch []*pending) {
	live := batch[:0]
	for _, p := range batch {
		if err := p.ctx.Err(); err != nil {
			// The caller has gone: store nothing it was not told about.
			continue
		}
		live = append(live, p)
	}
	if len(live) == 0 {
		return
	}
	apps := make([]Append, len(live))
	for i, p := range live {
		apps[i] = p.app
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.CommitTimeout)
	defer cancel()
	start := time.Now()
	results, err := s.store.AppendMessages(ctx, apps)
	if s.m != nil {
		s.m.commit.Observe(time.Since(start).Seconds())
		s.m.batch.Observe(float64(len(apps)))
	}
	if err == nil && len(results) != len(live) {
		err = unhidra.Errorf(unhidra.EINTERNAL, "store returned %d results for %d appends", len(results), len(live))
	}
	if err != nil {
		if unhidra.ErrorCode(err) == unhidra.EINTERNAL {
			s.log.Error("chat: group commit failed", "messages", len(live), "err", err)
		} else {
			s.log.Warn("chat: group commit refused", "messages", len(live), "err", err)
		}
		if s.m != nil {
			s.m.failures.WithLabelValues(unhidra.ErrorCode(err)).Inc()
		}
		for _, p := range live {
			p.done <- AppendResult{Err: err}
		}
		return
	}
	// Publish in batch order (= offset order per channel), then ack.
	for _, r := range results {
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
	for i, p := range live {
		p.done <- results[i]
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
