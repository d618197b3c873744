package mqttbridge_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.golang/paho"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/audit"
	"github.com/unhidra/unhidra/internal/broker"
	"github.com/unhidra/unhidra/internal/chat"
	"github.com/unhidra/unhidra/internal/device"
	"github.com/unhidra/unhidra/internal/inmem"
	"github.com/unhidra/unhidra/internal/mqttbridge"
	"github.com/unhidra/unhidra/internal/presence"
	"github.com/unhidra/unhidra/internal/sqlite"
	"github.com/unhidra/unhidra/internal/sqlitetest"
	"github.com/unhidra/unhidra/wire"
)

// dbUsers answers the user questions of the registry and chat services
// from the users table.
type dbUsers struct{ db *sqlite.DB }

func (u dbUsers) UserActive(ctx context.Context, name string) (bool, error) {
	var disabled bool
	err := u.db.Reader().QueryRowContext(ctx, `SELECT disabled FROM users WHERE username = ?`, name).Scan(&disabled)
	if err != nil {
		return false, nil
	}
	return !disabled, nil
}

func (u dbUsers) UserExists(ctx context.Context, name string) (bool, error) {
	return u.UserActive(ctx, name)
}

// tokens stands in for the auth service's access-token check (its own
// tests cover JWTs): token string → identity.
type tokens struct {
	mu sync.Mutex
	m  map[string]unhidra.Identity
}

func (t *tokens) AuthenticateToken(_ context.Context, tok string) (unhidra.Identity, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	id, ok := t.m[tok]
	if !ok {
		return unhidra.Identity{}, unhidra.Errorf(unhidra.EUNAUTHORIZED, "invalid token")
	}
	return id, nil
}

type harness struct {
	t        testing.TB
	db       *sqlite.DB
	broker   *inmem.Broker
	registry *device.Service
	chat     *chat.Service
	fleet    *device.Fleet
	srv      *mqttbridge.Server
	presence *presence.Service
	reg      *prometheus.Registry
	keys     map[string]string // device id → API key
	tokens   *tokens
	cancel   context.CancelFunc
	done     chan error
	audit    *auditLog
}

// auditLog records what the bridge reports to the audit seam.
type auditLog struct {
	mu  sync.Mutex
	evs []audit.Event
}

func (a *auditLog) Audit(_ context.Context, e audit.Event) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.evs = append(a.evs, e)
}

func (a *auditLog) events() []audit.Event {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]audit.Event(nil), a.evs...)
}

const testSecret = "0123456789abcdef0123456789abcdef-test"

type harnessOpts struct {
	cfg     mqttbridge.Config
	devices int // extra devices dev-0 … dev-(n-1), owned by alice
	grace   time.Duration
	log     io.Writer // debug log destination (default: discarded)
	now     func() time.Time
}

// newHarness starts the real stack on a temp SQLite database: device
// registry, chat, fleet, in-process broker and the MQTT server on a free
// port. Users alice, bob and admin (admin role) exist; devices d1 (alice)
// and d2 (bob) are registered; tokens "tok-alice", "tok-bob", "tok-admin".
func newHarness(t testing.TB, o harnessOpts) *harness {
	t.Helper()
	ctx := context.Background()
	db := sqlitetest.Open(t)
	sqlitetest.AddUsers(t, db, "alice", "bob", "admin")
	h := &harness{t: t, db: db, broker: inmem.NewBroker(), keys: map[string]string{}, reg: prometheus.NewRegistry(), audit: &auditLog{}}
	users := dbUsers{db}
	var err error
	h.registry, err = device.NewService(device.Config{Secret: testSecret}, device.Deps{Store: sqlite.NewDeviceStore(db), Users: users, Publisher: h.broker})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := sqlite.NewChatStore(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	h.chat = chat.NewService(cs, h.broker, chat.Options{Users: users, Registerer: h.reg})
	h.fleet = device.NewFleet(device.FleetOptions{
		Store:        sqlite.NewFleetStore(db),
		Broker:       h.broker,
		Channels:     h.chat,
		Owners:       h.registry,
		OfflineGrace: o.grace,
		// As `unhidra serve` wires it: point and message in one commit.
		EnsureChannel: func(ctx context.Context, d, owner string) error {
			_, err := h.chat.EnsureDeviceChannel(ctx, d, owner)
			return err
		},
	})
	h.tokens = &tokens{m: map[string]unhidra.Identity{
		"tok-alice": {Principal: wire.Principal{Kind: wire.KindUser, ID: "alice"}, SessionID: "s-alice"},
		"tok-bob":   {Principal: wire.Principal{Kind: wire.KindUser, ID: "bob"}, SessionID: "s-bob"},
		"tok-admin": {Principal: wire.Principal{Kind: wire.KindUser, ID: "admin"}, SessionID: "s-admin", Roles: []string{unhidra.RoleAdmin}},
	}}
	h.register("d1", "alice")
	h.register("d2", "bob")
	for i := 0; i < o.devices; i++ {
		h.register(fmt.Sprintf("dev-%d", i), "alice")
	}
	h.presence = presence.NewService(presence.Options{})
	logger := slog.New(slog.DiscardHandler)
	if o.log != nil {
		logger = slog.New(slog.NewTextHandler(o.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	} else if os.Getenv("UNHIDRA_TEST_LOG") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	h.srv, err = mqttbridge.New(o.cfg, mqttbridge.Deps{
		Fleet:      h.fleet,
		DeviceKeys: h.registry,
		Tokens:     h.tokens,
		Chat:       h.chat,
		Presence:   h.presence,
		Broker:     h.broker,
		Audit:      h.audit,
		Logger:     logger,
		Registerer: h.reg,
		Now:        o.now,
	})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	h.cancel = cancel
	h.done = make(chan error, 1)
	go func() { h.done <- h.srv.Run(rctx) }()
	t.Cleanup(h.stop)
	// Wait until the server accepts connections.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", h.srv.Addr())
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not listening: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return h
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	select {
	case <-h.done:
	case <-time.After(10 * time.Second):
		var b strings.Builder
		_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
		h.t.Errorf("server did not stop within 10 s; goroutines:\n%s", b.String())
	}
	h.chat.Wait()
	h.db.Close()
}

func (h *harness) register(id, owner string) {
	h.t.Helper()
	who := unhidra.Identity{Principal: wire.Principal{Kind: wire.KindUser, ID: owner}, SessionID: "s"}
	_, key, err := h.registry.Register(context.Background(), who, device.RegisterInput{Name: id, ID: id})
	if err != nil {
		h.t.Fatalf("register %s: %v", id, err)
	}
	if _, err := h.chat.EnsureDeviceChannel(context.Background(), id, owner); err != nil {
		h.t.Fatalf("device channel %s: %v", id, err)
	}
	h.keys[id] = key
}

func (h *harness) count(q string, args ...any) int {
	h.t.Helper()
	var n int
	if err := h.db.Reader().QueryRow(q, args...).Scan(&n); err != nil {
		h.t.Fatal(err)
	}
	return n
}

// ---- paho (MQTT 5) ----

type v5client struct {
	conn net.Conn
	c    *paho.Client
	msgs chan *paho.Publish
	disc chan *paho.Disconnect
	errs chan error
}

// dialV5 connects a paho.golang client; it returns the CONNACK reason and
// the client (nil when refused).
func dialV5(t testing.TB, addr, clientID, user, pass string, mod func(*paho.Connect)) (*v5client, byte, error) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	v := &v5client{conn: conn, msgs: make(chan *paho.Publish, 4096), disc: make(chan *paho.Disconnect, 1), errs: make(chan error, 8)}
	v.c = paho.NewClient(paho.ClientConfig{
		ClientID: clientID,
		Conn:     conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			v.msgs <- pr.Packet
			return true, nil
		}},
		OnServerDisconnect: func(d *paho.Disconnect) {
			select {
			case v.disc <- d:
			default:
			}
		},
		OnClientError: func(err error) {
			select {
			case v.errs <- err:
			default:
			}
		},
	})
	cp := &paho.Connect{ClientID: clientID, KeepAlive: 30, CleanStart: true, Username: user, UsernameFlag: user != "", Password: []byte(pass), PasswordFlag: pass != ""}
	if mod != nil {
		mod(cp)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ca, err := v.c.Connect(ctx, cp)
	if ca == nil {
		return nil, 0, err
	}
	if ca.ReasonCode != 0 {
		return nil, ca.ReasonCode, err
	}
	t.Cleanup(func() { _ = v.c.Disconnect(&paho.Disconnect{}) })
	return v, 0, nil
}

func mustV5(t testing.TB, addr, clientID, user, pass string) *v5client {
	t.Helper()
	v, code, err := dialV5(t, addr, clientID, user, pass, nil)
	if v == nil {
		t.Fatalf("connect %s: reason 0x%02x, %v", user, code, err)
	}
	return v
}

func (v *v5client) sub(t testing.TB, filter string, qos byte) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sa, err := v.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: qos}}})
	if sa == nil {
		t.Fatalf("subscribe %s: %v", filter, err)
	}
	return sa.Reasons[0]
}

// pub publishes and returns the PUBACK reason (0 for QoS 0).
func (v *v5client) pub(t testing.TB, topic string, qos byte, retain bool, payload string) (byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pr, err := v.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: qos, Retain: retain, Payload: []byte(payload)})
	if pr != nil {
		return pr.ReasonCode, err
	}
	return 0, err
}

func (v *v5client) next(t testing.TB, within time.Duration) *paho.Publish {
	t.Helper()
	select {
	case m := <-v.msgs:
		return m
	case <-time.After(within):
		t.Fatalf("no message within %s", within)
		return nil
	}
}

// ---- raw MQTT packets (handcrafted, for exact reason codes and abuse) ----

func varint(n int) []byte {
	var b []byte
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			return b
		}
	}
}

func mstr(s string) []byte {
	b := make([]byte, 2, 2+len(s))
	binary.BigEndian.PutUint16(b, uint16(len(s)))
	return append(b, s...)
}

func packet(typeFlags byte, body []byte) []byte {
	return append(append([]byte{typeFlags}, varint(len(body))...), body...)
}

type will struct {
	topic, payload string
	retain         bool
}

// connectPkt builds a CONNECT for protocol level v (4 = 3.1.1, 5 = 5).
func connectPkt(v byte, clientID, user, pass string, keepalive uint16, w *will) []byte {
	flags := byte(0x02) // clean
	if user != "" {
		flags |= 0x80
	}
	if pass != "" {
		flags |= 0x40
	}
	if w != nil {
		flags |= 0x04 | 0x08 // will, QoS 1
		if w.retain {
			flags |= 0x20
		}
	}
	body := append(mstr("MQTT"), v, flags, byte(keepalive>>8), byte(keepalive))
	if v == 5 {
		body = append(body, 0)
	}
	body = append(body, mstr(clientID)...)
	if w != nil {
		if v == 5 {
			body = append(body, 0)
		}
		body = append(body, mstr(w.topic)...)
		body = append(body, mstr(w.payload)...)
	}
	if user != "" {
		body = append(body, mstr(user)...)
	}
	if pass != "" {
		body = append(body, mstr(pass)...)
	}
	return packet(0x10, body)
}

func publishPkt(v byte, topic string, qos byte, id uint16, payload []byte) []byte {
	body := mstr(topic)
	if qos > 0 {
		body = append(body, byte(id>>8), byte(id))
	}
	if v == 5 {
		body = append(body, 0)
	}
	body = append(body, payload...)
	return packet(0x30|qos<<1, body)
}

func subscribePkt(v byte, id uint16, filter string, qos byte) []byte {
	body := []byte{byte(id >> 8), byte(id)}
	if v == 5 {
		body = append(body, 0)
	}
	body = append(body, mstr(filter)...)
	body = append(body, qos)
	return packet(0x82, body)
}

type rawConn struct {
	net.Conn
	r *bufio.Reader
}

func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{Conn: c, r: bufio.NewReader(c)}
}

// read reads one packet: its first byte and its body.
func (c *rawConn) read(within time.Duration) (byte, []byte, error) {
	_ = c.SetReadDeadline(time.Now().Add(within))
	h, err := c.r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, mul := 0, 1
	for i := 0; i < 4; i++ {
		b, err := c.r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		n += int(b&0x7f) * mul
		mul *= 128
		if b&0x80 == 0 {
			break
		}
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(c.r, body); err != nil {
		return 0, nil, err
	}
	return h, body, nil
}

// connack sends CONNECT and returns the CONNACK reason/return code.
func (c *rawConn) connack(t testing.TB, pkt []byte) byte {
	t.Helper()
	if _, err := c.Write(pkt); err != nil {
		t.Fatal(err)
	}
	h, body, err := c.read(5 * time.Second)
	if err != nil || h>>4 != 2 || len(body) < 2 {
		t.Fatalf("no CONNACK: header %x body %x err %v", h, body, err)
	}
	return body[1]
}

// closedWithin reports whether the server closes the connection within d
// (packets it sends first are skipped).
func (c *rawConn) closedWithin(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		_ = c.SetReadDeadline(deadline)
		_, err := c.r.ReadByte()
		if err == nil {
			continue
		}
		var ne net.Error
		return !(errors.As(err, &ne) && ne.Timeout())
	}
}

// waitFor polls cond until it holds or within passes.
func waitFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var _ = broker.RevocationTopic
