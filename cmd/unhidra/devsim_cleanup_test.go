package main

import (
	"context"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/e2etest"
	"github.com/unhidra/unhidra/internal/load"
)

var devsimDoneLine = regexp.MustCompile(`devsim: done devices=(\d+) connected_once=(\d+) telemetry=(\d+) acked=(\d+) commands=(\d+) answered=(\d+) failures=(\d+) errors=(\d+) revoked=(\d+) duration=\S+`)

// A fleet run to its end prints what it did and, with --cleanup, leaves no
// device it made able to connect.
func TestDevsimPrintsASummaryAndCleansUpItsDevices(t *testing.T) {
	port, _ := e2etest.FreePort()
	s := startDeviceServer(t, map[string]string{"UNHIDRA_SERVICES": "auth,gateway,mqtt", "MQTT_PORT": strconv.Itoa(port)})
	admin := s.login(t, "admin", s.adminPW).AccessToken
	keys := filepath.Join(t.TempDir(), "fleet.keys")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out string
	var runErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		out, runErr = runCmd(t, ctx, "devsim", "--devices", "3", "--transport", "mixed", "--interval", "200ms",
			"--url", s.wsURL(), "--mqtt-url", "tcp://127.0.0.1:"+strconv.Itoa(port), "--auth-url", s.url,
			"--admin-password", s.adminPW, "--save-keys", keys, "--report", "1s", "--duration", "60s", "--cleanup")
	}()
	var devs []load.Device
	deadline := time.Now().Add(20 * time.Second)
	for len(devs) < 3 {
		if time.Now().After(deadline) {
			t.Fatal("devsim did not write its keys")
		}
		time.Sleep(50 * time.Millisecond)
		devs, _ = load.ReadKeysFile(keys)
	}
	for _, d := range devs {
		e2etest.Secret("device key", d.Key)
	}

	// One command to a device on each transport (mixed: even on WebSocket,
	// odd on MQTT), answered before the fleet stops.
	for _, id := range []string{devs[0].ID, devs[1].ID} {
		var cmd struct {
			CommandID string `json:"command_id"`
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			if cmd.CommandID == "" {
				r := s.gw(t, "POST", "/api/v1/devices/"+id+"/commands", admin, map[string]any{"name": "ping", "timeout_s": 30})
				s.want(t, r, http.StatusAccepted, "send ping")
				r.JSON(t, &cmd)
			}
			var st struct {
				Status string `json:"status"`
			}
			s.gw(t, "GET", "/api/v1/devices/"+id+"/commands/"+cmd.CommandID, admin, nil).JSON(t, &st)
			if st.Status == "ok" {
				break
			}
			if st.Status == "timeout" || st.Status == "error" || time.Now().After(deadline) {
				t.Fatalf("device %s: command status %q", id, st.Status)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// Telemetry from every device before it stops.
	deadline = time.Now().Add(15 * time.Second)
	for _, d := range devs {
		for len(s.telemetry(t, admin, d.ID)) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("device %s has no stored telemetry", d.ID)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	cancel() // as Ctrl-C does
	<-done
	if runErr != nil {
		t.Fatalf("devsim: %v\n%s", runErr, out)
	}

	t.Run("the summary counts the devices, telemetry and commands", func(t *testing.T) {
		for _, w := range []string{"devsim: summary after ", "  devices    3 (ws 2, mqtt 1): 3 connected at least once",
			"  commands   2 received, 2 answered (2 ok, 0 error)", "  cleanup    3 of 3 devices revoked"} {
			if !strings.Contains(out, w) {
				t.Errorf("output lacks %q:\n%s", w, out)
			}
		}
		if last := lastLine(out); !devsimDoneLine.MatchString(last) {
			t.Fatalf("last line %q, want the totals:\n%s", last, out)
		}
		m := devsimDoneLine.FindStringSubmatch(lastLine(out))
		n := func(i int) int { v, _ := strconv.Atoi(m[i]); return v }
		if n(1) != 3 || n(2) != 3 || n(5) != 2 || n(6) != 2 || n(8) != 0 || n(9) != 3 {
			t.Errorf("totals %q, want 3 devices, all connected, 2 commands answered, no errors, 3 revoked", m[0])
		}
		if n(4) < 3 || n(3) < n(4) {
			t.Errorf("telemetry=%d acked=%d: want at least one acked point per device, and no more acked than generated", n(3), n(4))
		}
	})

	t.Run("after --cleanup every device it made is revoked and its key refused", func(t *testing.T) {
		var list struct {
			Devices []struct {
				DeviceID string `json:"device_id"`
				Revoked  bool   `json:"revoked"`
			} `json:"devices"`
		}
		r := s.call(t, "GET", "/devices", admin, nil)
		s.want(t, r, http.StatusOK, "list devices")
		r.JSON(t, &list)
		revoked := map[string]bool{}
		for _, d := range list.Devices {
			revoked[d.DeviceID] = d.Revoked
		}
		for _, d := range devs {
			if got, ok := revoked[d.ID]; !ok || !got {
				t.Errorf("device %s: listed %v, revoked %v; want listed as revoked", d.ID, ok, got)
			}
			if c, err := e2etest.TryWS(s.wsURL(), "unhidra.v1, apikey."+d.Key); err == nil {
				c.Close()
				t.Errorf("device %s still connects with its key", d.ID)
			} else if !strings.Contains(err.Error(), "401") {
				t.Errorf("device %s: handshake %v, want 401", d.ID, err)
			}
		}
		if _, _, err := e2etest.DialMQTT(t, "127.0.0.1:"+strconv.Itoa(port), "after-cleanup", devs[1].ID, devs[1].Key); err == nil {
			t.Errorf("the MQTT device %s still connects with its key", devs[1].ID)
		}
	})
}

// Without --cleanup the devices stay, ready for the next run's --keys-file.
func TestDevsimWithoutCleanupKeepsItsDevices(t *testing.T) {
	s := startDeviceServer(t, nil)
	admin := s.login(t, "admin", s.adminPW).AccessToken
	keys := filepath.Join(t.TempDir(), "fleet.keys")
	out, err := runCmd(t, context.Background(), "devsim", "--devices", "2", "--interval", "100ms", "--url", s.wsURL(),
		"--auth-url", s.url, "--admin-token", admin, "--save-keys", keys, "--duration", "1s")
	if err != nil {
		t.Fatalf("devsim: %v\n%s", err, out)
	}
	if strings.Contains(out, "cleanup") || strings.Contains(out, "revoked=") || !strings.Contains(lastLine(out), "devsim: done devices=2 ") {
		t.Errorf("output:\n%s", out)
	}
	devs, err := load.ReadKeysFile(keys)
	if err != nil || len(devs) != 2 {
		t.Fatalf("keys: %v %v", devs, err)
	}
	e2etest.Secret("device key", devs[0].Key)
	e2etest.Secret("device key", devs[1].Key)
	c, err := e2etest.TryWS(s.wsURL(), "unhidra.v1, apikey."+devs[0].Key)
	if err != nil {
		t.Fatalf("the device's key no longer works without --cleanup: %v", err)
	}
	c.Close()
}
