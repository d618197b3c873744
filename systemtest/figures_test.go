package systemtest

// TESTPLAN's measured figures against the real binary in a child process
// (built without -race, real Argon2id parameters), loaded from this test
// process: AUTH-6 (hash flood), WS-8 (slow consumer among many), WS-9 with
// publishes in flight at SIGTERM, and WS-6's "others unaffected" by a
// flooding client. make check runs short variants that assert the
// structural properties and log the figures; make soak (UNHIDRA_SOAK=1)
// runs the full sizes and asserts TESTPLAN's memory bounds, and its timings
// when this test process runs without -race (the load is made and timed
// here, on the same cores as the server):
//
//	UNHIDRA_SOAK=1 go test -count=1 -run Soak -v ./systemtest
//
// Every figure is logged with the machine's load average.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/unhidra/unhidra/internal/procfs"
	"io"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/e2etest"
	"github.com/unhidra/unhidra/wire"
)

// TestLoginFloodFigures is AUTH-6 in make check: 200 concurrent bad logins
// for 5 s. It asserts the pool bound (unhidra_auth_hash_in_flight_peak at
// most the CPU count), that every login gets 401, 429 or 503, and the
// server's RSS growth (from /proc/<pid>/status), and logs the timings.
func TestLoginFloodFigures(t *testing.T) { loginFlood(t, 5*time.Second, false) }

// TestSoakLoginFloodFigures is AUTH-6 in full: 30 s, with the refusal and
// /health timings asserted.
func TestSoakLoginFloodFigures(t *testing.T) {
	soak(t)
	loginFlood(t, 30*time.Second, true)
}

func loginFlood(t *testing.T, d time.Duration, strict bool) {
	const attackers = 200
	c := e2etest.NewChild(t, map[string]string{
		"RATE_LIMIT_LOGIN_PER_MINUTE": "100000000", "RATE_LIMIT_IP_PER_MINUTE": "100000000",
	})
	c.Start()
	// One real login first: the dummy hash for unknown users is made, and
	// the process is warm, before the baseline is taken.
	c.Login(t, "admin", c.AdminPW)
	rss := watchRSS(t, c.PID())
	loadBefore := procfs.LoadAverage()
	m0 := e2etest.Scrape(t, c.GWURL+"/metrics")

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
				req, _ := http.NewRequest("POST", c.AuthURL+"/login", strings.NewReader(body))
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
		res, err := hc.Get(c.AuthURL + "/health")
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
	loadAfter := procfs.LoadAverage()
	m := e2etest.Scrape(t, c.GWURL+"/metrics")

	got := map[int]int64{}
	for code := range statuses {
		if n := statuses[code].Load(); n > 0 {
			got[code] = n
		}
	}
	peak := e2etest.Metric(t, m, "unhidra_auth_hash_in_flight_peak")
	rs, bs, hs := refused.summary(), bad.summary(), health.summary()
	// The server's own view (from handler entry to the response written):
	// what it adds to the client's figure is time waiting for a CPU.
	const hist = "unhidra_http_request_duration_seconds"
	login10, nLogin := histogramShare(m, m0, hist, `route="POST /login"`, "0.01")
	health10, nHealth := histogramShare(m, m0, hist, `route="GET /health"`, "0.01")
	// A hashed login takes far over 10 ms, so the logins within 10 ms are
	// all refusals; their share is taken of the refusals alone.
	refused10 := 0.0
	if nRefused := nLogin - float64(got[401]); nRefused > 0 {
		refused10 = login10 * nLogin / nRefused
	}
	t.Logf("AUTH-6 server side: %.2f%% of %v refused logins and %.2f%% of %v /health answered within 10 ms",
		100*refused10, nLogin-float64(got[401]), 100*health10, nHealth)
	t.Logf("AUTH-6 (%v, %d attackers, child without -race, load %s → %s): answers %v, transport errors %d; "+
		"hashes run %v, peak concurrent %v (CPUs %d); 503/429 latency %v; 401 latency %v; /health %v; server RSS growth %d MiB (from %d MiB)",
		d, attackers, loadBefore, loadAfter, got, transportErrs.Load(),
		m["unhidra_auth_password_hash_seconds_count"], peak, runtime.NumCPU(), rs, bs, hs, growth>>20, rss.before>>20)

	for code, n := range got {
		if code != 401 && code != 429 && code != 503 {
			t.Errorf("%d answers with status %d; want only 401, 429 and 503", n, code)
		}
	}
	if n := transportErrs.Load(); n > 0 {
		t.Errorf("%d logins got no HTTP answer", n)
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
	if strict && timingsAsserted(t) {
		// The refusals are timed on the server: on two shared cores the
		// attackers' own process and every other process queue for CPU
		// in front of the client-side figure (logged above).
		if refused10 < 0.99 {
			t.Errorf("the server answered %.2f%% of the refused logins within 10 ms; want ≥ 99%%", 100*refused10)
		}
		if hs.P99 >= 100*time.Millisecond {
			t.Errorf("/health p99 %v; want < 100 ms", hs.P99)
		}
	}
}

// TestSlowConsumerFigures is WS-8 in make check: one subscriber that never
// reads among 200 on one channel, a publisher at a steady rate. It asserts
// 4008 for the slow one, nothing lost or reordered for the others, and the
// server's RSS growth under 64 MiB, and logs the latency.
func TestSlowConsumerFigures(t *testing.T) { slowConsumer(t, 200, 25*time.Millisecond, false) }

// TestSoakSlowConsumerFigures is WS-8 in full: 1,000 subscribers, end-to-end
// p99 < 200 ms and server RSS growth < 64 MiB asserted. The publisher is
// slower than in make check (8 messages/s, 250 MB/s to all subscribers
// together), which is what two shared cores carry with the subscribers in
// this process; the slow client then needs about 20 s to pass its limit.
func TestSoakSlowConsumerFigures(t *testing.T) {
	soak(t)
	slowConsumer(t, 1000, 125*time.Millisecond, true)
}

// slowConsumer publishes one message every interval.
func slowConsumer(t *testing.T, subscribers int, every time.Duration, strict bool) {
	const (
		textSize = 31 << 10 // bytes of data per message (the limit is 32 KiB)
		// On loopback the kernel's send buffer of the slow socket grows to
		// a few MiB (the MSS is 64 KiB) before the gateway's own queue
		// fills, so up to 15 MiB is published; publishing stops 1 s after
		// the slow-consumer close.
		maxMessages = 500
		after       = 40
	)
	c := e2etest.NewChild(t, map[string]string{"ACCESS_TOKEN_TTL": "24h", "MAX_CONNECTIONS_PER_USER": "1000"})
	c.Start()
	// pub0 publishes, pub1 is the slow subscriber, the others subscribe.
	tokens, channel := crashSetup(t, c, 5)
	rssIdle, _ := procfs.RSS(c.PID())
	subs := subscribeAll(t, c.WSURL, tokens[2:], channel, subscribers)

	// The slow client keeps the kernel's default receive buffer: one
	// smaller than loopback's 64 KiB segments (e.g. 4 KiB) stalls the drain
	// at the end on zero-window probes.
	slow := e2etest.DialWS(t, c.WSURL, "unhidra.v1, bearer."+tokens[1])
	slow.Send(t, map[string]any{"type": "subscribe", "channel": channel})
	slow.Until(t, wire.TypeSubscribed, 10*time.Second)
	slowPort := slow.NetConn().LocalAddr().(*net.TCPAddr).Port
	gwPort, _ := strconv.Atoi(c.Env["GATEWAY_PORT"])
	// From here on the slow client reads nothing until the server has
	// closed it.

	pub := e2etest.DialWS(t, c.WSURL, "unhidra.v1, bearer."+tokens[0])
	rss := watchRSS(t, c.PID())
	t.Logf("server RSS %d MiB idle, %d MiB with %d subscribers", rssIdle>>20, rss.before>>20, subscribers+1)

	// final is the offset of the last message, set before it is sent.
	var final atomic.Int64
	type result struct {
		got int64
		err error
		lat []time.Duration
	}
	results := make([]result, len(subs))
	var wg sync.WaitGroup
	for i, ws := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &results[i]
			r.lat = make([]time.Duration, 0, maxMessages)
			_ = ws.SetDeadline(time.Now().Add(maxMessages*every + 60*time.Second))
			for r.got == 0 || r.got != final.Load() {
				_, msg, err := ws.ReadMessage()
				if err != nil {
					r.err = fmt.Errorf("subscriber %d after offset %d: %w", i, r.got, err)
					return
				}
				off, sent, ok := messageOffset(msg)
				if !ok {
					continue
				}
				if off != r.got+1 {
					r.err = fmt.Errorf("subscriber %d: offset %d after %d (lost or reordered)", i, off, r.got)
					return
				}
				r.got++
				r.lat = append(r.lat, time.Since(sent))
			}
		}()
	}

	// The publisher's acks.
	var acks atomic.Int64
	ackErr := make(chan error, 1)
	go func() {
		for {
			f, err := pub.TryRead(60 * time.Second)
			if err != nil {
				ackErr <- fmt.Errorf("publisher after %d acks: %w", acks.Load(), err)
				return
			}
			switch f.Type {
			case wire.TypeAck:
				if n := acks.Add(1); n == final.Load() {
					ackErr <- nil
					return
				}
			case wire.TypeError:
				ackErr <- fmt.Errorf("publisher: %s", f.Raw)
				return
			}
		}
	}()

	// The slow client wakes up once the server reports the slow-consumer
	// close, and drains what it was sent, which must end in 4008.
	var published atomic.Int64
	type slowResult struct {
		atPublished int64 // messages published when the close was seen
		queuePeak   int64 // largest outbound queue sampled before the close
		kernel      int64 // bytes in the server socket's send queue then
		got         int64 // messages the slow client received before 4008
		bytes       int
		code        int
		err         error
	}
	closed := make(chan struct{})
	slowDone := make(chan slowResult, 1)
	go func() {
		var sr slowResult
		defer func() { slowDone <- sr }()
		deadline := time.Now().Add(maxMessages*every + 10*time.Second)
		for {
			m := e2etest.Scrape(t, c.GWURL+"/metrics")
			if m["unhidra_gateway_slow_consumer_closes_total"] < 1 {
				sr.queuePeak = max(sr.queuePeak, int64(m["unhidra_gateway_queued_bytes_max"]))
			} else {
				sr.atPublished = published.Load()
				sr.kernel = procfs.TCPSendQueue(gwPort, slowPort)
				close(closed)
				break
			}
			if time.Now().After(deadline) {
				sr.err = fmt.Errorf("no slow-consumer close")
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		_ = slow.SetDeadline(time.Now().Add(30 * time.Second))
		for {
			_, msg, err := slow.ReadMessage()
			if err != nil {
				sr.code, _ = asClose(err)
				if sr.code == 0 {
					sr.err = err
				}
				return
			}
			sr.bytes += len(msg)
			if off, _, ok := messageOffset(msg); ok {
				if off != sr.got+1 && sr.err == nil {
					sr.err = fmt.Errorf("slow client: offset %d after %d", off, sr.got)
				}
				sr.got = off
			}
		}
	}()

	start := time.Now()
	tick := time.NewTicker(every)
	stopAt := int64(maxMessages)
	for k := int64(1); k <= stopAt; k++ {
		<-tick.C
		select {
		case <-closed:
			stopAt = min(stopAt, published.Load()+after)
			closed = nil
		default:
		}
		if k == stopAt {
			final.Store(k)
		}
		id := fmt.Sprintf("m%d", k)
		pub.Send(t, map[string]any{"type": "publish", "id": id, "channel": channel, "client_msg_id": id, "data": stamped(time.Now(), textSize)})
		published.Add(1)
	}
	tick.Stop()
	publishing := time.Since(start)
	if err := <-ackErr; err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	growth := rss.end()
	// From before the subscribers connected to the peak while publishing.
	total := rss.peak.Load() - rssIdle
	sr := <-slowDone
	m := e2etest.Scrape(t, c.GWURL+"/metrics")

	var lat durations
	complete := 0
	for _, r := range results {
		if r.err != nil {
			t.Error(r.err)
		}
		if r.got == final.Load() {
			complete++
		}
		lat.ds = append(lat.ds, r.lat...)
	}
	ls := lat.summary()
	t.Logf("WS-8 (%d subscribers + 1 slow; %d messages of %d KiB, one per %v, over %v; child without -race; load %s): "+
		"slow client closed %d after receiving %d messages (%d KiB); its gateway queue sampled up to %d KiB; the close was seen with %d published and %d KiB in the server socket's kernel send queue; "+
		"%d/%d subscribers got all %d in order; end-to-end latency %v; server RSS growth %d MiB while publishing, %d MiB since before the subscribers connected; slow-consumer closes %v",
		subscribers, final.Load(), textSize>>10, every, publishing.Round(time.Millisecond), procfs.LoadAverage(),
		sr.code, sr.got, sr.bytes>>10, sr.queuePeak>>10, sr.atPublished, sr.kernel>>10,
		complete, subscribers, final.Load(), ls, growth>>20, total>>20, m["unhidra_gateway_slow_consumer_closes_total"])

	if sr.err != nil {
		t.Errorf("slow client: %v", sr.err)
	}
	if sr.code != 4008 {
		t.Errorf("slow client closed with %d, want 4008", sr.code)
	}
	if n := m["unhidra_gateway_slow_consumer_closes_total"]; n != 1 {
		t.Errorf("%v slow-consumer closes, want exactly 1", n)
	}
	// The backlog built up in the gateway's queue (sampled every 50 ms
	// while it grew by about 1 MiB/s) and never passed 1 MiB plus a frame.
	if sr.queuePeak < 256<<10 || sr.queuePeak > 1<<20+64<<10 {
		t.Errorf("the fullest outbound queue sampled %d KiB before the close; want 256 KiB to 1 MiB + one frame", sr.queuePeak>>10)
	}
	if complete != subscribers {
		t.Errorf("%d of %d subscribers received every message", complete, subscribers)
	}
	if total >= 64<<20 {
		t.Errorf("server RSS grew by %d MiB, want < 64 MiB", total>>20)
	}
	if strict && timingsAsserted(t) && ls.P99 >= 200*time.Millisecond {
		t.Errorf("end-to-end p99 %v, want < 200 ms", ls.P99)
	}
}

// TestGracefulShutdownWithPublishesInFlight is WS-9 with publishes truly in
// flight: publishers send bursts without waiting for acks and SIGTERM
// arrives in the middle of the burst. Every client gets 1001, the process
// exits 0 within SHUTDOWN_TIMEOUT, every acked message is stored as acked,
// and after a restart every refused or unanswered publish, sent again with
// its client_msg_id, gets one ack: the original one when it had been
// stored, a new message otherwise, and nothing is stored twice.
func TestGracefulShutdownWithPublishesInFlight(t *testing.T) { shutdownInFlight(t, 20, 60) }

// TestSoakGracefulShutdownWithPublishesInFlight: 100 publishers.
func TestSoakGracefulShutdownWithPublishesInFlight(t *testing.T) {
	soak(t)
	shutdownInFlight(t, 100, 80)
}

// publishFate is what became of one publish, as its client saw it.
type publishFate struct {
	client   int
	sent     time.Time
	answered time.Time // zero: no answer before the close
	ack      *wire.Ack
	errCode  string
}

func shutdownInFlight(t *testing.T, clients, burst int) {
	const users = 4
	c := e2etest.NewChild(t, map[string]string{"ACCESS_TOKEN_TTL": "24h", "SHUTDOWN_TIMEOUT": "5s"})
	c.Start()
	tokens, channel := crashSetup(t, c, users)

	var mu sync.Mutex
	fates := map[string]*publishFate{}
	codes := make(chan int, clients)
	var burstSent atomic.Int64
	goBurst := make(chan struct{})
	var ready, writers sync.WaitGroup
	for i := range clients {
		ws := e2etest.DialWS(t, c.WSURL, "unhidra.v1, bearer."+tokens[i%users])
		var closing atomic.Bool // the server's close arrived: no more data frames
		ready.Add(1)
		writers.Add(1)
		// The writer: 1 s at 30 frames/s, then a burst as fast as the
		// socket takes it (within the per-connection burst of 100).
		go func() {
			defer writers.Done()
			send := func(k int) bool {
				if closing.Load() {
					return false
				}
				id := fmt.Sprintf("c%d-%d", i, k)
				mu.Lock()
				fates[id] = &publishFate{client: i, sent: time.Now()}
				mu.Unlock()
				if err := ws.WriteJSON(map[string]any{"type": "publish", "id": id, "channel": channel, "client_msg_id": id, "text": id}); err != nil {
					mu.Lock()
					delete(fates, id) // never sent
					mu.Unlock()
					return false
				}
				return true
			}
			k := 0
			for range 30 {
				if !send(k) {
					ready.Done()
					return
				}
				k++
				time.Sleep(33 * time.Millisecond)
			}
			ready.Done()
			<-goBurst
			for range burst {
				if !send(k) {
					return
				}
				k++
				burstSent.Add(1)
			}
		}()
		// The reader: acks and errors by id, until the close, which it
		// answers as a client library would.
		go func() {
			for {
				f, err := ws.TryRead(20 * time.Second)
				if err != nil {
					code, ok := asClose(err)
					if ok {
						closing.Store(true)
						_ = ws.WriteClose(code, "")
					}
					codes <- code
					return
				}
				if f.Type != wire.TypeAck && f.Type != wire.TypeError {
					continue
				}
				var id string
				_ = json.Unmarshal(f.ID, &id)
				mu.Lock()
				if p := fates[id]; p != nil {
					p.answered = time.Now()
					if f.Type == wire.TypeAck {
						p.ack = &wire.Ack{Channel: f.Channel, MessageID: f.MessageID, Offset: f.Offset}
					} else {
						p.errCode = f.Code
					}
				}
				mu.Unlock()
			}
		}()
	}
	ready.Wait()
	close(goBurst)
	// SIGTERM once about half of the burst has been written.
	for wait := time.Now(); burstSent.Load() < int64(clients*burst/2); {
		if time.Since(wait) > 20*time.Second {
			t.Fatalf("only %d of %d publishes of the burst written", burstSent.Load(), clients*burst)
		}
		time.Sleep(time.Millisecond)
	}
	signalAt := time.Now()
	err, took := c.Terminate(8 * time.Second)
	writers.Wait()
	if err != nil {
		t.Errorf("exit after SIGTERM: %v (after %v)\n%s", err, took, tailLines(c.Logs.String(), 20))
	}
	if took > 5*time.Second {
		t.Errorf("exit took %v, more than SHUTDOWN_TIMEOUT 5 s", took)
	}
	closeCodes := map[int]int{}
	for range clients {
		closeCodes[<-codes]++
	}
	if closeCodes[1001] != clients {
		t.Errorf("close codes %v, want 1001 for all %d clients", closeCodes, clients)
	}

	// What the clients saw.
	var sent, inFlight, ackedBefore, ackedAfter, refused, unanswered, unansweredEarly int
	refusedCodes := map[string]int{}
	log := &ackLog{acks: map[string]wire.Ack{}}
	mu.Lock()
	for id, p := range fates {
		sent++
		if p.sent.Before(signalAt) && (p.answered.IsZero() || p.answered.After(signalAt)) {
			inFlight++
		}
		switch {
		case p.ack != nil && p.answered.Before(signalAt):
			ackedBefore++
		case p.ack != nil:
			ackedAfter++
		case p.errCode != "":
			refused++
			refusedCodes[p.errCode]++
		default:
			unanswered++
			if p.sent.Before(signalAt) {
				unansweredEarly++
			}
		}
		if p.ack != nil {
			if err := log.add(id, *p.ack); err != nil {
				t.Error(err)
			}
		}
	}
	mu.Unlock()

	// Restart: every ack is in history as acked (lost = acked − stored = 0).
	c.Start()
	k := &checker{}
	k.check(t, c, tokens[0], channel, log, true)
	storedBefore := int(k.last)
	var refusedStored, unansweredStored int
	retry := map[int][]string{} // by user
	controls := 0
	mu.Lock()
	for id, p := range fates {
		if p.ack != nil {
			// A few acked ones go again too: across the restart they
			// must get their original ack and store nothing.
			if controls < 40 {
				controls++
				retry[p.client%users] = append(retry[p.client%users], id)
			}
			continue
		}
		if _, ok := k.byClient[id]; ok {
			if p.errCode != "" {
				refusedStored++
			} else {
				unansweredStored++
			}
		}
		retry[p.client%users] = append(retry[p.client%users], id)
	}
	mu.Unlock()

	// Sent again with the same client_msg_id: one ack each, the original
	// message when it was stored.
	retried := retryPublishes(t, c, tokens, channel, retry)
	if n := refused + unanswered + controls; len(retried) != n {
		t.Errorf("%d retries acked, want %d", len(retried), n)
	}
	var sameAck, newMsgs int
	for id, a := range retried {
		if m, ok := k.byClient[id]; ok {
			if a.MessageID != m.ID || a.Offset != m.Offset {
				t.Errorf("retry of %s acked %s/%d, but it was stored as %s/%d", id, a.MessageID, a.Offset, m.ID, m.Offset)
			}
			sameAck++
		} else {
			if a.Offset <= int64(storedBefore) {
				t.Errorf("retry of unstored %s acked at offset %d, not after the %d stored", id, a.Offset, storedBefore)
			}
			newMsgs++
		}
		if err := log.add(id, a); err != nil {
			t.Error(err)
		}
	}
	final := checkHistory(t, c, tokens[0], channel, log)
	if final != len(fates) {
		t.Errorf("%d messages stored after the retries; want every one of the %d sent, once", final, len(fates))
	}
	t.Logf("WS-9 in flight (%d publishers, load %s): exit 0 after %v; close codes %v; %d publishes sent, %d in flight at SIGTERM; "+
		"%d acked before the signal, %d acked after it, %d refused %v (%d of them stored nonetheless), %d unanswered (%d of them sent before the signal; %d stored); "+
		"lost after ack 0; %d stored before the retries; retries of the %d refused or unanswered and %d acked: %d got the original ack, %d were stored new; %d stored in the end, no duplicate",
		clients, procfs.LoadAverage(), took.Round(time.Millisecond), closeCodes, sent, inFlight,
		ackedBefore, ackedAfter, refused, refusedCodes, refusedStored, unanswered, unansweredEarly, unansweredStored,
		storedBefore, len(retried)-controls, controls, sameAck, newMsgs, final)
	if inFlight == 0 {
		t.Error("no publish was in flight at SIGTERM; the test did not test it")
	}
}

// retryPublishes sends the given client_msg_ids again as their users, at
// most maxBurst on one connection (within its inbound burst), and returns
// the ack of each.
func retryPublishes(t *testing.T, c *e2etest.Child, tokens []string, channel string, ids map[int][]string) map[string]wire.Ack {
	t.Helper()
	var mu sync.Mutex
	acks := map[string]wire.Ack{}
	var wg sync.WaitGroup
	for u, list := range ids {
		for chunk := range slices.Chunk(list, maxBurst) {
			ws := e2etest.DialWS(t, c.WSURL, "unhidra.v1, bearer."+tokens[u])
			wg.Add(1)
			go func() {
				defer wg.Done()
				for _, id := range chunk {
					if err := ws.WriteJSON(map[string]any{"type": "publish", "id": id, "channel": channel, "client_msg_id": id, "text": id}); err != nil {
						t.Errorf("retry as user %d: %v", u, err)
						return
					}
				}
				for range chunk {
					f, err := ws.TryRead(20 * time.Second)
					if err != nil {
						t.Errorf("retry as user %d: %v", u, err)
						return
					}
					var id string
					_ = json.Unmarshal(f.ID, &id)
					if f.Type != wire.TypeAck {
						t.Errorf("retry of %s: %s", id, f.Raw)
						continue
					}
					mu.Lock()
					acks[id] = wire.Ack{Channel: f.Channel, MessageID: f.MessageID, Offset: f.Offset}
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	return acks
}

// TestFloodLeavesOthersUnaffected is WS-6's last clause in make check: one
// client floods (rate_limited, then 1008) while another publishes 20
// messages/s and times each publish until its own message comes back.
func TestFloodLeavesOthersUnaffected(t *testing.T) { floodNeighbour(t, 1, false) }

// TestSoakFloodLeavesOthersUnaffected: ten flooders at once, and the round
// trip's p99 during the flood asserted under 200 ms.
func TestSoakFloodLeavesOthersUnaffected(t *testing.T) {
	soak(t)
	floodNeighbour(t, 10, true)
}

var rateLimitedCode = []byte(`"code":"rate_limited"`)

func floodNeighbour(t *testing.T, flooders int, strict bool) {
	c := e2etest.NewChild(t, map[string]string{"ACCESS_TOKEN_TTL": "24h"})
	c.Start()
	tokens, channel := crashSetup(t, c, 2) // pub0 floods, pub1 is the neighbour

	// The neighbour: publish every 50 ms, read its own messages back.
	nb := e2etest.DialWS(t, c.WSURL, "unhidra.v1, bearer."+tokens[1])
	nb.Send(t, map[string]any{"type": "subscribe", "channel": channel})
	nb.Until(t, wire.TypeSubscribed, 10*time.Second)
	var flooding atomic.Bool
	var before, during durations
	var own atomic.Int64
	readerDone := make(chan error, 1)
	go func() {
		for {
			_, msg, err := nb.ReadMessage()
			if err != nil {
				readerDone <- err
				return
			}
			if _, sent, ok := messageOffset(msg); ok && !sent.IsZero() {
				own.Add(1)
				if flooding.Load() {
					during.add(time.Since(sent))
				} else {
					before.add(time.Since(sent))
				}
			}
		}
	}()
	stopNeighbour := make(chan struct{})
	var nbSent atomic.Int64
	nbDone := make(chan struct{})
	go func() {
		defer close(nbDone)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for k := 0; ; k++ {
			select {
			case <-stopNeighbour:
				return
			case <-tick.C:
			}
			id := fmt.Sprintf("n%d", k)
			if nb.WriteJSON(map[string]any{"type": "publish", "id": id, "channel": channel, "client_msg_id": id, "data": stamped(time.Now(), 64)}) != nil {
				return
			}
			nbSent.Add(1)
		}
	}()
	time.Sleep(2 * time.Second) // the baseline

	// The flooders: publish frames at about 5,000 a second each, 100 times
	// the allowed rate. (Unpaced, a flooder under -race cannot read its
	// own rate_limited errors fast enough and is closed 4008 as a slow
	// consumer before the 1008 it is here for.)
	type floodResult struct {
		code        int
		rateLimited int
		sent        int
		took        time.Duration
	}
	results := make(chan floodResult, flooders)
	flooding.Store(true)
	for f := range flooders {
		ws := e2etest.DialWS(t, c.WSURL, "unhidra.v1, bearer."+tokens[0])
		go func() {
			var r floodResult
			var sent atomic.Int64
			start := time.Now()
			go func() {
				frame := []byte(fmt.Sprintf(`{"type":"publish","channel":%q,"text":"flood %d"}`, channel, f))
				for {
					for range 50 {
						if ws.WriteText(string(frame)) != nil {
							return
						}
						sent.Add(1)
					}
					time.Sleep(10 * time.Millisecond)
				}
			}()
			_ = ws.SetDeadline(time.Now().Add(15 * time.Second))
			for {
				_, msg, err := ws.ReadMessage()
				if err != nil {
					r.code, _ = asClose(err)
					break
				}
				if bytes.Contains(msg, rateLimitedCode) {
					r.rateLimited++
				}
			}
			r.took = time.Since(start)
			ws.Close()
			r.sent = int(sent.Load())
			results <- r
		}()
	}
	codes := map[int]int{}
	var rateLimited, floodSent int
	var slowestClose time.Duration
	for range flooders {
		r := <-results
		codes[r.code]++
		rateLimited += r.rateLimited
		floodSent += r.sent
		slowestClose = max(slowestClose, r.took)
		if r.rateLimited == 0 {
			t.Errorf("a flooder got no rate_limited error before its close")
		}
	}
	flooding.Store(false)
	time.Sleep(500 * time.Millisecond) // the neighbour's last round trips
	close(stopNeighbour)
	<-nbDone
	// Every message of the neighbour comes back (nothing of its is lost
	// or refused).
	deadline := time.Now().Add(10 * time.Second)
	for own.Load() < nbSent.Load() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case err := <-readerDone:
		t.Fatalf("the neighbour's connection ended: %v", err)
	default:
	}
	bs, ds := before.summary(), during.summary()
	t.Logf("WS-6 (%d flooder(s), child without -race, load %s): flooders sent %d frames, got %d rate_limited, closed %v, the last after %v; "+
		"neighbour's publish→own message round trip before the flood %v, during it %v; %d of %d came back",
		flooders, procfs.LoadAverage(), floodSent, rateLimited, codes, slowestClose.Round(time.Millisecond), bs, ds, own.Load(), nbSent.Load())
	if codes[1008] != flooders {
		t.Errorf("flooders closed with %v, want 1008 for all %d", codes, flooders)
	}
	if slowestClose > 10*time.Second {
		t.Errorf("a flooder was closed only after %v; the rule is 5 s of flooding", slowestClose)
	}
	if own.Load() != nbSent.Load() {
		t.Errorf("the neighbour got %d of its %d messages back", own.Load(), nbSent.Load())
	}
	if ds.N < 20 {
		t.Errorf("only %d round trips measured during the flood", ds.N)
	}
	if strict && timingsAsserted(t) && ds.P99 >= 200*time.Millisecond {
		t.Errorf("the neighbour's round trip p99 during the flood %v, want < 200 ms", ds.P99)
	}
}
