package systemtest

// Measuring pieces of figures_test.go: the child server's memory growth
// (internal/procfs), latency percentiles, and reading message frames.

import (
	"bytes"
	"fmt"
	"github.com/unhidra/unhidra/internal/procfs"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/e2etest"
	"github.com/unhidra/unhidra/wire"
)

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
	rss, err := procfs.RSS(pid)
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
				if rss, err := procfs.RSS(pid); err == nil && rss > w.peak.Load() {
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

// subscribeAll connects n clients (tokens used in turn) and subscribes each
// to channel, dialing from a few goroutines at once.
func subscribeAll(t testing.TB, wsURL string, tokens []string, channel string, n int) []*e2etest.WSConn {
	t.Helper()
	conns := make([]*e2etest.WSConn, n)
	errs := make(chan error, n)
	next := atomic.Int64{}
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				ws, err := e2etest.TryWS(wsURL, "unhidra.v1, bearer."+tokens[i%len(tokens)])
				if err != nil {
					errs <- fmt.Errorf("subscriber %d: %w", i, err)
					return
				}
				conns[i] = ws
				if err := ws.WriteJSON(map[string]any{"type": "subscribe", "channel": channel}); err != nil {
					errs <- err
					return
				}
				for {
					f, err := ws.TryRead(20 * time.Second)
					if err != nil {
						errs <- fmt.Errorf("subscriber %d: %w", i, err)
						return
					}
					if f.Type == wire.TypeSubscribed {
						break
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for _, c := range conns {
		if c != nil {
			t.Cleanup(func() { c.Close() })
		}
	}
	for err := range errs {
		t.Fatal(err)
	}
	return conns
}

// stamped is the data of a timed message: its send time first ("a" sorts
// first even if the server re-encodes the object), so a reader finds it
// without decoding the frame; size is the approximate JSON size.
func stamped(at time.Time, size int) map[string]any {
	return map[string]any{"a": at.UnixNano(), "b": strings.Repeat("x", max(0, size-40))}
}

var (
	messagePrefix = []byte(`{"type":"message"`)
	offsetKey     = []byte(`"offset":`)
	stampKey      = []byte(`"data":{"a":`)
)

// messageOffset returns a message frame's offset and, when its text is
// stamped, its send time (ok is false for other frames).
func messageOffset(frame []byte) (offset int64, sent time.Time, ok bool) {
	if !bytes.HasPrefix(frame, messagePrefix) {
		return 0, time.Time{}, false
	}
	i := bytes.Index(frame, offsetKey)
	if i < 0 {
		return 0, time.Time{}, false
	}
	offset, _ = leadingInt(frame[i+len(offsetKey):])
	if j := bytes.Index(frame, stampKey); j >= 0 {
		if ns, n := leadingInt(frame[j+len(stampKey):]); n > 0 {
			sent = time.Unix(0, ns)
		}
	}
	return offset, sent, true
}

func leadingInt(b []byte) (v int64, n int) {
	for n < len(b) && b[n] >= '0' && b[n] <= '9' {
		v = v*10 + int64(b[n]-'0')
		n++
	}
	return v, n
}

// histogramShare returns the share of a histogram's observations (one
// series, picked by a label fragment such as `route="GET /health"`) at or
// under le seconds, and their count; the scraped page must be one read
// after the load, minus the one read before.
func histogramShare(after, before map[string]float64, name, series, le string) (share float64, n float64) {
	find := func(m map[string]float64, suffix, le string) float64 {
		for k, v := range m {
			if strings.HasPrefix(k, name+suffix+"{") && strings.Contains(k, series) && (le == "" || strings.Contains(k, `le="`+le+`"`)) {
				return v
			}
		}
		return 0
	}
	n = find(after, "_count", "") - find(before, "_count", "")
	if n <= 0 {
		return 0, 0
	}
	return (find(after, "_bucket", le) - find(before, "_bucket", le)) / n, n
}

// timingsAsserted reports whether latency figures are asserted: the server
// runs without -race, but under -race this process, which makes the load
// and takes the times, is several times slower, and its figures are only
// logged.
func timingsAsserted(t testing.TB) bool {
	t.Helper()
	if e2etest.RaceEnabled {
		t.Log("latency figures not asserted: this test process runs under -race (run the soak tests without -race for them)")
		return false
	}
	return true
}
