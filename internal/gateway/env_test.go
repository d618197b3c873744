package gateway

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/broker"
	"github.com/unhidra/unhidra/internal/chat"
	"github.com/unhidra/unhidra/internal/inmem"
	"github.com/unhidra/unhidra/internal/presence"
	"github.com/unhidra/unhidra/internal/wstest"
	"github.com/unhidra/unhidra/wire"
)

// WS-11: the whole suite ends with no leaked goroutines.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// ---- fakes at the transport edge ----

// fakeAuth maps tokens (and device keys) to identities.
type fakeAuth struct {
	mu  sync.Mutex
	ids map[string]unhidra.Identity
}

func (a *fakeAuth) add(secret string, id unhidra.Identity) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ids[secret] = id
}

func (a *fakeAuth) lookup(secret string) (unhidra.Identity, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	id, ok := a.ids[secret]
	if !ok {
		return unhidra.Identity{}, unhidra.Errorf(unhidra.EUNAUTHORIZED, "invalid token")
	}
	return id, nil
}

func (a *fakeAuth) AuthenticateToken(_ context.Context, tok string) (unhidra.Identity, error) {
	id, err := a.lookup(tok)
	if err == nil && id.IsDevice() {
		return unhidra.Identity{}, unhidra.Errorf(unhidra.EUNAUTHORIZED, "invalid token")
	}
	return id, err
}

type fakeDeviceAuth struct{ *fakeAuth }

func (a fakeDeviceAuth) AuthenticateDeviceKey(_ context.Context, key string) (unhidra.Identity, error) {
	id, err := a.lookup(key)
	if err == nil && !id.IsDevice() {
		return unhidra.Identity{}, unhidra.Errorf(unhidra.EUNAUTHORIZED, "invalid key")
	}
	return id, err
}

// fakeChat stores messages per channel in memory with gapless offsets and
// publishes message frames on the broker in offset order, as the real chat
// service does.
type fakeChat struct {
	b         broker.Broker
	mu        sync.Mutex
	msgs      map[string][]wire.Message
	byCMID    map[string]wire.Ack
	forbidden map[string]bool
	window    int
	delay     time.Duration
	// queue is what QueuePublish queued for the committer; gate, when set,
	// holds each commit until it can receive.
	queue       []*fakeJob
	queuedTotal int
	committing  bool
	gate        chan struct{}
	// beforeReturn, when set, runs inside Subscribe after the recovery
	// snapshot is taken (to inject live events at the worst moment).
	beforeReturn func()
	// afterStore runs inside Subscribe before the snapshot.
	beforeSnapshot func()
}

func newFakeChat(b broker.Broker) *fakeChat {
	return &fakeChat{b: b, msgs: map[string][]wire.Message{}, byCMID: map[string]wire.Ack{}, forbidden: map[string]bool{}, window: 1000}
}

func (f *fakeChat) Publish(ctx context.Context, who unhidra.Identity, in wire.Publish) (wire.Ack, error) {
	if f.delay > 0 {
		time.Sleep(f.delay)
	}
	return f.store(who, in)
}

func (f *fakeChat) store(who unhidra.Identity, in wire.Publish) (wire.Ack, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.forbidden[in.Channel] {
		return wire.Ack{}, unhidra.Errorf(unhidra.EFORBIDDEN, "not a member")
	}
	if in.ClientMsgID != "" {
		if a, ok := f.byCMID[who.Principal.String()+"/"+in.ClientMsgID]; ok {
			return a, nil
		}
	}
	off := int64(len(f.msgs[in.Channel]) + 1)
	m := wire.Message{ID: fmt.Sprintf("m%s-%d", in.Channel, off), Channel: in.Channel, Offset: off, Sender: who.Principal,
		CreatedAt: time.Now().UTC(), ClientMsgID: in.ClientMsgID, Text: in.Text, Data: in.Data, E2EE: in.E2EE}
	f.msgs[in.Channel] = append(f.msgs[in.Channel], m)
	ack := wire.Ack{Channel: in.Channel, MessageID: m.ID, Offset: off}
	if in.ClientMsgID != "" {
		f.byCMID[who.Principal.String()+"/"+in.ClientMsgID] = ack
	}
	_ = f.b.Publish(context.Background(), broker.ChannelTopic(in.Channel), &broker.Event{Kind: broker.Message, Channel: in.Channel, Offset: off, Message: &m})
	return ack, nil
}

// QueuePublish is Publish in two steps, as the real chat service's group
// commit: a forbidden channel is refused at once; otherwise the publish is
// queued and a committer stores the queue in order (after delay, and not
// before gate lets it when gate is set); the wait gives the ack.
func (f *fakeChat) QueuePublish(ctx context.Context, who unhidra.Identity, in wire.Publish) (chat.PublishWait, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.forbidden[in.Channel] {
		return nil, unhidra.Errorf(unhidra.EFORBIDDEN, "not a member")
	}
	j := &fakeJob{ctx: ctx, who: who, in: in, done: make(chan fakeResult, 1)}
	f.queue = append(f.queue, j)
	f.queuedTotal++
	if !f.committing {
		f.committing = true
		go f.commitLoop()
	}
	return func(ctx context.Context) (wire.Ack, error) {
		select {
		case r := <-j.done:
			return r.ack, r.err
		case <-ctx.Done():
			return wire.Ack{}, unhidra.Errorf(unhidra.EUNAVAILABLE, "request ended before the message was stored")
		}
	}, nil
}

type fakeJob struct {
	ctx  context.Context
	who  unhidra.Identity
	in   wire.Publish
	done chan fakeResult
}

type fakeResult struct {
	ack wire.Ack
	err error
}

func (f *fakeChat) commitLoop() {
	for {
		f.mu.Lock()
		batch, gate := f.queue, f.gate
		f.queue = nil
		if len(batch) == 0 {
			f.committing = false
			f.mu.Unlock()
			return
		}
		f.mu.Unlock()
		if gate != nil {
			<-gate
		}
		if f.delay > 0 {
			time.Sleep(f.delay)
		}
		for _, j := range batch {
			if j.ctx.Err() != nil {
				continue // the caller has gone: store nothing it was not told about
			}
			ack, err := f.store(j.who, j.in)
			j.done <- fakeResult{ack, err}
		}
	}
}

// inFlight reports how many queued publishes wait for their commit and how
// many were ever queued.
func (f *fakeChat) inFlight() (waiting, total int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.queue), f.queuedTotal
}

func (f *fakeChat) Subscribe(ctx context.Context, who unhidra.Identity, channel string, since *int64) (chat.Recovery, error) {
	f.mu.Lock()
	before, after := f.beforeSnapshot, f.beforeReturn
	f.mu.Unlock()
	if before != nil {
		before()
	}
	f.mu.Lock()
	if f.forbidden[channel] {
		f.mu.Unlock()
		return chat.Recovery{}, unhidra.Errorf(unhidra.EFORBIDDEN, "not a member")
	}
	all := f.msgs[channel]
	rec := chat.Recovery{Offset: int64(len(all))}
	if since != nil {
		missed := int64(len(all)) - *since
		if missed >= 0 && missed <= int64(f.window) {
			rec.Recovered = true
			rec.Messages = append([]wire.Message(nil), all[*since:]...)
		}
	}
	f.mu.Unlock()
	if after != nil {
		after()
	}
	return rec, nil
}

func (f *fakeChat) Typing(ctx context.Context, who unhidra.Identity, channel string) error {
	return f.b.Publish(ctx, broker.ChannelTopic(channel), &broker.Event{Kind: broker.Typing, Channel: channel, User: who.Principal.ID})
}

func (f *fakeChat) setHooks(beforeSnapshot, beforeReturn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.beforeSnapshot, f.beforeReturn = beforeSnapshot, beforeReturn
}

func (f *fakeChat) stored(channel string) []wire.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]wire.Message(nil), f.msgs[channel]...)
}

// fakePresence records connections and statuses.
type fakePresence struct {
	mu       sync.Mutex
	conns    map[*presence.Conn]bool
	statuses map[string]string
}

func (p *fakePresence) Connect(_ context.Context, c *presence.Conn) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.conns[c] = true
	return nil
}

func (p *fakePresence) Disconnect(_ context.Context, c *presence.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
}

func (p *fakePresence) SetStatus(_ context.Context, who unhidra.Identity, status string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.statuses[who.Principal.ID] = status
	return nil
}

func (p *fakePresence) live() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// ---- the test environment ----

type env struct {
	t      testing.TB
	srv    *Server
	url    string
	broker *inmem.Broker
	auth   *fakeAuth
	chat   *fakeChat
	pres   *fakePresence
	logs   *syncBuffer
	reg    *prometheus.Registry
	stop   context.CancelFunc
	done   chan error
}

// testConfig has short intervals and generous limits; tests tighten what
// they check.
func testConfig() Config {
	return Config{
		Addr:                 "127.0.0.1:0",
		RateLimitIPPerMinute: -1,
		// Expiry tests use tokens of a few hundred milliseconds; the
		// leeway's own tests set it back to the default.
		TokenLeeway:     -1,
		MaxConnsPerUser: 1000,
		PingInterval:    time.Minute,
		PongTimeout:     time.Minute,
		CloseTimeout:    time.Second,
		ShutdownTimeout: 5 * time.Second,
	}
}

func newEnv(t testing.TB, mutate func(*Config, *Deps)) *env {
	t.Helper()
	b := inmem.NewBroker()
	e := &env{
		t:      t,
		broker: b,
		auth:   &fakeAuth{ids: map[string]unhidra.Identity{}},
		chat:   newFakeChat(b),
		pres:   &fakePresence{conns: map[*presence.Conn]bool{}, statuses: map[string]string{}},
		logs:   &syncBuffer{},
		reg:    prometheus.NewRegistry(),
		done:   make(chan error, 1),
	}
	cfg := testConfig()
	deps := Deps{
		Tokens:     e.auth,
		DeviceKeys: fakeDeviceAuth{e.auth},
		Chat:       e.chat,
		Presence:   e.pres,
		Broker:     b,
		Log:        slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registerer: e.reg,
	}
	if mutate != nil {
		mutate(&cfg, &deps)
	}
	srv, err := New(cfg, deps)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatalf("Listen: %v", err)
	}
	e.srv = srv
	scheme := "ws"
	if cfg.TLS != nil {
		scheme = "wss"
	}
	e.url = scheme + "://" + srv.Addr() + "/ws"
	ctx, cancel := context.WithCancel(context.Background())
	e.stop = cancel
	go func() { e.done <- srv.Run(ctx) }()
	t.Cleanup(func() { e.shutdown() })
	return e
}

// shutdown cancels Run and waits for it.
func (e *env) shutdown() {
	e.stop()
	select {
	case err, ok := <-e.done:
		if ok && err != nil {
			e.t.Errorf("Run: %v", err)
		}
		if ok {
			close(e.done)
		}
	case <-time.After(30 * time.Second):
		e.t.Errorf("Run did not return after cancel")
	}
}

// user registers an access token for a user session and returns it.
func (e *env) user(name, session string, ttl time.Duration) string {
	tok := "eyJ." + name + "." + session + "." + fmt.Sprint(time.Now().UnixNano())
	e.auth.add(tok, unhidra.Identity{
		Principal: wire.Principal{Kind: wire.KindUser, ID: name},
		SessionID: session,
		ExpiresAt: time.Now().Add(ttl),
	})
	return tok
}

// device registers a device key and returns it.
func (e *env) device(id string) string {
	key := "unhidra_dk_" + id + "_" + fmt.Sprint(time.Now().UnixNano())
	e.auth.add(key, unhidra.Identity{Principal: wire.Principal{Kind: wire.KindDevice, ID: id}})
	return key
}

func protoHeader(v string) http.Header {
	return http.Header{"Sec-WebSocket-Protocol": {v}}
}

// dial connects with a bearer subprotocol and reads the welcome frame.
func (e *env) dial(t testing.TB, tok string) *wstest.Conn {
	t.Helper()
	return e.dialWith(t, wstest.Options{Header: protoHeader("unhidra.v1, bearer." + tok)})
}

func (e *env) dialWith(t testing.TB, opt wstest.Options) *wstest.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := wstest.Dial(ctx, e.url, opt)
	if err != nil {
		status := ""
		if resp != nil {
			status = resp.Status
		}
		t.Fatalf("dial: %v %s", err, status)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	var w wire.Welcome
	typ, err := c.ReadJSON(&w)
	if err != nil || typ != wire.TypeWelcome {
		t.Fatalf("first frame: type %q, err %v; want welcome", typ, err)
	}
	_ = c.SetDeadline(time.Time{})
	return c
}

// handshake performs a handshake expected to be refused and returns the
// response.
func (e *env) handshake(t testing.TB, url string, opt wstest.Options) *http.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := wstest.Dial(ctx, url, opt)
	if err == nil {
		c.Close()
		return resp
	}
	if resp == nil {
		t.Fatalf("dial: %v", err)
	}
	return resp
}

// roundTrip checks that c is alive: a ping gets its pong.
func roundTrip(t testing.TB, c *wstest.Conn) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	if err := c.WriteFrame(wstest.Frame{Fin: true, Op: wstest.OpPing, Payload: []byte("rt")}); err != nil {
		t.Fatalf("ping: %v", err)
	}
	for {
		f, err := c.ReadFrame()
		if err != nil {
			t.Fatalf("waiting for pong: %v", err)
		}
		if f.Op == wstest.OpPong && string(f.Payload) == "rt" {
			return
		}
		if f.Op == wstest.OpClose {
			t.Fatalf("closed while waiting for pong: %v", f.Payload)
		}
	}
}

// expectClose reads until the close frame and checks its code.
func expectClose(t testing.TB, c *wstest.Conn, want int) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	code, reason, err := c.ExpectClose()
	if err != nil {
		t.Fatalf("waiting for close %d: %v", want, err)
	}
	if code != want {
		t.Fatalf("close code = %d (%q), want %d", code, reason, want)
	}
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func counterValue(t testing.TB, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	switch {
	case d.Counter != nil:
		return d.Counter.GetValue()
	case d.Gauge != nil:
		return d.Gauge.GetValue()
	}
	t.Fatal("not a counter or gauge")
	return 0
}

func mustContain(t testing.TB, s, sub string) {
	t.Helper()
	if !strings.Contains(s, sub) {
		t.Fatalf("%q does not contain %q", s, sub)
	}
}
