package main

// The full stack in-process (auth API, gateway and MQTT on free ports) for
// the whole-system tests (e2e_ws_test.go, e2e_devices_test.go, …); the
// clients on every transport are internal/e2etest's, and the same stack as
// a child process is systemtest's.

import (
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/auth"
	"github.com/unhidra/unhidra/internal/e2etest"
	"github.com/unhidra/unhidra/internal/platform"
)

// cheapHash keeps logins fast where the test is not about hashing.
var cheapHash = platform.NodeOptions{HashParams: auth.Params{MemoryKiB: 64, Iterations: 1, Parallelism: 1}}

// stack is the whole server (auth API, gateway, MQTT) running in-process.
type stack struct {
	*testServer
	gwURL   string // http://host:port of the gateway
	wsURL   string // ws://host:port/ws
	mqtt    string // host:port of the MQTT listener
	adminPW string
}

// startStack starts every service on free ports with limits raised so the
// tests' many connections from 127.0.0.1 are not refused.
func startStack(t *testing.T, extra map[string]string) *stack {
	t.Helper()
	pw := e2etest.Secret("admin password", "e2e-admin-"+e2etest.RandomHex(8))
	e := map[string]string{
		"UNHIDRA_SERVICES":            "auth,gateway,mqtt",
		"UNHIDRA_ADMIN_PASSWORD":      pw,
		"RATE_LIMIT_IP_PER_MINUTE":    "100000",
		"RATE_LIMIT_LOGIN_PER_MINUTE": "100000",
		"LOG_LEVEL":                   "info",
	}
	for k, v := range extra {
		e[k] = v
	}
	s := &stack{testServer: startServer(t, e, cheapHash), adminPW: pw}
	s.gwURL = "http://" + s.app.GatewayAddr()
	s.wsURL = "ws://" + s.app.GatewayAddr() + "/ws"
	s.mqtt = s.app.MQTTAddr()
	e2etest.WaitHTTP(t, s.gwURL+"/ready", 10*time.Second)
	return s
}

// api calls the gateway's REST API.
func (s *stack) api(t testing.TB, method, path, bearer string, body any) e2etest.Reply {
	t.Helper()
	return e2etest.HTTPCall(t, s.gwURL, method, path, bearer, body)
}

// authAPI calls the auth API.
func (s *stack) authAPI(t testing.TB, method, path, bearer string, body any) e2etest.Reply {
	t.Helper()
	return e2etest.HTTPCall(t, s.url, method, path, bearer, body)
}

// user registers name (when new) and logs it in.
func (s *stack) user(t *testing.T, name string) (access string, password string) {
	t.Helper()
	pw := e2etest.Secret("password", "pw-of-"+name+"-"+e2etest.RandomHex(4))
	e2etest.WantStatus(t, s.authAPI(t, "POST", "/register", "", map[string]string{"username": name, "password": pw}), 201, "register "+name)
	return s.login(t, name, pw).AccessToken, pw
}

func (s *stack) admin(t *testing.T) string {
	t.Helper()
	return s.login(t, "admin", s.adminPW).AccessToken
}

// device registers a device of the token's user and returns its key.
func (s *stack) device(t *testing.T, owner, id string) string {
	t.Helper()
	r := s.authAPI(t, "POST", "/devices", owner, map[string]string{"name": id, "device_id": id})
	e2etest.WantStatus(t, r, 201, "register device "+id)
	var d struct {
		APIKey string `json:"api_key"`
	}
	r.JSON(t, &d)
	return e2etest.Secret("device API key", d.APIKey)
}

// channel creates a channel and returns its id.
func (s *stack) channel(t *testing.T, owner, name, kind string, members ...string) string {
	t.Helper()
	r := s.api(t, "POST", "/api/v1/channels", owner, map[string]any{"name": name, "kind": kind, "members": members})
	e2etest.WantStatus(t, r, 201, "create channel "+name)
	var ch struct {
		ID string `json:"id"`
	}
	r.JSON(t, &ch)
	if ch.ID == "" {
		t.Fatalf("channel without an id: %s", r.Body)
	}
	return ch.ID
}
