package main

// serve.go is the composition root: it builds every store, service and
// listener from the configuration and runs them as components under one
// errgroup. Other services (gateway, MQTT, ML) add their components to
// app.components in newApp.

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
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
	"github.com/unhidra/unhidra/internal/mqttbridge"
	"github.com/unhidra/unhidra/internal/platform"
	"github.com/unhidra/unhidra/internal/presence"
	"github.com/unhidra/unhidra/internal/ratelimit"
	"github.com/unhidra/unhidra/web"
)

func runServe(ctx context.Context, e env) error {
	a, err := startApp(ctx, e, appOptions{})
	if err != nil || a == nil {
		return err
	}
	defer a.Close()
	return a.Run(ctx)
}

// startApp loads and validates the configuration, opens every listener,
// and only then touches the data dir (the JWT secret, the database, the
// admin) and builds the app. A refused configuration or a busy port leaves
// nothing behind. Tests use it to hold the app while it runs.
func startApp(ctx context.Context, e env, opts appOptions) (*app, error) {
	cfg, err := config.Load(e.args, e.getenv)
	if errors.Is(err, flag.ErrHelp) {
		return nil, nil
	}
	var fe *config.FlagError
	if errors.As(err, &fe) {
		return nil, &usageError{cmd: "serve", problem: oneLine(fe.Error())}
	}
	if cfg == nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	// Values that did not parse and values that are wrong, in one list.
	if problems := errors.Join(err, cfg.Validate()); problems != nil {
		fmt.Fprintln(e.stderr, "unhidra: the configuration has problems:")
		for _, line := range strings.Split(problems.Error(), "\n") {
			fmt.Fprintf(e.stderr, "  - %s\n", line)
		}
		return nil, errors.New("refusing to start with an invalid configuration")
	}
	if err := platform.Check(cfg); err != nil {
		return nil, err
	}
	tc, err := tlsConfig(cfg)
	if err != nil {
		return nil, err
	}
	lns, err := openListeners(cfg)
	if err != nil {
		return nil, err
	}
	// Every port is ours: now the data dir.
	if err := cfg.CheckWritable(); err != nil {
		lns.close()
		return nil, err
	}
	generated, err := cfg.EnsureDevSecret(rand.Read)
	if err != nil {
		lns.close()
		return nil, fmt.Errorf("JWT secret: %w", err)
	}
	log := newLogger(e.stderr, cfg.LogFormat, cfg.LogLevel)
	if generated {
		log.Warn("no JWT_SECRET set: generated one and kept it in the data dir; set JWT_SECRET (32+ random bytes) for production", "path", filepath.Join(cfg.DataDir, "jwt_secret"))
	} else if cfg.JWTSecretGenerated {
		log.Warn("no JWT_SECRET set: using the one generated earlier in the data dir", "path", filepath.Join(cfg.DataDir, "jwt_secret"))
	}
	return newApp(ctx, cfg, log, e.stdout, opts, lns, tc)
}

// component is one long-running part of the process. Run serves until ctx
// ends, then drains within the shutdown timeout and returns; an error from
// any component stops the others.
type component interface {
	Name() string
	Run(ctx context.Context) error
}

// appOptions are knobs for tests; the zero value is production behaviour.
type appOptions struct {
	// hashParams, when set, replaces the Argon2id parameters (tests that
	// are not about hashing); hashQueue the pool's queue length.
	hashParams auth.Params
	hashQueue  int
}

// app is the whole running process.
type app struct {
	cfg       *config.Config
	log       *slog.Logger
	backend   *platform.Backend
	broker    broker.Broker
	audit     audit.Recorder
	registry  *prometheus.Registry
	httpm     *httpapi.HTTPMetrics
	authSvc   *auth.Service
	deviceSvc *device.Service
	chatSvc   *chat.Service
	presence  *presence.Service
	fleet     *device.Fleet
	gateway   *gateway.Server
	mqtt      *mqttbridge.Server

	components []component
	draining   atomic.Bool
	authAddr   string
	// lns are the listeners startApp opened. The gateway and the MQTT
	// broker serve on theirs and close them when they stop; Close closes
	// them again (harmless), so none is left open when a later step of
	// newApp fails or Run never ran.
	lns listeners
}

// runner adapts a Run function to a component.
type runner struct {
	name string
	run  func(ctx context.Context) error
}

func (r runner) Name() string                  { return r.name }
func (r runner) Run(ctx context.Context) error { return r.run(ctx) }

// newApp builds the process on the listeners startApp opened (lns, which it
// owns from here; ports chosen for :0 are known before Run) and the TLS
// configuration (tc, nil without a certificate): database, broker, metrics,
// services, the admin bootstrap.
func newApp(ctx context.Context, cfg *config.Config, log *slog.Logger, stdout io.Writer, opts appOptions, lns listeners, tc *tls.Config) (_ *app, err error) {
	a := &app{cfg: cfg, log: log, lns: lns}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	if a.backend, err = platform.OpenBackend(ctx, cfg); err != nil {
		return nil, err
	}
	a.broker = a.backend.Broker
	a.registry = newRegistry()
	a.httpm = httpapi.NewHTTPMetrics(a.registry)
	svcs, err := platform.NewServices(ctx, cfg, a.backend, platform.Options{
		Log: log, Registerer: a.registry, HashParams: opts.hashParams, HashQueue: opts.hashQueue,
	})
	if err != nil {
		return nil, err
	}
	a.authSvc, a.chatSvc, a.presence, a.deviceSvc, a.fleet = svcs.Auth, svcs.Chat, svcs.Presence, svcs.Devices, svcs.Fleet
	a.audit = svcs.Audit

	// One hash now, so the first unknown-user login costs what the rest do.
	a.authSvc.Warm()
	a.components = append(a.components, &ticker{name: "session pruning", every: time.Hour, log: log, fn: func(ctx context.Context) error {
		n, err := a.authSvc.PruneSessions(ctx)
		if n > 0 {
			log.Info("pruned ended sessions", "sessions", n)
		}
		return err
	}})
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
	a.components = append(a.components, runner{"fleet", a.fleet.Run})
	a.components = append(a.components, &revocationFeed{
		recent: a.backend.Revocations,
		pub:    a.broker,
		log:    log.With("component", "revocations"),
		every:  time.Second,
		window: 30 * time.Second,
		now:    func() time.Time { return time.Now().UTC() },
		seen:   map[broker.Revocation]time.Time{},
	})

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
			Health:         a.backend.Ping,
			Draining:       a.draining.Load,
			Metrics:        a.authMetrics(),
			HTTPMetrics:    a.httpm,
			RequestLimit:   ratelimit.NewBucketLimiter(authRequestsPerMinute(cfg), authRequestsPerMinute(cfg), nil),
		}
		srv := a.serveHTTP("auth API", lns.take("AUTH_PORT"), tc, api.Handler())
		a.authAddr = srv.addr
		a.components = append(a.components, srv)
	}
	return a, nil
}

// startGateway serves the gateway (WebSocket, REST API, web client) on
// GATEWAY_PORT's listener.
func (a *app) startGateway(cfg *config.Config, log *slog.Logger, tc *tls.Config) (err error) {
	api := httpapi.NewAPI(httpapi.APIDeps{
		Chat:     a.chatSvc,
		Presence: a.presence,
		Users:    a.authSvc,
		Devices:  a.deviceSvc,
		Log:      log.With("server", "api"),
		Routes:   httpapi.DeviceRoutes(a.fleet, log.With("server", "api")),
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
		MaxConnsPerUser:      cfg.MaxConnsPerUser,
		ShutdownTimeout:      cfg.ShutdownTimeout,
	}, gateway.Deps{
		Tokens:     a.authSvc,
		DeviceKeys: a.deviceSvc,
		Chat:       a.chatSvc,
		Presence:   a.presence,
		Devices:    device.Frames{Fleet: a.fleet},
		Broker:     a.broker,
		Log:        log.With("server", "gateway"),
		Registerer: a.registry,
		Gatherer:   a.registry,
		Health:     a.backend.Ping,
		API:        apiHandler,
		Web:        web.Handler(),
	})
	if err != nil {
		return err
	}
	if err := a.gateway.Listen(); err != nil {
		return err
	}
	a.components = append(a.components, runner{"gateway", a.gateway.Run})
	return nil
}

// startMQTT runs the embedded MQTT broker on MQTT_PORT's listener (and
// MQTT_TLS_PORT's with a certificate).
func (a *app) startMQTT(cfg *config.Config, log *slog.Logger, tc *tls.Config) (err error) {
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
		MaxConnsPerUser:      cfg.MaxConnsPerUser,
	}, mqttbridge.Deps{
		Fleet:      a.fleet,
		DeviceKeys: a.deviceSvc,
		Tokens:     a.authSvc,
		Chat:       a.chatSvc,
		Owners:     a.deviceSvc,
		Presence:   a.presence,
		Broker:     a.broker,
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
func (a *app) GatewayAddr() string {
	if a.gateway == nil {
		return ""
	}
	return a.gateway.Addr()
}

// gatewayPort is the port the gateway's page is served from, for the auth
// API's same-host CORS rule: the bound port when this process runs the
// gateway (so GATEWAY_PORT=0 works), else the configured one.
func (a *app) gatewayPort() int {
	if a.gateway != nil {
		if _, p, err := net.SplitHostPort(a.gateway.Addr()); err == nil {
			if n, err := strconv.Atoi(p); err == nil {
				return n
			}
		}
	}
	return a.cfg.GatewayPort
}

// MQTTAddr returns the MQTT listener's address, or "".
func (a *app) MQTTAddr() string {
	if a.mqtt == nil {
		return ""
	}
	return a.mqtt.Addr()
}

// readyAttrs are the ready line's attributes: the web client's URL (the
// gateway's /), and every listener's address.
func (a *app) readyAttrs() []any {
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
func (a *app) authMetrics() http.Handler {
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
func (a *app) AuthAddr() string { return a.authAddr }

// Run runs every component until ctx ends or one fails, then drains them.
// It returns nil on a clean shutdown.
func (a *app) Run(ctx context.Context) error {
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
func (a *app) Close() error {
	var errs []error
	for _, c := range a.components {
		if cl, ok := c.(io.Closer); ok {
			errs = append(errs, cl.Close())
		}
	}
	a.lns.close()
	if a.chatSvc != nil {
		// Messages already queued for the group commit (QoS 0 telemetry
		// returns before its commit) are stored before the database closes.
		a.chatSvc.Wait()
	}
	if a.backend != nil {
		errs = append(errs, a.backend.Close())
		a.backend = nil
	}
	return errors.Join(errs...)
}

// ticker runs fn every period until ctx ends; errors are logged, not fatal.
type ticker struct {
	name  string
	every time.Duration
	log   *slog.Logger
	fn    func(ctx context.Context) error
}

func (t *ticker) Name() string { return t.name }

func (t *ticker) Run(ctx context.Context) error {
	tk := time.NewTicker(t.every)
	defer tk.Stop()
	for {
		if err := t.fn(ctx); err != nil && ctx.Err() == nil {
			t.log.Warn(t.name+" failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tk.C:
		}
	}
}

// httpServer is an HTTP listener as a component.
type httpServer struct {
	name    string
	addr    string
	ln      net.Listener
	srv     *http.Server
	tls     bool
	timeout time.Duration
	log     *slog.Logger
	drain   func()
}

// serveHTTP makes an HTTP component of h on ln, an opened listener it owns
// from here (TLS with tc when set).
func (a *app) serveHTTP(name string, ln net.Listener, tc *tls.Config, h http.Handler) *httpServer {
	s := &httpServer{
		name: name, addr: ln.Addr().String(), ln: ln, tls: tc != nil, timeout: a.cfg.ShutdownTimeout, log: a.log,
		drain: func() { a.draining.Store(true) },
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       120 * time.Second,
			MaxHeaderBytes:    64 << 10,
			ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
		},
	}
	if tc != nil {
		s.srv.TLSConfig = tc.Clone()
	}
	return s
}

func (s *httpServer) Name() string { return s.name }

// Run serves until ctx ends, then stops accepting and waits for in-flight
// requests up to the shutdown timeout.
func (s *httpServer) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() {
		var err error
		if s.tls {
			err = s.srv.ServeTLS(s.ln, "", "")
		} else {
			err = s.srv.Serve(s.ln)
		}
		errc <- err
	}()
	scheme := "http"
	if s.tls {
		scheme = "https"
	}
	s.log.Info(fmt.Sprintf("%s listening on %s", s.name, s.addr), "url", scheme+"://"+s.addr)
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	case <-ctx.Done():
	}
	s.drain()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
	defer cancel()
	err := s.srv.Shutdown(sctx)
	<-errc
	if err != nil {
		s.srv.Close()
		return fmt.Errorf("drain: %w", err)
	}
	s.log.Info(s.name + " stopped")
	return nil
}

// Close closes the listener and connections (after Run or instead of it).
func (s *httpServer) Close() error {
	err := s.srv.Close()
	s.ln.Close()
	return err
}
