package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/audit"
	"github.com/unhidra/unhidra/internal/auth"
	"github.com/unhidra/unhidra/internal/broker"
	"github.com/unhidra/unhidra/internal/chat"
	"github.com/unhidra/unhidra/internal/httpx"
	"github.com/unhidra/unhidra/internal/presence"
	"github.com/unhidra/unhidra/internal/ratelimit"
	"github.com/unhidra/unhidra/wire"
)

// TokenAuthenticator verifies user access tokens (*auth.Service).
type TokenAuthenticator interface {
	AuthenticateToken(ctx context.Context, token string) (unhidra.Identity, error)
}

// DeviceKeyAuthenticator verifies device API keys (*device.Service).
type DeviceKeyAuthenticator interface {
	AuthenticateDeviceKey(ctx context.Context, key string) (unhidra.Identity, error)
}

// Chat is what the gateway needs of the chat service (*chat.Service).
type Chat interface {
	Subscribe(ctx context.Context, who unhidra.Identity, channel string, since *int64) (chat.Recovery, error)
	Publish(ctx context.Context, who unhidra.Identity, in wire.Publish) (wire.Ack, error)
	Typing(ctx context.Context, who unhidra.Identity, channel string) error
}

// Presence is what the gateway needs of the presence service.
type Presence interface {
	Connect(ctx context.Context, c *presence.Conn) error
	Disconnect(ctx context.Context, c *presence.Conn)
	SetStatus(ctx context.Context, who unhidra.Identity, status string) error
}

// Devices handles device frames (DeviceFrames). Optional: without it
// those frames get an `unavailable` error frame.
type Devices interface {
	Heartbeat(ctx context.Context, who unhidra.Identity, f wire.ClientFrame) error
	Telemetry(ctx context.Context, who unhidra.Identity, f wire.ClientFrame) (wire.Ack, error)
	CommandResult(ctx context.Context, who unhidra.Identity, f wire.ClientFrame) error
}

// DeviceSessions is optionally implemented by Devices (DeviceFrames): it
// tracks devices' WebSocket sessions and hands them their commands.
// DeviceConnected marks the device online and returns the commands waiting
// for it; CommandDelivered moves a command from pending to delivered and
// reports whether this caller won it (so exactly one transport delivers it).
type DeviceSessions interface {
	DeviceConnected(ctx context.Context, who unhidra.Identity) ([]wire.CommandFrame, error)
	DeviceDisconnected(ctx context.Context, who unhidra.Identity)
	CommandDelivered(ctx context.Context, deviceID, commandID string) (bool, error)
}

// Config is the gateway's configuration. Zero durations and limits take the
// documented defaults (docs/protocol.md#limits).
type Config struct {
	// Addr is the listen address, e.g. "127.0.0.1:9000" (port 0 for tests).
	Addr string
	// Listener, when set, is used instead of binding Addr (the caller opens
	// every port before it touches anything else). The gateway owns it.
	Listener net.Listener
	// TLS, when set, makes the gateway serve HTTPS/WSS (TLS 1.2 and 1.3 only).
	TLS *tls.Config
	// TrustProxyTLS says TLS is terminated by a proxy (https page origins
	// are then same-origin); TrustedProxies may set X-Forwarded-For.
	TrustProxyTLS  bool
	TrustedProxies []netip.Prefix
	// AllowedOrigins is the exact Origin list; empty means same-origin only.
	AllowedOrigins []string
	// RateLimitIPPerMinute bounds handshakes per client IP in any sliding
	// minute, exactly (default 60; negative disables).
	RateLimitIPPerMinute int
	// IPLimiter, when set, counts handshakes per client IP instead of the
	// gateway's own RateLimitIPPerMinute window (the composition root
	// hands every transport a limiter of the same kind).
	IPLimiter ratelimit.Limiter
	// TokenLeeway is how long past its exp an access token is still
	// accepted, here as by the auth service's verification and so by the
	// REST API (default auth.TokenLeeway; negative: none). A connection
	// whose token is not refreshed is closed with 4001 when it ends.
	TokenLeeway time.Duration
	// MaxConnsPerUser bounds open connections per principal (default 10).
	MaxConnsPerUser int
	// PingInterval and PongTimeout drive dead-peer detection (30 s, 10 s).
	PingInterval time.Duration
	PongTimeout  time.Duration
	// HeartbeatInterval is announced to devices in welcome (60 s).
	HeartbeatInterval time.Duration
	// WriteTimeout bounds one batched socket write (10 s); CloseTimeout how
	// long to wait for the peer's close frame after sending ours (2 s).
	WriteTimeout time.Duration
	CloseTimeout time.Duration
	// ShutdownTimeout bounds the drain (10 s).
	ShutdownTimeout time.Duration
	// RequestTimeout bounds how long a plain HTTP request (REST API, web
	// client, health, metrics) may take to send its body and read its
	// answer (30 s); WebSocket connections are not affected.
	RequestTimeout time.Duration
	// FlushDelay is the longest a fan-out frame may wait for the frames
	// of later events so that they leave in one write; the wait grows with
	// the connections a round writes, 70 µs each after the first
	// millisecond (flushsched.go). Default 100 ms. Replies are never
	// delayed.
	FlushDelay time.Duration
	// MaxQueueBytes is the outbound queue limit past which a connection is
	// closed with 4008 (1 MiB).
	MaxQueueBytes int
	// InboundRate and InboundBurst limit inbound frames (50/s, burst 100);
	// FloodCloseAfter is how long a client may keep exceeding it before it
	// is closed with 1008 (5 s).
	InboundRate     float64
	InboundBurst    int
	FloodCloseAfter time.Duration
	// SocketWriteBuffer, when positive, sets SO_SNDBUF of accepted sockets
	// (kernel memory per connection; smaller makes slow consumers show up
	// sooner in the outbound queue).
	SocketWriteBuffer int
	// MaxSubscriptions bounds the channels one connection may subscribe to.
	MaxSubscriptions int
	// Now is the clock of the rate limiters (time.Now).
	Now func() time.Time
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.PingInterval, 30*time.Second)
	def(&c.PongTimeout, 10*time.Second)
	def(&c.HeartbeatInterval, 60*time.Second)
	def(&c.WriteTimeout, 10*time.Second)
	def(&c.CloseTimeout, 2*time.Second)
	def(&c.ShutdownTimeout, 10*time.Second)
	def(&c.RequestTimeout, 30*time.Second)
	def(&c.FloodCloseAfter, 5*time.Second)
	def(&c.FlushDelay, 100*time.Millisecond)
	if c.TokenLeeway == 0 {
		c.TokenLeeway = auth.TokenLeeway
	} else if c.TokenLeeway < 0 {
		c.TokenLeeway = 0
	}
	if c.RateLimitIPPerMinute == 0 {
		c.RateLimitIPPerMinute = 60
	}
	if c.MaxConnsPerUser <= 0 {
		c.MaxConnsPerUser = 10
	}
	if c.MaxQueueBytes <= 0 {
		c.MaxQueueBytes = 1 << 20
	}
	if c.InboundRate <= 0 {
		c.InboundRate = 50
	}
	if c.InboundBurst <= 0 {
		c.InboundBurst = 100
	}
	if c.MaxSubscriptions <= 0 {
		c.MaxSubscriptions = 1000
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Deps are the services the gateway translates to. Tokens, Chat and Broker
// are required; the others may be nil.
type Deps struct {
	Tokens     TokenAuthenticator
	DeviceKeys DeviceKeyAuthenticator
	Chat       Chat
	Presence   Presence
	Devices    Devices
	Broker     broker.Broker
	// Audit records refused handshakes (default: audit.Log on Log).
	Audit audit.Recorder
	Log   *slog.Logger
	// Registerer receives the gateway's collectors; Gatherer is served at
	// /metrics. A private registry is used when nil.
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer
	// Health reports whether the process and its database are usable.
	Health func(ctx context.Context) error
	// API is mounted at /api/v1/ and Web at /; nil answers 404.
	API http.Handler
	Web http.Handler
}

// Server is the gateway: one HTTP server for /ws, /health, /ready, /metrics,
// the REST API and the web client.
type Server struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	audit   audit.Recorder
	met     *metrics
	hub     *hub
	flushes *flushScheduler // nil: fan-out frames are written at once
	ipLimit *ipLimiter
	origins originPolicy
	handler http.Handler
	http    *http.Server

	lnMu sync.Mutex
	ln   net.Listener

	// base is the context of service calls made for connections. It is the
	// server's lifetime, not a request's: canceled only when a drain runs
	// out of time, so in-flight publishes finish during a drain.
	base       context.Context
	cancelBase context.CancelFunc

	mu          sync.Mutex
	conns       map[*conn]struct{}
	byPrincipal map[wire.Principal]int
	draining    bool
	allGone     chan struct{} // closed when draining and conns is empty

	wg sync.WaitGroup // every connection goroutine
}

// New builds a gateway. It does not listen: call Listen or Run.
func New(cfg Config, deps Deps) (*Server, error) {
	cfg.setDefaults()
	if deps.Tokens == nil || deps.Chat == nil || deps.Broker == nil {
		return nil, errors.New("gateway: Tokens, Chat and Broker are required")
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	if deps.Audit == nil {
		deps.Audit = audit.Slog{Log: deps.Log}
	}
	if deps.Registerer == nil {
		reg := prometheus.NewRegistry()
		deps.Registerer = reg
		if deps.Gatherer == nil {
			deps.Gatherer = reg
		}
	}
	if deps.Gatherer == nil {
		if g, ok := deps.Registerer.(prometheus.Gatherer); ok {
			deps.Gatherer = g
		} else {
			deps.Gatherer = prometheus.DefaultGatherer
		}
	}
	s := &Server{
		cfg:         cfg,
		deps:        deps,
		log:         deps.Log,
		audit:       deps.Audit,
		ipLimit:     newIPLimiter(cfg.IPLimiter, cfg.RateLimitIPPerMinute, cfg.Now),
		origins:     originPolicy{allowed: cfg.AllowedOrigins, tls: cfg.TLS != nil, proxyTLS: cfg.TrustProxyTLS},
		conns:       make(map[*conn]struct{}),
		byPrincipal: make(map[wire.Principal]int),
		allGone:     make(chan struct{}),
	}
	s.base, s.cancelBase = context.WithCancel(context.Background())
	met, err := newMetrics(deps.Registerer, s.maxQueued)
	if err != nil {
		return nil, fmt.Errorf("gateway: metrics: %w", err)
	}
	s.met = met
	s.hub = newHub(deps.Broker, met, s.log)
	s.flushes = newFlushScheduler(cfg.FlushDelay)

	mux := http.NewServeMux()
	mux.HandleFunc("GET /ws", s.serveWS)
	bounded := func(h http.Handler) http.Handler { return withDeadlines(cfg.RequestTimeout, h) }
	mux.Handle("GET /health", bounded(http.HandlerFunc(s.serveHealth)))
	mux.Handle("GET /ready", bounded(http.HandlerFunc(s.serveReady)))
	mux.Handle("GET /metrics", bounded(promhttp.HandlerFor(deps.Gatherer, promhttp.HandlerOpts{})))
	if deps.API != nil {
		mux.Handle("/api/v1/", bounded(deps.API))
	}
	if deps.Web != nil {
		mux.Handle("/", bounded(deps.Web))
	}
	// Every request gets its id and audit Source before anything else
	// (a handshake turns its transport into websocket in serveWS).
	s.handler = httpx.WithSource(audit.TransportHTTP, cfg.TrustedProxies, mux)

	var tlsCfg *tls.Config
	if cfg.TLS != nil {
		tlsCfg = cfg.TLS.Clone()
		if tlsCfg.MinVersion < tls.VersionTLS12 {
			tlsCfg.MinVersion = tls.VersionTLS12
		}
		tlsCfg.MaxVersion = 0 // up to 1.3
		// WebSocket upgrades need HTTP/1.1.
		tlsCfg.NextProtos = []string{"http/1.1"}
	}
	s.http = &http.Server{
		Handler:           s.handler,
		TLSConfig:         tlsCfg,
		TLSNextProto:      map[string]func(*http.Server, *tls.Conn, http.Handler){},
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(deps.Log.Handler(), slog.LevelDebug),
	}
	return s, nil
}

// withDeadlines bounds one plain HTTP request: reading its body must end
// within d and writing its answer within 2d (so a request whose body read
// timed out still gets its error answer). The gateway's http.Server has no
// ReadTimeout or WriteTimeout (they would cut WebSockets), so without this a
// client trickling a body or not reading an answer would hold a connection
// and a handler goroutine forever. net/http clears both deadlines before the
// connection's next request.
func withDeadlines(d time.Duration, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		now := time.Now()
		_ = rc.SetReadDeadline(now.Add(d))
		_ = rc.SetWriteDeadline(now.Add(2 * d))
		h.ServeHTTP(w, r)
	})
}

// Handler returns the gateway's HTTP handler (for tests that serve it
// themselves).
func (s *Server) Handler() http.Handler { return s.handler }

// newSessionID returns a new connection id.
func newSessionID() string { return ulid.Make().String() }
