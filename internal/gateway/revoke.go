package gateway

import (
	"github.com/unhidra/unhidra/internal/broker"
	"github.com/unhidra/unhidra/wire"
)

// onRevocation closes the live connections a Revocation names with 4003.
// It runs on the broker's goroutine and does not block.
func (s *Server) onRevocation(ev *broker.Event) {
	if ev.Kind != broker.Revoke || ev.Revocation == nil || ev.Revocation.ID == "" {
		s.log.Warn("malformed revocation event")
		return
	}
	rv := *ev.Revocation
	s.mu.Lock()
	var hit []*conn
	for c := range s.conns {
		p := c.principal
		switch rv.Kind {
		case broker.RevokeSession:
			if p.Kind == wire.KindUser && c.sessionID() == rv.ID {
				hit = append(hit, c)
			}
		case broker.RevokeUser:
			if p.Kind == wire.KindUser && p.ID == rv.ID {
				hit = append(hit, c)
			}
		case broker.RevokeUserExcept:
			if p.Kind == wire.KindUser && p.ID == rv.ID && c.sessionID() != rv.Except {
				hit = append(hit, c)
			}
		case broker.RevokeDevice:
			if p.Kind == wire.KindDevice && p.ID == rv.ID {
				hit = append(hit, c)
			}
		}
	}
	s.mu.Unlock()
	for _, c := range hit {
		c.closeWith(CloseRevoked, "revoked", "revoked")
	}
}
