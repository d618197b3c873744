// Package ratelimit holds the limiters every transport shares: an exact
// sliding window per key (WindowLimiter) and a token bucket for very high
// rates (BucketLimiter), both behind one interface, Limiter.
package ratelimit

import (
	"math"
	"sync"
	"time"
)

// Limiter decides whether one more event for key is allowed now, and if not
// how long until it would be.
type Limiter interface {
	Allow(key string) (ok bool, retryAfter time.Duration)
}

// DefaultMaxKeys bounds the number of keys (client IPs, accounts) a limiter
// remembers. When full, idle keys are dropped first, then arbitrary ones: an
// attacker needs that many distinct keys inside one window to wash a key out.
const DefaultMaxKeys = 100_000

// WindowLimiter allows at most Limit events per key in any sliding Window.
// It keeps the last Limit event times of each key (a ring), so it is exact:
// the (Limit+1)-th event inside one window is refused, and the answer says
// when the oldest one leaves the window. Safe for concurrent use.
type WindowLimiter struct {
	limit   int
	window  time.Duration
	now     func() time.Time
	maxKeys int

	mu   sync.Mutex
	keys map[string]*ring
}

type ring struct {
	times []time.Time // oldest at next when full
	next  int
	n     int
}

// NewWindowLimiter returns a limiter of limit events per window. now may be
// nil (time.Now).
func NewWindowLimiter(limit int, window time.Duration, now func() time.Time) *WindowLimiter {
	if now == nil {
		now = time.Now
	}
	return &WindowLimiter{limit: max(limit, 1), window: window, now: now, maxKeys: DefaultMaxKeys, keys: make(map[string]*ring)}
}

// Allow records an event for key when it is within the limit. Otherwise it
// records nothing and returns how long until the next event would be allowed.
func (l *WindowLimiter) Allow(key string) (ok bool, retryAfter time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.keys[key]
	if r == nil {
		l.makeRoom(now)
		r = &ring{times: make([]time.Time, 0, min(l.limit, 16))}
		l.keys[key] = r
	}
	if r.n == l.limit {
		oldest := r.times[r.next]
		if wait := oldest.Add(l.window).Sub(now); wait > 0 {
			return false, wait
		}
		r.times[r.next] = now
	} else {
		// The ring grows as events come, up to limit entries.
		r.times = append(r.times, now)
		r.n++
	}
	r.next = (r.next + 1) % l.limit
	return true, 0
}

// Len returns the number of remembered keys.
func (l *WindowLimiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.keys)
}

func (l *WindowLimiter) makeRoom(now time.Time) {
	if len(l.keys) < l.maxKeys {
		return
	}
	for k, r := range l.keys {
		newest := r.times[(r.next+r.n-1)%r.n]
		if now.Sub(newest) >= l.window {
			delete(l.keys, k)
		}
	}
	for k := range l.keys {
		if len(l.keys) < l.maxKeys*3/4 {
			break
		}
		delete(l.keys, k)
	}
}

// MaxExactLimit is the largest limit kept as an exact sliding log per key.
const MaxExactLimit = 1000

// PerMinute limits events per minute per key: exactly (a sliding log)
// for ordinary limits, and with a token bucket of the same rate and burst
// for very large ones, whose logs would cost too much memory per key.
func PerMinute(perMinute int, now func() time.Time) Limiter {
	if perMinute <= MaxExactLimit {
		return NewWindowLimiter(perMinute, time.Minute, now)
	}
	return NewBucketLimiter(perMinute, perMinute, now)
}

// BucketLimiter is a token bucket per key: Rate tokens per minute, holding at
// most Burst. It suits high request limits, where a sliding log per key
// would cost too much memory. Safe for concurrent use.
type BucketLimiter struct {
	perSec  float64
	burst   float64
	now     func() time.Time
	maxKeys int

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

// NewBucketLimiter returns a limiter refilling perMinute tokens a minute with
// a burst of burst. now may be nil (time.Now).
func NewBucketLimiter(perMinute, burst int, now func() time.Time) *BucketLimiter {
	if now == nil {
		now = time.Now
	}
	return &BucketLimiter{perSec: float64(max(perMinute, 1)) / 60, burst: float64(max(burst, 1)), now: now, maxKeys: DefaultMaxKeys, buckets: make(map[string]*bucket)}
}

// Allow takes a token for key, or says how long until one is available.
func (l *BucketLimiter) Allow(key string) (ok bool, retryAfter time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= l.maxKeys {
			l.sweep(now)
		}
		b = &bucket{tokens: l.burst, at: now}
		l.buckets[key] = b
	}
	if el := now.Sub(b.at).Seconds(); el > 0 {
		b.tokens = math.Min(l.burst, b.tokens+el*l.perSec)
		b.at = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) / l.perSec * float64(time.Second))
	return false, max(wait, time.Millisecond)
}

func (l *BucketLimiter) sweep(now time.Time) {
	full := time.Duration(l.burst / l.perSec * float64(time.Second))
	for k, b := range l.buckets {
		if now.Sub(b.at) >= full {
			delete(l.buckets, k)
		}
	}
	for k := range l.buckets {
		if len(l.buckets) < l.maxKeys*3/4 {
			break
		}
		delete(l.buckets, k)
	}
}
