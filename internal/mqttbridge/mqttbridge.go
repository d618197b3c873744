// Package mqttbridge is Unhidra's embedded MQTT broker (MQTT 3.1.1 and 5,
// on mochi-mqtt) and its bridge into the same services the WebSocket
// gateway uses: device telemetry, heartbeats, status and command results go
// to device.Fleet; channel publishes go to the chat service; channel
// messages and device commands from any transport come back out to MQTT
// subscribers. The rules live in those services; this package only
// translates (docs/protocol.md#mqtt).
//
// Durability: a QoS 1 PUBACK (QoS 2 PUBREC) is written by mochi only after
// its OnPublish hooks return (server.go processPublish in v2.7.9), and this
// package's OnPublish makes the service call — which commits to the
// database — synchronously. On failure the PUBACK carries a failure reason
// (v5) or the connection is closed without one (3.1.1), so the client
// sends the message again; nothing is acknowledged that is not stored.
// QoS 0 telemetry, which has no acknowledgement, is handed to the group
// commit without waiting for it (device.Fleet.TelemetryNoWait: bounded, and
// synchronous again when too much is queued), so a connection's read loop
// is not held for an fsync; it is relayed to MQTT subscribers of the topic
// at once and stored a few milliseconds later.
//
// Concurrency contract: a Server is safe for concurrent use. mochi runs one
// reader goroutine per connection and calls the hooks on it; per-connection
// state (identity, read-permission cache) sits in a session guarded by its
// own mutex. Broker handlers (channel messages, device commands,
// revocations) only enqueue work for one bridge goroutine started by Run,
// which publishes into mochi, so broker publishers are never blocked by
// MQTT clients. Run returns after ctx ends and every client is closed.
package mqttbridge

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/audit"
	"github.com/unhidra/unhidra/internal/broker"
	"github.com/unhidra/unhidra/internal/chat"
	"github.com/unhidra/unhidra/internal/config"
	"github.com/unhidra/unhidra/internal/device"
	"github.com/unhidra/unhidra/internal/presence"
	"github.com/unhidra/unhidra/internal/ratelimit"
	"github.com/unhidra/unhidra/wire"
)

// DeviceKeys authenticates device API keys: the device registry.
type DeviceKeys interface {
	AuthenticateDeviceKey(ctx context.Context, key string) (unhidra.Identity, error)
}

// Tokens authenticates users' access tokens: the auth service.
type Tokens interface {
	AuthenticateToken(ctx context.Context, token string) (unhidra.Identity, error)
}

// Fleet is the device runtime: *device.Fleet.
type Fleet interface {
	Telemetry(ctx context.Context, who unhidra.Identity, p device.TelemetryPoint) (wire.Ack, error)
	// QueueTelemetry queues a point for the group commit; the wait gives
	// its ack after the commit (QoS 1, acks.go).
	QueueTelemetry(ctx context.Context, who unhidra.Identity, p device.TelemetryPoint) (device.TelemetryWait, error)
	Heartbeat(ctx context.Context, who unhidra.Identity, hb device.Heartbeat) error
	Status(ctx context.Context, who unhidra.Identity, payload []byte) error
	CommandResult(ctx context.Context, who unhidra.Identity, r device.CommandResult) error
	PendingCommands(ctx context.Context, deviceID string) ([]device.Command, error)
	CommandDelivered(ctx context.Context, deviceID, commandID string) (bool, error)
	Connected(ctx context.Context, deviceID string) error
	Disconnected(ctx context.Context, deviceID string) error
}

// FleetNoWait is the optional early-return path of the fleet
// (*device.Fleet): QoS 0 telemetry is queued for the group commit and the
// connection's read loop goes on without waiting for the fsync.
type FleetNoWait interface {
	TelemetryNoWait(ctx context.Context, who unhidra.Identity, p device.TelemetryPoint) (queued bool, err error)
	TelemetryNoWaitFailures() uint64
	TelemetryInFlight() int64
}

// Chat is the chat service: Publish posts a message; Subscribe (with
// since nil) answers whether who may read a channel.
type Chat interface {
	Publish(ctx context.Context, who unhidra.Identity, in wire.Publish) (wire.Ack, error)
	// QueuePublish queues a message for the group commit; the wait gives
	// its ack after the commit (QoS 1, acks.go).
	QueuePublish(ctx context.Context, who unhidra.Identity, in wire.Publish) (chat.PublishWait, error)
	Subscribe(ctx context.Context, who unhidra.Identity, channel string, since *int64) (chat.Recovery, error)
}

// Presence registers live connections (optional).
type Presence interface {
	Connect(ctx context.Context, c *presence.Conn) error
	Disconnect(ctx context.Context, c *presence.Conn)
}

// Config configures the listeners.
type Config struct {
	// BindAddr and Port: the plain listener (MQTT_PORT); port 0 picks one.
	BindAddr string
	Port     int
	// TLSPort and TLS: the TLS listener (MQTT_TLS_PORT), only when TLS is
	// set.
	TLSPort int
	TLS     *tls.Config
	// Listener and TLSListener, when set, are used instead of binding Port
	// and TLSPort (the caller opens every port before it touches anything
	// else). The server owns them.
	Listener, TLSListener net.Listener
	// ConnectTimeout bounds the time from TCP accept to a complete CONNECT.
	// Default 10 s.
	ConnectTimeout time.Duration
	// MaxKeepalive is the keep-alive the server imposes on clients that ask
	// for none (0) or for more; default 300 s.
	MaxKeepalive uint16
	// OpTimeout bounds one service call made for a packet; default 10 s.
	OpTimeout time.Duration
	// RateLimitIPPerMinute bounds CONNECT packets per client IP in any
	// sliding minute (RATE_LIMIT_IP_PER_MINUTE; exact). Refused:
	// CONNACK 0x9F (v5) / 0x03 (3.1.1). 0: no limit.
	RateLimitIPPerMinute int
	// IPLimiter, when set, counts CONNECTs per client IP instead of the
	// bridge's own RateLimitIPPerMinute window.
	IPLimiter ratelimit.Limiter
	// MaxConnsPerUser bounds live MQTT connections per user or device
	// (MAX_CONNECTIONS_PER_USER, counted apart from WebSocket connections).
	// Refused: CONNACK 0x97 (v5) / 0x03 (3.1.1). 0: no limit.
	MaxConnsPerUser int
}

// Deps are the services the bridge talks to. Fleet, DeviceKeys and Broker
// are required; without Tokens users cannot connect; without Chat channel
// topics are refused, and users read no device topic (who may read a
// device's topics is the chat rule of its channel device:<id>).
type Deps struct {
	Fleet      Fleet
	DeviceKeys DeviceKeys
	Tokens     Tokens
	Chat       Chat
	Presence   Presence
	Broker     broker.Broker
	// Audit records refused CONNECTs (default: audit.Log on Logger).
	Audit      audit.Recorder
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time
}

// Server is the embedded MQTT broker bridged into the services.
type Server struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	now  func() time.Time
	mq   *mqtt.Server
	m    *metrics
	// noWait is deps.Fleet's early-return path for QoS 0 telemetry, nil
	// when it has none.
	noWait FleetNoWait

	plain, secure *listener

	ipLimit ratelimit.Limiter // nil: no limit

	sessMu   sync.Mutex
	sessions map[*mqtt.Client]*session
	// byPrincipal indexes sessions by principal (MaxConnsPerUser).
	byPrincipal map[wire.Principal]map[*mqtt.Client]struct{}
	// devCmd counts live MQTT sessions per device with the unsubscribe of
	// its DeviceCommandTopic subscription.
	devCmd map[string]*topicSub
	// chanSubs maps a channel id to the clients subscribed to its MQTT
	// topics (channelSubscriber), with the broker subscription that feeds
	// them.
	chanSubs map[string]*topicSub

	work      chan func()
	stopWork  chan struct{}
	workDone  chan struct{}
	unsubRevs func()
	closed    atomic.Bool

	willMu sync.Mutex
	wills  map[string]*time.Timer // client id → delayed Will
}

type topicSub struct {
	clients map[string]int
	unsub   func()
}

// session is what the bridge knows of one authenticated connection.
type session struct {
	cl   *mqtt.Client
	who  unhidra.Identity
	conn *presence.Conn
	v5   bool

	started time.Time

	mu          sync.Mutex
	established bool
	readable    map[string]cached // channel id → may read (cache for delivery checks)
	expiry      *time.Timer
	will        *pendingWill // set at CONNECT (will.go)

	acks acks // QoS 1 publishes waiting for their commit (acks.go)
}

// cached is a permission answer and when it was given.
type cached struct {
	ok bool
	at time.Time
}

// PermissionTTL is how long a user's read permission (channel membership,
// device ownership) is trusted before it is asked again; a user removed
// from a channel stops receiving it over MQTT within this time.
const PermissionTTL = 30 * time.Second

// New builds the broker and opens its listeners (so Addr is known at once);
// Run serves.
func New(cfg Config, d Deps) (*Server, error) {
	if d.Fleet == nil || d.DeviceKeys == nil || d.Broker == nil {
		return nil, errors.New("mqttbridge: Fleet, DeviceKeys and Broker are required")
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = func() time.Time { return time.Now().UTC() }
	}
	if d.Registerer == nil {
		d.Registerer = prometheus.NewRegistry()
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	if cfg.MaxKeepalive == 0 {
		cfg.MaxKeepalive = 300
	}
	if cfg.OpTimeout <= 0 {
		cfg.OpTimeout = 10 * time.Second
	}
	if cfg.BindAddr == "" {
		cfg.BindAddr = "127.0.0.1"
	}
	if d.Audit == nil {
		d.Audit = audit.Slog{Log: d.Logger}
	}
	s := &Server{
		cfg:         cfg,
		deps:        d,
		log:         d.Logger.With("component", "mqtt"),
		now:         d.Now,
		sessions:    make(map[*mqtt.Client]*session),
		byPrincipal: make(map[wire.Principal]map[*mqtt.Client]struct{}),
		ipLimit:     newIPLimiter(cfg.IPLimiter, cfg.RateLimitIPPerMinute, d.Now),
		devCmd:      make(map[string]*topicSub),
		chanSubs:    make(map[string]*topicSub),
		wills:       make(map[string]*time.Timer),
		work:        make(chan func(), 8192),
		stopWork:    make(chan struct{}),
		workDone:    make(chan struct{}),
	}
	s.noWait, _ = d.Fleet.(FleetNoWait)
	m, err := newMetrics(d.Registerer, s)
	if err != nil {
		return nil, err
	}
	s.m = m

	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = wire.MaxMQTTPacketBytes
	caps.MaximumClientWritesPending = 4096
	// Bounds the QoS > 0 messages kept per client (also for offline
	// persistent sessions).
	caps.MaximumInflight = 1024
	caps.MaximumMessageExpiryInterval = 24 * 60 * 60
	caps.MaximumSessionExpiryInterval = 24 * 60 * 60
	caps.ReceiveMaximum = 1024
	caps.SharedSubAvailable = 0
	// mochi's own log lines can carry packet contents; only errors go
	// through, and this package logs what operators need itself.
	mochiLog := slog.New(levelFilter{h: d.Logger.Handler(), min: slog.LevelError})
	s.mq = mqtt.New(&mqtt.Options{
		Capabilities:           caps,
		InlineClient:           true,
		Logger:                 mochiLog,
		SysTopicResendInterval: 10,
	})
	if err := s.mq.AddHook(&hook{s: s}, nil); err != nil {
		return nil, err
	}
	s.plain = &listener{id: "mqtt", addr: net.JoinHostPort(cfg.BindAddr, strconv.Itoa(cfg.Port)), connectTimeout: cfg.ConnectTimeout, pre: cfg.Listener, drain: s.drainListener}
	if err := s.mq.AddListener(s.plain); err != nil {
		return nil, fmt.Errorf("mqtt listener: %w", err)
	}
	if cfg.TLS != nil {
		tc := cfg.TLS.Clone()
		if tc.MinVersion < tls.VersionTLS12 {
			tc.MinVersion = tls.VersionTLS12
		}
		s.secure = &listener{id: "mqtts", addr: net.JoinHostPort(cfg.BindAddr, strconv.Itoa(cfg.TLSPort)), tlsConfig: tc, connectTimeout: cfg.ConnectTimeout, pre: cfg.TLSListener, drain: s.drainListener}
		if err := s.mq.AddListener(s.secure); err != nil {
			s.plain.Close(func(string) {})
			return nil, fmt.Errorf("mqtt tls listener: %w", err)
		}
	}
	return s, nil
}

// Addr is the address of the plain listener.
func (s *Server) Addr() string { return s.plain.Address() }

// TLSAddr is the address of the TLS listener, "" without TLS.
func (s *Server) TLSAddr() string {
	if s.secure == nil {
		return ""
	}
	return s.secure.Address()
}

// Run serves until ctx ends, then disconnects every client (v5: server
// shutting down) and returns.
func (s *Server) Run(ctx context.Context) error {
	unsub, err := s.deps.Broker.Subscribe(broker.RevocationTopic, func(ev *broker.Event) {
		if ev.Kind == broker.Revoke && ev.Revocation != nil {
			r := *ev.Revocation
			s.enqueue(func() { s.revoke(r) })
		}
	})
	if err != nil {
		return fmt.Errorf("mqtt: subscribe revocations: %w", err)
	}
	s.unsubRevs = unsub
	go s.worker()
	if err := s.mq.Serve(); err != nil {
		unsub()
		close(s.stopWork)
		<-s.workDone
		return err
	}
	s.log.Info("mqtt listening", "addr", s.Addr(), "tls_addr", s.TLSAddr())
	<-ctx.Done()
	s.shutdown()
	return nil
}

// drainListener tells the clients of a closing listener the server is
// shutting down (v5 DISCONNECT 0x8B) and closes their connections.
func (s *Server) drainListener(id string) {
	for _, cl := range s.mq.Clients.GetAll() {
		if cl.Net.Listener == id && !cl.Closed() {
			_ = s.mq.DisconnectClient(cl, packets.ErrServerShuttingDown)
		}
	}
}

func (s *Server) shutdown() {
	if !s.closed.CompareAndSwap(false, true) {
		return
	}
	s.unsubRevs()
	s.stopWills()
	_ = s.mq.Close()
	close(s.stopWork)
	<-s.workDone
	s.sessMu.Lock()
	for _, t := range s.devCmd {
		t.unsub()
	}
	for _, t := range s.chanSubs {
		t.unsub()
	}
	s.devCmd = map[string]*topicSub{}
	s.chanSubs = map[string]*topicSub{}
	s.sessMu.Unlock()
}

// enqueue hands work to the bridge goroutine without blocking; when the
// queue is full the work is dropped and counted.
func (s *Server) enqueue(fn func()) {
	select {
	case s.work <- fn:
	default:
		s.m.dropped.Inc()
	}
}

func (s *Server) worker() {
	defer close(s.workDone)
	sweep := time.NewTicker(30 * time.Second)
	defer sweep.Stop()
	for {
		select {
		case fn := <-s.work:
			fn()
		case <-sweep.C:
			s.sweep()
		case <-s.stopWork:
			return
		}
	}
}

// opCtx is the context of one service call. Its audit Source names the
// MQTT transport, so an event a call causes (a device channel made on a
// device's first post) says where it came from.
func (s *Server) opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(mqttSource, s.cfg.OpTimeout)
}

var mqttSource = audit.WithSource(context.Background(), audit.Source{Transport: audit.TransportMQTT})

func (s *Server) session(cl *mqtt.Client) *session {
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	return s.sessions[cl]
}

// Connections returns the number of authenticated MQTT connections.
func (s *Server) Connections() int {
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	return len(s.sessions)
}

// disconnect closes a client: with a DISCONNECT carrying code in v5, by
// closing the connection in 3.1.1 (which has no server DISCONNECT).
func (s *Server) disconnect(cl *mqtt.Client, code packets.Code) {
	if cl.Properties.ProtocolVersion == 5 {
		_ = s.mq.DisconnectClient(cl, code)
		return
	}
	cl.Stop(code)
}

// revoke closes every session matching a revocation event.
func (s *Server) revoke(r broker.Revocation) {
	s.sessMu.Lock()
	var hit []*session
	for _, ss := range s.sessions {
		p := ss.who.Principal
		match := false
		switch r.Kind {
		case broker.RevokeSession:
			match = !ss.who.IsDevice() && ss.who.SessionID != "" && ss.who.SessionID == r.ID
		case broker.RevokeUser:
			match = !ss.who.IsDevice() && p.ID == r.ID
		case broker.RevokeUserExcept:
			match = !ss.who.IsDevice() && p.ID == r.ID && ss.who.SessionID != r.Except
		case broker.RevokeDevice:
			match = ss.who.IsDevice() && p.ID == r.ID
		}
		if match {
			hit = append(hit, ss)
		}
	}
	s.sessMu.Unlock()
	for _, ss := range hit {
		s.log.Info("mqtt session revoked", "principal", ss.who.Principal.String(), "kind", r.Kind)
		s.m.revoked.Inc()
		s.disconnect(ss.cl, packets.ErrNotAuthorized)
	}
}

// newConnID returns a random connection id.
func newConnID() string {
	return "mqtt_" + ulid.MustNew(ulid.Now(), rand.Reader).String()
}

// levelFilter drops records below min.
type levelFilter struct {
	h   slog.Handler
	min slog.Level
}

func (f levelFilter) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= f.min && f.h.Enabled(ctx, l)
}
func (f levelFilter) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "publish packet error" {
		// mochi logs every publish our hook refuses, with the packet; the
		// refusal is counted (unhidra_mqtt_publish_rejected_total) and
		// logged at debug by rejectPublish instead.
		return nil
	}
	return f.h.Handle(ctx, r)
}
func (f levelFilter) WithAttrs(a []slog.Attr) slog.Handler {
	return levelFilter{h: f.h.WithAttrs(a), min: f.min}
}
func (f levelFilter) WithGroup(n string) slog.Handler {
	return levelFilter{h: f.h.WithGroup(n), min: f.min}
}

// SessionInfo describes one live MQTT session.
type SessionInfo struct {
	// ClientID is the client identifier the client chose (or was assigned).
	ClientID  string
	Principal wire.Principal
	// Protocol is 4 for MQTT 3.1.1, 5 for MQTT 5.
	Protocol byte
	Remote   string
}

// Sessions lists the established MQTT sessions.
func (s *Server) Sessions() []SessionInfo {
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	out := make([]SessionInfo, 0, len(s.sessions))
	for cl, ss := range s.sessions {
		ss.mu.Lock()
		est := ss.established
		ss.mu.Unlock()
		if !est {
			continue
		}
		out = append(out, SessionInfo{
			ClientID:  strings.TrimPrefix(cl.ID, clientPrefix(ss.who)),
			Principal: ss.who.Principal,
			Protocol:  cl.Properties.ProtocolVersion,
			Remote:    cl.Net.Remote,
		})
	}
	return out
}

// Name names the component in logs ("mqtt").
func (s *Server) Name() string { return "mqtt" }

// ConfigFrom takes the listener settings from the process configuration:
// BIND_ADDR, MQTT_PORT, RATE_LIMIT_IP_PER_MINUTE, MAX_CONNECTIONS_PER_USER
// and, when TLS_CERT_FILE and TLS_KEY_FILE are set, MQTT_TLS_PORT with that
// certificate.
func ConfigFrom(c *config.Config) (Config, error) {
	out := Config{BindAddr: c.BindAddr, Port: c.MQTTPort, TLSPort: c.MQTTTLSPort,
		RateLimitIPPerMinute: c.RateLimitIPPerMin, MaxConnsPerUser: c.MaxConnsPerUser}
	if c.TLS() {
		cert, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile)
		if err != nil {
			return Config{}, fmt.Errorf("mqtt: TLS_CERT_FILE/TLS_KEY_FILE: %w", err)
		}
		out.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	return out, nil
}
