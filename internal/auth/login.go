package auth

import (
	"context"
	"net/netip"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/broker"
	"github.com/unhidra/unhidra/internal/redact"
	"github.com/unhidra/unhidra/wire"
)

// PruneSessions deletes sessions that ended (expired or revoked) more than
// an access-token lifetime ago, with their refresh tokens. Until then their
// rows answer reuse detection and token checks; afterwards an unknown
// session or token is refused just the same.
func (s *Service) PruneSessions(ctx context.Context) (int64, error) {
	return s.store.PruneSessions(ctx, s.cfg.Now().Add(-s.cfg.AccessTTL-TokenLeeway))
}

// TokenPair is the answer to a login or refresh.
type TokenPair struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
	User         struct {
		Username    string   `json:"username"`
		DisplayName string   `json:"display_name"`
		Roles       []string `json:"roles"`
	} `json:"user"`
	// DeviceCookie is set by a successful login: the value of the device
	// cookie DeviceCookieName(User.Username) the transport sets on the
	// client. It is never part of the JSON answer.
	DeviceCookie string `json:"-"`
}

// LoginInput is a password login.
type LoginInput struct {
	Username string
	Password string
	IP       netip.Addr
	// DeviceCookie is the value of the client's device cookie for this
	// user (DeviceCookieName(Username)), "" without one.
	DeviceCookie string
}

var errBadCredentials = unhidra.Errorf(unhidra.EUNAUTHORIZED, "invalid username or password")

func retryAfter(d time.Duration) int { return max(1, int((d+time.Second-1)/time.Second)) }

// typedName is how a login name that failed appears in the log and the
// audit: whatever was typed may be a password typed in the wrong field, so
// only its short hash (redact.Hash) is recorded, never the text.
func typedName(name string) wire.Principal { return userPrincipal(redact.Hash(name)) }

// Login checks a password and starts a session. Every attempt counts against
// the client IP's limit. An attempt presenting a valid device cookie for the
// user is trusted: its failures count against that cookie alone
// (DeviceCookieMaxFailures per DeviceCookieWindow) and the account's cap
// does not refuse it. Other attempts' failures count against the account's
// hourly cap (MaxAccountFailures). A successful login returns a fresh device
// cookie in TokenPair.DeviceCookie. Unknown users and wrong passwords get
// the same error after the same work.
func (s *Service) Login(ctx context.Context, in LoginInput) (TokenPair, error) {
	count := func(o string) { s.metrics.loginAttempts.WithLabelValues(o).Inc() }
	name, err := NormalizeUsername(in.Username)
	if err != nil {
		count(OutcomeInvalid)
		return TokenPair{}, err
	}
	if len(in.Password) == 0 || len(in.Password) > MaxPasswordLen {
		count(OutcomeInvalid)
		return TokenPair{}, unhidra.Errorf(unhidra.EINVALID, "password must be 1 to %d bytes", MaxPasswordLen)
	}
	ip := ipString(in.IP)
	if ok, wait := s.ipLimit.Allow(ip); !ok {
		count(OutcomeRateLimited)
		s.emit(ctx, Event{Action: ActionLogin, Actor: typedName(name), IP: ip, Outcome: "failure", Reason: "too many login attempts from this address"})
		return TokenPair{}, &unhidra.Error{Code: unhidra.ERATELIMITED, Message: "too many login attempts, try again later", RetryAfter: retryAfter(wait)}
	}
	var done func(failed bool)
	var wait time.Duration
	var ok bool
	if nonce, trusted := s.cookies.verify(in.DeviceCookie, name); trusted {
		done, wait, ok = s.trusted.Reserve("cookie:" + nonce)
		if !ok {
			count(OutcomeDeviceLocked)
			s.emit(ctx, Event{Action: ActionLogin, Actor: typedName(name), IP: ip, Outcome: "failure", Reason: "device cookie locked after too many failures"})
			return TokenPair{}, &unhidra.Error{Code: unhidra.ERATELIMITED, Message: "too many failed attempts from this device, try again later", RetryAfter: retryAfter(wait)}
		}
	} else {
		done, wait, ok = s.accounts.Reserve(name)
		if !ok {
			count(OutcomeLocked)
			s.emit(ctx, Event{Action: ActionLogin, Actor: typedName(name), IP: ip, Outcome: "failure", Reason: "account locked after too many failures"})
			return TokenPair{}, &unhidra.Error{Code: unhidra.ERATELIMITED, Message: "too many failed attempts for this account, try again later", RetryAfter: retryAfter(wait)}
		}
	}
	failed := true
	defer func() { done(failed) }()
	// The pool admits (or refuses, 503) before the user lookup, so a flood
	// beyond the pool costs no database connection.
	release, err := s.pool.admit()
	if err != nil {
		failed = false
		count(OutcomeBusy)
		// Shed unchecked, but still an attempt on the account: a flood
		// leaves its trace (the log's group commit takes thousands a
		// second).
		s.emit(ctx, Event{Action: ActionLogin, Actor: typedName(name), IP: ip, Outcome: "failure", Reason: "server busy: not checked"})
		return TokenPair{}, err
	}
	defer release()

	u, err := s.store.User(ctx, name)
	known := err == nil
	if err != nil && unhidra.ErrorCode(err) != unhidra.ENOTFOUND {
		failed = false
		return TokenPair{}, err
	}
	encoded := "" // the dummy hash
	if known {
		encoded = u.PasswordHash
	}
	match, params, err := s.verifyAdmitted(ctx, encoded, in.Password)
	release()
	if err != nil {
		failed = false
		count(OutcomeBusy)
		s.emit(ctx, Event{Action: ActionLogin, Actor: typedName(name), IP: ip, Outcome: "failure", Reason: "server busy: not checked"})
		return TokenPair{}, err
	}
	if !known || !match {
		count(OutcomeBadPassword)
		s.emit(ctx, Event{Action: ActionLogin, Actor: typedName(name), IP: ip, Outcome: "failure", Reason: "bad credentials"})
		return TokenPair{}, errBadCredentials
	}
	failed = false
	// From here the password was right: the name is an account's.
	if u.Disabled {
		count(OutcomeRefused)
		s.emit(ctx, Event{Action: ActionLogin, Actor: userPrincipal(name), IP: ip, Outcome: "failure", Reason: "account disabled"})
		return TokenPair{}, unhidra.Errorf(unhidra.EFORBIDDEN, "account is disabled")
	}
	if !u.Verified {
		count(OutcomeRefused)
		s.emit(ctx, Event{Action: ActionLogin, Actor: userPrincipal(name), IP: ip, Outcome: "failure", Reason: "account not verified"})
		return TokenPair{}, unhidra.Errorf(unhidra.EFORBIDDEN, "account is awaiting approval by an administrator")
	}
	if params.Weaker(s.cfg.Params) {
		s.upgradeHash(ctx, u.Username, in.Password)
	}
	pair, err := s.startSession(ctx, u)
	if err != nil {
		return TokenPair{}, err
	}
	pair.DeviceCookie = s.cookies.issue(u.Username)
	count(OutcomeSuccess)
	s.emit(ctx, Event{Action: ActionLogin, Actor: userPrincipal(name), IP: ip})
	return pair, nil
}

// upgradeHash rehashes a password stored with weaker parameters. A failure
// only delays the upgrade to the next login.
func (s *Service) upgradeHash(ctx context.Context, username, password string) {
	h, err := s.hash(ctx, password)
	if err == nil {
		err = s.store.SetPasswordHash(ctx, username, h, s.cfg.Now())
	}
	if err != nil {
		s.log.Warn("password hash upgrade postponed", "user", username, "err", err)
		return
	}
	s.log.Info("password hash upgraded", "user", username)
}

func (s *Service) startSession(ctx context.Context, u User) (TokenPair, error) {
	now := s.cfg.Now()
	rt, rh, err := newRefreshToken()
	if err != nil {
		return TokenPair{}, err
	}
	sess := Session{ID: ulid.Make().String(), Username: u.Username, CreatedAt: now, ExpiresAt: now.Add(s.cfg.RefreshTTL)}
	if err := s.store.CreateSession(ctx, sess, rh); err != nil {
		return TokenPair{}, err
	}
	return s.pair(u.Username, u.DisplayName, u.Roles, sess.ID, rt)
}

func (s *Service) pair(username, displayName string, roles []string, sid, refresh string) (TokenPair, error) {
	at, _, err := s.tokens.issue(username, sid, roles)
	if err != nil {
		return TokenPair{}, err
	}
	p := TokenPair{AccessToken: at, TokenType: "Bearer", ExpiresIn: int(s.cfg.AccessTTL / time.Second), RefreshToken: refresh}
	p.User.Username, p.User.DisplayName, p.User.Roles = username, displayName, nonNil(roles)
	return p, nil
}

func nonNil(r []string) []string {
	if r == nil {
		return []string{}
	}
	return r
}

// MaxRefreshTokenLen bounds a presented refresh token.
const MaxRefreshTokenLen = 256

// Refresh rotates a refresh token: the presented one is retired and a new
// pair returned in the same session. Presenting a retired token again
// revokes the whole session, so a stolen token is useful at most once and
// its use ends the thief's and the owner's session alike.
func (s *Service) Refresh(ctx context.Context, refreshToken string, ip netip.Addr) (TokenPair, error) {
	if refreshToken == "" || len(refreshToken) > MaxRefreshTokenLen {
		return TokenPair{}, unhidra.Errorf(unhidra.EUNAUTHORIZED, "invalid refresh token")
	}
	now := s.cfg.Now()
	rt, rh, err := newRefreshToken()
	if err != nil {
		return TokenPair{}, err
	}
	res, err := s.store.RotateRefresh(ctx, refreshHash(refreshToken), rh, now, now.Add(s.cfg.RefreshTTL))
	if err != nil {
		if c := unhidra.ErrorCode(err); c == unhidra.ENOTFOUND || c == unhidra.EUNAUTHORIZED {
			return TokenPair{}, unhidra.Errorf(unhidra.EUNAUTHORIZED, "invalid refresh token")
		}
		return TokenPair{}, err
	}
	if res.Reused {
		s.metrics.refreshReuse.Inc()
		s.sessions.revoke(res.Session.ID)
		s.publish(ctx, broker.Revocation{Kind: broker.RevokeSession, ID: res.Session.ID})
		s.emit(ctx, Event{Action: ActionTokenReuse, Actor: userPrincipal(res.Session.Username), Target: res.Session.ID, IP: ipString(ip), Outcome: "failure", Reason: "rotated refresh token presented again; session revoked"})
		return TokenPair{}, unhidra.Errorf(unhidra.EUNAUTHORIZED, "invalid refresh token")
	}
	u, err := s.store.User(ctx, res.Session.Username)
	if err != nil {
		return TokenPair{}, err
	}
	return s.pair(u.Username, u.DisplayName, u.Roles, res.Session.ID, rt)
}

// Logout ends the caller's session: its refresh tokens and, at once, its
// access tokens; transports close its live connections.
func (s *Service) Logout(ctx context.Context, who unhidra.Identity) error {
	if err := requireUser(who); err != nil {
		return err
	}
	if _, err := s.store.RevokeSession(ctx, who.SessionID, "logout", s.cfg.Now()); err != nil {
		return err
	}
	s.sessions.revoke(who.SessionID)
	s.publish(ctx, broker.Revocation{Kind: broker.RevokeSession, ID: who.SessionID})
	s.emit(ctx, Event{Action: ActionLogout, Actor: who.Principal, Target: who.SessionID})
	return nil
}
