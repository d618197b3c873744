package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/unhidra/unhidra/client"
)

func testAgent(allow ...string) *Agent {
	return New(Config{Interval: time.Minute, ExecTimeout: 5 * time.Second, AllowCmds: allow}, slog.New(slog.DiscardHandler))
}

func TestAgentCommands(t *testing.T) {
	for _, tc := range []struct {
		name, cmd, params string
		allow             []string
		wantErr           string // substring; "" means success
		wantResult        string // substring of the JSON result
	}{
		{name: "ping answers pong", cmd: "ping", wantResult: `{"pong":true}`},
		{name: "set_interval accepts whole seconds", cmd: "set_interval", params: `{"seconds":5}`, wantResult: `"interval_s":5`},
		{name: "set_interval refuses zero", cmd: "set_interval", params: `{"seconds":0}`, wantErr: "between"},
		{name: "set_interval refuses more than a day", cmd: "set_interval", params: `{"seconds":90000}`, wantErr: "between"},
		{name: "set_interval refuses a missing value", cmd: "set_interval", params: `{}`, wantErr: "seconds"},
		{name: "set_interval refuses a string", cmd: "set_interval", params: `{"seconds":"5"}`, wantErr: "seconds"},
		{name: "exec runs an allowed command without a shell", cmd: "exec", params: `{"cmd":"echo","args":["a;b","$HOME"]}`, allow: []string{"echo"}, wantResult: `"stdout":"a;b $HOME\n"`},
		{name: "exec reports a non-zero exit code", cmd: "exec", params: `{"cmd":"false"}`, allow: []string{"false"}, wantResult: `"exit_code":1`},
		{name: "exec refuses a command not on the allow list", cmd: "exec", params: `{"cmd":"rm","args":["-rf","/"]}`, allow: []string{"echo"}, wantErr: "not allowed"},
		{name: "exec refuses everything when nothing is allowed", cmd: "exec", params: `{"cmd":"echo"}`, wantErr: "not allowed"},
		{name: "exec refuses a shell pipeline as a name", cmd: "exec", params: `{"cmd":"echo hi | sh"}`, allow: []string{"echo"}, wantErr: "not allowed"},
		{name: "exec refuses too many arguments", cmd: "exec", params: `{"cmd":"echo","args":[` + strings.Repeat(`"x",`, 16) + `"x"]}`, allow: []string{"echo"}, wantErr: "at most"},
		{name: "exec bounds the output", cmd: "exec", params: `{"cmd":"head","args":["-c","100000","/dev/zero"]}`, allow: []string{"head"}, wantResult: `"truncated":true`},
		{name: "an unknown command is an error", cmd: "reboot", wantErr: "unknown command"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := testAgent(tc.allow...)
			res, err := a.handleCommand(context.Background(), client.Command{ID: "c1", Name: tc.cmd, Params: json.RawMessage(tc.params)})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			b, _ := json.Marshal(res)
			if !strings.Contains(string(b), tc.wantResult) {
				t.Errorf("result = %s, want it to contain %s", b, tc.wantResult)
			}
		})
	}
}

func TestSetIntervalChangesTheTelemetryInterval(t *testing.T) {
	a := testAgent()
	if _, err := a.handleCommand(context.Background(), client.Command{Name: "set_interval", Params: json.RawMessage(`{"seconds":7}`)}); err != nil {
		t.Fatal(err)
	}
	if got := time.Duration(a.interval.Load()); got != 7*time.Second {
		t.Errorf("interval = %v, want 7s", got)
	}
	select {
	case <-a.changed:
	default:
		t.Error("the telemetry loop was not told about the change")
	}
}

func TestExecStopsACommandThatRunsTooLong(t *testing.T) {
	a := New(Config{Interval: time.Minute, ExecTimeout: 200 * time.Millisecond, AllowCmds: []string{"sleep"}}, slog.New(slog.DiscardHandler))
	_, err := a.handleCommand(context.Background(), client.Command{Name: "exec", Params: json.RawMessage(`{"cmd":"sleep","args":["30"]}`)})
	if err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("err = %v, want a time-out", err)
	}
}

func TestTelemetryCmdOutputBecomesTelemetry(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "t.sh")
	os.WriteFile(script, []byte("#!/bin/sh\necho '{\"temp_c\": 21.5}'\n"), 0o700)
	bad := filepath.Join(dir, "bad.sh")
	os.WriteFile(bad, []byte("#!/bin/sh\necho 'not json'\n"), 0o700)
	a := New(Config{Interval: time.Minute, ExecTimeout: 5 * time.Second, TelemetryCmd: script}, slog.New(slog.DiscardHandler))
	got, err := a.collect(context.Background())
	if err != nil || got["temp_c"] != 21.5 {
		t.Fatalf("collect = %v, %v; want temp_c 21.5", got, err)
	}
	a.cfg.TelemetryCmd = bad
	if _, err := a.collect(context.Background()); err == nil || !strings.Contains(err.Error(), "not a JSON object") {
		t.Errorf("collect with bad output = %v, want a JSON error", err)
	}
}

func TestBuiltInMetricsReadProc(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "proc"), 0o755)
	write := func(name, s string) { os.WriteFile(filepath.Join(root, "proc", name), []byte(s), 0o644) }
	write("loadavg", "0.50 0.25 0.10 1/100 999\n")
	write("meminfo", "MemTotal:       1000 kB\nMemFree:         100 kB\nMemAvailable:    250 kB\n")
	write("uptime", "3600.55 100.00\n")
	write("stat", "cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 1 2 3 4\n")
	m := &sysMetrics{root: root}
	first := m.Collect()
	write("stat", "cpu  150 0 150 900 0 0 0 0 0 0\n")
	got := m.Collect()
	for k, want := range map[string]any{
		"load1": 0.5, "load15": 0.1, "mem_total_bytes": uint64(1024000), "mem_available_bytes": uint64(256000),
		"mem_used_pct": 75.0, "uptime_s": int64(3600), "cpu_pct": 50.0,
	} {
		if fmt.Sprint(got[k]) != fmt.Sprint(want) {
			t.Errorf("%s = %v, want %v", k, got[k], want)
		}
	}
	if _, ok := first["cpu_pct"]; ok {
		t.Error("cpu_pct reported from a single sample")
	}
	if _, ok := got["disk_total_bytes"]; !ok {
		t.Error("no disk metrics")
	}
	if e, ok := got["errors"]; ok {
		t.Errorf("errors = %v", e)
	}
}

func TestAgentConfig(t *testing.T) {
	envOf := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	t.Run("environment and flags combine", func(t *testing.T) {
		c, err := LoadConfig([]string{"--allow-cmd", "uptime", "--allow-cmd", "df"},
			envOf(map[string]string{"GATEWAY_URL": "ws://h/ws", "DEVICE_API_KEY": "unhidra_dk_x", "TELEMETRY_INTERVAL": "5s"}), os.Stderr)
		if err != nil {
			t.Fatal(err)
		}
		if c.Interval != 5*time.Second || fmt.Sprint(c.AllowCmds) != "[uptime df]" {
			t.Errorf("config = %+v", c)
		}
	})
	t.Run("every problem is reported at once", func(t *testing.T) {
		_, err := LoadConfig(nil, envOf(map[string]string{"TELEMETRY_INTERVAL": "soon"}), os.Stderr)
		if err == nil {
			t.Fatal("no error")
		}
		for _, want := range []string{"GATEWAY_URL", "DEVICE_API_KEY", "TELEMETRY_INTERVAL"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not mention %s", err, want)
			}
		}
	})
	t.Run("the key is not a flag, so it never shows in ps", func(t *testing.T) {
		_, err := LoadConfig([]string{"--api-key", "x"}, envOf(nil), new(strings.Builder))
		if err == nil {
			t.Error("an --api-key flag was accepted")
		}
	})
}

func FuzzParseProcFiles(f *testing.F) {
	f.Add([]byte("0.50 0.25 0.10 1/100 999\n"))
	f.Add([]byte("MemTotal:       1000 kB\nMemAvailable: 18446744073709551615 kB\n"))
	f.Add([]byte("cpu  100 0 100 800 0 0 0 0 0 0\n"))
	f.Add([]byte("3600.55 100.00\n"))
	f.Add([]byte("NaN NaN NaN"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if l1, l5, l15, err := parseLoadAvg(b); err == nil && (l1 < 0 || l5 < 0 || l15 < 0) {
			t.Fatal("negative load accepted")
		}
		for k, v := range parseMeminfo(b) {
			_ = k
			_ = v
		}
		if up, err := parseUptime(b); err == nil && up < 0 {
			t.Fatal("negative uptime accepted")
		}
		if ct, err := parseCPUStat(b); err == nil && ct.idle > ct.total {
			t.Fatal("idle above total")
		}
	})
}

// TestTheFirstTelemetryIsSentAtStart: the agent queues a point as soon as
// it starts, not one interval later (an hour here).
func TestTheFirstTelemetryIsSentAtStart(t *testing.T) {
	a := New(Config{Interval: time.Hour, ExecTimeout: time.Second}, slog.New(slog.DiscardHandler))
	c, err := client.New(client.Options{URL: "ws://127.0.0.1:1/ws", APIKey: "unhidra_dk_test"})
	if err != nil {
		t.Fatal(err)
	}
	a.c = c
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.telemetryLoop(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for c.Stats().Queued == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if q := c.Stats().Queued; q != 1 {
		t.Fatalf("%d points queued after start, want 1 (the first point, before any interval)", q)
	}
	if a.seq.Load() != 1 {
		t.Errorf("seq = %d, want 1", a.seq.Load())
	}
}
