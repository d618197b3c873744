package ml

import (
	"slices"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Health is what /internal/ml/health answers (SPEC: status, restarts,
// last_error; the rest are the bridge's counts since start).
type Health struct {
	Status    string  `json:"status"` // up, down or disabled
	Restarts  int64   `json:"restarts"`
	LastError *string `json:"last_error"`
	PID       int     `json:"pid,omitempty"`
	Model     string  `json:"model"`
	Version   string  `json:"version,omitempty"`
	// Series is how many series (device, metric) the worker tracks.
	Series int64 `json:"series"`
	// Queue is the points waiting for the model now.
	Queue int64 `json:"queue"`
	// Scored, Failed and Dropped count readings scored, readings whose
	// request failed (timeout, error, worker down past MaxHold) and points
	// dropped for a full queue.
	Scored  uint64 `json:"scored"`
	Failed  uint64 `json:"failed"`
	Dropped uint64 `json:"dropped"`
	// Timeouts and Errors count requests.
	Timeouts uint64 `json:"timeouts"`
	Errors   uint64 `json:"errors"`
	Alerts   uint64 `json:"alerts"`
	// LatencyP50MS and LatencyP99MS are over the latest 1,024 requests.
	LatencyP50MS float64 `json:"latency_p50_ms"`
	LatencyP99MS float64 `json:"latency_p99_ms"`
}

// Disabled is the health of a node without a worker.
func Disabled() Health { return Health{Status: "disabled", Model: DefaultModel} }

// Health reports the worker's state: up when the worker process runs and
// its latest request or ping was answered.
func (b *Bridge) Health() Health {
	h := Health{Status: "down", Model: b.o.Model, Queue: b.queued(), Series: b.series.Load()}
	h.Version, _ = b.version.Load().(string)
	running := b.running.Load()
	if s := b.o.Supervisor; s != nil {
		st := s.State()
		h.Restarts, h.PID = st.Restarts, st.PID
		running = running && st.Running
		if !st.Running {
			h.PID = 0
		}
		if st.LastErr != "" {
			h.LastError = &st.LastErr
		}
	}
	if running && b.healthy.Load() {
		h.Status = "up"
	}
	b.errMu.Lock()
	if b.lastErr != "" {
		e := b.lastErr
		h.LastError = &e
	}
	b.errMu.Unlock()
	c := &b.counts
	h.Scored, h.Failed, h.Dropped = c.scored.Load(), c.failed.Load(), c.dropped.Load()
	h.Timeouts, h.Errors, h.Alerts = c.timeouts.Load(), c.errors.Load(), c.alerts.Load()
	b.latMu.Lock()
	lat := slices.Clone(b.lat[:min(b.latN, len(b.lat))])
	b.latMu.Unlock()
	if len(lat) > 0 {
		slices.Sort(lat)
		h.LatencyP50MS = lat[len(lat)/2]
		h.LatencyP99MS = lat[min(len(lat)-1, len(lat)*99/100)]
	}
	return h
}

// counts are the bridge's own counts, which Health reports (the
// Prometheus metrics count the same events).
type counts struct {
	scored, failed, dropped  atomic.Uint64
	timeouts, errors, alerts atomic.Uint64
}

type metrics struct {
	requests *prometheus.CounterVec
	alerts   *prometheus.CounterVec
	latency  prometheus.Histogram
	scored   prometheus.Counter
	failed   prometheus.Counter
	invalid  prometheus.Counter
	dropped  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, b *Bridge) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "unhidra_ml_requests_total",
			Help: "Requests to the ML worker by outcome (ok, error, timeout, unavailable, protocol)."}, []string{"outcome"}),
		alerts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "unhidra_ml_alerts_total",
			Help: "Anomaly alerts by outcome (posted, suppressed, failed)."}, []string{"outcome"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "unhidra_ml_request_duration_seconds",
			Help:    "Time from sending a request to the ML worker to its answer.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}}),
		scored: prometheus.NewCounter(prometheus.CounterOpts{Name: "unhidra_ml_readings_scored_total",
			Help: "Telemetry readings the ML worker scored."}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{Name: "unhidra_ml_readings_failed_total",
			Help: "Telemetry readings not scored because their request failed."}),
		invalid: prometheus.NewCounter(prometheus.CounterOpts{Name: "unhidra_ml_readings_invalid_total",
			Help: "Telemetry readings the model refused as invalid."}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "unhidra_ml_points_dropped_total",
			Help: "Telemetry points not scored because the ML queue was full."}),
	}
	for _, o := range []string{"ok", "error", "timeout", "unavailable", "protocol"} {
		m.requests.WithLabelValues(o)
	}
	for _, o := range []string{"posted", "suppressed", "failed"} {
		m.alerts.WithLabelValues(o)
	}
	if reg == nil {
		return m
	}
	reg.MustRegister(m.requests, m.alerts, m.latency, m.scored, m.failed, m.invalid, m.dropped,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "unhidra_ml_queue_points",
			Help: "Telemetry points waiting for the ML worker."}, func() float64 { return float64(b.queued()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "unhidra_ml_worker_up",
			Help: "1 when the ML worker runs and answers."}, func() float64 {
			if b.Health().Status == "up" {
				return 1
			}
			return 0
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "unhidra_ml_worker_restarts_total",
			Help: "Restarts of the ML worker process."}, func() float64 {
			if b.o.Supervisor == nil {
				return 0
			}
			return float64(b.o.Supervisor.State().Restarts)
		}))
	return m
}
