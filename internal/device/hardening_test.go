package device_test

// Issue 7's device items: ids are case-insensitive, a revoked device takes
// no commands and its lingering sessions can do nothing, the fleet's
// metrics and its connect/disconnect log.

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/broker"
	"github.com/unhidra/unhidra/internal/device"
	"github.com/unhidra/unhidra/internal/sqlite"
)

func TestRegistryDeviceIDsAreCaseInsensitive(t *testing.T) {
	r := newRegEnv(t)
	d, key, err := r.svc.Register(regCtx, regAlice, device.RegisterInput{Name: "greenhouse", ID: "GH-1"})
	if err != nil || d.ID != "gh-1" {
		t.Fatalf("register GH-1: %+v %v, want it stored as gh-1", d, err)
	}
	for _, id := range []string{"gh-1", "Gh-1", "GH-1"} {
		if _, _, err := r.svc.Register(regCtx, regBob, device.RegisterInput{Name: "other", ID: id}); regCode(err) != unhidra.ECONFLICT {
			t.Errorf("register %s after GH-1: %v, want conflict", id, err)
		}
	}
	who, err := r.svc.AuthenticateDeviceKey(regCtx, key)
	if err != nil || who.Principal.ID != "gh-1" {
		t.Fatalf("key auth: %+v %v", who, err)
	}
	if got, err := r.svc.Get(regCtx, regAlice, "GH-1"); err != nil || got.ID != "gh-1" {
		t.Errorf("alice gets GH-1: %+v %v", got, err)
	}
	if got, err := r.svc.Get(regCtx, who, "gH-1"); err != nil || got.ID != "gh-1" {
		t.Errorf("the device gets itself as gH-1: %+v %v", got, err)
	}
	if _, err := r.svc.Get(regCtx, regBob, "GH-1"); regCode(err) != unhidra.ENOTFOUND {
		t.Errorf("bob gets GH-1: %v, want not_found", err)
	}
	if owner, err := r.svc.DeviceOwner(regCtx, "GH-1"); err != nil || owner != "alice" {
		t.Errorf("DeviceOwner(GH-1) = %q, %v", owner, err)
	}
	if err := r.svc.Revoke(regCtx, regAlice, "GH-1"); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	revs := append([]broker.Revocation(nil), r.revs...)
	r.mu.Unlock()
	// Transports close sessions whose principal id equals the event's.
	if len(revs) != 1 || revs[0].ID != "gh-1" {
		t.Errorf("revocation events %+v, want one for gh-1 (the canonical id)", revs)
	}
}

// fleetOn returns a fleet on the registry's database and broker, with the
// registry as its Owners (as `unhidra serve` wires it).
func fleetOn(t *testing.T, r *regEnv, reg prometheus.Registerer, log *slog.Logger) (*device.Fleet, *fleetClock) {
	t.Helper()
	c := &fleetClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	f := device.NewFleet(device.FleetOptions{Store: sqlite.NewFleetStore(r.db), Broker: r.bus, Owners: r.svc, Now: c.Now, Registerer: reg, Logger: log})
	return f, c
}

func TestARevokedDeviceTakesNoCommandsAndItsSessionsDoNothing(t *testing.T) {
	r := newRegEnv(t)
	d, key, err := r.svc.Register(regCtx, regAlice, device.RegisterInput{Name: "pump", ID: "pump-1"})
	if err != nil {
		t.Fatal(err)
	}
	who, err := r.svc.AuthenticateDeviceKey(regCtx, key)
	if err != nil {
		t.Fatal(err)
	}
	f, _ := fleetOn(t, r, nil, nil)
	other, _ := fleetOn(t, r, nil, nil) // another node, where the device only posts telemetry
	if err := f.Connected(regCtx, d.ID); err != nil {
		t.Fatal(err)
	}
	point := device.TelemetryPoint{Data: json.RawMessage(`{"bar":2}`)}
	if _, err := other.Telemetry(regCtx, who, point); err != nil {
		t.Fatal(err)
	}
	cmd, err := f.SendCommand(regCtx, regAlice, d.ID, "ping", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.svc.Revoke(regCtx, regAlice, d.ID); err != nil {
		t.Fatal(err)
	}

	for _, u := range []struct {
		name string
		who  unhidra.Identity
	}{{"owner", regAlice}, {"admin", regRoot}} {
		if _, err := f.SendCommand(regCtx, u.who, "PUMP-1", "ping", nil, 0); regCode(err) != unhidra.ECONFLICT {
			t.Errorf("%s sends a command to the revoked device: %v, want conflict", u.name, err)
		}
	}
	// The session that outlived the revocation (its transport has not closed
	// it yet): the store refuses to show it online again, and from then on
	// the fleet refuses everything else it sends.
	if err := f.Heartbeat(regCtx, who, device.Heartbeat{}); regCode(err) != unhidra.EFORBIDDEN {
		t.Errorf("heartbeat after revocation: %v, want forbidden", err)
	}
	if dev, _ := r.svc.Get(regCtx, regAlice, d.ID); dev.Online {
		t.Error("the revoked device shows online after a heartbeat")
	}
	if _, err := f.Telemetry(regCtx, who, point); regCode(err) != unhidra.EFORBIDDEN {
		t.Errorf("telemetry after revocation: %v, want forbidden", err)
	}
	if _, err := f.TelemetryNoWait(regCtx, who, point); regCode(err) != unhidra.EFORBIDDEN {
		t.Errorf("QoS 0 telemetry after revocation: %v, want forbidden", err)
	}
	if err := f.CommandResult(regCtx, who, device.CommandResult{CommandID: cmd.ID, Status: device.CommandOK}); regCode(err) != unhidra.EFORBIDDEN {
		t.Errorf("command result after revocation: %v, want forbidden", err)
	}
	if err := f.Status(regCtx, who, []byte(`{"online":true}`)); regCode(err) != unhidra.EFORBIDDEN {
		t.Errorf("status after revocation: %v, want forbidden", err)
	}
	if err := f.Connected(regCtx, d.ID); regCode(err) != unhidra.EFORBIDDEN {
		t.Errorf("a new connection after revocation: %v, want forbidden", err)
	}
	if n := f.DevicesOnline(); n != 0 {
		t.Errorf("DevicesOnline = %d after the revocation, want 0", n)
	}
	// The other node learns it from the revocation event.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := other.Telemetry(regCtx, who, point)
		if regCode(err) == unhidra.EFORBIDDEN {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the other node still takes the revoked device's telemetry: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestFleetDeviceIDsAreCaseInsensitive(t *testing.T) {
	r := newRegEnv(t)
	d, key, err := r.svc.Register(regCtx, regAlice, device.RegisterInput{Name: "gh", ID: "gh-2"})
	if err != nil {
		t.Fatal(err)
	}
	who, _ := r.svc.AuthenticateDeviceKey(regCtx, key)
	f, _ := fleetOn(t, r, nil, nil)
	if err := f.Heartbeat(regCtx, who, device.Heartbeat{DeviceID: "GH-2"}); err != nil {
		t.Errorf("a heartbeat naming itself GH-2: %v", err)
	}
	if _, err := f.Telemetry(regCtx, who, device.TelemetryPoint{DeviceID: "Gh-2", Data: json.RawMessage(`{"t":1}`)}); err != nil {
		t.Errorf("telemetry naming itself Gh-2: %v", err)
	}
	for _, u := range []unhidra.Identity{regAlice, who} {
		pts, err := f.QueryTelemetry(regCtx, u, "GH-2", time.Time{}, time.Time{}, 0)
		if err != nil || len(pts) != 1 {
			t.Errorf("%s queries GH-2: %d points, %v; want gh-2's one", u.Principal.ID, len(pts), err)
		}
	}
	c, err := f.SendCommand(regCtx, regAlice, "GH-2", "ping", nil, 0)
	if err != nil || c.DeviceID != d.ID {
		t.Fatalf("command to GH-2: %+v %v", c, err)
	}
	if pending, _ := f.PendingCommands(regCtx, d.ID); len(pending) != 1 {
		t.Errorf("gh-2 has %d pending commands, want the one sent to GH-2", len(pending))
	}
	if _, err := f.GetCommand(regCtx, who, "GH-2", c.ID); err != nil {
		t.Errorf("the device reads its command as GH-2: %v", err)
	}
	if _, err := f.SendCommand(regCtx, regBob, "GH-2", "ping", nil, 0); regCode(err) != unhidra.EFORBIDDEN {
		t.Errorf("bob commands GH-2: %v, want forbidden", err)
	}
}

// metricValue gathers one series from reg: name with label=value (label ""
// for a series without labels). ok is false when the series does not exist.
func metricValue(t *testing.T, reg *prometheus.Registry, name, label, value string) (v float64, ok bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := label == ""
			for _, l := range m.GetLabel() {
				match = match || (l.GetName() == label && l.GetValue() == value)
			}
			if !match {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue(), true
			case m.Gauge != nil:
				return m.Gauge.GetValue(), true
			}
		}
	}
	return 0, false
}

func TestFleetMetrics(t *testing.T) {
	r := newRegEnv(t)
	d, key, err := r.svc.Register(regCtx, regAlice, device.RegisterInput{Name: "meter", ID: "meter-1"})
	if err != nil {
		t.Fatal(err)
	}
	who, _ := r.svc.AuthenticateDeviceKey(regCtx, key)
	reg := prometheus.NewRegistry()
	f, clock := fleetOn(t, r, reg, nil)
	want := func(what, name, label, value string, v float64) {
		t.Helper()
		got, ok := metricValue(t, reg, name, label, value)
		if !ok || got != v {
			t.Errorf("%s: %s{%s=%q} = %v (exists %v), want %v", what, name, label, value, got, ok, v)
		}
	}
	t.Run("every series exists from the start at 0", func(t *testing.T) {
		want("start", "unhidra_devices_online", "", "", 0)
		want("start", "unhidra_telemetry_points_stored_total", "", "", 0)
		for _, s := range device.CommandStatuses {
			want("start", "unhidra_device_commands_total", "status", s, 0)
		}
	})
	t.Run("devices online follow connections", func(t *testing.T) {
		f.Connected(regCtx, d.ID)
		f.Connected(regCtx, d.ID)
		want("two connections of one device", "unhidra_devices_online", "", "", 1)
		f.Disconnected(regCtx, d.ID)
		want("one connection left", "unhidra_devices_online", "", "", 1)
		f.Disconnected(regCtx, d.ID)
		want("none left", "unhidra_devices_online", "", "", 0)
	})
	t.Run("stored telemetry points are counted, refused ones not", func(t *testing.T) {
		for i := 0; i < 3; i++ {
			if _, err := f.Telemetry(regCtx, who, device.TelemetryPoint{Data: json.RawMessage(`{"kwh":1}`)}); err != nil {
				t.Fatal(err)
			}
		}
		f.Telemetry(regCtx, who, device.TelemetryPoint{Data: json.RawMessage(`[1]`)})
		want("3 stored, 1 refused", "unhidra_telemetry_points_stored_total", "", "", 3)
	})
	t.Run("commands are counted by the status they enter", func(t *testing.T) {
		answer := func(status string) {
			c, err := f.SendCommand(regCtx, regAlice, d.ID, "ping", nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			if moved, err := f.CommandDelivered(regCtx, d.ID, c.ID); !moved || err != nil {
				t.Fatalf("delivered: %v %v", moved, err)
			}
			f.CommandDelivered(regCtx, d.ID, c.ID) // a second claim moves nothing
			if err := f.CommandResult(regCtx, who, device.CommandResult{CommandID: c.ID, Status: status}); err != nil {
				t.Fatal(err)
			}
			f.CommandResult(regCtx, who, device.CommandResult{CommandID: c.ID, Status: status}) // a retransmission
		}
		answer(device.CommandOK)
		answer(device.CommandError)
		if _, err := f.SendCommand(regCtx, regAlice, d.ID, "ping", nil, time.Second); err != nil {
			t.Fatal(err)
		}
		clock.Add(2 * time.Second)
		if n, err := f.ExpireCommands(regCtx); n != 1 || err != nil {
			t.Fatalf("expired %d, %v", n, err)
		}
		for status, n := range map[string]float64{"pending": 3, "delivered": 2, "ok": 1, "error": 1, "timeout": 1} {
			want("after three commands", "unhidra_device_commands_total", "status", status, n)
		}
	})
}

func TestFleetLogsDeviceConnectsAtInfo(t *testing.T) {
	r := newRegEnv(t)
	d, key, err := r.svc.Register(regCtx, regAlice, device.RegisterInput{Name: "door", ID: "door-1"})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	f, _ := fleetOn(t, r, nil, log)
	ctx := device.WithTransport(regCtx, "mqtt")
	f.Connected(ctx, d.ID)
	f.Disconnected(ctx, d.ID)
	// The WebSocket transport names itself the same way
	// (gateway.DeviceFrames, tested there).
	who, _ := r.svc.AuthenticateDeviceKey(regCtx, key)
	ws := device.WithTransport(regCtx, "websocket")
	if err := f.Connected(ws, who.Principal.ID); err != nil {
		t.Fatal(err)
	}
	f.Disconnected(ws, who.Principal.ID)

	type line struct {
		Level, Msg, Device, Transport string
	}
	var got []line
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var v line
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if v.Msg == "device connected" || v.Msg == "device disconnected" {
			got = append(got, v)
		}
	}
	wantLines := []line{
		{"INFO", "device connected", "door-1", "mqtt"}, {"INFO", "device disconnected", "door-1", "mqtt"},
		{"INFO", "device connected", "door-1", "websocket"}, {"INFO", "device disconnected", "door-1", "websocket"},
	}
	if len(got) != len(wantLines) {
		t.Fatalf("connect/disconnect lines %+v, want %+v\nlog:\n%s", got, wantLines, buf.String())
	}
	for i := range wantLines {
		if got[i] != wantLines[i] {
			t.Errorf("line %d = %+v, want %+v", i, got[i], wantLines[i])
		}
	}
	if strings.Contains(buf.String(), key) || strings.Contains(buf.String(), device.KeyPrefix) {
		t.Error("the device key reached the log")
	}
}
