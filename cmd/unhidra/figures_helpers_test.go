package main

// Measuring pieces of figures_test.go: the child server's memory from
// /proc/<pid>/status, its Prometheus page, and latency percentiles.

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// pid is the running child's process id.
func (c *child) pid() int {
	c.t.Helper()
	if c.cmd == nil {
		c.t.Fatal("the child is not running")
	}
	return c.cmd.Process.Pid
}

// procMemory returns a process's resident set (VmRSS) and its peak (VmHWM),
// in bytes.
func procMemory(pid int) (rss, hwm int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		fs := strings.Fields(v) // "123456 kB"
		if len(fs) != 2 || fs[1] != "kB" {
			return 0, 0, fmt.Errorf("%s: unexpected %q", k, v)
		}
		n, err := strconv.ParseInt(fs[0], 10, 64)
		if err != nil {
			return 0, 0, err
		}
		if k == "VmRSS" {
			rss = n << 10
		} else {
			hwm = n << 10
		}
	}
	if rss == 0 {
		return 0, 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
	}
	return rss, hwm, sc.Err()
}

// rssWatch samples a process's RSS every 50 ms and keeps the largest
// sample, so growth is measured against the RSS at the start of the load
// rather than the start-up peak that VmHWM also covers.
type rssWatch struct {
	before int64
	peak   atomic.Int64
	stop   chan struct{}
	done   chan struct{}
}

func watchRSS(t testing.TB, pid int) *rssWatch {
	t.Helper()
	rss, _, err := procMemory(pid)
	if err != nil {
		t.Fatalf("server RSS: %v", err)
	}
	w := &rssWatch{before: rss, stop: make(chan struct{}), done: make(chan struct{})}
	w.peak.Store(rss)
	go func() {
		defer close(w.done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-tick.C:
				if rss, _, err := procMemory(pid); err == nil && rss > w.peak.Load() {
					w.peak.Store(rss)
				}
			}
		}
	}()
	t.Cleanup(func() { w.end() })
	return w
}

// end stops sampling and returns the growth: the largest sample minus the
// RSS at the start.
func (w *rssWatch) end() int64 {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
	return w.peak.Load() - w.before
}

// scrape reads a Prometheus text page into "name{labels}" → value.
func scrape(t testing.TB, url string) map[string]float64 {
	t.Helper()
	res, err := (&http.Client{Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		t.Fatalf("metrics: %d %s", res.StatusCode, b)
	}
	m := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		m[line[:i]] = v
	}
	return m
}

// metric returns one sample of a scraped page, failing when it is absent.
func metric(t testing.TB, m map[string]float64, key string) float64 {
	t.Helper()
	v, ok := m[key]
	if !ok {
		t.Fatalf("metric %s missing", key)
	}
	return v
}

// durations collects durations from many goroutines.
type durations struct {
	mu sync.Mutex
	ds []time.Duration
}

func (l *durations) add(d time.Duration) {
	l.mu.Lock()
	l.ds = append(l.ds, d)
	l.mu.Unlock()
}

// summary returns the count, median, p99 and maximum.
func (l *durations) summary() durationSummary {
	l.mu.Lock()
	ds := slices.Clone(l.ds)
	l.mu.Unlock()
	slices.Sort(ds)
	if len(ds) == 0 {
		return durationSummary{}
	}
	at := func(p float64) time.Duration { return ds[min(len(ds)-1, int(p*float64(len(ds))))] }
	return durationSummary{N: len(ds), P50: at(0.50), P99: at(0.99), Max: ds[len(ds)-1]}
}

type durationSummary struct {
	N             int
	P50, P99, Max time.Duration
}

func (s durationSummary) String() string {
	r := func(d time.Duration) time.Duration {
		if d < 10*time.Millisecond {
			return d.Round(10 * time.Microsecond)
		}
		return d.Round(100 * time.Microsecond)
	}
	return fmt.Sprintf("n=%d p50=%v p99=%v max=%v", s.N, r(s.P50), r(s.P99), r(s.Max))
}

// loadAverage is the machine's 1/5/15-minute load, for the figures' context.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	fs := strings.Fields(string(b))
	if len(fs) < 3 {
		return "unknown"
	}
	return strings.Join(fs[:3], " ")
}
