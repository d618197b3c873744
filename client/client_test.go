package client

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/unhidra/unhidra/wire"
)

func testOptions(url, key string) Options {
	return Options{
		URL:        url,
		APIKey:     key,
		BackoffMin: 5 * time.Millisecond,
		BackoffMax: 20 * time.Millisecond,
	}
}

// runClient starts c.Run and returns a function that stops it and returns
// Run's error.
func runClient(t *testing.T, c *Client) (stop func() error, done <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan error, 1)
	go func() { ch <- c.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-ch:
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not return after cancel")
			}
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop, ch
}

func TestConnectSendsTheKeyAsSubprotocolAndReportsWelcome(t *testing.T) {
	g := newFakeGateway(t, false)
	welcomed := make(chan wire.Welcome, 1)
	o := testOptions(g.url(), "unhidra_dk_good")
	o.OnConnect = func(w wire.Welcome) { welcomed <- w }
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	runClient(t, c)
	select {
	case w := <-welcomed:
		if w.Principal.ID != "dev1" || !w.Principal.IsDevice() {
			t.Errorf("welcome principal = %v, want device:dev1", w.Principal)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no welcome")
	}
	g.mu.Lock()
	got := g.protocols[0]
	g.mu.Unlock()
	if want := []string{"unhidra.v1", "apikey.unhidra_dk_good"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("subprotocols = %v, want %v", got, want)
	}
	if !c.Stats().Connected {
		t.Error("Stats().Connected = false after welcome")
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"a URL that is not ws or wss is refused", Options{URL: "ftp://x/ws", APIKey: "k"}},
		{"no credential is refused", Options{URL: "ws://x/ws"}},
		{"both a key and a token are refused", Options{URL: "ws://x/ws", APIKey: "k", Token: "t"}},
		{"a token in the URL is refused", Options{URL: "ws://x/ws?token=abc", Token: "abc"}},
		{"a missing CA file is refused", Options{URL: "wss://x/ws", APIKey: "k", CAFile: "/nonexistent/ca.pem"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.opts); err == nil {
				t.Error("New succeeded, want an error")
			}
		})
	}
}

func TestRunStopsRetryingWhenTheKeyIsRefused(t *testing.T) {
	g := newFakeGateway(t, false)
	c, err := New(testOptions(g.url(), "unhidra_dk_revoked"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = c.Run(ctx)
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("Run = %v, want ErrUnauthorized", err)
	}
	var fe *FatalError
	if !errors.As(err, &fe) {
		t.Errorf("Run error %T is not a *FatalError", err)
	}
	if !strings.Contains(err.Error(), "revoked") {
		t.Errorf("error %q does not say the key may be revoked", err)
	}
	g.mu.Lock()
	n := g.handshakes
	g.mu.Unlock()
	if n != 1 {
		t.Errorf("handshakes = %d, want 1 (no retry after 401)", n)
	}
}

func TestTelemetryWaitsForTheAck(t *testing.T) {
	g := newFakeGateway(t, false)
	c, _ := New(testOptions(g.url(), "unhidra_dk_good"))
	runClient(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ack, err := c.Telemetry(ctx, Telemetry{Data: map[string]any{"t": 1.5}, Seq: 7})
	if err != nil {
		t.Fatal(err)
	}
	if ack.Channel != "device:dev1" || ack.Offset != 1 {
		t.Errorf("ack = %+v, want channel device:dev1 offset 1", ack)
	}
	g.mu.Lock()
	got := g.telemetry[0]
	g.mu.Unlock()
	if got["seq"] != float64(7) || got["data"].(map[string]any)["t"] != 1.5 {
		t.Errorf("server got %v", got)
	}
}

func TestTelemetryQueuedWhileTheServerIsDownArrivesInOrder(t *testing.T) {
	g := newFakeGateway(t, false)
	g.setDown(true)
	c, _ := New(testOptions(g.url(), "unhidra_dk_good"))
	runClient(t, c)
	const n = 200
	for i := 1; i <= n; i++ {
		c.QueueTelemetry(Telemetry{Data: map[string]any{"i": i}, Seq: int64(i)})
	}
	eventually(t, "several handshakes were refused", func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.handshakes >= 3
	})
	if s := c.Stats(); s.Queued != n || s.Connected {
		t.Fatalf("while down: queued=%d connected=%v, want %d queued and not connected", s.Queued, s.Connected, n)
	}
	g.setDown(false)
	eventually(t, "every point arrived", func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return len(g.telemetry) >= n
	})
	eventually(t, "every point was acked", func() bool { return c.Stats().Acked == n })
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.telemetry) != n {
		t.Fatalf("server got %d points, want %d", len(g.telemetry), n)
	}
	for i, f := range g.telemetry {
		if f["seq"] != float64(i+1) {
			t.Fatalf("point %d has seq %v, want %d (order lost)", i, f["seq"], i+1)
		}
	}
}

func TestAnUnackedPublishIsResentAfterAReconnectAndStoredOnce(t *testing.T) {
	g := newFakeGateway(t, false)
	g.dropNextPublish = true
	c, _ := New(testOptions(g.url(), "unhidra_dk_good"))
	runClient(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	text := "hello"
	ack, err := c.Publish(ctx, wire.Publish{Channel: "general", Text: &text})
	if err != nil {
		t.Fatal(err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if got := len(g.history["general"]); got != 1 {
		t.Errorf("stored %d messages, want 1", got)
	}
	if ack.Offset != 1 {
		t.Errorf("ack offset = %d, want 1", ack.Offset)
	}
	if g.handshakes < 2 {
		t.Errorf("handshakes = %d, want a reconnect", g.handshakes)
	}
}

func TestResubscribeAfterAReconnectUsesSinceAndDropsDuplicates(t *testing.T) {
	g := newFakeGateway(t, false)
	var mu sync.Mutex
	var got []int64
	o := testOptions(g.url(), "unhidra_dk_good")
	o.OnMessage = func(m wire.MessageFrame) { mu.Lock(); got = append(got, m.Offset); mu.Unlock() }
	c, _ := New(o)
	runClient(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Subscribe(ctx, "general"); err != nil {
		t.Fatal(err)
	}
	// Live messages 1..3.
	g.mu.Lock()
	for i := 0; i < 3; i++ {
		g.store("general", "")
	}
	g.mu.Unlock()
	for o := int64(1); o <= 3; o++ {
		g.broadcast(msgFrame("general", o))
	}
	eventually(t, "three messages arrived", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 3 })
	// While the client is away, messages 4 and 5 are stored; after the
	// recovery the server also repeats 5 (a live copy racing the recovery).
	g.mu.Lock()
	g.store("general", "")
	g.store("general", "")
	g.extraLive = []int64{5}
	g.mu.Unlock()
	g.kill()
	eventually(t, "five messages arrived", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) >= 5 })
	eventually(t, "the duplicate was dropped", func() bool { return c.Stats().Duplicates == 1 })
	mu.Lock()
	if fmt.Sprint(got) != "[1 2 3 4 5]" {
		t.Errorf("messages = %v, want [1 2 3 4 5]", got)
	}
	mu.Unlock()
	g.mu.Lock()
	defer g.mu.Unlock()
	last := g.subscribes[len(g.subscribes)-1]
	if last["since"] != float64(3) {
		t.Errorf("resubscribe since = %v, want 3", last["since"])
	}
}

func TestCommandsAreAnsweredWithTheirResult(t *testing.T) {
	g := newFakeGateway(t, false)
	o := testOptions(g.url(), "unhidra_dk_good")
	o.OnCommand = func(ctx context.Context, cmd Command) (any, error) {
		if cmd.Name == "ping" {
			return map[string]bool{"pong": true}, nil
		}
		return nil, fmt.Errorf("unknown command %q", cmd.Name)
	}
	c, _ := New(o)
	runClient(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	g.broadcast(wire.CommandFrame{Type: wire.TypeCommand, CommandID: "c1", Name: "ping"})
	g.broadcast(wire.CommandFrame{Type: wire.TypeCommand, CommandID: "c2", Name: "reboot"})
	eventually(t, "two results arrived", func() bool { g.mu.Lock(); defer g.mu.Unlock(); return len(g.results) == 2 })
	g.mu.Lock()
	defer g.mu.Unlock()
	byID := map[string]map[string]any{}
	for _, r := range g.results {
		byID[r["command_id"].(string)] = r
	}
	if r := byID["c1"]; r["status"] != "ok" || fmt.Sprint(r["result"]) != "map[pong:true]" {
		t.Errorf("ping result = %v, want ok {pong:true}", r)
	}
	if r := byID["c2"]; r["status"] != "error" || !strings.Contains(fmt.Sprint(r["result"]), "unknown command") {
		t.Errorf("reboot result = %v, want status error naming the unknown command", r)
	}
}

func TestHeartbeatsAreSentOnTheInjectedInterval(t *testing.T) {
	g := newFakeGateway(t, false)
	o := testOptions(g.url(), "unhidra_dk_good")
	o.HeartbeatInterval = 10 * time.Millisecond
	o.Heartbeat = func() map[string]any { return map[string]any{"free_heap": 1234} }
	c, _ := New(o)
	runClient(t, c)
	eventually(t, "three heartbeats arrived", func() bool { g.mu.Lock(); defer g.mu.Unlock(); return g.heartbeats >= 3 })
}

// writeCert writes a PEM certificate and returns its path.
func writeCert(t *testing.T, der []byte) string {
	p := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func otherCA(t *testing.T) []byte {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "another CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestWSSVerifiesTheServerCertificate(t *testing.T) {
	g := newFakeGateway(t, true)
	url := "wss" + strings.TrimPrefix(g.srv.URL, "https") + "/ws"
	t.Run("with the server's CA in CAFile it connects", func(t *testing.T) {
		o := testOptions(url, "unhidra_dk_good")
		o.CAFile = writeCert(t, g.srv.Certificate().Raw)
		c, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		runClient(t, c)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.WaitConnected(ctx); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("with another CA it refuses and says why", func(t *testing.T) {
		o := testOptions(url, "unhidra_dk_good")
		o.CAFile = writeCert(t, otherCA(t))
		c, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err = c.Run(ctx)
		var fe *FatalError
		if !errors.As(err, &fe) || !strings.Contains(err.Error(), "authority") {
			t.Fatalf("Run = %v, want a fatal error about the certificate authority", err)
		}
	})
	t.Run("insecure-skip-verify connects and logs a warning", func(t *testing.T) {
		var logs bytes.Buffer
		var lmu sync.Mutex
		o := testOptions(url, "unhidra_dk_good")
		o.InsecureSkipVerify = true
		o.Logger = slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &lmu}, nil))
		c, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		runClient(t, c)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.WaitConnected(ctx); err != nil {
			t.Fatal(err)
		}
		lmu.Lock()
		defer lmu.Unlock()
		if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "verification is OFF") {
			t.Errorf("no warning logged: %s", logs.String())
		}
	})
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestOutboxDropsTheOldestWhenFull(t *testing.T) {
	o := newOutbox(3)
	var items []*outItem
	for i := 0; i < 5; i++ {
		it := &outItem{typ: "telemetry", body: map[string]any{"i": i}, needAck: true, done: make(chan result, 1)}
		items = append(items, it)
		o.push(it)
	}
	for i := 0; i < 2; i++ {
		select {
		case r := <-items[i].done:
			if !errors.Is(r.err, ErrDropped) {
				t.Errorf("item %d: err = %v, want ErrDropped", i, r.err)
			}
		default:
			t.Errorf("item %d was not dropped", i)
		}
	}
	if q, _, d := o.stats(); q != 3 || d != 2 {
		t.Errorf("queued=%d dropped=%d, want 3 and 2", q, d)
	}
	it, _ := o.take(10)
	if it.body["i"] != 2 {
		t.Errorf("first out = %v, want item 2", it.body["i"])
	}
}

func TestOutboxRequeuesInFlightFramesAheadOfNewOnes(t *testing.T) {
	o := newOutbox(10)
	for i := 0; i < 3; i++ {
		o.push(&outItem{body: map[string]any{"i": i}, needAck: true})
	}
	a, _ := o.take(10)
	b, _ := o.take(10)
	if _, ok := o.complete(a.seq); !ok {
		t.Fatal("complete(a) = false")
	}
	_ = b
	o.push(&outItem{body: map[string]any{"i": 3}, needAck: true})
	o.requeue()
	var order []any
	for {
		it, _ := o.take(10)
		if it == nil {
			break
		}
		order = append(order, it.body["i"])
	}
	if fmt.Sprint(order) != "[1 2 3]" {
		t.Errorf("order after requeue = %v, want [1 2 3]", order)
	}
}

func TestOutboxWindowBoundsFramesInFlight(t *testing.T) {
	o := newOutbox(10)
	for i := 0; i < 5; i++ {
		o.push(&outItem{needAck: true})
	}
	for i := 0; i < 2; i++ {
		if it, _ := o.take(2); it == nil {
			t.Fatalf("take %d = nil", i)
		}
	}
	if it, wait := o.take(2); it != nil || wait == nil {
		t.Error("a third frame was taken with a window of 2")
	}
}

func TestBackoffGrowsToTheCapWithFullJitter(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    float64
		want []time.Duration
	}{
		{"a zero draw waits nothing", 0, []time.Duration{0, 0, 0, 0, 0, 0, 0, 0}},
		{"a draw just below one waits nearly the cap", 0.999, []time.Duration{999 * time.Millisecond, 1998 * time.Millisecond, 3996 * time.Millisecond,
			7992 * time.Millisecond, 15984 * time.Millisecond, 31968 * time.Millisecond, 59940 * time.Millisecond, 59940 * time.Millisecond}},
		{"a draw out of range is treated as zero", 1.5, []time.Duration{0, 0, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := Backoff{Min: time.Second, Max: time.Minute, Rand: func() float64 { return tc.r }}
			for i, want := range tc.want {
				if got := b.Next(); got != want {
					t.Errorf("delay %d = %v, want %v", i, got, want)
				}
			}
		})
	}
	t.Run("reset starts over at the minimum", func(t *testing.T) {
		b := Backoff{Min: time.Second, Max: time.Minute, Rand: func() float64 { return 0.5 }}
		for i := 0; i < 10; i++ {
			b.Next()
		}
		b.Reset()
		if got := b.Next(); got != 500*time.Millisecond {
			t.Errorf("after reset = %v, want 500ms", got)
		}
	})
	t.Run("delays are spread over the whole range", func(t *testing.T) {
		b := Backoff{Min: time.Second, Max: time.Minute}
		var lo, hi bool
		for i := 0; i < 1000; i++ {
			b.Reset()
			for j := 0; j < 6; j++ {
				b.Next()
			}
			d := b.Next() // cap 60s
			lo = lo || d < 10*time.Second
			hi = hi || d > 50*time.Second
		}
		if !lo || !hi {
			t.Errorf("1000 draws never went below 10s (%v) or above 50s (%v)", lo, hi)
		}
	})
}

func FuzzParseEnvelope(f *testing.F) {
	for _, s := range []string{
		`{"type":"ack","id":"o1.2","channel":"c","message_id":"m","offset":3}`,
		`{"type":"error","id":7,"code":"forbidden","message":"no"}`,
		`{"type":"message","channel":"c","offset":1,"message":{"id":"m","text":"hi"}}`,
		`{"type":"command","command_id":"c","name":"ping","params":{"a":1}}`,
		`{"type":"subscribed","channel":"c","offset":9,"recovered":true}`,
		`{}`, `[]`, `null`, `{"type":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		env, err := parseEnvelope(raw)
		if err != nil {
			return
		}
		if env.Type == "" {
			t.Fatal("accepted a frame without a type")
		}
		_ = env.id()
		if env.Type == wire.TypeError && env.Message != nil {
			t.Fatal("error frame kept its message as raw JSON")
		}
		if !json.Valid(env.raw) {
			t.Fatal("accepted invalid JSON")
		}
	})
}
