package gateway

import (
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/wire"
)

// validUntil is when id's credential stops being accepted: its token's exp
// plus the leeway the auth service's verification grants (the zero time for
// device keys, which do not expire).
func (s *Server) validUntil(id unhidra.Identity) time.Time {
	if id.ExpiresAt.IsZero() {
		return time.Time{}
	}
	return id.ExpiresAt.Add(s.cfg.TokenLeeway)
}

// expired reports whether id's credential is no longer accepted now.
func (s *Server) expired(id unhidra.Identity) bool {
	until := s.validUntil(id)
	return !until.IsZero() && !s.cfg.Now().Before(until)
}

// reserve takes one of the principal's connection slots.
func (s *Server) reserve(p wire.Principal) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byPrincipal[p] >= s.cfg.MaxConnsPerUser {
		return false
	}
	s.byPrincipal[p]++
	return true
}

func (s *Server) release(p wire.Principal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.releaseLocked(p)
}

func (s *Server) releaseLocked(p wire.Principal) {
	if s.byPrincipal[p] <= 1 {
		delete(s.byPrincipal, p)
	} else {
		s.byPrincipal[p]--
	}
}

// register adds c to the live set unless a drain has begun.
func (s *Server) register(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

// unregister removes c and frees its principal's slot.
func (s *Server) unregister(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.conns[c]; !ok {
		return
	}
	delete(s.conns, c)
	s.releaseLocked(c.principal)
	if s.draining && len(s.conns) == 0 {
		close(s.allGone)
	}
}
