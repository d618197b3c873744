package auth

import (
	"context"
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
	if p.admitted.Add(1) > p.limit {
		p.admitted.Add(-1)
		return errPoolFull
	}
	defer p.admitted.Add(-1)
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
