package gateway

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/broker"
	"github.com/unhidra/unhidra/internal/wstest"
	"github.com/unhidra/unhidra/wire"
)

// WS-9: cancel under publishing load: every client gets 1001 and every ack
// a client received is of a message the store holds.
func TestDrainUnderLoadClosesWith1001AndLosesNoAckedMessage(t *testing.T) {
	const clients = 20
	e := newEnv(t, nil)
	e.chat.delay = 2 * time.Millisecond // publishes are in flight when the drain starts
	type result struct {
		acked []wire.Ack
		code  int
		err   error
	}
	results := make(chan result, clients)
	var started sync.WaitGroup
	for i := range clients {
		c := e.dial(t, e.user(fmt.Sprintf("u%d", i), "s", time.Hour))
		started.Add(1)
		go func() {
			var r result
			defer func() { results <- r }()
			// Writer: publish until the connection breaks.
			go func() {
				for j := 0; ; j++ {
					if err := c.WriteText(fmt.Sprintf(`{"type":"publish","channel":"load","text":"m","client_msg_id":"u%d-%d","id":%d}`, i, j, j)); err != nil {
						return
					}
					if j == 10 {
						started.Done()
					}
					time.Sleep(time.Millisecond)
				}
			}()
			_ = c.SetDeadline(time.Now().Add(20 * time.Second))
			for {
				var f struct {
					wire.AckFrame
					Code string `json:"code"`
				}
				typ, err := c.ReadJSON(&f)
				if ce, ok := err.(*wstest.CloseError); ok {
					r.code = ce.Code
					return
				}
				if err != nil {
					r.err = err
					return
				}
				if typ == wire.TypeAck {
					r.acked = append(r.acked, f.Ack)
				}
			}
		}()
	}
	started.Wait()
	time.Sleep(50 * time.Millisecond)
	if e.srv.Draining() {
		t.Fatal("draining before cancel")
	}
	e.shutdown()
	stored := map[string]bool{}
	for _, m := range e.chat.stored("load") {
		stored[m.ID] = true
	}
	total := 0
	for range clients {
		r := <-results
		if r.err != nil {
			t.Errorf("client read: %v", r.err)
			continue
		}
		if r.code != CloseGoingAway {
			t.Errorf("close code = %d, want 1001", r.code)
		}
		for _, a := range r.acked {
			if !stored[a.MessageID] {
				t.Errorf("acked message %s is not stored", a.MessageID)
			}
		}
		total += len(r.acked)
	}
	if total == 0 {
		t.Fatal("no message was acked; the load did not run")
	}
	t.Logf("%d acked messages, %d stored", total, len(stored))
}

func TestReadyFailsWhileDraining(t *testing.T) {
	e := newEnv(t, nil)
	base := "http://" + e.srv.Addr()
	for _, path := range []string{"/health", "/ready"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != `{"status":"ok"}` {
			t.Errorf("%s = %d %s", path, resp.StatusCode, body)
		}
	}
	// Hold one connection open so the drain takes a moment, then watch /ready
	// through the handler (the listener closes at once).
	c := e.dial(t, e.user("alice", "s", time.Hour))
	e.stop()
	eventually(t, 5*time.Second, "draining", e.srv.Draining)
	rec := &statusRecorder{header: http.Header{}}
	e.srv.Handler().ServeHTTP(rec, httptestRequest("/ready"))
	if rec.status != http.StatusServiceUnavailable {
		t.Errorf("/ready while draining = %d, want 503", rec.status)
	}
	expectClose(t, c, CloseGoingAway)
}

type statusRecorder struct {
	header http.Header
	status int
}

func (r *statusRecorder) Header() http.Header         { return r.header }
func (r *statusRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *statusRecorder) WriteHeader(s int)           { r.status = s }

func httptestRequest(path string) *http.Request {
	r, _ := http.NewRequest(http.MethodGet, "http://gateway"+path, nil)
	return r
}

func TestMetricsAreServedWithThePrefix(t *testing.T) {
	e := newEnv(t, nil)
	e.dial(t, e.user("alice", "s", time.Hour))
	e.handshake(t, e.url, wstest.Options{})
	// The gauge moves once the welcome write has returned, which may be
	// just after the client read it.
	var b []byte
	eventually(t, 5*time.Second, "the connection counted", func() bool {
		resp, err := http.Get("http://" + e.srv.Addr() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ = io.ReadAll(resp.Body)
		return strings.Contains(string(b), `unhidra_gateway_connections{kind="user"} 1`)
	})
	for _, want := range []string{
		`unhidra_gateway_connections{kind="user"} 1`,
		`unhidra_gateway_handshakes_refused_total{reason="unauthorized"} 1`,
		"unhidra_gateway_frames_out_total",
		"unhidra_gateway_fanout_seconds",
		"unhidra_gateway_queued_bytes",
		"unhidra_gateway_slow_consumer_closes_total",
	} {
		mustContain(t, string(b), want)
	}
}

// Revocation events close the matching connections with 4003, and only them.
func TestRevocationClosesMatchingConnectionsWith4003(t *testing.T) {
	tests := []struct {
		name   string
		rev    broker.Revocation
		closed []string // which of alice-s1, alice-s2, bob-s3, dev1 close
	}{
		{"logout closes one session", broker.Revocation{Kind: broker.RevokeSession, ID: "s1"}, []string{"alice-s1"}},
		{"disable closes every session of the user", broker.Revocation{Kind: broker.RevokeUser, ID: "alice"}, []string{"alice-s1", "alice-s2"}},
		{"a password change keeps the current session", broker.Revocation{Kind: broker.RevokeUserExcept, ID: "alice", Except: "s2"}, []string{"alice-s1"}},
		{"device revocation closes the device", broker.Revocation{Kind: broker.RevokeDevice, ID: "dev1"}, []string{"dev1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			conns := map[string]*wstest.Conn{
				"alice-s1": e.dial(t, e.user("alice", "s1", time.Hour)),
				"alice-s2": e.dial(t, e.user("alice", "s2", time.Hour)),
				"bob-s3":   e.dial(t, e.user("bob", "s3", time.Hour)),
				"dev1":     e.dialWith(t, wstest.Options{Header: protoHeader("unhidra.v1, apikey." + e.device("dev1"))}),
			}
			start := time.Now()
			if err := e.broker.Publish(t.Context(), broker.RevocationTopic, broker.RevocationEvent(tt.rev)); err != nil {
				t.Fatal(err)
			}
			for _, name := range tt.closed {
				expectClose(t, conns[name], CloseRevoked)
				delete(conns, name)
			}
			if el := time.Since(start); el > 5*time.Second {
				t.Errorf("closed after %v, want within 5 s", el)
			}
			for name, c := range conns {
				roundTrip(t, c)
				_ = name
			}
			eventually(t, 5*time.Second, "closed connections released", func() bool { return e.srv.Connections() == len(conns) })
		})
	}
}

// Token expiry closes with 4001 unless refreshed in band.
func TestTokenExpiryAndInBandRefresh(t *testing.T) {
	t.Run("an expired token closes the connection with 4001", func(t *testing.T) {
		e := newEnv(t, nil)
		c := e.dial(t, e.user("alice", "s1", 300*time.Millisecond))
		expectClose(t, c, CloseTokenExpired)
	})
	t.Run("a refresh with a new token for the same user keeps it open", func(t *testing.T) {
		e := newEnv(t, nil)
		c := e.dial(t, e.user("alice", "s1", 400*time.Millisecond))
		fresh := e.user("alice", "s1", time.Hour)
		if err := c.WriteText(`{"type":"refresh","token":"` + fresh + `","id":"r1"}`); err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		var r wire.Refreshed
		if typ, err := c.ReadJSON(&r); err != nil || typ != wire.TypeRefreshed || string(r.ID) != `"r1"` || time.Until(r.ExpiresAt) < 50*time.Minute {
			t.Fatalf("got %q %+v %v, want refreshed with id r1 and the new expiry", typ, r, err)
		}
		time.Sleep(600 * time.Millisecond)
		roundTrip(t, c)
	})
	t.Run("a refresh with another user's token is refused and expiry still applies", func(t *testing.T) {
		e := newEnv(t, nil)
		c := e.dial(t, e.user("alice", "s1", 500*time.Millisecond))
		if err := c.WriteText(`{"type":"refresh","token":"` + e.user("bob", "s2", time.Hour) + `","id":2}`); err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		var ef wire.ErrorFrame
		if typ, err := c.ReadJSON(&ef); err != nil || typ != wire.TypeError || ef.Code != "unauthorized" {
			t.Fatalf("got %q %+v %v, want an unauthorized error", typ, ef, err)
		}
		expectClose(t, c, CloseTokenExpired)
	})
	t.Run("an already expired token is refused at the handshake", func(t *testing.T) {
		e := newEnv(t, nil)
		tok := e.user("alice", "s1", -time.Second)
		resp := e.handshake(t, e.url, wstest.Options{Header: protoHeader("unhidra.v1, bearer." + tok)})
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("status = %d, want 401", resp.StatusCode)
		}
	})
}

// Subscribe with since: recovered messages, then live ones, no duplicate,
// no gap, in order, also when live events race with the recovery.
func TestSubscribeRecoveryOrdersAndDedupesLiveEvents(t *testing.T) {
	text := "m"
	pub := unhidra.Identity{Principal: wire.Principal{Kind: wire.KindUser, ID: "pub"}}
	publish := func(e *env, n int) {
		for range n {
			if _, err := e.chat.Publish(context.Background(), pub, wire.Publish{Channel: "room", Text: &text}); err != nil {
				panic(err)
			}
		}
	}
	tests := []struct {
		name          string
		setup         func(e *env)
		since         int64
		wantRecovered bool
		wantFirst     int64 // first offset delivered
		wantLast      int64
	}{
		{"events published after the snapshot come from the buffer", func(e *env) {
			e.chat.beforeReturn = func() { publish(e, 5) }
		}, 10, true, 11, 55},
		{"events published before the snapshot are not delivered twice", func(e *env) {
			e.chat.beforeSnapshot = func() { publish(e, 5) }
		}, 10, true, 11, 55},
		{"both at once", func(e *env) {
			e.chat.beforeSnapshot = func() { publish(e, 3) }
			e.chat.beforeReturn = func() { publish(e, 4) }
		}, 10, true, 11, 57},
		{"without since only live events after the current offset arrive", func(e *env) {
			e.chat.beforeSnapshot = func() { publish(e, 2) }
			e.chat.beforeReturn = func() { publish(e, 3) }
		}, -1, false, 53, 55},
		{"missed more than history keeps gives recovered false and no batch", func(e *env) {
			e.chat.window = 5
			e.chat.beforeReturn = func() { publish(e, 2) }
		}, 10, false, 51, 52},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			publish(e, 50)
			tt.setup(e)
			c := e.dial(t, e.user("alice", "s1", time.Hour))
			frame := `{"type":"subscribe","channel":"room","id":1}`
			if tt.since >= 0 {
				frame = fmt.Sprintf(`{"type":"subscribe","channel":"room","since":%d,"id":1}`, tt.since)
			}
			if err := c.WriteText(frame); err != nil {
				t.Fatal(err)
			}
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			var sub wire.Subscribed
			if typ, err := c.ReadJSON(&sub); err != nil || typ != wire.TypeSubscribed {
				t.Fatalf("got %q %v, want subscribed", typ, err)
			}
			if sub.Recovered != tt.wantRecovered || string(sub.ID) != "1" {
				t.Errorf("subscribed = %+v, want recovered %v", sub, tt.wantRecovered)
			}
			e.chat.setHooks(nil, nil)
			// A marker published afterwards ends the stream.
			publish(e, 1)
			want := tt.wantFirst
			for {
				var m wire.MessageFrame
				if typ, err := c.ReadJSON(&m); err != nil || typ != wire.TypeMessage {
					t.Fatalf("got %q %v, want message %d", typ, err, want)
				}
				if m.Offset != want || m.Message.Offset != want {
					t.Fatalf("got offset %d, want %d", m.Offset, want)
				}
				if want == tt.wantLast+1 {
					break
				}
				want++
			}
		})
	}
}

func TestSubscribeRecoveryUnderConcurrentPublishing(t *testing.T) {
	e := newEnv(t, nil)
	text := "m"
	pub := unhidra.Identity{Principal: wire.Principal{Kind: wire.KindUser, ID: "pub"}}
	for range 100 {
		e.chat.Publish(context.Background(), pub, wire.Publish{Channel: "room", Text: &text})
	}
	const total = 600
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range total - 100 {
			e.chat.Publish(context.Background(), pub, wire.Publish{Channel: "room", Text: &text})
		}
	}()
	var clients []*wstest.Conn
	for i := range 10 {
		c := e.dial(t, e.user(fmt.Sprintf("u%d", i), "s", time.Hour))
		c.WriteText(fmt.Sprintf(`{"type":"subscribe","channel":"room","since":%d}`, i*7))
		clients = append(clients, c)
	}
	<-done
	for i, c := range clients {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if err := c.ReadUntil(wire.TypeSubscribed, nil); err != nil {
			t.Fatal(err)
		}
		want := int64(i*7 + 1)
		for want <= total {
			var m wire.MessageFrame
			if typ, err := c.ReadJSON(&m); err != nil || typ != wire.TypeMessage {
				t.Fatalf("client %d: got %q %v, want message %d", i, typ, err, want)
			}
			if m.Offset != want {
				t.Fatalf("client %d: got offset %d, want %d", i, m.Offset, want)
			}
			want++
		}
	}
}

func TestSubscribeToAForbiddenChannelIsRefused(t *testing.T) {
	e := newEnv(t, nil)
	e.chat.forbidden["secret"] = true
	c := e.dial(t, e.user("alice", "s1", time.Hour))
	c.WriteText(`{"type":"subscribe","channel":"secret","id":9}`)
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	var ef wire.ErrorFrame
	if typ, err := c.ReadJSON(&ef); err != nil || typ != wire.TypeError || ef.Code != "forbidden" || string(ef.ID) != "9" {
		t.Fatalf("got %q %+v %v, want forbidden with id 9", typ, ef, err)
	}
	if n := e.srv.hub.subscribers("chan.secret"); n != 0 {
		t.Errorf("hub still has %d subscribers of the forbidden channel", n)
	}
	if n := e.broker.Topics(); n != 1 { // only revocations
		t.Errorf("broker topics = %d, want 1", n)
	}
}

func TestHubKeepsOneBrokerSubscriptionPerTopic(t *testing.T) {
	e := newEnv(t, nil)
	var conns []*wstest.Conn
	for i := range 5 {
		c := e.dial(t, e.user(fmt.Sprintf("u%d", i), "s", time.Hour))
		c.WriteText(`{"type":"subscribe","channel":"room"}`)
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if err := c.ReadUntil(wire.TypeSubscribed, nil); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	if n := e.broker.Topics(); n != 2 { // revocations + chan.room
		t.Errorf("broker topics = %d, want 2", n)
	}
	conns[0].WriteText(`{"type":"unsubscribe","channel":"room","id":3}`)
	var u wire.Unsubscribed
	if typ, err := conns[0].ReadJSON(&u); err != nil || typ != wire.TypeUnsubscribed || string(u.ID) != "3" {
		t.Fatalf("got %q %+v %v", typ, u, err)
	}
	for _, c := range conns[1:] {
		c.Close()
	}
	eventually(t, 5*time.Second, "the last subscriber gone", func() bool { return e.broker.Topics() == 1 })
}

func TestPublishTypingAndPresenceFrames(t *testing.T) {
	e := newEnv(t, nil)
	a := e.dial(t, e.user("alice", "s1", time.Hour))
	b := e.dial(t, e.user("bob", "s2", time.Hour))
	b.WriteText(`{"type":"subscribe","channel":"room"}`)
	_ = b.SetDeadline(time.Now().Add(5 * time.Second))
	if err := b.ReadUntil(wire.TypeSubscribed, nil); err != nil {
		t.Fatal(err)
	}
	a.WriteText(`{"type":"publish","channel":"room","text":"hello","client_msg_id":"c1","id":"p1"}`)
	a.WriteText(`{"type":"publish","channel":"room","text":"hello","client_msg_id":"c1","id":"p2"}`)
	_ = a.SetDeadline(time.Now().Add(5 * time.Second))
	var a1, a2 wire.AckFrame
	if _, err := a.ReadJSON(&a1); err != nil {
		t.Fatal(err)
	}
	if _, err := a.ReadJSON(&a2); err != nil {
		t.Fatal(err)
	}
	if a1.Offset != 1 || a1.Ack != a2.Ack || string(a1.ID) != `"p1"` || string(a2.ID) != `"p2"` {
		t.Errorf("acks = %+v %+v, want the same ack with their own ids", a1, a2)
	}
	var m wire.MessageFrame
	if typ, err := b.ReadJSON(&m); err != nil || typ != wire.TypeMessage || *m.Message.Text != "hello" || m.Message.Sender.ID != "alice" {
		t.Fatalf("got %q %+v %v", typ, m, err)
	}
	a.WriteText(`{"type":"typing","channel":"room"}`)
	var ty wire.TypingFrame
	if typ, err := b.ReadJSON(&ty); err != nil || typ != wire.TypeTyping || ty.User != "alice" {
		t.Fatalf("got %q %+v %v", typ, ty, err)
	}
	a.WriteText(`{"type":"presence","status":"dnd"}`)
	// A presence frame has no reply, and a ping is answered by the reader
	// before the frame handler runs: wait for the status to arrive.
	eventually(t, 5*time.Second, "presence status dnd", func() bool {
		e.pres.mu.Lock()
		defer e.pres.mu.Unlock()
		return e.pres.statuses["alice"] == "dnd"
	})
}

// Devices receive their command frames from the broker topic.
func TestDeviceReceivesItsCommands(t *testing.T) {
	e := newEnv(t, nil)
	d := e.dialWith(t, wstest.Options{Header: protoHeader("unhidra.v1, apikey." + e.device("dev1"))})
	other := e.dialWith(t, wstest.Options{Header: protoHeader("unhidra.v1, apikey." + e.device("dev2"))})
	eventually(t, 5*time.Second, "command subscriptions", func() bool { return e.srv.hub.subscribers(broker.DeviceCommandTopic("dev1")) == 1 })
	cmd := &broker.Event{Kind: broker.Command, Command: &broker.DeviceCommand{ID: "c1", Name: "reboot", Params: json.RawMessage(`{"delay":1}`)}}
	e.broker.Publish(t.Context(), broker.DeviceCommandTopic("dev1"), cmd)
	_ = d.SetDeadline(time.Now().Add(5 * time.Second))
	var got wire.CommandFrame
	if typ, err := d.ReadJSON(&got); err != nil || typ != wire.TypeCommand || got.CommandID != "c1" || got.Name != "reboot" {
		t.Fatalf("got %q %+v %v", typ, got, err)
	}
	roundTrip(t, other) // dev2 received nothing before its pong
}

// The gateway serves WSS itself with TLS 1.2/1.3 only, tested against a CA
// the test generates.
func TestTLSWithAGeneratedCA(t *testing.T) {
	serverCfg, pool := testTLS(t)
	e := newEnv(t, func(c *Config, _ *Deps) { c.TLS = serverCfg })
	tok := e.user("alice", "s1", time.Hour)
	c, _, err := wstest.Dial(t.Context(), e.url, wstest.Options{Header: protoHeader("unhidra.v1, bearer." + tok), TLS: &tls.Config{RootCAs: pool}})
	if err != nil {
		t.Fatalf("wss dial: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if typ, err := c.ReadJSON(nil); err != nil || typ != wire.TypeWelcome {
		t.Fatalf("got %q %v, want welcome", typ, err)
	}
	if v := c.NetConn().(*tls.Conn).ConnectionState().Version; v != tls.VersionTLS13 {
		t.Errorf("negotiated %x, want TLS 1.3", v)
	}
	roundTrip(t, c)

	t.Run("TLS 1.1 is refused", func(t *testing.T) {
		_, _, err := wstest.Dial(t.Context(), e.url, wstest.Options{TLS: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}})
		if err == nil {
			t.Fatal("TLS 1.1 handshake succeeded")
		}
	})
	t.Run("TLS 1.2 is accepted", func(t *testing.T) {
		c, _, err := wstest.Dial(t.Context(), e.url, wstest.Options{Header: protoHeader("unhidra.v1, bearer." + tok), TLS: &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS12}})
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	})
	t.Run("a client without the CA is refused", func(t *testing.T) {
		_, _, err := wstest.Dial(t.Context(), e.url, wstest.Options{TLS: &tls.Config{}})
		if err == nil {
			t.Fatal("handshake with an unknown CA succeeded")
		}
	})
	t.Run("same-origin https pages are allowed over TLS", func(t *testing.T) {
		h := protoHeader("unhidra.v1, bearer." + tok)
		h["Origin"] = []string{"https://" + e.srv.Addr()}
		c, _, err := wstest.Dial(t.Context(), e.url, wstest.Options{Header: h, TLS: &tls.Config{RootCAs: pool}})
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	})
}

// testTLS generates a CA and a server certificate for 127.0.0.1.
func testTLS(t *testing.T) (*tls.Config, *x509.CertPool) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, pool
}
