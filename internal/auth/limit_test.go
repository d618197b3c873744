package auth

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/unhidra/unhidra"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestAccountLimiterCountsFailuresAndReservations(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	l := NewAccountLimiter(3, time.Hour, clk.Now)
	var dones []func(bool)
	for range 3 {
		done, _, ok := l.Reserve("bob")
		if !ok {
			t.Fatal("a reservation under the cap was refused")
		}
		dones = append(dones, done)
	}
	if _, _, ok := l.Reserve("bob"); ok {
		t.Fatal("a 4th attempt in flight was admitted over a cap of 3")
	}
	dones[0](false) // a success frees its place
	done, _, ok := l.Reserve("bob")
	if !ok {
		t.Fatal("a success did not free its reservation")
	}
	done(true)
	dones[1](true)
	dones[2](true)
	_, wait, ok := l.Reserve("bob")
	if ok {
		t.Fatal("admitted after 3 failures")
	}
	if wait <= 0 || wait > time.Hour {
		t.Errorf("retry after %v, want within the hour", wait)
	}
	if _, _, ok := l.Reserve("carol"); !ok {
		t.Error("another account was locked too")
	}
	clk.Add(time.Hour)
	if _, _, ok := l.Reserve("bob"); !ok {
		t.Error("still locked after the window ended")
	}
}

func TestHashPoolBoundsConcurrencyAndRefusesBeyondItsQueue(t *testing.T) {
	p := newHashPool(2, 3, NewMetrics(nil))
	release := make(chan struct{})
	started := make(chan struct{}, 10)
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- p.do(context.Background(), func() { started <- struct{}{}; <-release })
		}()
	}
	<-started
	<-started
	// Two run, three wait: the pool and queue are full.
	deadline := time.Now().Add(5 * time.Second)
	for p.admitted.Load() < 5 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	err := p.do(context.Background(), func() { t.Error("an over-limit hash ran") })
	if unhidra.ErrorCode(err) != unhidra.EUNAVAILABLE || unhidra.RetryAfter(err) < 1 {
		t.Fatalf("over the limit: err = %v, want unavailable with Retry-After", err)
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("an admitted hash failed: %v", err)
		}
	}
	if p.Peak() != 2 {
		t.Errorf("peak concurrency %d, want 2", p.Peak())
	}
	if p.Count() != 5 {
		t.Errorf("count %d, want 5", p.Count())
	}
}

func TestHashPoolGivesUpWhenTheCallerLeaves(t *testing.T) {
	p := newHashPool(1, 1, NewMetrics(nil))
	release := make(chan struct{})
	go p.do(context.Background(), func() { <-release })
	for p.running.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.do(ctx, func() { t.Error("ran after the caller left") }); unhidra.ErrorCode(err) != unhidra.EUNAVAILABLE {
		t.Fatalf("err = %v, want unavailable", err)
	}
	close(release)
}
