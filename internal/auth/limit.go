package auth

import (
	"github.com/unhidra/unhidra/internal/ratelimit"

	"sync"
	"time"
)

// AccountLimiter caps failed password attempts per account: at most Max
// failures per Window from all IPs together. Attempts in flight count against
// the cap (a reservation), so a burst of parallel guesses cannot overshoot it
// while the hashes run. Safe for concurrent use.
type AccountLimiter struct {
	max    int
	window time.Duration
	now    func() time.Time

	mu       sync.Mutex
	accounts map[string]*account
	maxKeys  int
}

type account struct {
	start    time.Time // window start: first failure
	failures int
	inFlight int
}

// MaxAccountFailures is the per-account cap of docs/protocol.md#auth-api.
const MaxAccountFailures = 20

// NewAccountLimiter returns a limiter of max failures per window.
func NewAccountLimiter(max int, window time.Duration, now func() time.Time) *AccountLimiter {
	if now == nil {
		now = time.Now
	}
	return &AccountLimiter{max: max, window: window, now: now, accounts: make(map[string]*account), maxKeys: ratelimit.DefaultMaxKeys}
}

// Reserve admits one password attempt on key. When admitted, done must be
// called exactly once with whether the attempt failed. When refused,
// retryAfter says when the window ends.
func (l *AccountLimiter) Reserve(key string) (done func(failed bool), retryAfter time.Duration, ok bool) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	a := l.accounts[key]
	if a != nil && a.inFlight == 0 && !a.start.IsZero() && now.Sub(a.start) >= l.window {
		a.start, a.failures = time.Time{}, 0
	}
	if a == nil {
		if len(l.accounts) >= l.maxKeys {
			l.sweep(now)
		}
		a = &account{}
		l.accounts[key] = a
	}
	if a.failures+a.inFlight >= l.max {
		wait := l.window
		if !a.start.IsZero() {
			wait = a.start.Add(l.window).Sub(now)
		}
		return nil, max(wait, time.Second), false
	}
	a.inFlight++
	var once sync.Once
	return func(failed bool) {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			a.inFlight--
			if failed {
				if a.start.IsZero() {
					a.start = l.now()
				}
				a.failures++
			}
		})
	}, 0, true
}

func (l *AccountLimiter) sweep(now time.Time) {
	for k, a := range l.accounts {
		if a.inFlight == 0 && (a.start.IsZero() || now.Sub(a.start) >= l.window) {
			delete(l.accounts, k)
		}
	}
	for k, a := range l.accounts {
		if len(l.accounts) < l.maxKeys*3/4 {
			break
		}
		if a.inFlight == 0 {
			delete(l.accounts, k)
		}
	}
}
