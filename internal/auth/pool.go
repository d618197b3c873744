package auth

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/unhidra/unhidra"
)

// hashPool bounds password hashing: at most workers hashes run at once and at
// most queue more wait for a slot; anything beyond is refused at once with
// "unavailable", so a login flood costs neither memory (each Argon2id hash
// holds 48 MiB) nor CPU that /health and the other APIs need.
type hashPool struct {
	slots    chan struct{}
	limit    int64 // workers + queue
	admitted atomic.Int64
	running  atomic.Int64
	peak     atomic.Int64
	count    atomic.Int64
	metrics  *Metrics
}

func newHashPool(workers, queue int, m *Metrics) *hashPool {
	return &hashPool{slots: make(chan struct{}, workers), limit: int64(workers + queue), metrics: m}
}

var errPoolFull = &unhidra.Error{Code: unhidra.EUNAVAILABLE, Message: "server busy, try again", RetryAfter: 1}

// do runs fn on a pool slot. It fails fast when the pool and its queue are
// full, and gives up waiting when ctx ends.
func (p *hashPool) do(ctx context.Context, fn func()) error {
	release, err := p.admit()
	if err != nil {
		return err
	}
	defer release()
	return p.run(ctx, fn)
}

// admit takes a place in the pool (running or queued) without waiting, or
// fails at once when the pool and its queue are full. Login admits before
// its database lookup, so a flood is refused before it costs a database
// connection that /health and other requests need. release gives the place
// back; it may be called more than once.
func (p *hashPool) admit() (release func(), err error) {
	if p.admitted.Add(1) > p.limit {
		p.admitted.Add(-1)
		return nil, errPoolFull
	}
	var once sync.Once
	return func() { once.Do(func() { p.admitted.Add(-1) }) }, nil
}

// run runs fn on a pool slot for a caller that holds an admission, waiting
// for the slot until ctx ends.
func (p *hashPool) run(ctx context.Context, fn func()) error {
	p.metrics.queueDepth.Inc()
	select {
	case p.slots <- struct{}{}:
		p.metrics.queueDepth.Dec()
	case <-ctx.Done():
		p.metrics.queueDepth.Dec()
		return unhidra.Wrap(unhidra.EUNAVAILABLE, "request cancelled", ctx.Err())
	}
	defer func() { <-p.slots }()
	n := p.running.Add(1)
	for {
		old := p.peak.Load()
		if n <= old || p.peak.CompareAndSwap(old, n) {
			break
		}
	}
	p.metrics.hashing.Inc()
	start := time.Now()
	fn()
	p.count.Add(1)
	p.metrics.hashSeconds.Observe(time.Since(start).Seconds())
	p.metrics.hashing.Dec()
	p.running.Add(-1)
	return nil
}

// Count returns how many hashes ran.
func (p *hashPool) Count() int64 { return p.count.Load() }

// Peak returns the largest number of hashes that ever ran at once.
func (p *hashPool) Peak() int64 { return p.peak.Load() }
