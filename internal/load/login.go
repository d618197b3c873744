package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/unhidra/unhidra/internal/procfs"
)

// LoginConfig is a run of `unhidra bench login`: the flags, one field each.
type LoginConfig struct {
	AuthURL        string
	User, Password string // empty User: a new bench user is registered
	Concurrency    int
	Duration       time.Duration
	SrcIPs         int
	WrongPassword  bool
	Spawn          bool
	ServerPID      int
}

// BenchLogin runs `unhidra bench login`: logins as fast as cfg.Concurrency
// allows; the figures go to stdout, progress to stderr.
func BenchLogin(ctx context.Context, stdout, stderr io.Writer, cfg LoginConfig) error {
	if cfg.Spawn {
		srv, err := spawnServer(ctx, stderr)
		if err != nil {
			return err
		}
		defer srv.Stop()
		cfg.AuthURL, cfg.ServerPID = srv.AuthURL, srv.PID()
	}
	api := newAPIClient(cfg.AuthURL, "", nil)
	if cfg.User == "" {
		cfg.User, cfg.Password = "bench-"+randomHex(4), randomHex(12)
		if err := api.register(ctx, cfg.User, cfg.Password); err != nil {
			return err
		}
	} else if cfg.Password == "" {
		return &UsageError{"--user needs --password (or $UNHIDRA_BENCH_PASSWORD)"}
	}
	pw := cfg.Password
	if cfg.WrongPassword {
		pw = pw + "-wrong"
	}
	clients := make([]*apiClient, cfg.SrcIPs)
	for i := range clients {
		clients[i] = api.withSource(i)
	}
	ok := newLatencies(200_000)
	all := newLatencies(200_000)
	var mu sync.Mutex
	statuses := map[string]int{}
	var n atomic.Int64
	rctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	var rss0 int64
	if cfg.ServerPID > 0 {
		rss0, _ = procfs.RSS(cfg.ServerPID)
	}
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < cfg.Concurrency; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; rctx.Err() == nil; i += cfg.Concurrency {
				a := clients[i%len(clients)]
				t := time.Now()
				_, err := a.login(rctx, cfg.User, pw)
				d := time.Since(t)
				if rctx.Err() != nil {
					return
				}
				n.Add(1)
				all.add(d)
				key := "200"
				var ae *apiError
				switch {
				case err == nil:
					ok.add(d)
				case errors.As(err, &ae):
					key = fmt.Sprint(ae.Status)
				default:
					key = "transport error"
				}
				mu.Lock()
				statuses[key]++
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	el := time.Since(start)
	var keys []string
	for k := range statuses {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s×%d", k, statuses[k]))
	}
	fmt.Fprintf(stdout, "logins: %d in %s (%.1f/s), concurrency %d, statuses: %s\n", n.Load(), el.Round(time.Millisecond), float64(n.Load())/el.Seconds(), cfg.Concurrency, strings.Join(parts, " "))
	fmt.Fprintf(stdout, "successful login latency: %s\n", ok.summary())
	fmt.Fprintf(stdout, "all answers latency: %s\n", all.summary())
	if cfg.ServerPID > 0 {
		if rss, err := procfs.RSS(cfg.ServerPID); err == nil {
			fmt.Fprintf(stdout, "server RSS: %s before, %s after\n", fmtBytes(rss0), fmtBytes(rss))
		}
	}
	return nil
}
