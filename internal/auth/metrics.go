package auth

import "github.com/prometheus/client_golang/prometheus"

// Login outcomes, the label values of unhidra_auth_login_attempts_total.
const (
	OutcomeSuccess     = "success"
	OutcomeBadPassword = "bad_credentials"
	OutcomeRateLimited = "rate_limited"
	OutcomeLocked      = "account_locked"
	// OutcomeDeviceLocked: a trusted attempt refused because its device
	// cookie failed too often.
	OutcomeDeviceLocked = "device_locked"
	OutcomeBusy         = "busy"
	OutcomeRefused      = "refused" // disabled or unverified account, right password
	OutcomeInvalid      = "invalid"
)

// Metrics are the auth service's Prometheus collectors.
type Metrics struct {
	loginAttempts *prometheus.CounterVec
	hashSeconds   prometheus.Histogram
	queueDepth    prometheus.Gauge
	hashing       prometheus.Gauge
	refreshReuse  prometheus.Counter
}

// NewMetrics creates the collectors and registers them on reg (nil: not
// registered, as in tests that do not look at metrics).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		loginAttempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "unhidra_auth_login_attempts_total",
			Help: "Password login attempts by outcome.",
		}, []string{"outcome"}),
		hashSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "unhidra_auth_password_hash_seconds",
			Help:    "Time of one Argon2id hash or verification on the bounded pool.",
			Buckets: []float64{.005, .01, .025, .05, .1, .2, .4, .8, 1.6, 3.2},
		}),
		queueDepth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "unhidra_auth_hash_queue_depth",
			Help: "Password hashes waiting for a pool slot.",
		}),
		hashing: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "unhidra_auth_hash_in_flight",
			Help: "Password hashes running now (at most the pool size).",
		}),
		refreshReuse: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "unhidra_auth_refresh_reuse_total",
			Help: "Rotated refresh tokens presented again (the session family was revoked).",
		}),
	}
	for _, o := range []string{OutcomeSuccess, OutcomeBadPassword, OutcomeRateLimited, OutcomeLocked, OutcomeDeviceLocked, OutcomeBusy, OutcomeRefused, OutcomeInvalid} {
		m.loginAttempts.WithLabelValues(o)
	}
	if reg != nil {
		reg.MustRegister(m.loginAttempts, m.hashSeconds, m.queueDepth, m.hashing, m.refreshReuse)
	}
	return m
}
