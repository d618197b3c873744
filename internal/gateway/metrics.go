package gateway

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/unhidra/unhidra/wire"
)

// The closed label sets, pre-created so every series is scraped at 0
// before its first event: principal kinds, handshake refusal reasons
// (Server.refuse) and close reasons (conn.closeLocked, conn.abort).
var (
	connectionKinds = []string{wire.KindUser, wire.KindDevice}
	refusalReasons  = []string{"ip_rate", "not_websocket", "version", "bad_key", "origin", "draining", "unauthorized", "unavailable", "user_limit", "internal"}
	closeReasons    = []string{"client", "flood", "going_away", "token_expired", "slow_consumer", "revoked", "binary", "protocol_error", "too_large", "invalid_utf8", "read", "closed", "dead_peer", "write", "close_timeout"}
)

// metrics are the gateway's Prometheus collectors.
type metrics struct {
	connections  *prometheus.GaugeVec   // kind
	handshakes   prometheus.Counter     // accepted
	refused      *prometheus.CounterVec // reason
	closes       *prometheus.CounterVec // reason
	framesIn     prometheus.Counter
	framesOut    prometheus.Counter
	writes       prometheus.Counter
	fanout       prometheus.Histogram
	slowConsumer prometheus.Counter
	rateLimited  prometheus.Counter

	queued atomic.Int64 // bytes queued over all connections
}

func newMetrics(reg prometheus.Registerer, maxQueued func() float64) (*metrics, error) {
	m := &metrics{
		connections: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "unhidra_gateway_connections", Help: "Open WebSocket connections by principal kind.",
		}, []string{"kind"}),
		handshakes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "unhidra_gateway_handshakes_accepted_total", Help: "WebSocket handshakes accepted.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "unhidra_gateway_handshakes_refused_total", Help: "WebSocket handshakes refused before the upgrade, by reason.",
		}, []string{"reason"}),
		closes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "unhidra_gateway_closes_total", Help: "WebSocket connections closed, by reason.",
		}, []string{"reason"}),
		framesIn: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "unhidra_gateway_frames_in_total", Help: "WebSocket data frames received.",
		}),
		framesOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "unhidra_gateway_frames_out_total", Help: "WebSocket frames written.",
		}),
		writes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "unhidra_gateway_socket_writes_total", Help: "Socket writes (one writev each) that carried the frames written; frames_out / writes is how well they are batched.",
		}),
		fanout: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "unhidra_gateway_fanout_seconds",
			Help:    "Time from a broker event's arrival to its enqueueing on every local subscriber.",
			Buckets: []float64{1e-6, 5e-6, 25e-6, 100e-6, 250e-6, 1e-3, 2.5e-3, 10e-3, 50e-3, 0.25},
		}),
		slowConsumer: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "unhidra_gateway_slow_consumer_closes_total", Help: "Connections closed with 4008 because their outbound queue passed its limit.",
		}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "unhidra_gateway_frames_rate_limited_total", Help: "Inbound frames refused by the per-connection rate limit.",
		}),
	}
	for _, k := range connectionKinds {
		m.connections.WithLabelValues(k)
	}
	for _, r := range refusalReasons {
		m.refused.WithLabelValues(r)
	}
	for _, r := range closeReasons {
		m.closes.WithLabelValues(r)
	}
	queued := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "unhidra_gateway_queued_bytes", Help: "Bytes waiting in outbound queues, summed over connections.",
	}, func() float64 { return float64(m.queued.Load()) })
	queuedMax := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "unhidra_gateway_queued_bytes_max", Help: "Bytes waiting in the fullest outbound queue.",
	}, maxQueued)
	for _, c := range []prometheus.Collector{m.connections, m.handshakes, m.refused, m.closes, m.framesIn, m.framesOut, m.writes, m.fanout, m.slowConsumer, m.rateLimited, queued, queuedMax} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
