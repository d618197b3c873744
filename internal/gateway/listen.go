package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/unhidra/unhidra/internal/broker"
	"github.com/unhidra/unhidra/internal/httpx"
)

// Listen binds cfg.Addr. Run calls it when it has not been called.
func (s *Server) Listen() error {
	s.lnMu.Lock()
	defer s.lnMu.Unlock()
	if s.ln != nil {
		return nil
	}
	if s.cfg.Listener != nil {
		s.ln = s.cfg.Listener
		return nil
	}
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("gateway: listen: %w", err)
	}
	s.ln = ln
	return nil
}

// Addr returns the listening address after Listen, or "".
func (s *Server) Addr() string {
	s.lnMu.Lock()
	defer s.lnMu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Run serves until ctx is canceled, then drains: it stops accepting, lets
// in-flight frames finish, closes every connection with 1001 and returns
// once they are gone or ShutdownTimeout has passed.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	unsub, err := s.deps.Broker.Subscribe(broker.RevocationTopic, s.onRevocation)
	if err != nil {
		return fmt.Errorf("gateway: subscribe to revocations: %w", err)
	}
	defer unsub()

	serveErr := make(chan error, 1)
	go func() {
		var err error
		if s.http.TLSConfig != nil {
			err = s.http.ServeTLS(s.ln, "", "")
		} else {
			err = s.http.Serve(s.ln)
		}
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		serveErr <- err
	}()
	s.log.Info("gateway listening", "addr", s.Addr(), "tls", s.http.TLSConfig != nil)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-serveErr:
		serveErr <- nil
	}
	s.drain()
	<-serveErr
	return runErr
}

// drain stops accepting and closes every connection with 1001 after its
// in-flight frame has been answered.
func (s *Server) drain() {
	deadline := time.Now().Add(s.cfg.ShutdownTimeout)
	s.mu.Lock()
	s.draining = true
	conns := s.connsSnapshot(make([]*conn, 0, len(s.conns)))
	if len(s.conns) == 0 {
		close(s.allGone)
	}
	s.mu.Unlock()
	s.log.Info("gateway draining", "connections", len(conns))

	// Stop accepting: closes the listener and idle HTTP connections.
	shutCtx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	httpDone := make(chan struct{})
	go func() {
		_ = s.http.Shutdown(shutCtx)
		close(httpDone)
	}()

	for _, c := range conns {
		c.drain()
	}
	select {
	case <-s.allGone:
	case <-shutCtx.Done():
		s.log.Warn("gateway drain timed out; closing the remaining connections")
		s.cancelBase()
		s.mu.Lock()
		rest := s.connsSnapshot(nil)
		s.mu.Unlock()
		for _, c := range rest {
			c.abort("going_away")
		}
	}
	<-httpDone
	s.wg.Wait()
	s.cancelBase()
}

func (s *Server) connsSnapshot(dst []*conn) []*conn {
	for c := range s.conns {
		dst = append(dst, c)
	}
	return dst
}

// Draining reports whether a drain has started.
func (s *Server) Draining() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining
}

// Connections returns the number of open WebSocket connections.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

func (s *Server) maxQueued() float64 {
	s.mu.Lock()
	conns := s.connsSnapshot(nil)
	s.mu.Unlock()
	max := 0
	for _, c := range conns {
		c.mu.Lock()
		if c.outBytes > max {
			max = c.outBytes
		}
		c.mu.Unlock()
	}
	return float64(max)
}

func (s *Server) serveHealth(w http.ResponseWriter, r *http.Request) {
	if s.deps.Health != nil {
		if err := s.deps.Health(r.Context()); err != nil {
			s.log.Warn("health check failed", "err", err)
			httpx.WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable"})
			return
		}
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) serveReady(w http.ResponseWriter, r *http.Request) {
	if s.Draining() {
		httpx.WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "draining"})
		return
	}
	s.serveHealth(w, r)
}
