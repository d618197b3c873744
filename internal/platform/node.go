package platform

// The node: every store, service and listener of one process, built from
// the configuration and run as components under one errgroup.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/unhidra/unhidra/internal/audit"
	"github.com/unhidra/unhidra/internal/auth"
	"github.com/unhidra/unhidra/internal/broker"
	"github.com/unhidra/unhidra/internal/chat"
	"github.com/unhidra/unhidra/internal/config"
	"github.com/unhidra/unhidra/internal/device"
	"github.com/unhidra/unhidra/internal/gateway"
	"github.com/unhidra/unhidra/internal/httpapi"
	"github.com/unhidra/unhidra/internal/ml"
	"github.com/unhidra/unhidra/internal/mqttbridge"
	"github.com/unhidra/unhidra/internal/presence"
	"github.com/unhidra/unhidra/internal/ratelimit"
	"github.com/unhidra/unhidra/web"
)

// listeners are the ports serve opened before anything else, by variable
// (config.Listener.Var). A component that takes one removes it; close
// closes those still here.
type Listeners map[string]net.Listener

func (l Listeners) take(name string) net.Listener {
	ln := l[name]
	delete(l, name)
	return ln
}

func (l Listeners) Close() {
	for name, ln := range l {
		ln.Close()
		delete(l, name)
	}
}

// OpenListeners binds every port of the enabled services. On any failure it
// closes what it opened and names every port that failed: "GATEWAY_PORT
// 9000 is in use".
func OpenListeners(cfg *config.Config) (Listeners, error) {
	lns := Listeners{}
	var errs []error
	for _, l := range cfg.Listeners() {
		ln, err := net.Listen("tcp", net.JoinHostPort(cfg.BindAddr, strconv.Itoa(l.Port)))
		switch {
		case err == nil:
			lns[l.Var] = ln
		case errors.Is(err, syscall.EADDRINUSE):
			errs = append(errs, fmt.Errorf("%s %d is in use (on %s): stop what holds it or choose another port", l.Var, l.Port, cfg.BindAddr))
		case errors.Is(err, syscall.EACCES):
			errs = append(errs, fmt.Errorf("%s %d: permission denied (ports below 1024 need privileges)", l.Var, l.Port))
		case errors.Is(err, syscall.EADDRNOTAVAIL):
			errs = append(errs, fmt.Errorf("%s %d: BIND_ADDR %s is not an address of this machine", l.Var, l.Port, cfg.BindAddr))
		default:
			errs = append(errs, fmt.Errorf("%s %d: %w", l.Var, l.Port, err))
		}
	}
	if len(errs) > 0 {
		lns.Close()
		return nil, errors.Join(errs...)
	}
	return lns, nil
}

// TLSConfig loads the configured certificate for every listener (TLS 1.2
// and 1.3 only), or returns nil without one.
func TLSConfig(cfg *config.Config) (*tls.Config, error) {
	if !cfg.TLS() {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
	if err != nil {
		return nil, fmt.Errorf("TLS_CERT_FILE / TLS_KEY_FILE: %w", err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}, nil
}

// NodeOptions are what the process adds to the configuration; the zero
// value is production behaviour but for Registry.
type NodeOptions struct {
	// Registry is the process's Prometheus registry (nil: a new, empty one).
	Registry *prometheus.Registry
	// Stdout receives the one-time admin password on first start.
	Stdout io.Writer
	// HashParams, when set, replaces the Argon2id parameters (tests that
	// are not about hashing); HashQueue the pool's queue length.
	HashParams auth.Params
	HashQueue  int
	// AuditTap, when set, receives every audit event of the node besides
	// its own audit log (tests).
	AuditTap audit.Recorder
}

// withTap is the node's audit recorder rec with tap added (rec alone
// without a tap; nil rec: NewServices' default).
func withTap(rec, tap audit.Recorder) audit.Recorder {
	if tap == nil {
		return rec
	}
	return audit.Tee{rec, tap}
}

// Node is the whole running process: one node of the
type Node struct {
	cfg       *config.Config
	log       *slog.Logger
	backend   *Backend
	broker    broker.Broker
	audit     audit.Recorder
	auditLog  *audit.Log
	auditSvc  *audit.Service
	registry  *prometheus.Registry
	httpm     *httpapi.HTTPMetrics
	authSvc   *auth.Service
	deviceSvc *device.Service
	chatSvc   *chat.Service
	presence  *presence.Service
	fleet     *device.Fleet
	ml        *ml.Bridge // nil without ML_WORKER_CMD
	gateway   *gateway.Server
	mqtt      *mqttbridge.Server

	components []Component
	draining   atomic.Bool
	authAddr   string
	// lns are the listeners startApp opened. The gateway and the MQTT
	// broker serve on theirs and close them when they stop; Close closes
	// them again (harmless), so none is left open when a later step of
	// newApp fails or Run never ran.
	lns  Listeners
	svcs *Services
}

// NewNode builds the process on the listeners the caller opened (lns, which it
// owns from here; ports chosen for :0 are known before Run) and the TLS
// configuration (tc, nil without a certificate): database, broker, metrics,
// services, the admin bootstrap.
func NewNode(ctx context.Context, cfg *config.Config, log *slog.Logger, opts NodeOptions, lns Listeners, tc *tls.Config) (_ *Node, err error) {
	a := &Node{cfg: cfg, log: log, lns: lns}
	stdout := opts.Stdout
	if stdout == nil {
		stdout = io.Discard
	}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	if a.backend, err = OpenBackend(ctx, cfg); err != nil {
		return nil, err
	}
	a.broker = a.backend.Broker
	a.registry = opts.Registry
	if a.registry == nil {
		a.registry = prometheus.NewRegistry()
	}
	a.httpm = httpapi.NewHTTPMetrics(a.registry)
	var vkey string
	if a.auditLog, vkey, err = OpenAudit(ctx, cfg, a.backend, log, a.registry); err != nil {
		return nil, err
	}
	a.auditSvc = audit.NewService(a.auditLog, vkey)
	svcs, err := NewServices(ctx, cfg, a.backend, Options{
		Log: log, Registerer: a.registry, HashParams: opts.HashParams, HashQueue: opts.HashQueue,
		Audit: withTap(a.auditLog, opts.AuditTap),
	})
	if err != nil {
		return nil, err
	}
	a.authSvc, a.chatSvc, a.presence, a.deviceSvc, a.fleet = svcs.Auth, svcs.Chat, svcs.Presence, svcs.Devices, svcs.Fleet
	a.audit = svcs.Audit
	a.svcs = svcs

	// One hash now, so the first unknown-user login costs what the rest do.
	a.authSvc.Warm()
	created, pw, err := a.authSvc.EnsureAdmin(ctx, cfg.AdminPassword)
	if err != nil {
		return nil, fmt.Errorf("create the admin user: %w", err)
	}
	if created {
		if cfg.AdminPassword != "" {
			log.Info("created user admin with the password from UNHIDRA_ADMIN_PASSWORD")
		} else {
			// The only place a secret is ever printed: once, on first start.
			fmt.Fprintf(stdout, "\n  Created user \"admin\" (role admin).\n  admin password: %s\n  It is shown only this once; change it with POST /me/password.\n\n", pw)
			log.Info("created user admin; its password was printed once on stdout")
		}
	}

	if err := a.fleet.ResetOnline(ctx); err != nil {
		return nil, fmt.Errorf("reset device online state: %w", err)
	}
	a.components = append(a.components, Background(svcs, a.backend, log)...)
	bridge, mlComponents, err := startML(cfg, a.fleet, log, a.registry)
	if err != nil {
		return nil, err
	}
	a.ml = bridge
	a.components = append(a.components, mlComponents...)

	if cfg.PprofPort > 0 {
		srv, err := startPprof(cfg.PprofPort, log)
		if err != nil {
			return nil, err
		}
		log.Warn("serving Go runtime profiles on loopback (PPROF_PORT); turn it off when done", "addr", srv.Addr())
		a.components = append(a.components, srv)
	}
	if cfg.Runs("gateway") {
		if err := a.startGateway(cfg, log, tc); err != nil {
			return nil, err
		}
	}
	if cfg.Runs("mqtt") {
		if err := a.startMQTT(cfg, log, tc); err != nil {
			return nil, err
		}
	}

	if cfg.Runs("auth") {
		api := &httpapi.AuthAPI{
			Auth:           a.authSvc,
			Devices:        a.deviceSvc,
			Log:            log.With("server", "auth"),
			TrustedProxies: cfg.TrustedProxies,
			AllowedOrigins: cfg.AllowedOrigins,
			GatewayPort:    a.gatewayPort(),
			TrustProxyTLS:  cfg.TrustProxyTLS,
			Health:         a.healthy,
			Draining:       a.draining.Load,
			Metrics:        a.authMetrics(),
			HTTPMetrics:    a.httpm,
			MLHealth:       a.mlHealth(),
			RequestLimit:   ratelimit.NewBucketLimiter(authRequestsPerMinute(cfg), authRequestsPerMinute(cfg), nil),
		}
		srv := ServeHTTP("auth API", lns.take("AUTH_PORT"), tc, api.Handler(), cfg.ShutdownTimeout, log, func() { a.draining.Store(true) })
		a.authAddr = srv.Addr()
		a.components = append(a.components, srv)
	}
	return a, nil
}

// startGateway serves the gateway (WebSocket, REST API, web client) on
// GATEWAY_PORT's listener.
func (a *Node) startGateway(cfg *config.Config, log *slog.Logger, tc *tls.Config) (err error) {
	api := httpapi.NewAPI(httpapi.APIDeps{
		Chat:     a.chatSvc,
		Presence: a.presence,
		Users:    a.authSvc,
		Devices:  a.deviceSvc,
		Audit:    a.auditSvc,
		Log:      log.With("server", "api"),
		Routes:   httpapi.CombineRoutes(httpapi.DeviceRoutes(a.fleet, log.With("server", "api")), a.keyRoutes(), a.fileRoutes()),
	})
	// The REST API shares the auth API's per-IP request budget rule (ten
	// times RATE_LIMIT_IP_PER_MINUTE); WebSocket handshakes have their own,
	// exact RATE_LIMIT_IP_PER_MINUTE limit in the gateway.
	apiLog := log.With("server", "api")
	var apiHandler http.Handler = httpapi.RefuseURLCredentials(apiLog, api)
	apiHandler = httpapi.LimitByIP(ratelimit.NewBucketLimiter(authRequestsPerMinute(cfg), authRequestsPerMinute(cfg), nil), cfg.TrustedProxies, nil, apiLog, apiHandler)
	apiHandler = httpapi.Recover(apiLog, a.httpm.Instrument("api", apiLog, apiHandler))
	a.gateway, err = gateway.New(gateway.Config{
		Addr:                 net.JoinHostPort(cfg.BindAddr, strconv.Itoa(cfg.GatewayPort)),
		Listener:             a.lns["GATEWAY_PORT"],
		TLS:                  tc,
		TrustProxyTLS:        cfg.TrustProxyTLS,
		TrustedProxies:       cfg.TrustedProxies,
		AllowedOrigins:       cfg.AllowedOrigins,
		RateLimitIPPerMinute: cfg.RateLimitIPPerMin,
		IPLimiter:            ipWindow(cfg.RateLimitIPPerMin),
		MaxConnsPerUser:      cfg.MaxConnsPerUser,
		ShutdownTimeout:      cfg.ShutdownTimeout,
	}, gateway.Deps{
		Tokens:     a.authSvc,
		DeviceKeys: a.deviceSvc,
		Chat:       a.chatSvc,
		Presence:   a.presence,
		Devices:    gateway.DeviceFrames{Fleet: a.fleet, Log: log.With("server", "gateway")},
		Broker:     a.broker,
		Audit:      a.audit,
		Log:        log.With("server", "gateway"),
		Registerer: a.registry,
		Gatherer:   a.registry,
		Health:     a.healthy,
		API:        apiHandler,
		Web: web.Handler(web.Options{
			AuthPort: a.authPort(), AuthURL: cfg.PublicAuthURL, TLS: cfg.TLS() || cfg.TrustProxyTLS,
			Registration: cfg.Registration,
		}),
	})
	if err != nil {
		return err
	}
	if err := a.gateway.Listen(); err != nil {
		return err
	}
	a.components = append(a.components, Func("gateway", a.gateway.Run))
	return nil
}

// startMQTT runs the embedded MQTT broker on MQTT_PORT's listener (and
// MQTT_TLS_PORT's with a certificate).
func (a *Node) startMQTT(cfg *config.Config, log *slog.Logger, tc *tls.Config) (err error) {
	a.mqtt, err = mqttbridge.New(mqttbridge.Config{
		BindAddr:    cfg.BindAddr,
		Port:        cfg.MQTTPort,
		TLSPort:     cfg.MQTTTLSPort,
		TLS:         tc,
		Listener:    a.lns["MQTT_PORT"],
		TLSListener: a.lns["MQTT_TLS_PORT"],
		// The same limits as WebSocket handshakes and connections, counted
		// apart (internal/mqttbridge/limits.go).
		RateLimitIPPerMinute: cfg.RateLimitIPPerMin,
		IPLimiter:            ipWindow(cfg.RateLimitIPPerMin),
		MaxConnsPerUser:      cfg.MaxConnsPerUser,
	}, mqttbridge.Deps{
		Fleet:      a.fleet,
		DeviceKeys: a.deviceSvc,
		Tokens:     a.authSvc,
		Chat:       a.chatSvc,
		Presence:   a.presence,
		Broker:     a.broker,
		Audit:      a.audit,
		Logger:     log.With("server", "mqtt"),
		Registerer: a.registry,
	})
	if err != nil {
		return err
	}
	a.components = append(a.components, a.mqtt)
	return nil
}

// GatewayAddr returns the gateway's listening address, or "".
func (a *Node) GatewayAddr() string {
	if a.gateway == nil {
		return ""
	}
	return a.gateway.Addr()
}

// gatewayPort is the port the gateway's page is served from, for the auth
// API's same-host CORS rule: the bound port when this process runs the
// gateway (so GATEWAY_PORT=0 works), else the configured one.
func (a *Node) gatewayPort() int {
	if a.gateway != nil {
		if _, p, err := net.SplitHostPort(a.gateway.Addr()); err == nil {
			if n, err := strconv.Atoi(p); err == nil {
				return n
			}
		}
	}
	return a.cfg.GatewayPort
}

// authPort is the port the auth API is reached on, for the web client: the
// bound one when this process runs it (AUTH_PORT=0 works), else the
// configured one.
func (a *Node) authPort() int {
	addr := a.authAddr
	if ln := a.lns["AUTH_PORT"]; addr == "" && ln != nil {
		addr = ln.Addr().String() // the gateway starts first
	}
	if _, p, err := net.SplitHostPort(addr); err == nil {
		if n, err := strconv.Atoi(p); err == nil {
			return n
		}
	}
	return a.cfg.AuthPort
}

// MQTTAddr returns the MQTT listener's address, or "".
func (a *Node) MQTTAddr() string {
	if a.mqtt == nil {
		return ""
	}
	return a.mqtt.Addr()
}

// readyAttrs are the ready line's attributes: the web client's URL (the
// gateway's /), and every listener's address.
func (a *Node) readyAttrs() []any {
	scheme := "http"
	if a.cfg.TLS() {
		scheme = "https"
	}
	var attrs []any
	if addr := a.GatewayAddr(); addr != "" {
		attrs = append(attrs, "url", scheme+"://"+browsable(addr)+"/")
	}
	if a.authAddr != "" {
		attrs = append(attrs, "auth_api", scheme+"://"+browsable(a.authAddr))
	}
	if addr := a.MQTTAddr(); addr != "" {
		attrs = append(attrs, "mqtt", addr)
		if t := a.mqtt.TLSAddr(); t != "" {
			attrs = append(attrs, "mqtts", t)
		}
	}
	return attrs
}

// browsable turns a listening address into one a browser on this machine
// can open: 0.0.0.0 and :: (every address) become localhost.
func browsable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}

// authMetrics is the auth API's /metrics: the process's registry when no
// gateway runs here, else none (the gateway serves it), so a scraper of
// both ports does not count every series twice.
func (a *Node) authMetrics() http.Handler {
	if a.cfg.Runs("gateway") {
		return nil
	}
	return promhttp.HandlerFor(a.registry, promhttp.HandlerOpts{})
}

// authRequestsPerMinute is the auth API's per-IP request limit: ten times
// RATE_LIMIT_IP_PER_MINUTE (600 by default), since one page load of the web
// client makes several auth calls. Logins have their own, stricter limit.
func authRequestsPerMinute(cfg *config.Config) int { return 10 * cfg.RateLimitIPPerMin }

// AuthAddr returns the auth API's listening address (host:port), or "".
func (a *Node) AuthAddr() string { return a.authAddr }

// Run runs every component until ctx ends or one fails, then drains them.
// It returns nil on a clean shutdown.
func (a *Node) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, c := range a.components {
		g.Go(func() error {
			if err := c.Run(gctx); err != nil {
				return fmt.Errorf("%s: %w", c.Name(), err)
			}
			return nil
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		a.draining.Store(true)
		return nil
	})
	// Every port was bound before newApp: connections made from here on are
	// accepted as soon as each server's loop runs.
	a.log.Info("unhidra ready", a.readyAttrs()...)
	err := g.Wait()
	a.log.Info("stopped", "err", err)
	return err
}

// Close releases what newApp acquired; the database goes last.
func (a *Node) Close() error {
	var errs []error
	for _, c := range a.components {
		if cl, ok := c.(io.Closer); ok {
			errs = append(errs, cl.Close())
		}
	}
	a.lns.Close()
	if a.chatSvc != nil {
		// Messages already queued for the group commit (QoS 0 telemetry
		// returns before its commit) are stored before the database closes.
		a.chatSvc.Wait()
	}
	if a.auditLog != nil {
		// After every service and transport stopped: their last events
		// are stored, then the last checkpoint is written.
		errs = append(errs, a.auditLog.Close())
		a.auditLog = nil
	}
	if a.backend != nil {
		errs = append(errs, a.backend.Close())
		a.backend = nil
	}
	return errors.Join(errs...)
}

// healthy is what /health and /ready check: the store answers and the
// audit log stores (a log that cannot record security events is an
// outage, not a detail).
func (a *Node) healthy(ctx context.Context) error {
	if err := a.backend.Ping(ctx); err != nil {
		return err
	}
	if err := a.auditLog.Err(); err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	return nil
}

// mlHealth answers /internal/ml/health: nil (disabled) without a worker.
func (a *Node) mlHealth() func(context.Context) any {
	if a.ml == nil {
		return nil
	}
	return func(context.Context) any { return a.ml.Health() }
}

// AuditLog returns the node's audit log.
func (a *Node) AuditLog() *audit.Log { return a.auditLog }

// Services returns the node's domain services.
func (a *Node) Services() *Services { return a.svcs }

// ipWindow is a transport's limiter of connection attempts per client IP:
// an exact sliding minute, one per transport (WebSocket handshakes and MQTT
// CONNECTs are counted apart); nil for none.
func ipWindow(perMinute int) ratelimit.Limiter {
	if perMinute <= 0 {
		return nil
	}
	return ratelimit.NewWindowLimiter(perMinute, time.Minute, nil)
}
