package gateway

import (
	"crypto/tls"
	"fmt"
	"net"
	"strconv"

	"github.com/unhidra/unhidra/internal/config"
)

// ConfigFrom maps the process configuration (SPEC §2) to the gateway's:
// listen address, TLS from TLS_CERT_FILE/TLS_KEY_FILE (1.2 and 1.3 only),
// origins, proxies and limits. Timings not in the process configuration
// keep the SPEC defaults.
func ConfigFrom(c *config.Config) (Config, error) {
	cfg := Config{
		Addr:                 net.JoinHostPort(c.BindAddr, strconv.Itoa(c.GatewayPort)),
		TrustProxyTLS:        c.TrustProxyTLS,
		TrustedProxies:       c.TrustedProxies,
		AllowedOrigins:       c.AllowedOrigins,
		RateLimitIPPerMinute: c.RateLimitIPPerMin,
		MaxConnsPerUser:      c.MaxConnsPerUser,
		ShutdownTimeout:      c.ShutdownTimeout,
	}
	if cfg.RateLimitIPPerMinute <= 0 {
		cfg.RateLimitIPPerMinute = -1 // 0 in the process config: no limit
	}
	if c.TLS() {
		cert, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile)
		if err != nil {
			return Config{}, fmt.Errorf("gateway: TLS certificate: %w", err)
		}
		cfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	return cfg, nil
}
