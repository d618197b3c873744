package main

import (
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"

	"github.com/unhidra/unhidra/internal/e2etest"
)

// get returns the status and body of GET url.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func TestMetricsOnOnePortWithBuildInfoAndEverySeriesAtZero(t *testing.T) {
	s := startStack(t, nil)
	m := e2etest.Scrape(t, s.gwURL+"/metrics")

	v, c := buildVersion()
	info := `unhidra_build_info{commit="` + c + `",goversion="` + runtime.Version() + `",version="` + v + `"}`
	if got, ok := m[info]; !ok || got != 1 {
		t.Errorf("%s = %v (present %v), want 1", info, got, ok)
	}

	// A fresh server: every series of a closed label set is there at 0
	// before its first event, so rate() and alerts see it from the start.
	for _, series := range []string{
		`unhidra_devices_online`,
		`unhidra_telemetry_points_stored_total`,
		`unhidra_device_commands_total{status="pending"}`,
		`unhidra_device_commands_total{status="delivered"}`,
		`unhidra_device_commands_total{status="ok"}`,
		`unhidra_device_commands_total{status="error"}`,
		`unhidra_device_commands_total{status="timeout"}`,
		`unhidra_auth_login_attempts_total{outcome="account_locked"}`,
		`unhidra_auth_login_attempts_total{outcome="bad_credentials"}`,
		`unhidra_gateway_connections{kind="user"}`,
		`unhidra_gateway_connections{kind="device"}`,
		`unhidra_gateway_handshakes_refused_total{reason="origin"}`,
		`unhidra_gateway_handshakes_refused_total{reason="ip_rate"}`,
		`unhidra_gateway_handshakes_refused_total{reason="user_limit"}`,
		`unhidra_gateway_closes_total{reason="revoked"}`,
		`unhidra_gateway_closes_total{reason="slow_consumer"}`,
		`unhidra_mqtt_connections_refused_total{limit="connect_rate"}`,
		`unhidra_mqtt_connections_refused_total{limit="connections_per_user"}`,
		`unhidra_mqtt_publish_rejected_total{code="forbidden"}`,
		`unhidra_mqtt_publish_rejected_total{code="invalid"}`,
		`unhidra_chat_commit_failures_total{code="internal"}`,
		`unhidra_chat_commit_failures_total{code="unavailable"}`,
		`unhidra_mqtt_auth_failures_total`,
		`unhidra_mqtt_connections`,
	} {
		got, ok := m[series]
		if !ok {
			t.Errorf("%s is missing on a fresh server", series)
		} else if got != 0 {
			t.Errorf("%s = %v on a fresh server, want 0", series, got)
		}
	}

	// One port to scrape: the auth API of a process that runs the gateway
	// does not serve the same registry again.
	if code, body := get(t, "http://"+s.app.AuthAddr()+"/metrics"); code != 404 {
		t.Errorf("the auth API's /metrics beside a gateway: %d %.200s; want 404", code, body)
	}
	if code, _ := get(t, "http://"+s.app.AuthAddr()+"/health"); code != 200 {
		t.Errorf("the auth API's /health: %d", code)
	}
}

func TestMetricsOnTheAuthPortWhenNoGatewayRunsHere(t *testing.T) {
	s := startServer(t, map[string]string{"UNHIDRA_SERVICES": "auth"}, cheapHash)
	code, body := get(t, s.url+"/metrics")
	if code != 200 || !strings.Contains(body, "unhidra_build_info{") || !strings.Contains(body, `unhidra_auth_login_attempts_total{outcome="success"} 0`) {
		t.Errorf("/metrics of an auth-only process: %d %.300s", code, body)
	}
}
