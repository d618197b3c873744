package auth

import (
	"github.com/unhidra/unhidra/internal/ratelimit"

	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/broker"
	"github.com/unhidra/unhidra/internal/redact"
	"github.com/unhidra/unhidra/wire"
)

// Config is the auth service's configuration.
type Config struct {
	// Secret signs access tokens (HS256, at least 32 bytes); PreviousSecret,
	// when set, is still accepted for verification.
	Secret         string
	PreviousSecret string
	AccessTTL      time.Duration // default 15m
	RefreshTTL     time.Duration // default 720h
	Registration   string        // open, approval or closed
	LoginPerMinute int           // per client IP; default 10
	// Params are the Argon2id parameters of new hashes; zero means
	// DefaultParams. Lower values are for tests that are not about hashing.
	Params      Params
	HashWorkers int // default GOMAXPROCS − 1, at least 1
	HashQueue   int // default 2 × GOMAXPROCS
	// RevocationTTL bounds how long a session's state is cached before it is
	// read again from the store: the delay for a revocation made by another
	// process (the CLI, another node) to take effect. Default 5s.
	RevocationTTL time.Duration
	Now           func() time.Time
}

// Deps are the service's collaborators. Store is required; the rest default
// to no-ops (Auditor: LogAuditor on Log).
type Deps struct {
	Store     Store
	Publisher Publisher
	Auditor   Auditor
	Log       *slog.Logger
	// Registerer receives the service's metrics (nil: not registered).
	Registerer prometheus.Registerer
}

// Service is the auth domain service.
type Service struct {
	cfg      Config
	store    Store
	pub      Publisher
	audit    Auditor
	log      *slog.Logger
	metrics  *Metrics
	tokens   *tokens
	pool     *hashPool
	ipLimit  ratelimit.Limiter
	accounts *AccountLimiter
	// trusted counts the failures of trusted attempts, each on its own key:
	// a device cookie's nonce at login, a session at password change.
	trusted  *AccountLimiter
	cookies  *deviceCookies
	sessions *sessionCache
	// dummy is a hash no password matches, verified for unknown users so
	// they cost the same as a wrong password. Made on first need (inside a
	// pool slot), so administration commands start without hashing.
	dummy func() string
}

// New returns a Service.
func New(cfg Config, d Deps) (*Service, error) {
	if d.Store == nil {
		return nil, errors.New("auth: a Store is required")
	}
	if len(cfg.Secret) < 32 {
		return nil, errors.New("auth: the token secret must be at least 32 bytes")
	}
	if cfg.AccessTTL <= 0 {
		cfg.AccessTTL = 15 * time.Minute
	}
	if cfg.RefreshTTL <= 0 {
		cfg.RefreshTTL = 720 * time.Hour
	}
	if cfg.Registration == "" {
		cfg.Registration = "open"
	}
	if cfg.LoginPerMinute <= 0 {
		cfg.LoginPerMinute = 10
	}
	if cfg.Params == (Params{}) {
		cfg.Params = DefaultParams
	}
	if cfg.HashWorkers <= 0 {
		// One CPU stays free of hashing, so a login flood cannot take every
		// CPU from /health, refusals and the other APIs.
		cfg.HashWorkers = max(1, runtime.GOMAXPROCS(0)-1)
	}
	if cfg.HashQueue <= 0 {
		// As many logins may wait as with one worker per CPU, so a burst
		// of legitimate logins is not refused for the CPU kept free.
		cfg.HashQueue = 2 * runtime.GOMAXPROCS(0)
	}
	if cfg.RevocationTTL <= 0 {
		cfg.RevocationTTL = 5 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return time.Now().UTC() }
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Auditor == nil {
		d.Auditor = LogAuditor{Log: d.Log}
	}
	m := NewMetrics(d.Registerer)
	s := &Service{
		cfg:      cfg,
		store:    d.Store,
		pub:      d.Publisher,
		audit:    d.Auditor,
		log:      d.Log,
		metrics:  m,
		tokens:   newTokens(cfg.Secret, cfg.PreviousSecret, cfg.AccessTTL, cfg.Now),
		pool:     newHashPool(cfg.HashWorkers, cfg.HashQueue, m),
		ipLimit:  ratelimit.PerMinute(cfg.LoginPerMinute, cfg.Now),
		accounts: NewAccountLimiter(MaxAccountFailures, time.Hour, cfg.Now),
		trusted:  NewAccountLimiter(DeviceCookieMaxFailures, DeviceCookieWindow, cfg.Now),
		cookies:  newDeviceCookies(cfg.Secret, cfg.PreviousSecret, cfg.Now),
		sessions: newSessionCache(cfg.RevocationTTL, cfg.AccessTTL+TokenLeeway, cfg.Now),
	}
	s.dummy = sync.OnceValue(func() string {
		pw := make([]byte, 32)
		_, _ = rand.Read(pw)
		h, _ := hashPassword(pw, cfg.Params)
		return h
	})
	if d.Registerer != nil {
		d.Registerer.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "unhidra_auth_hash_in_flight_peak",
			Help: "The most password hashes that ever ran at once (the pool bound holds when it stays at most the pool size).",
		}, func() float64 { return float64(s.pool.Peak()) }))
		d.Registerer.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "unhidra_auth_active_sessions",
			Help: "Sessions neither revoked nor expired.",
		}, func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			n, err := s.store.CountActiveSessions(ctx, s.cfg.Now())
			if err != nil {
				return -1
			}
			return float64(n)
		}))
	}
	return s, nil
}

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

// PruneSessions deletes sessions that ended (expired or revoked) more than
// an access-token lifetime ago, with their refresh tokens. Until then their
// rows answer reuse detection and token checks; afterwards an unknown
// session or token is refused just the same.
func (s *Service) PruneSessions(ctx context.Context) (int64, error) {
	return s.store.PruneSessions(ctx, s.cfg.Now().Add(-s.cfg.AccessTTL-TokenLeeway))
}

// Warm makes the dummy hash now rather than at the first login of an
// unknown user, so that one is not slower than the rest.
func (s *Service) Warm() { s.dummy() }

// PasswordParams returns the Argon2id parameters of new hashes.
func (s *Service) PasswordParams() Params { return s.cfg.Params }

// HashCount returns how many password hashes and verifications ran on the
// pool.
func (s *Service) HashCount() int64 { return s.pool.Count() }

// HashPeak returns the largest number of password hashes that ran at once.
func (s *Service) HashPeak() int64 { return s.pool.Peak() }

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

func (s *Service) hash(ctx context.Context, password string) (string, error) {
	var h string
	var herr error
	if err := s.pool.do(ctx, func() { h, herr = hashPassword([]byte(password), s.cfg.Params) }); err != nil {
		return "", err
	}
	return h, herr
}

// verify checks password against encoded on the pool; encoded "" means the
// dummy hash (an unknown user).
func (s *Service) verify(ctx context.Context, encoded, password string) (ok bool, params Params, err error) {
	release, err := s.pool.admit()
	if err != nil {
		return false, Params{}, err
	}
	defer release()
	return s.verifyAdmitted(ctx, encoded, password)
}

// verifyAdmitted is verify for a caller that already holds a pool admission.
func (s *Service) verifyAdmitted(ctx context.Context, encoded, password string) (ok bool, params Params, err error) {
	var perr error
	if err := s.pool.run(ctx, func() {
		if encoded == "" {
			ok, params, perr = verifyPHC(s.dummy(), []byte(password))
			ok = false
			return
		}
		ok, params, perr = verifyPHC(encoded, []byte(password))
	}); err != nil {
		return false, Params{}, err
	}
	if perr != nil {
		s.log.Error("stored password hash is malformed", "err", perr)
		return false, Params{}, nil
	}
	return ok, params, nil
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

// RegisterInput is a self-registration.
type RegisterInput struct {
	Username    string
	Password    string
	DisplayName string
	IP          netip.Addr
}

// Register creates an account according to the registration mode: open
// (verified at once), approval (unverified until an admin verifies) or
// closed (forbidden).
func (s *Service) Register(ctx context.Context, in RegisterInput) (User, error) {
	if s.cfg.Registration == "closed" {
		return User{}, unhidra.Errorf(unhidra.EFORBIDDEN, "registration is closed")
	}
	u, err := s.newUser(ctx, in.Username, in.Password, in.DisplayName)
	if err != nil {
		return User{}, err
	}
	u.Verified = s.cfg.Registration == "open"
	if err := s.store.CreateUser(ctx, u); err != nil {
		return User{}, err
	}
	s.emit(ctx, Event{Action: ActionRegister, Actor: userPrincipal(u.Username), Target: u.Username, IP: ipString(in.IP)})
	return u, nil
}

// newUser validates and hashes; it checks the name is free before hashing so
// a taken name costs no hash (the insert still decides races).
func (s *Service) newUser(ctx context.Context, username, password, displayName string) (User, error) {
	name, err := NormalizeUsername(username)
	if err != nil {
		return User{}, err
	}
	if err := CheckPassword(password); err != nil {
		return User{}, err
	}
	dn, err := checkDisplayName(displayName)
	if err != nil {
		return User{}, err
	}
	if dn == "" {
		dn = name
	}
	if _, err := s.store.User(ctx, name); err == nil {
		return User{}, unhidra.Errorf(unhidra.ECONFLICT, "username is taken")
	} else if unhidra.ErrorCode(err) != unhidra.ENOTFOUND {
		return User{}, err
	}
	h, err := s.hash(ctx, password)
	if err != nil {
		return User{}, err
	}
	return User{Username: name, DisplayName: dn, Roles: []string{}, PasswordHash: h, CreatedAt: s.cfg.Now()}, nil
}

// CreateUserInput is an account created by an operator.
type CreateUserInput struct {
	Username string
	Password string
	Admin    bool
}

// CreateUser creates a verified account (the command line and bootstrap).
func (s *Service) CreateUser(ctx context.Context, in CreateUserInput) (User, error) {
	u, err := s.newUser(ctx, in.Username, in.Password, "")
	if err != nil {
		return User{}, err
	}
	u.Verified = true
	if in.Admin {
		u.Roles = []string{unhidra.RoleAdmin}
	}
	if err := s.store.CreateUser(ctx, u); err != nil {
		return User{}, err
	}
	s.emit(ctx, Event{Action: ActionUserCreate, Actor: Operator.Principal, Target: u.Username})
	return u, nil
}

// EnsureAdmin creates the user "admin" (role admin, verified) when there is
// no user at all. password may be empty: one is generated. It reports
// whether the account was created and the password it got.
func (s *Service) EnsureAdmin(ctx context.Context, password string) (created bool, pw string, err error) {
	n, err := s.store.CountUsers(ctx)
	if err != nil || n > 0 {
		return false, "", err
	}
	if password == "" {
		password = GeneratePassword()
	}
	if _, err := s.CreateUser(ctx, CreateUserInput{Username: "admin", Password: password, Admin: true}); err != nil {
		if unhidra.ErrorCode(err) == unhidra.ECONFLICT {
			return false, "", nil // another process won the race
		}
		return false, "", err
	}
	return true, password, nil
}

// GeneratePassword returns a random 128-bit password in base64url.
func GeneratePassword() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
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

// Me returns the caller's account.
func (s *Service) Me(ctx context.Context, who unhidra.Identity) (User, error) {
	if err := requireUser(who); err != nil {
		return User{}, err
	}
	return s.store.User(ctx, who.Principal.ID)
}

// UpdateMe changes the caller's display name.
func (s *Service) UpdateMe(ctx context.Context, who unhidra.Identity, displayName string) (User, error) {
	if err := requireUser(who); err != nil {
		return User{}, err
	}
	dn, err := checkDisplayName(displayName)
	if err != nil {
		return User{}, err
	}
	if dn == "" {
		return User{}, unhidra.Errorf(unhidra.EINVALID, "display name must not be empty")
	}
	return s.store.SetDisplayName(ctx, who.Principal.ID, dn, s.cfg.Now())
}

// ChangePassword checks the current password, stores the new one and ends
// every other session of the user. The caller holds a session, so wrong
// current passwords count against that session alone (like a device
// cookie's): strangers who locked the account's untrusted logins do not stop
// its owner from changing the password.
func (s *Service) ChangePassword(ctx context.Context, who unhidra.Identity, current, next string) error {
	if err := requireUser(who); err != nil {
		return err
	}
	if len(current) == 0 || len(current) > MaxPasswordLen {
		return unhidra.Errorf(unhidra.EINVALID, "current password must be 1 to %d bytes", MaxPasswordLen)
	}
	if err := CheckPassword(next); err != nil {
		return err
	}
	name := who.Principal.ID
	done, wait, ok := s.trusted.Reserve("session:" + who.SessionID)
	if !ok {
		return &unhidra.Error{Code: unhidra.ERATELIMITED, Message: "too many failed attempts in this session, try again later", RetryAfter: retryAfter(wait)}
	}
	u, err := s.store.User(ctx, name)
	if err != nil {
		done(false)
		return err
	}
	match, _, err := s.verify(ctx, u.PasswordHash, current)
	if err != nil {
		done(false)
		return err
	}
	done(!match)
	if !match {
		s.emit(ctx, Event{Action: ActionPasswordChange, Actor: who.Principal, Outcome: "failure", Reason: "wrong current password"})
		return unhidra.Errorf(unhidra.EFORBIDDEN, "current password is wrong")
	}
	h, err := s.hash(ctx, next)
	if err != nil {
		return err
	}
	revoked, err := s.store.ChangePassword(ctx, name, h, who.SessionID, s.cfg.Now())
	if err != nil {
		return err
	}
	s.sessions.revokeUser(name, who.SessionID)
	for _, sid := range revoked {
		s.sessions.revoke(sid)
	}
	s.publish(ctx, broker.Revocation{Kind: broker.RevokeUserExcept, ID: name, Except: who.SessionID})
	s.emit(ctx, Event{Action: ActionPasswordChange, Actor: who.Principal, Target: name})
	return nil
}

// SetPassword replaces a user's password as an operator and ends every
// session of the user.
func (s *Service) SetPassword(ctx context.Context, who unhidra.Identity, username, password string) error {
	if err := requireAdmin(who); err != nil {
		return err
	}
	name, err := NormalizeUsername(username)
	if err != nil {
		return err
	}
	if err := CheckPassword(password); err != nil {
		return err
	}
	if _, err := s.store.User(ctx, name); err != nil {
		return err
	}
	h, err := s.hash(ctx, password)
	if err != nil {
		return err
	}
	revoked, err := s.store.ChangePassword(ctx, name, h, "", s.cfg.Now())
	if err != nil {
		return err
	}
	s.sessions.revokeUser(name, "")
	for _, sid := range revoked {
		s.sessions.revoke(sid)
	}
	s.publish(ctx, broker.Revocation{Kind: broker.RevokeUser, ID: name})
	s.emit(ctx, Event{Action: ActionPasswordChange, Actor: who.Principal, Target: name})
	return nil
}

// User returns an account by name (for other services; no authorization).
func (s *Service) User(ctx context.Context, username string) (User, error) {
	name, err := NormalizeUsername(username)
	if err != nil {
		return User{}, unhidra.Errorf(unhidra.ENOTFOUND, "user not found")
	}
	return s.store.User(ctx, name)
}

// UserActive reports whether the account exists and is not disabled.
func (s *Service) UserActive(ctx context.Context, username string) (bool, error) {
	u, err := s.User(ctx, username)
	if unhidra.ErrorCode(err) == unhidra.ENOTFOUND {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return !u.Disabled, nil
}

// Users lists every account (administrators only).
func (s *Service) Users(ctx context.Context, who unhidra.Identity) ([]User, error) {
	if err := requireAdmin(who); err != nil {
		return nil, err
	}
	return s.store.Users(ctx)
}

// VerifyUser marks an account verified (administrators only).
func (s *Service) VerifyUser(ctx context.Context, who unhidra.Identity, username string) (User, error) {
	if err := requireAdmin(who); err != nil {
		return User{}, err
	}
	name, err := NormalizeUsername(username)
	if err != nil {
		return User{}, unhidra.Errorf(unhidra.ENOTFOUND, "user not found")
	}
	if err := s.store.SetVerified(ctx, name, s.cfg.Now()); err != nil {
		return User{}, err
	}
	s.emit(ctx, Event{Action: ActionUserVerify, Actor: who.Principal, Target: name})
	return s.store.User(ctx, name)
}

// DisableUser disables an account and ends all its sessions (administrators
// only; an administrator cannot disable themself).
func (s *Service) DisableUser(ctx context.Context, who unhidra.Identity, username string) (User, error) {
	if err := requireAdmin(who); err != nil {
		return User{}, err
	}
	name, err := NormalizeUsername(username)
	if err != nil {
		return User{}, unhidra.Errorf(unhidra.ENOTFOUND, "user not found")
	}
	if who.Principal.Kind == wire.KindUser && who.Principal.ID == name {
		return User{}, unhidra.Errorf(unhidra.EINVALID, "administrators cannot disable their own account")
	}
	if _, err := s.store.DisableUser(ctx, name, s.cfg.Now()); err != nil {
		return User{}, err
	}
	s.sessions.revokeUser(name, "")
	s.publish(ctx, broker.Revocation{Kind: broker.RevokeUser, ID: name})
	s.emit(ctx, Event{Action: ActionUserDisable, Actor: who.Principal, Target: name})
	return s.store.User(ctx, name)
}

// IsOperator reports whether who is the command-line operator
// (unhidra.IsOperator).
func IsOperator(who unhidra.Identity) bool { return unhidra.IsOperator(who) }
