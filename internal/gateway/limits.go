package gateway

import (
	"math"
	"net/netip"
	"sync"
	"time"
)

// bucket is a token bucket: rate tokens per second up to burst. The zero
// value is empty; callers fill it on first use. It is not safe for
// concurrent use on its own.
type bucket struct {
	tokens float64
	last   time.Time
}

// take refills the bucket at now and takes one token if there is one.
func (b *bucket) take(now time.Time, rate, burst float64) bool {
	if b.last.IsZero() {
		b.tokens = burst
	} else if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = math.Min(burst, b.tokens+el*rate)
	}
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true
	}
	return false
}

// wait returns how long until one token is available.
func (b *bucket) wait(rate float64) time.Duration {
	if b.tokens >= 1 || rate <= 0 {
		return 0
	}
	return time.Duration((1 - b.tokens) / rate * float64(time.Second))
}

// ipLimiter bounds handshakes per client IP per minute. It forgets idle
// addresses so its memory stays bounded by the active ones. Safe for
// concurrent use.
type ipLimiter struct {
	perMinute int
	now       func() time.Time

	mu        sync.Mutex
	buckets   map[netip.Addr]*bucket
	lastSweep time.Time
}

func newIPLimiter(perMinute int, now func() time.Time) *ipLimiter {
	return &ipLimiter{perMinute: perMinute, now: now, buckets: make(map[netip.Addr]*bucket)}
}

// allow takes one handshake for ip. When refused it returns the whole
// seconds to wait (at least 1).
func (l *ipLimiter) allow(ip netip.Addr) (ok bool, retryAfter int) {
	if l.perMinute <= 0 {
		return true, 0
	}
	now := l.now()
	rate := float64(l.perMinute) / 60
	burst := float64(l.perMinute)
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) > time.Minute {
		l.sweep(now, rate, burst)
		l.lastSweep = now
	}
	b := l.buckets[ip]
	if b == nil {
		b = &bucket{}
		l.buckets[ip] = b
	}
	if b.take(now, rate, burst) {
		return true, 0
	}
	secs := int(math.Ceil(b.wait(rate).Seconds()))
	if secs < 1 {
		secs = 1
	}
	return false, secs
}

// sweep drops buckets that have refilled completely.
func (l *ipLimiter) sweep(now time.Time, rate, burst float64) {
	for ip, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*rate >= burst {
			delete(l.buckets, ip)
		}
	}
}

// floodGuard is the inbound frame limit of one connection: rate frames per
// second with a burst, and a verdict to close once a client has kept
// exceeding it for closeAfter. Guarded by the connection's mutex.
type floodGuard struct {
	b          bucket
	floodStart time.Time
	lastReject time.Time
}

// verdicts of floodGuard.admit.
const (
	admitOK = iota
	admitRefuse
	admitClose
)

// admit decides one inbound frame at now.
func (g *floodGuard) admit(now time.Time, rate, burst float64, closeAfter time.Duration) int {
	if g.b.take(now, rate, burst) {
		return admitOK
	}
	// A pause of a second or more between refused frames ends a flood.
	if g.floodStart.IsZero() || now.Sub(g.lastReject) > time.Second {
		g.floodStart = now
	}
	g.lastReject = now
	if now.Sub(g.floodStart) >= closeAfter {
		return admitClose
	}
	return admitRefuse
}
