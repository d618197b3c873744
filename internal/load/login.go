package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

var benchLoginCmd = &cmdSpec{
	name: "bench login",
	args: "[flags]",
	summary: `Logs in as fast as --concurrency allows for --duration and prints logins per
second, the latency percentiles and the answers by status (429 and 503 are the
server's limits and its hash queue at work).`,
	more: `Environment: UNHIDRA_BENCH_PASSWORD is the default of --password.`,
	examples: []string{
		"unhidra bench login --spawn --concurrency 4 --duration 10s",
		"unhidra bench login --auth-url http://127.0.0.1:9200 --user bob --password 'a long password'",
	},
}

// runBenchLogin is `unhidra bench login`: login throughput and latency.
func runBenchLogin(ctx context.Context, e env) error {
	spec := benchLoginCmd
	fs := spec.flags()
	authURL := fs.String("auth-url", "http://127.0.0.1:9200", "the auth API")
	user := fs.String("user", "", "user to log in as (default: a new bench user is registered)")
	pass := fs.String("password", "", "its password (default $UNHIDRA_BENCH_PASSWORD)")
	conc := fs.Int("concurrency", 8, "logins in flight")
	dur := fs.Duration("duration", 10*time.Second, "how long to run")
	srcIPs := fs.Int("src-ips", 1, "loopback source addresses to spread logins over (the per-IP login limit applies to each)")
	wrong := fs.Bool("wrong-password", false, "use a wrong password (measures refusals)")
	spawn := fs.Bool("spawn", false, "start \"unhidra serve\" in a temporary directory (limits raised) and bench it")
	pid := fs.Int("server-pid", 0, "the server's process id, to report its RSS")
	if _, err := spec.parse(e, fs, e.args); err != nil {
		return err
	}
	*pass = envDefault(e, *pass, "UNHIDRA_BENCH_PASSWORD")
	if *conc < 1 || *dur <= 0 || *srcIPs < 1 || *srcIPs > 250 {
		return spec.errorf("needs --concurrency ≥ 1, --duration > 0, 1 ≤ --src-ips ≤ 250")
	}
	if *spawn {
		srv, err := spawnServer(ctx, e.stderr)
		if err != nil {
			return err
		}
		defer srv.Stop()
		*authURL, *pid = srv.AuthURL, srv.PID()
	}
	api := newAPIClient(*authURL, "", nil)
	if *user == "" {
		*user, *pass = "bench-"+randomHex(4), randomHex(12)
		if err := api.register(ctx, *user, *pass); err != nil {
			return err
		}
	} else if *pass == "" {
		return spec.errorf("--user needs --password (or $UNHIDRA_BENCH_PASSWORD)")
	}
	pw := *pass
	if *wrong {
		pw = pw + "-wrong"
	}
	clients := make([]*apiClient, *srcIPs)
	for i := range clients {
		clients[i] = api.withSource(i)
	}
	ok := newLatencies(200_000)
	all := newLatencies(200_000)
	var mu sync.Mutex
	statuses := map[string]int{}
	var n atomic.Int64
	rctx, cancel := context.WithTimeout(ctx, *dur)
	defer cancel()
	var rss0 int64
	if *pid > 0 {
		rss0, _ = readRSS(*pid)
	}
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < *conc; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; rctx.Err() == nil; i += *conc {
				a := clients[i%len(clients)]
				t := time.Now()
				_, err := a.login(rctx, *user, pw)
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
	fmt.Fprintf(e.stdout, "logins: %d in %s (%.1f/s), concurrency %d, statuses: %s\n", n.Load(), el.Round(time.Millisecond), float64(n.Load())/el.Seconds(), *conc, strings.Join(parts, " "))
	fmt.Fprintf(e.stdout, "successful login latency: %s\n", ok.summary())
	fmt.Fprintf(e.stdout, "all answers latency: %s\n", all.summary())
	if *pid > 0 {
		if rss, err := readRSS(*pid); err == nil {
			fmt.Fprintf(e.stdout, "server RSS: %s before, %s after\n", fmtBytes(rss0), fmtBytes(rss))
		}
	}
	return nil
}
