package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/e2etest"
	"github.com/unhidra/unhidra/internal/ml"
	"github.com/unhidra/unhidra/internal/ml/mltest"
	"github.com/unhidra/unhidra/wire"
)

func mlHealth(t *testing.T, s *stack) ml.Health {
	t.Helper()
	r := s.authAPI(t, "GET", "/internal/ml/health", "", nil)
	e2etest.WantStatus(t, r, 200, "ml health")
	var h ml.Health
	r.JSON(t, &h)
	return h
}

func waitML(t *testing.T, s *stack, what string, cond func(ml.Health) bool) ml.Health {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		h := mlHealth(t, s)
		if cond(h) {
			return h
		}
		if time.Now().After(deadline) {
			t.Fatalf("ml health never %s: %+v", what, h)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestMLSidecarEndToEnd: `serve` with the shipped worker. An MQTT device's
// telemetry is scored; a spike becomes an alert message in device:D, from
// the device, within 2 s of its PUBACK, seen live by the owner on the
// WebSocket; the worker killed -9 mid-stream is restarted while the device
// keeps publishing, every point is stored and every reading scored, and
// the next spike is caught again.
func TestMLSidecarEndToEnd(t *testing.T) {
	s := startStack(t, map[string]string{
		"UNHIDRA_SERVICES": "auth,gateway,mqtt,ml",
		"ML_WORKER_CMD":    mltest.Command(t),
		"ML_SOCKET_PATH":   mltest.Socket(t),
		"ML_TIMEOUT_MS":    "2000",
	})
	h := waitML(t, s, "up", func(h ml.Health) bool { return h.Status == "up" })
	firstPID := h.PID

	alice, _ := s.user(t, "alice")
	key := s.device(t, alice, "probe-1")
	dm := e2etest.MustMQTT(t, s.mqtt, "probe-1-c", "probe-1", key)
	if rc := dm.Publish(t, "unhidra/devices/probe-1/heartbeat", []byte(`{"device_id":"probe-1","ts":1}`)); rc != 0 {
		t.Fatalf("heartbeat PUBACK 0x%02x", rc)
	}
	wa := e2etest.DialWS(t, s.wsURL, "unhidra.v1, bearer."+alice)
	wa.Send(t, map[string]any{"type": "subscribe", "channel": "device:probe-1"})
	wa.Until(t, wire.TypeSubscribed, 10*time.Second)

	r := rand.New(rand.NewPCG(1, 2))
	seq := 0
	send := func(temp float64) {
		t.Helper()
		seq++
		p := fmt.Sprintf(`{"data":{"temp_c":%.2f,"ok":true},"seq":%d}`, temp, seq)
		if rc := dm.Publish(t, "unhidra/devices/probe-1/telemetry", []byte(p)); rc != 0 {
			t.Fatalf("PUBACK 0x%02x for reading %d", rc, seq)
		}
	}
	normal := func(n int) {
		for range n {
			send(21 + 0.2*r.NormFloat64())
		}
	}
	// nextAlert reads the owner's live messages until an alert arrives.
	nextAlert := func(within time.Duration) (ml.Alert, wire.Message) {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			f, err := wa.TryRead(time.Until(deadline))
			if err != nil {
				t.Fatalf("no alert within %v: %v", within, err)
			}
			if f.Type != wire.TypeMessage {
				continue
			}
			m := f.Msg(t)
			var a ml.Alert
			if json.Unmarshal(m.Data, &a) == nil && a.Alert == "anomaly" {
				return a, m
			}
		}
	}

	normal(40)
	send(80)
	sent := time.Now()
	a, m := nextAlert(2 * time.Second)
	t.Logf("alert %v after the spike's PUBACK", time.Since(sent).Round(time.Millisecond))
	if a.Metric != "temp_c" || a.Value != 80 || a.Score <= 0 || a.Model != "anomaly" || m.Sender.Kind != wire.KindDevice || m.Sender.ID != "probe-1" {
		t.Fatalf("alert %+v from %v", a, m.Sender)
	}

	// Kill the worker mid-stream; the device keeps publishing.
	if err := syscall.Kill(firstPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	normal(100)
	waitML(t, s, "restarted", func(h ml.Health) bool { return h.Status == "up" && h.Restarts >= 1 && h.PID != firstPID })
	normal(30)
	total := seq
	h = waitML(t, s, "done scoring", func(h ml.Health) bool { return h.Scored >= uint64(total) && h.Queue == 0 })
	if h.Scored != uint64(total) || h.Failed != 0 || h.Dropped != 0 {
		t.Fatalf("over the restart: %d readings sent, health %+v", total, h)
	}
	tr := s.api(t, "GET", "/api/v1/devices/probe-1/telemetry?limit=10000", alice, nil)
	e2etest.WantStatus(t, tr, 200, "telemetry")
	if n := strings.Count(string(tr.Body), `"temp_c"`); n != total {
		t.Fatalf("%d points stored, %d sent", n, total)
	}

	// The restarted worker learns the series again and catches the next spike.
	send(-40)
	if a, _ := nextAlert(5 * time.Second); a.Value != -40 {
		t.Fatalf("alert after the restart: %+v", a)
	}
	// The alerts are in the channel's history too.
	hr := s.api(t, "GET", "/api/v1/channels/device:probe-1/messages?limit=200", alice, nil)
	e2etest.WantStatus(t, hr, 200, "history")
	if n := strings.Count(string(hr.Body), `"alert":"anomaly"`); n < 2 {
		t.Fatalf("%d alerts in history, want 2", n)
	}
}
