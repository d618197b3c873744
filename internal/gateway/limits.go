package gateway

import (
	"math"
	"net/netip"
	"time"

	"github.com/unhidra/unhidra/internal/ratelimit"
)

// ipLimiter bounds WebSocket handshakes per client IP: an exact sliding
// minute (ratelimit.WindowLimiter), at most perMinute handshakes in any 60 s,
// counted before anything else is looked at (so bad handshakes count too and
// it slows credential guessing). The next one is allowed when the oldest of
// them is a minute old. A nil *ipLimiter allows everything. Memory is
// bounded by the limiter's key cap (idle addresses go first). Safe for
// concurrent use.
type ipLimiter struct {
	w ratelimit.Limiter
}

// newIPLimiter returns the handshake limiter: injected when set (a
// cluster-wide limiter replaces the node's own later), else an exact
// sliding minute of perMinute; nil when neither (no limit).
func newIPLimiter(injected ratelimit.Limiter, perMinute int, now func() time.Time) *ipLimiter {
	if injected != nil {
		return &ipLimiter{w: injected}
	}
	if perMinute <= 0 {
		return nil
	}
	return &ipLimiter{w: ratelimit.NewWindowLimiter(perMinute, time.Minute, now)}
}

// allow counts one handshake from ip. When refused it returns the whole
// seconds until the oldest handshake of the window leaves it (at least 1).
func (l *ipLimiter) allow(ip netip.Addr) (ok bool, retryAfter int) {
	if l == nil {
		return true, 0
	}
	ok, wait := l.w.Allow(ip.String())
	if ok {
		return true, 0
	}
	return false, max(1, int(math.Ceil(wait.Seconds())))
}

// floodGuard is the inbound frame limit of one connection: a token bucket of
// rate frames per second holding burst (not a sliding window: a connection
// may send burst frames at once, then rate per second), and a verdict to
// close once a client has kept exceeding it for closeAfter. Guarded by the
// connection's mutex.
type floodGuard struct {
	tokens     float64
	last       time.Time
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
	// A token bucket: burst frames at once, refilled at rate per second
	// (a connection's first frame finds it full).
	if g.last.IsZero() {
		g.tokens = burst
	} else if el := now.Sub(g.last).Seconds(); el > 0 {
		g.tokens = math.Min(burst, g.tokens+el*rate)
	}
	g.last = now
	if g.tokens >= 1 {
		g.tokens--
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
