package main

// What serve checks and opens before it touches the data dir: the stores it
// can open, the certificate, and every listener.

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"syscall"

	"github.com/unhidra/unhidra/internal/config"
)

// listeners are the ports serve opened before anything else, by variable
// (config.Listener.Var). A component that takes one removes it; close
// closes those still here.
type listeners map[string]net.Listener

func (l listeners) take(name string) net.Listener {
	ln := l[name]
	delete(l, name)
	return ln
}

func (l listeners) close() {
	for name, ln := range l {
		ln.Close()
		delete(l, name)
	}
}

// openListeners binds every port of the enabled services. On any failure it
// closes what it opened and names every port that failed: "GATEWAY_PORT
// 9000 is in use".
func openListeners(cfg *config.Config) (listeners, error) {
	lns := listeners{}
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
		lns.close()
		return nil, errors.Join(errs...)
	}
	return lns, nil
}

// tlsConfig loads the configured certificate for every listener (TLS 1.2
// and 1.3 only), or returns nil without one.
func tlsConfig(cfg *config.Config) (*tls.Config, error) {
	if !cfg.TLS() {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
	if err != nil {
		return nil, fmt.Errorf("TLS_CERT_FILE / TLS_KEY_FILE: %w", err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}, nil
}
