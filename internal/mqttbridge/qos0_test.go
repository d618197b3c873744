package mqttbridge_test

import (
	"fmt"
	"testing"
)

// TestQoS0TelemetryIsStoredInOrderWithQoS1 covers the QoS 0 early return:
// QoS 0 points are queued for the group commit without waiting for it, yet
// stored, in publish order, and ahead of a later QoS 1 point of the same
// connection — so once that PUBACK arrives every earlier QoS 0 point is
// stored, each with its device-channel message.
func TestQoS0TelemetryIsStoredInOrderWithQoS1(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	d := mustV5(t, h.srv.Addr(), "q0", "d1", h.keys["d1"])
	const n = 300
	for i := range n {
		if _, err := d.pub(t, "unhidra/devices/d1/telemetry", 0, false, fmt.Sprintf(`{"data":{"v":%d},"seq":%d}`, i, i)); err != nil {
			t.Fatal(err)
		}
	}
	if rc, err := d.pub(t, "unhidra/devices/d1/telemetry", 1, false, fmt.Sprintf(`{"data":{"v":%d},"seq":%d}`, n, n)); err != nil || rc != 0 {
		t.Fatalf("QoS 1 PUBACK 0x%02x %v", rc, err)
	}
	if got := h.count(`SELECT COUNT(*) FROM telemetry WHERE device_id = 'd1'`); got != n+1 {
		t.Fatalf("%d points stored when the PUBACK of the last arrived, want %d", got, n+1)
	}
	if got := h.count(`SELECT COUNT(*) FROM messages WHERE channel_id = 'device:d1' AND json_extract(CAST(data AS TEXT), '$.type') = 'telemetry'`); got != n+1 {
		t.Fatalf("%d telemetry messages in device:d1, want %d", got, n+1)
	}
	if bad := h.count(`SELECT COUNT(*) FROM (SELECT seq, LAG(seq) OVER (ORDER BY id) AS prev FROM telemetry WHERE device_id = 'd1') WHERE prev IS NOT NULL AND seq <> prev + 1`); bad != 0 {
		t.Fatalf("%d points stored out of publish order", bad)
	}
	if q := metricValue(t, h, "unhidra_mqtt_qos0_telemetry_queued_total", "") + metricValue(t, h, "unhidra_mqtt_qos0_telemetry_waited_total", ""); q != n {
		t.Fatalf("queued + waited = %v, want %d", q, n)
	}
	if q := metricValue(t, h, "unhidra_mqtt_qos0_telemetry_queued_total", ""); q == 0 {
		t.Fatal("no QoS 0 point took the early return")
	}
	if lost := metricValue(t, h, "unhidra_mqtt_qos0_telemetry_lost_total", ""); lost != 0 {
		t.Fatalf("%v QoS 0 points lost", lost)
	}
}
