// Package load is the machinery of the load generators and the device
// simulator behind `unhidra bench ws|mqtt|login` and `unhidra devsim`: it
// provisions users, channels and devices through the APIs, opens the
// connections, drives the load, and prints throughput, latency percentiles
// and the server's memory and CPU (read from /proc, see internal/procfs).
// The command line parses the flags into a WSConfig, MQTTConfig,
// LoginConfig or DevsimConfig and calls BenchWS, BenchMQTT, BenchLogin or
// Devsim; a setting one of them refuses comes back as a *UsageError.
//
// Each run is one call: it starts its goroutines, waits for all of them and
// returns; nothing is shared between runs.
package load

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/unhidra/unhidra/internal/procfs"
)

// UsageError is a setting a run refused that the command line must fix
// (the command shows it as its usage error).
type UsageError struct {
	Problem string
}

func (e *UsageError) Error() string { return e.Problem }

// ---- latency recording ----

// latencies keeps a uniform sample (reservoir) of at most max durations and
// the exact count, min and max. Safe for concurrent use.
type latencies struct {
	mu       sync.Mutex
	max      int
	samples  []time.Duration
	n        int64
	min, top time.Duration
}

func newLatencies(max int) *latencies { return &latencies{max: max, min: math.MaxInt64} }

func (l *latencies) add(d time.Duration) {
	if d < 0 {
		d = 0
	}
	l.mu.Lock()
	l.n++
	if d < l.min {
		l.min = d
	}
	if d > l.top {
		l.top = d
	}
	if len(l.samples) < l.max {
		l.samples = append(l.samples, d)
	} else if j := rand.Int64N(l.n); j < int64(l.max) {
		l.samples[j] = d
	}
	l.mu.Unlock()
}

// percentile returns the p-th percentile (0 < p ≤ 100) by nearest rank.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	k := int(math.Ceil(p/100*float64(len(sorted))-1e-9)) - 1
	k = max(0, min(k, len(sorted)-1))
	return sorted[k]
}

func (l *latencies) summary() string {
	l.mu.Lock()
	s := slices.Clone(l.samples)
	n, lo, hi := l.n, l.min, l.top
	l.mu.Unlock()
	if n == 0 {
		return "no samples"
	}
	slices.Sort(s)
	r := func(d time.Duration) string { return fmtDur(d) }
	return fmt.Sprintf("n=%d min=%s p50=%s p90=%s p99=%s p999=%s max=%s",
		n, r(lo), r(percentile(s, 50)), r(percentile(s, 90)), r(percentile(s, 99)), r(percentile(s, 99.9)), r(hi))
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%dµs", d/time.Microsecond)
	}
}

// benchTSKey marks the send time (Unix nanoseconds) embedded in payloads.
var benchTSKey = []byte(`"bench_ts":`)

// benchTimestamps calls f with every embedded send time in b (a frame may
// batch several messages).
func benchTimestamps(b []byte, f func(time.Time)) int {
	n := 0
	for {
		i := bytes.Index(b, benchTSKey)
		if i < 0 {
			return n
		}
		b = b[i+len(benchTSKey):]
		j := 0
		for j < len(b) && (b[j] == ' ') {
			j++
		}
		k := j
		for k < len(b) && k-j < 20 && b[k] >= '0' && b[k] <= '9' {
			k++
		}
		if ns, err := strconv.ParseInt(string(b[j:k]), 10, 64); err == nil && k > j {
			f(time.Unix(0, ns))
			n++
		}
		b = b[k:]
	}
}

// benchPayload returns a JSON object of about size bytes carrying the send
// time.
func benchPayload(now time.Time, seq int64, size int) []byte {
	head := fmt.Sprintf(`{"bench_ts":%d,"seq":%d,"pad":"`, now.UnixNano(), seq)
	pad := max(0, size-len(head)-2)
	b := make([]byte, 0, len(head)+pad+2)
	b = append(b, head...)
	for i := 0; i < pad; i++ {
		b = append(b, 'x')
	}
	return append(b, '"', '}')
}

// ---- server memory ----

// settledRSS waits until the process's RSS stops moving (two readings half
// a second apart within 1 %, at most 10 s), so that memory freed by earlier
// work (an Argon2 hash at login is 48 MiB) does not count against the
// connections, and returns it.
func settledRSS(ctx context.Context, pid int) (int64, error) {
	prev, err := procfs.RSS(pid)
	if err != nil {
		return 0, err
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(500 * time.Millisecond)
		cur, err := procfs.RSS(pid)
		if err != nil {
			return 0, err
		}
		if d := cur - prev; d*100 <= prev && -d*100 <= prev {
			return cur, nil
		}
		prev = cur
	}
	return prev, nil
}

func fmtBytes(n int64) string {
	if n < 0 {
		return "-" + fmtBytes(-n)
	}
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// progress prints line() to w as "bench: …" every 5 s until ctx ends or
// the returned stop is called.
func progress(ctx context.Context, w io.Writer, line func() string) (stop func()) {
	tick := time.NewTicker(5 * time.Second)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-done:
				return
			case <-tick.C:
				fmt.Fprintf(w, "bench: %s\n", line())
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { tick.Stop(); close(done) }) }
}
