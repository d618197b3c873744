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
)

var devsimDoneLine = regexp.MustCompile(`devsim: done devices=(\d+) connected_once=(\d+) telemetry=(\d+) acked=(\d+) commands=(\d+) answered=(\d+) failures=(\d+) errors=(\d+) revoked=(\d+) duration=\S+`)

// A fleet run to its end prints what it did and, with --cleanup, leaves no
// device it made able to connect.
func TestDevsimPrintsASummaryAndCleansUpItsDevices(t *testing.T) {
	port, _ := freePort()
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
	var devs []benchDevice
	deadline := time.Now().Add(20 * time.Second)
	for len(devs) < 3 {
		if time.Now().After(deadline) {
			t.Fatal("devsim did not write its keys")
		}
		time.Sleep(50 * time.Millisecond)
		devs, _ = readKeysFile(keys)
	}
	for _, d := range devs {
		secret("device key", d.key)
	}

	// One command to a device on each transport (mixed: even on WebSocket,
	// odd on MQTT), answered before the fleet stops.
	for _, id := range []string{devs[0].id, devs[1].id} {
		var cmd struct {
			CommandID string `json:"command_id"`
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			if cmd.CommandID == "" {
				r := s.gw(t, "POST", "/api/v1/devices/"+id+"/commands", admin, map[string]any{"name": "ping", "timeout_s": 30})
				s.want(t, r, http.StatusAccepted, "send ping")
				r.json(t, &cmd)
			}
			var st struct {
				Status string `json:"status"`
			}
			s.gw(t, "GET", "/api/v1/devices/"+id+"/commands/"+cmd.CommandID, admin, nil).json(t, &st)
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
		for len(s.telemetry(t, admin, d.id)) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("device %s has no stored telemetry", d.id)
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
		r.json(t, &list)
		revoked := map[string]bool{}
		for _, d := range list.Devices {
			revoked[d.DeviceID] = d.Revoked
		}
		for _, d := range devs {
			if got, ok := revoked[d.id]; !ok || !got {
				t.Errorf("device %s: listed %v, revoked %v; want listed as revoked", d.id, ok, got)
			}
			if c, err := tryWS(s.wsURL(), "unhidra.v1, apikey."+d.key); err == nil {
				c.Close()
				t.Errorf("device %s still connects with its key", d.id)
			} else if !strings.Contains(err.Error(), "401") {
				t.Errorf("device %s: handshake %v, want 401", d.id, err)
			}
		}
		if _, _, err := dialMQTT(t, "127.0.0.1:"+strconv.Itoa(port), "after-cleanup", devs[1].id, devs[1].key); err == nil {
			t.Errorf("the MQTT device %s still connects with its key", devs[1].id)
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
	devs, err := readKeysFile(keys)
	if err != nil || len(devs) != 2 {
		t.Fatalf("keys: %v %v", devs, err)
	}
	secret("device key", devs[0].key)
	secret("device key", devs[1].key)
	c, err := tryWS(s.wsURL(), "unhidra.v1, apikey."+devs[0].key)
	if err != nil {
		t.Fatalf("the device's key no longer works without --cleanup: %v", err)
	}
	c.Close()
}
