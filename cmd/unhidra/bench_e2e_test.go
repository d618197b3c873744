package main

// The load generators and the fleet simulator against the real server: they
// are tools, but their figures are only worth something if they talk to the
// server exactly as clients do.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/unhidra/unhidra/client"
	"github.com/unhidra/unhidra/internal/e2etest"
	"github.com/unhidra/unhidra/internal/load"
	"github.com/unhidra/unhidra/wire"
)

func runCmd(t *testing.T, ctx context.Context, args ...string) (string, error) {
	t.Helper()
	var out e2etest.SyncBuffer
	logs := e2etest.CaptureLogs()
	err := run(ctx, env{args: args, getenv: func(string) string { return "" }, stdout: &out, stderr: logs})
	return out.String(), err
}

var deliveredLine = regexp.MustCompile(`delivered: (\d+) of (\d+) expected`)

func TestBenchWSAgainstTheRealServer(t *testing.T) {
	s := startDeviceServer(t, nil)
	// Default limits: 10 connections per user, so the bench creates users.
	out, err := runCmd(t, context.Background(), "bench", "ws", "--url", s.wsURL(), "--auth-url", s.url,
		"--admin-password", s.adminPW, "--conns", "30", "--channels", "3", "--publishers", "3", "--rate", "30",
		"--size", "200", "--duration", "2s", "--per-user", "10", "--src-ips", "2")
	if err != nil {
		t.Fatalf("bench ws: %v\n%s", err, out)
	}
	if !strings.Contains(out, "connected: 30 of 30") {
		t.Errorf("not every connection was made:\n%s", out)
	}
	m := deliveredLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no delivery line:\n%s", out)
	}
	got, _ := strconv.Atoi(m[1])
	want, _ := strconv.Atoi(m[2])
	if want == 0 || got != want {
		t.Errorf("delivered %d of %d expected:\n%s", got, want, out)
	}
	if !strings.Contains(out, "end-to-end latency: n=") || !strings.Contains(out, "p999=") {
		t.Errorf("no latency percentiles:\n%s", out)
	}
}

func TestBenchMQTTAgainstTheRealServer(t *testing.T) {
	port, _ := e2etest.FreePort()
	s := startDeviceServer(t, map[string]string{"UNHIDRA_SERVICES": "auth,gateway,mqtt", "MQTT_PORT": strconv.Itoa(port)})
	for _, qos := range []string{"0", "1"} {
		t.Run("QoS "+qos+" messages all arrive", func(t *testing.T) {
			out, err := runCmd(t, context.Background(), "bench", "mqtt", "--url", "tcp://127.0.0.1:"+strconv.Itoa(port),
				"--auth-url", s.url, "--admin-password", s.adminPW, "--devices", "10", "--qos", qos, "--rate", "100", "--duration", "2s")
			if err != nil {
				t.Fatalf("bench mqtt: %v\n%s", err, out)
			}
			if !strings.Contains(out, "missing 0") || strings.Contains(out, "received: 0 ") {
				t.Errorf("messages missing:\n%s", out)
			}
		})
	}
}

func TestDevsimFleetOnBothTransportsAgainstTheRealServer(t *testing.T) {
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
		out, runErr = runCmd(t, ctx, "devsim", "--devices", "4", "--transport", "mixed", "--interval", "300ms",
			"--url", s.wsURL(), "--mqtt-url", "tcp://127.0.0.1:"+strconv.Itoa(port), "--auth-url", s.url,
			"--admin-token", admin, "--save-keys", keys, "--report", "1s", "--duration", "60s")
	}()
	var devs []load.Device
	deadline := time.Now().Add(20 * time.Second)
	for len(devs) < 4 {
		if time.Now().After(deadline) {
			t.Fatal("devsim did not write its keys")
		}
		time.Sleep(50 * time.Millisecond)
		devs, _ = load.ReadKeysFile(keys)
	}
	wsDev, mqttDev := devs[0].ID, devs[1].ID // mixed: even on WebSocket, odd on MQTT

	// A WebSocket subscriber of each device channel sees the telemetry of
	// both transports.
	var mu sync.Mutex
	seen := map[string]int{}
	c, err := client.New(client.Options{URL: s.wsURL(), Token: admin, OnMessage: func(m wire.MessageFrame) {
		mu.Lock()
		seen[m.Channel]++
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	go c.Run(ctx)
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := c.WaitConnected(wctx); err != nil {
		t.Fatal(err)
	}
	// The device channel appears with the device's first message, so retry
	// until then.
	for _, id := range []string{wsDev, mqttDev} {
		for {
			err := c.Subscribe(wctx, "device:"+id)
			if err == nil {
				break
			}
			if wctx.Err() != nil {
				t.Fatalf("subscribe device:%s: %v", id, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	t.Run("a REST command reaches a device on WebSocket and one on MQTT", func(t *testing.T) {
		for _, id := range []string{wsDev, mqttDev} {
			var cmd struct {
				CommandID string `json:"command_id"`
			}
			deadline := time.Now().Add(15 * time.Second)
			for {
				var st struct {
					Status string          `json:"status"`
					Result json.RawMessage `json:"result"`
				}
				if cmd.CommandID == "" {
					r := s.gw(t, "POST", "/api/v1/devices/"+id+"/commands", admin, map[string]any{"name": "ping", "timeout_s": 30})
					s.want(t, r, http.StatusAccepted, "send ping")
					r.JSON(t, &cmd)
				}
				r := s.gw(t, "GET", "/api/v1/devices/"+id+"/commands/"+cmd.CommandID, admin, nil)
				r.JSON(t, &st)
				if st.Status == "ok" {
					if !bytes.Contains(st.Result, []byte(`"pong":true`)) {
						t.Errorf("device %s answered %s", id, st.Result)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("device %s: command status %q: %s", id, st.Status, r.Body)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	})

	t.Run("telemetry of both transports reaches WebSocket subscribers of device channels", func(t *testing.T) {
		deadline := time.Now().Add(15 * time.Second)
		for {
			mu.Lock()
			a, b := seen["device:"+wsDev], seen["device:"+mqttDev]
			mu.Unlock()
			if a > 0 && b > 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("messages seen: ws device %d, mqtt device %d", a, b)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	t.Run("telemetry is stored for every device", func(t *testing.T) {
		// Each device sends its first reading within one interval of its
		// connect, which under -race on a loaded machine may come after the
		// two watched above.
		deadline := time.Now().Add(15 * time.Second)
		for _, d := range devs {
			for len(s.telemetry(t, admin, d.ID)) == 0 {
				if time.Now().After(deadline) {
					t.Fatalf("device %s has no stored telemetry", d.ID)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	})

	cancel()
	<-done
	if runErr != nil {
		t.Fatalf("devsim: %v\n%s", runErr, out)
	}
	last := lastLine(out)
	if !strings.Contains(last, "errors=0") || strings.Contains(last, "acked=0 ") {
		t.Errorf("final counts: %s", last)
	}
}

func lastLine(s string) string {
	var last string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) != "" {
			last = sc.Text()
		}
	}
	return last
}
