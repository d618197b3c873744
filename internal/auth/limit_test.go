package auth

import (
	"context"
	"fmt"
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

func TestWindowLimiterAllowsExactlyTheLimitPerWindow(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	l := NewWindowLimiter(10, time.Minute, clk.Now)
	for i := range 10 {
		if ok, _ := l.Allow("1.2.3.4"); !ok {
			t.Fatalf("attempt %d refused, want allowed", i+1)
		}
		clk.Add(time.Second)
	}
	ok, wait := l.Allow("1.2.3.4")
	if ok {
		t.Fatal("the 11th attempt within a minute was allowed")
	}
	if want := 50 * time.Second; wait != want {
		t.Errorf("retry after %v, want %v (until the first attempt leaves the window)", wait, want)
	}
	if ok, _ := l.Allow("5.6.7.8"); !ok {
		t.Error("another key was limited too")
	}
	clk.Add(wait)
	if ok, _ := l.Allow("1.2.3.4"); !ok {
		t.Error("still refused after the oldest attempt left the window")
	}
	if ok, _ := l.Allow("1.2.3.4"); ok {
		t.Error("two attempts allowed when only one left the window")
	}
}

func TestWindowLimiterStaysBoundedInMemory(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	l := NewWindowLimiter(3, time.Minute, clk.Now)
	l.maxKeys = 100
	for i := range 1000 {
		l.Allow(fmt.Sprintf("10.0.%d.%d", i/256, i%256))
	}
	if n := l.Len(); n > 100 {
		t.Fatalf("limiter holds %d keys, want at most 100", n)
	}
}

func TestBucketLimiterRefillsAtItsRate(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	l := NewBucketLimiter(60, 5, clk.Now)
	for i := range 5 {
		if ok, _ := l.Allow("ip"); !ok {
			t.Fatalf("request %d of the burst refused", i+1)
		}
	}
	ok, wait := l.Allow("ip")
	if ok || wait != time.Second {
		t.Fatalf("after the burst: ok=%v wait=%v, want refused for 1s", ok, wait)
	}
	clk.Add(time.Second)
	if ok, _ := l.Allow("ip"); !ok {
		t.Error("refused after a token was refilled")
	}
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

func TestVeryLargeLoginLimitsStayCheap(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	for _, n := range []int{1000, 1001, 1 << 30} {
		l := newLoginLimiter(n, clk.Now)
		for i := range 1000 {
			if ok, _ := l.Allow("ip"); !ok {
				t.Fatalf("limit %d: attempt %d refused", n, i+1)
			}
		}
	}
	w := NewWindowLimiter(1<<30, time.Minute, clk.Now)
	w.Allow("ip")
	if c := cap(w.keys["ip"].times); c > 16 {
		t.Errorf("one event reserved room for %d", c)
	}
}
