// Package config loads Unhidra's configuration: defaults, then the
// environment, then command-line flags, then one Validate that reports every
// problem at once. A Config is immutable after Load and safe to share.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Config is the whole configuration of `unhidra serve` (docs/protocol.md#configuration).
type Config struct {
	Env                  string
	DataDir              string
	DatabaseURL          string
	RedisURL             string
	JWTSecret            string
	JWTSecretPrevious    string
	AccessTokenTTL       time.Duration
	RefreshTokenTTL      time.Duration
	AuthPort             int
	GatewayPort          int
	MQTTPort             int
	MQTTTLSPort          int
	BindAddr             string
	TLSCertFile          string
	TLSKeyFile           string
	TrustProxyTLS        bool
	TrustedProxies       []netip.Prefix
	AllowedOrigins       []string
	RateLimitIPPerMin    int
	RateLimitLoginPerMin int
	MaxConnsPerUser      int
	Registration         string
	E2EEEnforced         bool
	MLWorkerCmd          string
	MLSocketPath         string
	MLTimeout            time.Duration
	LogLevel             string
	LogFormat            string
	ShutdownTimeout      time.Duration
	TelemetryRetention   time.Duration
	FileMaxBytes         int // caps one encrypted file upload (/api/v1/files)
	AdminPassword        string
	// PprofPort, when not 0, serves Go's runtime profiles (net/http/pprof)
	// on 127.0.0.1 only, whatever BIND_ADDR is, and turns on the mutex and
	// block profiles. Off by default.
	PprofPort int
	// AuditSigningKey signs the audit log's checkpoints (a note signer
	// key, from `unhidra audit keygen`); empty in development: a key
	// generated into DataDir/audit. AuditCheckpointEvery is how often the
	// latest checkpoint is written there.
	// PublicAuthURL is the auth API's address as browsers reach it (a
	// proxy in front); empty: the web page's host on AUTH_PORT.
	PublicAuthURL        string
	AuditSigningKey      string
	AuditCheckpointEvery time.Duration
	// Services lists the services `serve` runs (auth, gateway, mqtt, ml).
	Services []string

	// JWTSecretGenerated is true when the secret was generated (and kept in
	// the data dir) because none was configured; serve logs a warning.
	JWTSecretGenerated bool
}

// Listener is one TCP port `serve` opens, named by its variable.
type Listener struct {
	Var  string // e.g. GATEWAY_PORT
	Port int
}

// Listeners lists the ports the enabled services listen on, in the order
// serve opens them: the auth API, the gateway, MQTT, and MQTT over TLS when
// a certificate is configured.
func (c *Config) Listeners() []Listener {
	var ls []Listener
	if c.Runs("auth") {
		ls = append(ls, Listener{"AUTH_PORT", c.AuthPort})
	}
	if c.Runs("gateway") {
		ls = append(ls, Listener{"GATEWAY_PORT", c.GatewayPort})
	}
	if c.Runs("mqtt") {
		ls = append(ls, Listener{"MQTT_PORT", c.MQTTPort})
		if c.TLS() {
			ls = append(ls, Listener{"MQTT_TLS_PORT", c.MQTTTLSPort})
		}
	}
	return ls
}

// Registration modes.
const (
	RegistrationOpen     = "open"
	RegistrationApproval = "approval"
	RegistrationClosed   = "closed"
)

// AllServices is the default service set of `unhidra serve`.
var AllServices = []string{"auth", "gateway", "mqtt", "ml"}

// Production reports whether UNHIDRA_ENV=production.
func (c *Config) Production() bool { return c.Env == "production" }

// TLS reports whether the process serves TLS itself.
func (c *Config) TLS() bool { return c.TLSCertFile != "" && c.TLSKeyFile != "" }

// Runs reports whether the named service is enabled.
func (c *Config) Runs(service string) bool {
	for _, s := range c.Services {
		if s == service {
			return true
		}
	}
	return false
}

// SQLitePath returns the database file path when DatabaseURL names SQLite
// (a sqlite:// URL or a bare path), or "" otherwise.
func (c *Config) SQLitePath() string {
	u := c.DatabaseURL
	switch {
	case strings.HasPrefix(u, "sqlite://"):
		return strings.TrimPrefix(u, "sqlite://")
	case strings.HasPrefix(u, "sqlite:"):
		return strings.TrimPrefix(u, "sqlite:")
	case strings.Contains(u, "://"):
		return ""
	default:
		return u
	}
}

// FlagError is a command-line mistake of `serve` (an unknown flag, a flag
// without its value): the caller prints it with a hint and exits 2.
type FlagError struct{ Err error }

func (e *FlagError) Error() string { return e.Err.Error() }
func (e *FlagError) Unwrap() error { return e.Err }

// Load builds a Config from defaults, the environment (getenv) and args (the
// flags of `serve`). It does not validate: call Validate. Values that do not
// parse (GATEWAY_PORT=abc, --access-token-ttl 5x) are all reported in one
// joined error returned with the Config (those fields at their defaults), so
// a caller can list them with Validate's problems; a flag usage error
// (flag.ErrHelp, an unknown flag) returns no Config.
func Load(args []string, getenv func(string) string) (*Config, error) {
	env := func(k, def string) string {
		if v := getenv(k); v != "" {
			return v
		}
		return def
	}
	var errs []error
	envDur := func(k string, def time.Duration) time.Duration {
		v := getenv(k)
		if v == "" {
			return def
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %q is not a duration (like 15m or 720h)", k, v))
			return def
		}
		return d
	}
	envInt := func(k string, def int) int {
		v := getenv(k)
		if v == "" {
			return def
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %q is not an integer", k, v))
			return def
		}
		return n
	}
	envBool := func(k string, def bool) bool {
		v := getenv(k)
		if v == "" {
			return def
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %q is not a boolean", k, v))
			return def
		}
		return b
	}

	c := &Config{}
	c.Env = env("UNHIDRA_ENV", "development")
	prod := c.Env == "production"
	c.DataDir = env("UNHIDRA_DATA_DIR", "./data")
	c.DatabaseURL = getenv("DATABASE_URL")
	c.RedisURL = getenv("REDIS_URL")
	c.JWTSecret = getenv("JWT_SECRET")
	c.JWTSecretPrevious = getenv("JWT_SECRET_PREVIOUS")
	c.AccessTokenTTL = envDur("ACCESS_TOKEN_TTL", 15*time.Minute)
	c.RefreshTokenTTL = envDur("REFRESH_TOKEN_TTL", 720*time.Hour)
	c.AuthPort = envInt("AUTH_PORT", 9200)
	c.GatewayPort = envInt("GATEWAY_PORT", 9000)
	c.MQTTPort = envInt("MQTT_PORT", 1883)
	c.MQTTTLSPort = envInt("MQTT_TLS_PORT", 8883)
	defBind := "127.0.0.1"
	if prod {
		defBind = "0.0.0.0"
	}
	c.BindAddr = env("BIND_ADDR", defBind)
	c.TLSCertFile = getenv("TLS_CERT_FILE")
	c.TLSKeyFile = getenv("TLS_KEY_FILE")
	c.TrustProxyTLS = envBool("TRUST_PROXY_TLS", false)
	trusted := getenv("TRUSTED_PROXIES")
	origins := getenv("ALLOWED_ORIGINS")
	c.RateLimitIPPerMin = envInt("RATE_LIMIT_IP_PER_MINUTE", 60)
	c.RateLimitLoginPerMin = envInt("RATE_LIMIT_LOGIN_PER_MINUTE", 10)
	c.MaxConnsPerUser = envInt("MAX_CONNECTIONS_PER_USER", 10)
	c.Registration = env("REGISTRATION", RegistrationOpen)
	c.E2EEEnforced = envBool("E2EE_ENFORCED", false)
	c.MLWorkerCmd = getenv("ML_WORKER_CMD")
	c.MLSocketPath = env("ML_SOCKET_PATH", "/tmp/unhidra-ml.sock")
	c.MLTimeout = time.Duration(envInt("ML_TIMEOUT_MS", 2000)) * time.Millisecond
	c.LogLevel = env("LOG_LEVEL", "info")
	defFormat := "text"
	if prod {
		defFormat = "json"
	}
	c.LogFormat = env("LOG_FORMAT", defFormat)
	c.ShutdownTimeout = envDur("SHUTDOWN_TIMEOUT", 10*time.Second)
	c.TelemetryRetention = envDur("TELEMETRY_RETENTION", 30*24*time.Hour)
	c.FileMaxBytes = envInt("FILE_MAX_BYTES", 100<<20)
	c.AdminPassword = getenv("UNHIDRA_ADMIN_PASSWORD")
	c.PprofPort = envInt("PPROF_PORT", 0)
	c.PublicAuthURL = getenv("PUBLIC_AUTH_URL")
	c.AuditSigningKey = getenv("AUDIT_SIGNING_KEY")
	c.AuditCheckpointEvery = envDur("AUDIT_CHECKPOINT_INTERVAL", time.Minute)
	services := env("UNHIDRA_SERVICES", strings.Join(AllServices, ","))

	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	// Flags that do not parse join the list of problems (Set records them
	// and succeeds), so every bad value is reported at once, the
	// environment's and the flags' alike.
	intVar := func(p *int, name, usage string) { fs.Var(intFlag{p, name, &errs}, name, usage) }
	durVar := func(p *time.Duration, name, usage string) { fs.Var(durationFlag{p, name, &errs}, name, usage) }
	boolVar := func(p *bool, name, usage string) { fs.Var(boolFlag{p, name, &errs}, name, usage) }
	fs.StringVar(&c.Env, "env", c.Env, "UNHIDRA_ENV: development or production")
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "UNHIDRA_DATA_DIR: data directory")
	// Usage prints each flag's default, which is the environment's value:
	// secrets are never shown, and URLs only without their password.
	fs.Var(urlValue{&c.DatabaseURL}, "database-url", "DATABASE_URL: sqlite://path, a bare path, or postgres://…")
	fs.Var(urlValue{&c.RedisURL}, "redis-url", "REDIS_URL: redis://host:port/db (empty: in-process broker)")
	fs.Var(secretValue{&c.JWTSecret}, "jwt-secret", "JWT_SECRET: HS256 key, at least 32 bytes (prefer the environment)")
	fs.Var(secretValue{&c.JWTSecretPrevious}, "jwt-secret-previous", "JWT_SECRET_PREVIOUS: previous key, still accepted for verification")
	durVar(&c.AccessTokenTTL, "access-token-ttl", "ACCESS_TOKEN_TTL")
	durVar(&c.RefreshTokenTTL, "refresh-token-ttl", "REFRESH_TOKEN_TTL")
	intVar(&c.AuthPort, "auth-port", "AUTH_PORT: auth API listener")
	intVar(&c.GatewayPort, "gateway-port", "GATEWAY_PORT: WebSocket, REST API and web client")
	intVar(&c.MQTTPort, "mqtt-port", "MQTT_PORT")
	intVar(&c.MQTTTLSPort, "mqtt-tls-port", "MQTT_TLS_PORT (only with a certificate)")
	fs.StringVar(&c.BindAddr, "bind-addr", c.BindAddr, "BIND_ADDR: listen address")
	fs.StringVar(&c.TLSCertFile, "tls-cert-file", c.TLSCertFile, "TLS_CERT_FILE")
	fs.StringVar(&c.TLSKeyFile, "tls-key-file", c.TLSKeyFile, "TLS_KEY_FILE")
	boolVar(&c.TrustProxyTLS, "trust-proxy-tls", "TRUST_PROXY_TLS: TLS is terminated by a proxy")
	fs.StringVar(&trusted, "trusted-proxies", trusted, "TRUSTED_PROXIES: comma-separated CIDRs allowed to set X-Forwarded-For")
	fs.StringVar(&origins, "allowed-origins", origins, "ALLOWED_ORIGINS: comma-separated scheme://host[:port]")
	intVar(&c.RateLimitIPPerMin, "rate-limit-ip-per-minute", "RATE_LIMIT_IP_PER_MINUTE")
	intVar(&c.RateLimitLoginPerMin, "rate-limit-login-per-minute", "RATE_LIMIT_LOGIN_PER_MINUTE")
	intVar(&c.MaxConnsPerUser, "max-connections-per-user", "MAX_CONNECTIONS_PER_USER")
	fs.StringVar(&c.Registration, "registration", c.Registration, "REGISTRATION: open, approval or closed")
	boolVar(&c.E2EEEnforced, "e2ee-enforced", "E2EE_ENFORCED")
	fs.StringVar(&c.MLWorkerCmd, "ml-worker-cmd", c.MLWorkerCmd, "ML_WORKER_CMD")
	fs.StringVar(&c.MLSocketPath, "ml-socket-path", c.MLSocketPath, "ML_SOCKET_PATH")
	durVar(&c.MLTimeout, "ml-timeout", "ML_TIMEOUT_MS (as a duration)")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "LOG_LEVEL: debug, info, warn, error")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "LOG_FORMAT: text or json")
	durVar(&c.ShutdownTimeout, "shutdown-timeout", "SHUTDOWN_TIMEOUT")
	intVar(&c.PprofPort, "pprof-port", "PPROF_PORT: Go runtime profiles on 127.0.0.1 (0: off)")
	durVar(&c.TelemetryRetention, "telemetry-retention", "TELEMETRY_RETENTION")
	intVar(&c.FileMaxBytes, "file-max-bytes", "FILE_MAX_BYTES: the cap on one encrypted file upload")
	fs.StringVar(&c.PublicAuthURL, "public-auth-url", c.PublicAuthURL, "PUBLIC_AUTH_URL: the auth API's address as browsers reach it (empty: the page's host on AUTH_PORT)")
	durVar(&c.AuditCheckpointEvery, "audit-checkpoint-interval", "AUDIT_CHECKPOINT_INTERVAL: how often the audit log's signed checkpoint is written to the data dir")
	fs.StringVar(&services, "services", services, "comma-separated services: auth,gateway,mqtt,ml")
	// The flag package prints nothing: -h prints the whole usage, a wrong
	// flag one line and a hint (not every flag).
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(os.Stderr)
			fmt.Fprint(os.Stderr, serveUsage)
			fs.PrintDefaults()
			return nil, err
		}
		return nil, &FlagError{Err: err}
	}
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " ")))
	}

	if c.DatabaseURL == "" {
		c.DatabaseURL = "sqlite://" + filepath.Join(c.DataDir, "unhidra.db")
	}
	for _, s := range splitList(trusted) {
		p, err := parsePrefix(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("TRUSTED_PROXIES: %q is not a CIDR or address", s))
			continue
		}
		c.TrustedProxies = append(c.TrustedProxies, p)
	}
	c.AllowedOrigins = splitList(origins)
	c.Services = splitList(services)
	// Values that do not parse are kept at their defaults and reported
	// with the Config, so the caller can list them with Validate's.
	return c, errors.Join(errs...)
}

// serveUsage heads `unhidra serve -h`.
const serveUsage = `Usage: unhidra serve [flags]

Runs the platform: the auth API, the gateway (WebSocket, REST API, web
client), the MQTT broker. Every flag is also an environment variable (named
first in its description); flags win. Every listener is opened before the
data dir is touched, and every problem is listed at once.

Example:
  UNHIDRA_DATA_DIR=./data GATEWAY_PORT=9000 unhidra serve --log-level debug

Flags:
`

// intFlag, durationFlag and boolFlag are flags whose bad values join the
// Load's list of problems instead of stopping the parse at the first.
type intFlag struct {
	p    *int
	name string
	errs *[]error
}

func (f intFlag) String() string {
	if f.p == nil {
		return "0"
	}
	return strconv.Itoa(*f.p)
}

func (f intFlag) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil {
		*f.errs = append(*f.errs, fmt.Errorf("--%s: %q is not an integer", f.name, s))
		return nil
	}
	*f.p = n
	return nil
}

type durationFlag struct {
	p    *time.Duration
	name string
	errs *[]error
}

func (f durationFlag) String() string {
	if f.p == nil {
		return "0s"
	}
	return f.p.String()
}

func (f durationFlag) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		*f.errs = append(*f.errs, fmt.Errorf("--%s: %q is not a duration (like 15m or 720h)", f.name, s))
		return nil
	}
	*f.p = d
	return nil
}

type boolFlag struct {
	p    *bool
	name string
	errs *[]error
}

func (f boolFlag) String() string {
	if f.p == nil {
		return "false"
	}
	return strconv.FormatBool(*f.p)
}

func (f boolFlag) IsBoolFlag() bool { return true }

func (f boolFlag) Set(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		*f.errs = append(*f.errs, fmt.Errorf("--%s: %q is not a boolean", f.name, s))
		return nil
	}
	*f.p = b
	return nil
}

// secretValue is a string flag whose value is never printed (flag usage
// shows defaults, here taken from the environment).
type secretValue struct{ p *string }

func (v secretValue) String() string { return "" }

func (v secretValue) Set(s string) error {
	*v.p = s
	return nil
}

// urlValue is a string flag printed without any password in its URL.
type urlValue struct{ p *string }

func (v urlValue) String() string {
	if v.p == nil {
		return ""
	}
	return redactURL(*v.p)
}

func (v urlValue) Set(s string) error {
	*v.p = s
	return nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// MinSecretLen is the minimum JWT secret length in bytes.
const MinSecretLen = 32

// Validate reports every configuration problem at once. In production it
// also refuses unsafe defaults.
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if c.Env != "development" && c.Env != "production" {
		add("UNHIDRA_ENV: %q must be development or production", c.Env)
	}
	for _, p := range []struct {
		name string
		v    int
	}{{"AUTH_PORT", c.AuthPort}, {"GATEWAY_PORT", c.GatewayPort}, {"MQTT_PORT", c.MQTTPort}, {"MQTT_TLS_PORT", c.MQTTTLSPort}, {"PPROF_PORT", c.PprofPort}} {
		if p.v < 0 || p.v > 65535 {
			add("%s: %d is not a port", p.name, p.v)
		}
	}
	// Two listeners of this process on one port: the second could never
	// bind, so say which variables collide rather than "in use".
	byPort := map[int]string{}
	for _, l := range c.Listeners() {
		if l.Port <= 0 || l.Port > 65535 {
			continue
		}
		if other, ok := byPort[l.Port]; ok {
			add("%s: %d is also %s", l.Var, l.Port, other)
			continue
		}
		byPort[l.Port] = l.Var
	}
	if other, ok := byPort[c.PprofPort]; ok && c.PprofPort > 0 {
		add("PPROF_PORT: %d is also %s", c.PprofPort, other)
	}
	if net.ParseIP(c.BindAddr) == nil && c.BindAddr != "localhost" {
		add("BIND_ADDR: %q is not an IP address", c.BindAddr)
	}
	if c.AccessTokenTTL < time.Minute || c.AccessTokenTTL > 24*time.Hour {
		add("ACCESS_TOKEN_TTL: %s must be between 1m and 24h", c.AccessTokenTTL)
	}
	if c.RefreshTokenTTL < c.AccessTokenTTL {
		add("REFRESH_TOKEN_TTL: %s must not be shorter than ACCESS_TOKEN_TTL", c.RefreshTokenTTL)
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		add("TLS_CERT_FILE and TLS_KEY_FILE must be given together")
	}
	for _, f := range []struct{ name, path string }{{"TLS_CERT_FILE", c.TLSCertFile}, {"TLS_KEY_FILE", c.TLSKeyFile}} {
		if f.path != "" {
			if _, err := os.Stat(f.path); err != nil {
				add("%s: %v", f.name, err)
			}
		}
	}
	for _, o := range c.AllowedOrigins {
		if err := checkOrigin(o); err != nil {
			add("ALLOWED_ORIGINS: %q %v", o, err)
		}
	}
	if c.RateLimitIPPerMin < 1 {
		add("RATE_LIMIT_IP_PER_MINUTE: must be at least 1")
	}
	if c.RateLimitLoginPerMin < 1 {
		add("RATE_LIMIT_LOGIN_PER_MINUTE: must be at least 1")
	}
	if c.MaxConnsPerUser < 1 {
		add("MAX_CONNECTIONS_PER_USER: must be at least 1")
	}
	switch c.Registration {
	case RegistrationOpen, RegistrationApproval, RegistrationClosed:
	default:
		add("REGISTRATION: %q must be open, approval or closed", c.Registration)
	}
	if c.MLTimeout <= 0 {
		add("ML_TIMEOUT_MS: must be positive")
	}
	if c.MLWorkerCmd != "" {
		switch {
		case c.MLSocketPath == "":
			add("ML_SOCKET_PATH: must be set when ML_WORKER_CMD is")
		case len(c.MLSocketPath) > 107:
			// The kernel's limit on a Unix socket's path (sun_path).
			add("ML_SOCKET_PATH: %d bytes is longer than a Unix socket path may be (107)", len(c.MLSocketPath))
		}
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		add("LOG_LEVEL: %q must be debug, info, warn or error", c.LogLevel)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		add("LOG_FORMAT: %q must be text or json", c.LogFormat)
	}
	if c.ShutdownTimeout <= 0 {
		add("SHUTDOWN_TIMEOUT: must be positive")
	}
	if c.TelemetryRetention < time.Hour {
		add("TELEMETRY_RETENTION: %s must be at least 1h", c.TelemetryRetention)
	}
	if c.FileMaxBytes < 1 || c.FileMaxBytes > 1<<40 {
		add("FILE_MAX_BYTES: %d must be between 1 and 1 TiB (%d)", c.FileMaxBytes, int64(1)<<40)
	}
	if len(c.Services) == 0 {
		add("--services: at least one service is needed")
	}
	for _, s := range c.Services {
		known := false
		for _, a := range AllServices {
			known = known || s == a
		}
		if !known {
			add("--services: unknown service %q (known: %s)", s, strings.Join(AllServices, ","))
		}
	}
	if c.SQLitePath() == "" && !strings.HasPrefix(c.DatabaseURL, "postgres://") && !strings.HasPrefix(c.DatabaseURL, "postgresql://") {
		add("DATABASE_URL: %q must be sqlite://path, a file path, or postgres://…", redactURL(c.DatabaseURL))
	}
	if c.RedisURL != "" && !strings.HasPrefix(c.RedisURL, "redis://") && !strings.HasPrefix(c.RedisURL, "rediss://") {
		add("REDIS_URL: must start with redis:// or rediss://")
	}
	if c.JWTSecret != "" && len(c.JWTSecret) < MinSecretLen {
		add("JWT_SECRET: must be at least %d bytes", MinSecretLen)
	}
	if c.JWTSecretPrevious != "" && len(c.JWTSecretPrevious) < MinSecretLen {
		add("JWT_SECRET_PREVIOUS: must be at least %d bytes", MinSecretLen)
	}

	if c.AuditCheckpointEvery < time.Second || c.AuditCheckpointEvery > 24*time.Hour {
		add("AUDIT_CHECKPOINT_INTERVAL: %s must be between 1s and 24h", c.AuditCheckpointEvery)
	}
	if c.PublicAuthURL != "" {
		if u, err := url.Parse(c.PublicAuthURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
			add("PUBLIC_AUTH_URL: %q must be an http(s)://host[:port][/path] URL", c.PublicAuthURL)
		}
	}
	if c.AuditSigningKey != "" && !strings.HasPrefix(c.AuditSigningKey, "PRIVATE+KEY+") {
		add("AUDIT_SIGNING_KEY: not a note signer key (PRIVATE+KEY+name+hash+key; make one with `unhidra audit keygen`)")
	}
	if c.Production() {
		if c.AuditSigningKey == "" {
			add("production: AUDIT_SIGNING_KEY must be set (make one with `unhidra audit keygen`; keep its verifier key with your auditors)")
		}
		switch {
		case c.JWTSecret == "" || c.JWTSecretGenerated:
			add("production: JWT_SECRET must be set (at least %d random bytes)", MinSecretLen)
		case strings.EqualFold(c.JWTSecret, "supersecret") || strings.Contains(strings.ToLower(c.JWTSecret), "supersecret"):
			add("production: JWT_SECRET must not be the well-known value supersecret")
		}
		if len(c.AllowedOrigins) == 0 {
			add("production: ALLOWED_ORIGINS must list the browser origins allowed to connect")
		}
		if !c.TLS() && !c.TrustProxyTLS {
			add("production: serve TLS (TLS_CERT_FILE and TLS_KEY_FILE) or set TRUST_PROXY_TLS=true behind a TLS proxy")
		}
	}
	return errors.Join(errs...)
}

func checkOrigin(o string) error {
	u, err := url.Parse(o)
	if err != nil {
		return fmt.Errorf("is not a URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("must start with http:// or https://")
	}
	if u.Host == "" || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("must be exactly scheme://host[:port]")
	}
	return nil
}

// redactURL drops any password from a URL for error messages.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		if strings.Contains(s, "@") {
			return "(an unparsable URL with credentials)"
		}
		return s
	}
	if u.User == nil {
		return s
	}
	return u.Redacted()
}
