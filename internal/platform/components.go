package platform

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Component is one long-running part of the process. Run serves until ctx
// ends, then drains within the shutdown timeout and returns; an error from
// any component stops the others.
type Component interface {
	Name() string
	Run(ctx context.Context) error
}

// Func adapts a named Run function to a Component.
func Func(name string, run func(ctx context.Context) error) Component {
	return funcComponent{name, run}
}

type funcComponent struct {
	name string
	run  func(ctx context.Context) error
}

func (r funcComponent) Name() string                  { return r.name }
func (r funcComponent) Run(ctx context.Context) error { return r.run(ctx) }

// Ticker runs Fn every period (Every) until ctx ends; errors are logged,
// not fatal.
type Ticker struct {
	Label string
	Every time.Duration
	Log   *slog.Logger
	Fn    func(ctx context.Context) error
}

// Name implements Component.
func (t *Ticker) Name() string { return t.Label }

// Run implements Component.
func (t *Ticker) Run(ctx context.Context) error {
	tk := time.NewTicker(t.Every)
	defer tk.Stop()
	for {
		if err := t.Fn(ctx); err != nil && ctx.Err() == nil {
			t.Log.Warn(t.Label+" failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tk.C:
		}
	}
}

// HTTPServer is an HTTP listener as a Component.
type HTTPServer struct {
	name    string
	addr    string
	ln      net.Listener
	srv     *http.Server
	tls     bool
	timeout time.Duration
	log     *slog.Logger
	drain   func()
}

// ServeHTTP makes an HTTP component of h on ln, an opened listener it owns
// from here (TLS with tc when set). On shutdown it calls drain, stops
// accepting and waits for in-flight requests up to timeout.
func ServeHTTP(name string, ln net.Listener, tc *tls.Config, h http.Handler, timeout time.Duration, log *slog.Logger, drain func()) *HTTPServer {
	s := &HTTPServer{
		name: name, addr: ln.Addr().String(), ln: ln, tls: tc != nil, timeout: timeout, log: log,
		drain: drain,
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       120 * time.Second,
			MaxHeaderBytes:    64 << 10,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		},
	}
	if tc != nil {
		s.srv.TLSConfig = tc.Clone()
	}
	return s
}

// Name implements Component.
func (s *HTTPServer) Name() string { return s.name }

// Addr is the listening address.
func (s *HTTPServer) Addr() string { return s.addr }

// Run serves until ctx ends, then stops accepting and waits for in-flight
// requests up to the shutdown timeout.
func (s *HTTPServer) Run(ctx context.Context) error {
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
func (s *HTTPServer) Close() error {
	err := s.srv.Close()
	s.ln.Close()
	return err
}
