package mqttbridge

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/unhidra/unhidra"
)

// The closed label sets, pre-created so every series is scraped at 0
// before its first event: the limits a CONNECT is refused by, and the error
// codes a publish is refused with.
var (
	connectLimits  = []string{"connect_rate", "connections_per_user"}
	rejectionCodes = unhidra.Codes()
)

type metrics struct {
	packetsIn    prometheus.Counter
	packetsOut   prometheus.Counter
	authFailures prometheus.Counter
	aclDenials   prometheus.Counter
	rejected     *prometheus.CounterVec
	revoked      prometheus.Counter
	dropped      prometheus.Counter
	limited      *prometheus.CounterVec
	qos0Queued   prometheus.Counter
	qos0Waited   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, s *Server) (*metrics, error) {
	m := &metrics{
		packetsIn: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "unhidra_mqtt_packets_received_total", Help: "MQTT control packets received from clients.",
		}),
		packetsOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "unhidra_mqtt_packets_sent_total", Help: "MQTT control packets sent to clients.",
		}),
		authFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "unhidra_mqtt_auth_failures_total", Help: "MQTT connections refused for bad credentials.",
		}),
		aclDenials: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "unhidra_mqtt_acl_denials_total", Help: "MQTT publishes and subscriptions refused by the ACL.",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "unhidra_mqtt_publish_rejected_total", Help: "MQTT publishes the services refused, by error code.",
		}, []string{"code"}),
		revoked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "unhidra_mqtt_revoked_total", Help: "MQTT sessions closed because their credential was revoked.",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "unhidra_mqtt_bridge_dropped_total", Help: "Bridge events dropped because the bridge queue was full.",
		}),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "unhidra_mqtt_connections_refused_total", Help: "MQTT CONNECTs refused by a limit: connect_rate (per IP) or connections_per_user.",
		}, []string{"limit"}),
		qos0Queued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "unhidra_mqtt_qos0_telemetry_queued_total", Help: "QoS 0 telemetry points handed to the group commit without waiting for it.",
		}),
		qos0Waited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "unhidra_mqtt_qos0_telemetry_waited_total", Help: "QoS 0 telemetry points stored synchronously because too many were already queued (backpressure).",
		}),
	}
	for _, l := range connectLimits {
		m.limited.WithLabelValues(l)
	}
	for _, c := range rejectionCodes {
		m.rejected.WithLabelValues(c)
	}
	conns := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "unhidra_mqtt_connections", Help: "Authenticated MQTT connections.",
	}, func() float64 { return float64(s.Connections()) })
	// Deliveries mochi drops: to a subscriber with MaximumInflight QoS > 0
	// messages unacknowledged, or whose write queue is full. What was
	// dropped is still stored (channel history, telemetry queries).
	dropped := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "unhidra_mqtt_deliveries_dropped_total", Help: "Deliveries to MQTT subscribers dropped because the subscriber did not keep up (in-flight window or write queue full).",
	}, func() float64 {
		if s.mq == nil || s.mq.Info == nil {
			return 0
		}
		return float64(atomic.LoadInt64(&s.mq.Info.InflightDropped) + atomic.LoadInt64(&s.mq.Info.MessagesDropped))
	})
	cs := []prometheus.Collector{dropped, m.packetsIn, m.packetsOut, m.authFailures, m.aclDenials, m.rejected, m.revoked, m.dropped, m.limited, m.qos0Queued, m.qos0Waited, conns}
	if nw := s.noWait; nw != nil {
		cs = append(cs,
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "unhidra_mqtt_qos0_telemetry_lost_total", Help: "QoS 0 telemetry points queued without waiting whose commit then failed.",
			}, func() float64 { return float64(nw.TelemetryNoWaitFailures()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "unhidra_mqtt_qos0_telemetry_in_flight", Help: "QoS 0 telemetry points queued without waiting and not committed yet.",
			}, func() float64 { return float64(nw.TelemetryInFlight()) }))
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
