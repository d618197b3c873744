package auth

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/unhidra/unhidra/internal/ratelimit"
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
