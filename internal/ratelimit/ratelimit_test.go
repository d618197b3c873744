package ratelimit

import (
	"fmt"
	"sync"
	"testing"
	"time"
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

func TestVeryLargeLimitsStayCheap(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	for _, n := range []int{1000, 1001, 1 << 30} {
		l := PerMinute(n, clk.Now)
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
