package auth

import (
	"context"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/wire"
)

// AuthenticateToken verifies an access token (HS256 only, iss, aud, typ,
// exp with 60 s leeway; the previous secret is accepted) and that its
// session is not revoked and its user not disabled. Session states are
// cached (RevocationTTL), so this costs one HMAC and a map lookup in the
// common case.
func (s *Service) AuthenticateToken(ctx context.Context, token string) (unhidra.Identity, error) {
	c, err := s.tokens.verify(token)
	if err != nil {
		return unhidra.Identity{}, err
	}
	ok, found := s.sessions.get(c.SessionID, c.Subject)
	if !found {
		st, err := s.store.SessionState(ctx, c.SessionID)
		switch {
		case err == nil:
			// Cache the session's own state; the subject must match it too.
			usable := !st.Revoked && !st.UserDisabled
			s.sessions.put(c.SessionID, st.Username, usable)
			ok = usable && st.Username == c.Subject
		case unhidra.ErrorCode(err) == unhidra.ENOTFOUND:
			ok = false
		default:
			return unhidra.Identity{}, err
		}
	}
	if !ok {
		return unhidra.Identity{}, errInvalidToken
	}
	return unhidra.Identity{
		Principal: userPrincipal(c.Subject),
		SessionID: c.SessionID,
		Roles:     c.Roles,
		ExpiresAt: c.ExpiresAt.Time,
	}, nil
}

func requireUser(who unhidra.Identity) error {
	if who.Principal.Kind != wire.KindUser || who.Principal.ID == "" || who.SessionID == "" {
		return unhidra.Errorf(unhidra.EFORBIDDEN, "this route needs a user's access token")
	}
	return nil
}

func requireAdmin(who unhidra.Identity) error {
	if IsOperator(who) {
		return nil
	}
	if err := requireUser(who); err != nil {
		return err
	}
	if !who.IsAdmin() {
		return unhidra.Errorf(unhidra.EFORBIDDEN, "administrators only")
	}
	return nil
}

// IsOperator reports whether who is the command-line operator
// (unhidra.IsOperator).
func IsOperator(who unhidra.Identity) bool { return unhidra.IsOperator(who) }
