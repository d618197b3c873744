package device

import "github.com/prometheus/client_golang/prometheus"

// fleetMetrics are the Fleet's Prometheus collectors.
type fleetMetrics struct {
	telemetryStored prometheus.Counter
	commands        *prometheus.CounterVec
}

// CommandStatuses are every status a command can reach, the label values
// of unhidra_device_commands_total.
var CommandStatuses = []string{CommandPending, CommandDelivered, CommandOK, CommandError, CommandTimeout}

// newFleetMetrics creates the collectors and registers them, with the
// devices-online gauge that reads f, on reg (nil: not registered). Every
// status label value exists from the start, at 0.
func newFleetMetrics(reg prometheus.Registerer, f *Fleet) *fleetMetrics {
	m := &fleetMetrics{
		telemetryStored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "unhidra_telemetry_points_stored_total",
			Help: "Telemetry points committed to the store (each at most once per arrival; a device's retry after a refused ack counts again).",
		}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "unhidra_device_commands_total",
			Help: "Device commands by the status they entered: pending (sent), delivered, ok, error, timeout.",
		}, []string{"status"}),
	}
	for _, s := range CommandStatuses {
		m.commands.WithLabelValues(s)
	}
	if reg != nil {
		online := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "unhidra_devices_online",
			Help: "Devices this node has marked online: with a live WebSocket or MQTT connection, or within the offline grace after their last one ended.",
		}, func() float64 { return float64(f.DevicesOnline()) })
		reg.MustRegister(m.telemetryStored, m.commands, online)
	}
	return m
}

// commandStatus counts n commands entering status.
func (m *fleetMetrics) commandStatus(status string, n int) {
	if n > 0 {
		m.commands.WithLabelValues(status).Add(float64(n))
	}
}
