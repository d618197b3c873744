package main

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/unhidra/unhidra/internal/e2etest"
	"github.com/unhidra/unhidra/internal/load"
)

// A publish still being written when the measurement ends (a slow write)
// must not make the bench close that connection and then report the close
// as the server's: the WebSocket library closes a connection whose write
// context ends, so writes must not use the measurement's context.
func TestBenchWSDoesNotReportItsOwnClosesAsTheServers(t *testing.T) {
	s := startDeviceServer(t, nil)
	var out e2etest.SyncBuffer
	e := env{args: []string{"--url", s.wsURL(), "--auth-url", s.url, "--admin-password", s.adminPW,
		"--conns", "20", "--channels", "2", "--publishers", "10", "--rate", "100", "--size", "200",
		"--duration", "1s", "--per-user", "10", "--src-ips", "2"},
		getenv: func(string) string { return "" }, stdout: &out, stderr: e2etest.CaptureLogs()}
	cfg, err := parseBenchWS(e)
	if err != nil {
		t.Fatal(err)
	}
	// Every publisher's third publish is held back until the measurement
	// has ended, as a write that is still in flight at the end would be.
	cfg.BeforePublish = func(measuring context.Context, _ int, seq int64) {
		if seq == 2 {
			<-measuring.Done()
		}
	}
	if err := load.BenchWS(context.Background(), e.stdout, e.stderr, cfg); err != nil {
		t.Fatalf("bench ws: %v\n%s", err, out.String())
	}
	got := out.String()
	if !strings.Contains(got, "connected: 20 of 20") {
		t.Fatalf("not every connection was made:\n%s", got)
	}
	if !strings.Contains(got, "connections dropped 0,") {
		t.Errorf("the bench reports dropped connections:\n%s", got)
	}
	for _, bad := range []string{"closed by the server", "closed itself", "first error"} {
		if strings.Contains(got, bad) {
			t.Errorf("the output has %q:\n%s", bad, got)
		}
	}
	m := deliveredLine.FindStringSubmatch(got)
	if m == nil {
		t.Fatalf("no delivery line:\n%s", got)
	}
	delivered, _ := strconv.Atoi(m[1])
	expected, _ := strconv.Atoi(m[2])
	if expected == 0 || delivered != expected {
		t.Errorf("delivered %d of %d: the late publishes were lost:\n%s", delivered, expected, got)
	}
}
