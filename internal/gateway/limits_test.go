package gateway

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/ratelimit"
	"github.com/unhidra/unhidra/internal/wstest"
	"github.com/unhidra/unhidra/wire"
)

// fakeClock is a settable clock for the limiters.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// WS-6: the 11th connection of one principal is refused with 429.
func TestEleventhConnectionOfAUserIsRefused(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *Deps) { c.MaxConnsPerUser = 10 })
	tok := e.user("alice", "s1", time.Hour)
	var conns []*wstest.Conn
	for range 10 {
		conns = append(conns, e.dial(t, tok))
	}
	resp := e.handshake(t, e.url, wstest.Options{Header: protoHeader("unhidra.v1, bearer." + tok)})
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("11th connection: status %d, want 429", resp.StatusCode)
	}
	if resp.Header.Get("Retry-After") == "" {
		t.Errorf("429 without Retry-After")
	}
	// Another user is unaffected.
	e.dial(t, e.user("bob", "s2", time.Hour))
	// Closing one frees a slot.
	conns[0].WriteClose(1000, "")
	expectClose(t, conns[0], 1000)
	eventually(t, 5*time.Second, "a freed slot", func() bool {
		resp := e.handshake(t, e.url, wstest.Options{Header: protoHeader("unhidra.v1, bearer." + tok)})
		return resp.StatusCode == http.StatusSwitchingProtocols
	})
}

// The handshake limit per IP is an exact sliding minute: with a limit of 60,
// exactly 60 handshakes pass in any 60 s, however they are spread (a token
// bucket let 117 through in 58 s), and the 61st is refused with a
// Retry-After that ends when the oldest of them leaves the window.
func TestIPLimiterIsAnExactSlidingMinute(t *testing.T) {
	clk := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	l := newIPLimiter(nil, 60, clk.Now)
	ip := netip.MustParseAddr("192.0.2.7")
	// 60 handshakes spread over 59 s: one a second.
	for i := range 60 {
		if ok, _ := l.allow(ip); !ok {
			t.Fatalf("handshake %d at +%ds refused", i+1, i)
		}
		if i < 59 {
			clk.Advance(time.Second)
		}
	}
	// At +59 s the first (at +0 s) is still inside the window.
	ok, retry := l.allow(ip)
	if ok {
		t.Fatal("61st handshake within a minute allowed")
	}
	if retry != 1 {
		t.Errorf("Retry-After = %d, want 1 (the oldest leaves at +60 s)", retry)
	}
	// Much later in the window a refill-based limiter would have let some
	// through; a sliding window lets exactly the ones that left.
	clk.Advance(999 * time.Millisecond)
	if ok, _ := l.allow(ip); ok {
		t.Fatal("allowed before the oldest handshake left the window")
	}
	clk.Advance(time.Millisecond) // +60 s: the first is a minute old
	if ok, _ := l.allow(ip); !ok {
		t.Fatal("refused once the oldest handshake left the window")
	}
	if ok, retry := l.allow(ip); ok || retry != 1 {
		t.Fatalf("second handshake at +60 s: ok %v retry %d, want refused for 1 s", ok, retry)
	}
	// A burst: 60 at once after a quiet minute, then nothing for 59 s.
	clk.Advance(2 * time.Minute)
	for i := range 60 {
		if ok, _ := l.allow(ip); !ok {
			t.Fatalf("burst handshake %d refused", i+1)
		}
	}
	clk.Advance(30 * time.Second)
	if ok, retry := l.allow(ip); ok || retry != 30 {
		t.Fatalf("after 30 s: ok %v retry %d, want refused for 30 s", ok, retry)
	}
	// Another address has its own window; no limit means none.
	if ok, _ := l.allow(netip.MustParseAddr("192.0.2.8")); !ok {
		t.Error("another address refused")
	}
	if ok, _ := newIPLimiter(nil, -1, clk.Now).allow(ip); !ok {
		t.Error("a disabled limiter refused")
	}
}

// WS-6: handshakes per IP per minute over real HTTP, with an injected clock:
// 60 handshakes spread over 59 s pass, the 61st gets 429 with Retry-After,
// bad handshakes count too, and the next is allowed exactly when the oldest
// is a minute old.
func TestHandshakeRatePerIP(t *testing.T) {
	clk := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	e := newEnv(t, func(c *Config, _ *Deps) { c.RateLimitIPPerMinute = 60; c.Now = clk.Now })
	tok := e.user("alice", "s1", time.Hour)
	opt := wstest.Options{Header: protoHeader("unhidra.v1, bearer." + tok)}
	for i := range 60 {
		if resp := e.handshake(t, e.url, opt); resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("handshake %d: status %d", i+1, resp.StatusCode)
		}
		if i < 59 {
			clk.Advance(time.Second)
		}
	}
	resp := e.handshake(t, e.url, opt)
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("61st handshake in a minute: status %d, want 429", resp.StatusCode)
	}
	if ra := resp.Header.Get("Retry-After"); ra != "1" {
		t.Errorf("Retry-After = %q, want 1 (the oldest handshake leaves the window in 1 s)", ra)
	}
	// Bad handshakes count too: the limit protects authentication.
	if resp := e.handshake(t, e.url, wstest.Options{}); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("unauthenticated handshake over the limit: status %d, want 429", resp.StatusCode)
	}
	clk.Advance(500 * time.Millisecond)
	if resp := e.handshake(t, e.url, opt); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("before the oldest left: status %d, want 429", resp.StatusCode)
	}
	clk.Advance(500 * time.Millisecond)
	if resp := e.handshake(t, e.url, opt); resp.StatusCode != http.StatusSwitchingProtocols {
		t.Errorf("once the oldest left: status %d, want 101", resp.StatusCode)
	}
	if resp := e.handshake(t, e.url, opt); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("the next one: status %d, want 429", resp.StatusCode)
	}
	// Another source address has its own budget.
	c, resp2, err := wstest.Dial(t.Context(), e.url, wstest.Options{Header: opt.Header, LocalAddr: "127.0.0.2"})
	if err != nil {
		t.Fatalf("dial from 127.0.0.2: %v (%v)", err, resp2)
	}
	c.Close()
}

// WS-6: an inbound flood gets rate_limited error frames, then 1008, while
// another client's round trip keeps working.
func TestInboundFloodIsRateLimitedThenClosed(t *testing.T) {
	clk := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	e := newEnv(t, func(c *Config, _ *Deps) { c.Now = clk.Now })
	flooder := e.dial(t, e.user("mallory", "s1", time.Hour))
	other := e.dial(t, e.user("bob", "s2", time.Hour))

	// 100 frames fit the burst; the next ones are refused with rate_limited.
	for i := range 110 {
		if err := flooder.WriteText(fmt.Sprintf(`{"type":"typing","channel":"c","id":%d}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	_ = flooder.SetDeadline(time.Now().Add(10 * time.Second))
	limited := 0
	for limited < 10 {
		var ef wire.ErrorFrame
		typ, err := flooder.ReadJSON(&ef)
		if err != nil {
			t.Fatalf("reading rate_limited errors: %v (got %d)", err, limited)
		}
		if typ == wire.TypeError && ef.Code == "rate_limited" {
			limited++
		}
	}
	roundTrip(t, other)

	// Keep flooding for 5 s of (fake) time: closed with 1008.
	// Each batch is followed by a ping round trip, so the server has judged
	// it before the clock moves on.
	for range 6 {
		clk.Advance(time.Second)
		for range 60 {
			if err := flooder.WriteText(`{"type":"typing","channel":"c"}`); err != nil {
				break
			}
		}
		if err := flooder.WriteFrame(wstest.Frame{Fin: true, Op: wstest.OpPing, Payload: []byte("rt")}); err != nil {
			break
		}
		if ok, code := waitPong(flooder); !ok {
			if code != ClosePolicyViolation {
				t.Fatalf("close code = %d, want 1008", code)
			}
			roundTrip(t, other)
			return
		}
	}
	expectClose(t, flooder, ClosePolicyViolation)
	roundTrip(t, other)
}

// A client that sends at the allowed rate is never limited.
func TestSteadyClientIsNotRateLimited(t *testing.T) {
	clk := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	e := newEnv(t, func(c *Config, _ *Deps) { c.Now = clk.Now })
	c := e.dial(t, e.user("alice", "s1", time.Hour))
	for i := range 300 {
		if i%40 == 0 {
			roundTrip(t, c) // the server has judged every frame so far
			clk.Advance(time.Second)
		}
		if err := c.WriteText(fmt.Sprintf(`{"type":"presence","status":"away","id":%d}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	roundTrip(t, c)
	if got := counterValue(t, e.srv.met.rateLimited); got != 0 {
		t.Errorf("rate limited %v frames of a client within the limit", got)
	}
}

// WS-7: a client that never answers pings is reaped within ping + pong
// timeout + 1 s, and goroutines return to the baseline.
func TestDeadPeerIsReaped(t *testing.T) {
	ping, pong := 200*time.Millisecond, 300*time.Millisecond
	e := newEnv(t, func(c *Config, _ *Deps) { c.PingInterval = ping; c.PongTimeout = pong })
	tok := e.user("alice", "s1", time.Hour)
	live := e.dial(t, tok) // answers pings, stays
	liveDone := make(chan error, 1)
	go func() {
		_, _, err := live.ReadMessage() // answers pings until closed
		liveDone <- err
	}()
	baseline := runtime.NumGoroutine()

	dead := e.dial(t, tok)
	dead.AutoPong = false
	start := time.Now()
	// The dead client reads nothing and answers nothing; wait for the server
	// to drop it.
	eventually(t, 10*time.Second, "dead peer reaped", func() bool { return e.srv.Connections() == 1 })
	if el := time.Since(start); el > ping+pong+time.Second {
		t.Errorf("reaped after %v, want within %v", el, ping+pong+time.Second)
	}
	// The live client, which answers pings, survives several more rounds.
	time.Sleep(3 * (ping + pong))
	if e.srv.Connections() != 1 {
		t.Errorf("live client was dropped")
	}
	live.Close()
	if err := <-liveDone; err == nil {
		t.Errorf("live client got an unexpected data frame")
	}
	eventually(t, 5*time.Second, "live client gone", func() bool { return e.srv.Connections() == 0 })
	if got := counterValue(t, e.srv.met.closes.WithLabelValues("dead_peer")); got != 1 {
		t.Errorf("closes{dead_peer} = %v, want 1", got)
	}
	eventually(t, 5*time.Second, "goroutines back to baseline", func() bool { return runtime.NumGoroutine() <= baseline })
}

// WS-8: one subscriber that never reads, among many: closed 4008 past
// 1 MiB queued; the others receive everything in order.
func TestSlowConsumerIsClosedAndOthersLoseNothing(t *testing.T) {
	const subscribers = 200
	const messages = 450
	e := newEnv(t, func(c *Config, _ *Deps) { c.SocketWriteBuffer = 16 << 10; c.WriteTimeout = 20 * time.Second })
	var conns []*wstest.Conn
	for i := range subscribers {
		c := e.dial(t, e.user(fmt.Sprintf("u%d", i), "s", time.Hour))
		conns = append(conns, c)
	}
	slow, _, err := wstest.Dial(t.Context(), e.url, wstest.Options{Header: protoHeader("unhidra.v1, bearer." + e.user("slow", "s", time.Hour)), ReadBuffer: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	for _, c := range append(conns, slow) {
		if err := c.WriteText(`{"type":"subscribe","channel":"room"}`); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range conns {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if err := c.ReadUntil(wire.TypeSubscribed, nil); err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Time{})
	}
	eventually(t, 5*time.Second, "all subscribed", func() bool {
		return e.srv.hub.subscribers("chan.room") == subscribers+1
	})

	var wg sync.WaitGroup
	errs := make(chan error, subscribers)
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.SetDeadline(time.Now().Add(60 * time.Second))
			want := int64(1)
			for want <= messages {
				_, msg, err := c.ReadMessage()
				if err != nil {
					errs <- fmt.Errorf("subscriber %d at offset %d: %w", i, want, err)
					return
				}
				off := frameOffset(msg)
				if off == 0 {
					continue
				}
				if off != want {
					errs <- fmt.Errorf("subscriber %d: got offset %d, want %d", i, off, want)
					return
				}
				want++
			}
		}()
	}
	text := string(make([]byte, 0))
	for range 3000 {
		text += "x"
	}
	pub := e.user("pub", "s", time.Hour)
	id, _ := e.auth.lookup(pub)
	for i := range messages {
		if _, err := e.chat.Publish(t.Context(), id, wire.Publish{Channel: "room", Text: &text}); err != nil {
			t.Fatal(err)
		}
		if i%10 == 9 {
			time.Sleep(20 * time.Millisecond) // a steady, not instantaneous, publisher
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := counterValue(t, e.srv.met.slowConsumer); got != 1 {
		t.Errorf("slow-consumer closes = %v, want exactly 1", got)
	}
	// The slow client, reading at last, finds 4008 after what was in flight.
	expectClose(t, slow, CloseSlowConsumer)
}

// The admin view lists subscriptions and counters.
func TestPresenceConnTracksSubscriptionsAndCounters(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial(t, e.user("alice", "s1", time.Hour))
	for _, ch := range []string{"b", "a"} {
		c.WriteText(`{"type":"subscribe","channel":"` + ch + `"}`)
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if err := c.ReadUntil(wire.TypeSubscribed, nil); err != nil {
			t.Fatal(err)
		}
	}
	var got struct {
		Subscriptions []string `json:"subscriptions"`
		MsgsIn        int64    `json:"msgs_in"`
		MsgsOut       int64    `json:"msgs_out"`
		Transport     string   `json:"transport"`
	}
	var info []byte
	// MsgsOut counts a frame once its write has returned, which may be just
	// after the client read it.
	eventually(t, 5*time.Second, "three frames counted out", func() bool {
		e.pres.mu.Lock()
		for pc := range e.pres.conns {
			info, _ = json.Marshal(pc.Info())
		}
		e.pres.mu.Unlock()
		if err := json.Unmarshal(info, &got); err != nil {
			t.Fatal(err)
		}
		return got.MsgsOut >= 3
	})
	if fmt.Sprint(got.Subscriptions) != "[a b]" || got.MsgsIn != 2 || got.MsgsOut != 3 || got.Transport != "ws" {
		t.Errorf("conn info = %s", info)
	}
	c.WriteClose(1000, "")
	expectClose(t, c, 1000)
	eventually(t, 5*time.Second, "presence disconnect", func() bool { return e.pres.live() == 0 })
}

// waitPong reads until the pong of a "rt" ping; false (with the close code,
// if one came) when the connection ended first.
func waitPong(c *wstest.Conn) (bool, int) {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	for {
		f, err := c.ReadFrame()
		if err != nil {
			return false, 0
		}
		if f.Op == wstest.OpClose {
			code := 0
			if len(f.Payload) >= 2 {
				code = int(f.Payload[0])<<8 | int(f.Payload[1])
			}
			return false, code
		}
		if f.Op == wstest.OpPong && string(f.Payload) == "rt" {
			return true, 0
		}
	}
}

// A limiter handed in by the composition root (one of the same kind for
// every transport; a cluster-wide one later) replaces the gateway's own.
func TestAnInjectedIPLimiterCountsHandshakes(t *testing.T) {
	clk := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	shared := ratelimit.NewWindowLimiter(2, time.Minute, clk.Now)
	e := newEnv(t, func(c *Config, _ *Deps) { c.RateLimitIPPerMinute = 1000; c.IPLimiter = shared })
	opt := wstest.Options{Header: protoHeader("unhidra.v1, bearer." + e.user("alice", "s1", time.Hour))}
	for i := range 2 {
		if resp := e.handshake(t, e.url, opt); resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("handshake %d: status %d", i+1, resp.StatusCode)
		}
	}
	if resp := e.handshake(t, e.url, opt); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("3rd handshake with an injected limit of 2: status %d, want 429", resp.StatusCode)
	}
	if ok, _ := shared.Allow("127.0.0.1"); ok {
		t.Fatal("the injected limiter did not count the gateway's handshakes")
	}
}
