package main

// TESTPLAN's measured figures against the real binary in a child process
// (built without -race, real Argon2id parameters), loaded from this test
// process: AUTH-6 (hash flood), WS-8 (slow consumer among many), WS-9 with
// publishes in flight at SIGTERM, and WS-6's "others unaffected" by a
// flooding client. make check runs short variants that assert the
// structural properties and log the figures; make soak (UNHIDRA_SOAK=1)
// runs the full sizes and asserts TESTPLAN's timings and memory bounds.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestLoginFloodFigures is AUTH-6 in make check: 200 concurrent bad logins
// for 5 s. It asserts the pool bound, the answers and the memory bound, and
// logs the timings.
func TestLoginFloodFigures(t *testing.T) { loginFlood(t, 5*time.Second, false) }

// TestSoakLoginFloodFigures is AUTH-6 in full: 30 s, with the refusal and
// /health timings asserted.
func TestSoakLoginFloodFigures(t *testing.T) {
	soak(t)
	loginFlood(t, 30*time.Second, true)
}

func loginFlood(t *testing.T, d time.Duration, strict bool) {
	if testing.Short() {
		t.Skip("load test")
	}
	const attackers = 200
	c := newChild(t, map[string]string{
		"RATE_LIMIT_LOGIN_PER_MINUTE": "100000000", "RATE_LIMIT_IP_PER_MINUTE": "100000000",
	})
	c.start()
	// One real login first: the dummy hash for unknown users is made, and
	// the process is warm, before the baseline is taken.
	c.login(t, "admin", c.adminPW)
	rss := watchRSS(t, c.pid())
	loadBefore := loadAverage()

	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: attackers + 8}, Timeout: 30 * time.Second}
	var statuses [600]atomic.Int64
	var transportErrs atomic.Int64
	var refused, bad durations
	var wg sync.WaitGroup
	for i := range attackers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := fmt.Sprintf(`{"username":"flood%d","password":"not the password"}`, i)
			for ctx.Err() == nil {
				req, _ := http.NewRequest("POST", c.authURL+"/login", strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				start := time.Now()
				res, err := client.Do(req)
				if err != nil {
					transportErrs.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
				took := time.Since(start)
				if res.StatusCode >= 0 && res.StatusCode < len(statuses) {
					statuses[res.StatusCode].Add(1)
				}
				switch res.StatusCode {
				case 503, 429:
					refused.add(took)
					// A refused attacker comes back after 20 ms rather
					// than spinning: the attackers share this machine's
					// CPUs with the server, and the figure is about the
					// server.
					time.Sleep(20 * time.Millisecond)
				case 401:
					bad.add(took)
				}
			}
		}()
	}
	var health durations
	hc := &http.Client{Timeout: 10 * time.Second}
	var healthFailures []string
	for ctx.Err() == nil {
		start := time.Now()
		res, err := hc.Get(c.authURL + "/health")
		if err != nil {
			healthFailures = append(healthFailures, err.Error())
		} else {
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != 200 {
				healthFailures = append(healthFailures, res.Status)
			}
			health.add(time.Since(start))
		}
		time.Sleep(50 * time.Millisecond)
	}
	wg.Wait()
	growth := rss.end()
	loadAfter := loadAverage()
	m := scrape(t, c.authURL+"/metrics")

	got := map[int]int64{}
	for code := range statuses {
		if n := statuses[code].Load(); n > 0 {
			got[code] = n
		}
	}
	peak := metric(t, m, "unhidra_auth_hash_in_flight_peak")
	rs, bs, hs := refused.summary(), bad.summary(), health.summary()
	t.Logf("AUTH-6 (%v, %d attackers, child without -race, load %s → %s): answers %v, transport errors %d; "+
		"hashes run %v, peak concurrent %v (CPUs %d); 503/429 latency %v; 401 latency %v; /health %v; server RSS growth %d MiB (from %d MiB)",
		d, attackers, loadBefore, loadAfter, got, transportErrs.Load(),
		m["unhidra_auth_password_hash_seconds_count"], peak, runtime.NumCPU(), rs, bs, hs, growth>>20, rss.before>>20)

	for code, n := range got {
		if code != 401 && code != 429 && code != 503 {
			t.Errorf("%d answers with status %d; want only 401, 429 and 503", n, code)
		}
	}
	if got[401] == 0 || got[503]+got[429] == 0 {
		t.Errorf("answers %v: want some hashed (401) and some shed (503/429)", got)
	}
	if peak < 1 || peak > float64(runtime.NumCPU()) {
		t.Errorf("%v hashes ran at once; want 1..%d (the CPU count)", peak, runtime.NumCPU())
	}
	if len(healthFailures) > 0 {
		t.Errorf("/health failed %d times during the flood: %v", len(healthFailures), healthFailures[:min(5, len(healthFailures))])
	}
	if growth > 256<<20 {
		t.Errorf("server RSS grew by %d MiB; want < 256 MiB", growth>>20)
	}
	if strict {
		if rs.P99 >= 10*time.Millisecond {
			t.Errorf("503/429 answers p99 %v; want < 10 ms", rs.P99)
		}
		if hs.P99 >= 100*time.Millisecond {
			t.Errorf("/health p99 %v; want < 100 ms", hs.P99)
		}
	}
}
