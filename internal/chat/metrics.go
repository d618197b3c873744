package chat

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/unhidra/unhidra"
)

// metrics are the chat service's Prometheus collectors; nil-safe.
type metrics struct {
	stored     prometheus.Counter
	duplicates prometheus.Counter
	failures   *prometheus.CounterVec
	batch      prometheus.Histogram
	commit     prometheus.Histogram
	sync       prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	if reg == nil {
		return nil
	}
	m := &metrics{
		stored: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "unhidra_chat_messages_stored_total", Help: "Messages stored (acked) by the chat service.",
		})),
		duplicates: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "unhidra_chat_publish_duplicates_total", Help: "Publishes answered with an earlier ack (repeated client_msg_id).",
		})),
		failures: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "unhidra_chat_commit_failures_total", Help: "Group commits that stored nothing, by error code.",
		}, []string{"code"})),
		batch: register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "unhidra_chat_commit_batch_size", Help: "Appends per group-commit transaction.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512},
		})),
		commit: register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "unhidra_chat_commit_seconds", Help: "Duration of one group-commit transaction (its flush to disk included unless the store defers it).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		})),
		sync: register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "unhidra_chat_sync_seconds", Help: "Duration of one flush to disk of deferred group commits (it covers every batch committed before it).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		})),
	}
	for _, c := range unhidra.Codes() {
		m.failures.WithLabelValues(c) // every series at 0 from the start
	}
	return m
}

// register registers c, or returns the collector already registered under
// the same name (several services on one registry).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}
