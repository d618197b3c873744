package auth

import (
	"context"
	"net/netip"

	"github.com/unhidra/unhidra/internal/broker"
	"github.com/unhidra/unhidra/wire"
)

// OnRevocation applies a revocation event from the broker (published by this
// or another node) to the session cache, so other nodes' logouts and
// disables take effect here at once instead of after RevocationTTL. It is a
// broker handler: quick and non-blocking.
func (s *Service) OnRevocation(ev *broker.Event) {
	if ev.Kind != broker.Revoke || ev.Revocation == nil || ev.Revocation.ID == "" {
		return
	}
	r := *ev.Revocation
	switch r.Kind {
	case broker.RevokeSession:
		s.sessions.revoke(r.ID)
	case broker.RevokeUser:
		s.sessions.revokeUser(r.ID, "")
	case broker.RevokeUserExcept:
		s.sessions.revokeUser(r.ID, r.Except)
	}
}

func (s *Service) emit(ctx context.Context, e Event) {
	if e.Outcome == "" {
		e.Outcome = "success"
	}
	s.audit.Audit(ctx, e)
}

func (s *Service) publish(ctx context.Context, r broker.Revocation) {
	if s.pub == nil {
		return
	}
	if err := s.pub.Publish(context.WithoutCancel(ctx), broker.RevocationTopic, broker.RevocationEvent(r)); err != nil {
		s.log.Warn("publish revocation", "kind", r.Kind, "err", err)
	}
}

func userPrincipal(name string) wire.Principal { return wire.Principal{Kind: wire.KindUser, ID: name} }

func ipString(ip netip.Addr) string {
	if !ip.IsValid() {
		return ""
	}
	return ip.String()
}
