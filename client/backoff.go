package client

import (
	"math/rand/v2"
	"time"
)

// Backoff computes reconnect delays: exponential from Min doubling to Max,
// with full jitter (a uniformly random delay in [0, cap)), as described in
// "Exponential Backoff And Jitter" (AWS Architecture Blog). A Backoff is not
// safe for concurrent use; the Client uses one per Run loop.
type Backoff struct {
	Min, Max time.Duration
	// Rand returns a float in [0, 1). Nil means math/rand/v2's Float64.
	Rand func() float64

	attempt int
}

// Cap returns the upper bound of the delay for the given attempt (0-based):
// Min·2^attempt, capped at Max.
func (b *Backoff) Cap(attempt int) time.Duration {
	min, max := b.Min, b.Max
	if min <= 0 {
		min = time.Second
	}
	if max < min {
		max = min
	}
	d := min
	for i := 0; i < attempt && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	return d
}

// Next returns the delay before the next attempt and advances the attempt
// counter.
func (b *Backoff) Next() time.Duration {
	r := b.Rand
	if r == nil {
		r = rand.Float64
	}
	c := b.Cap(b.attempt)
	b.attempt++
	f := r()
	if f < 0 || f >= 1 {
		f = 0
	}
	return time.Duration(f * float64(c))
}

// Attempt returns how many delays were handed out since the last Reset.
func (b *Backoff) Attempt() int { return b.attempt }

// Reset starts over at Min, after a connection stayed up long enough.
func (b *Backoff) Reset() { b.attempt = 0 }
