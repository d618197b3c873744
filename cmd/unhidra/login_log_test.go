package main

// Mistyped logins in the suite-wide log check (TestMain): a password typed
// in the username field, a token pasted there, a bogus refresh token. Every
// value is registered as a secret, so a leak fails the whole suite, and
// this test also fails on its own.

import (
	"context"
	"strings"
	"testing"

	"github.com/unhidra/unhidra/internal/audit"
	"github.com/unhidra/unhidra/internal/e2etest"
)

func TestMistypedLoginsLeaveNoSecretInTheLog(t *testing.T) {
	s := startServer(t, nil, cheapHash) // LOG_LEVEL=debug: access logs too
	pw := e2etest.Secret("password typed as a username", "tr0ub4dor-"+e2etest.RandomHex(8))
	s.want(t, s.call(t, "POST", "/register", "", map[string]string{"username": "typist", "password": pw}), 201, "register")

	// A JWT pasted in the username field is lower-cased by the username
	// rules; neither form may reach the log.
	jwtish := "eyJ" + e2etest.RandomHex(5) + ".eyJ" + e2etest.RandomHex(4) + ".x"
	e2etest.Secret("JWT typed as a username", jwtish)
	e2etest.Secret("JWT typed as a username (lower-cased)", strings.ToLower(jwtish))
	rt := e2etest.Secret("bogus refresh token", "unhidra_rt_"+e2etest.RandomHex(16))

	s.want(t, s.call(t, "POST", "/login", "", map[string]string{"username": pw, "password": "typist"}), 401, "username and password swapped")
	s.want(t, s.call(t, "POST", "/login", "", map[string]string{"username": pw, "password": pw}), 401, "the password in both fields")
	s.want(t, s.call(t, "POST", "/login", "", map[string]string{"username": jwtish, "password": pw}), 401, "a JWT as the username")
	s.want(t, s.call(t, "POST", "/token/refresh", "", map[string]string{"refresh_token": rt}), 401, "a bogus refresh token")
	s.login(t, "typist", pw)

	logs := s.logs.String()
	for _, v := range []string{pw, jwtish, strings.ToLower(jwtish), rt} {
		if strings.Contains(logs, v) {
			t.Errorf("the server log holds %q", v)
		}
	}
	// The failed logins are in the audit log, under the typed names'
	// short hashes, and no record holds a secret either.
	rows, err := s.app.AuditLog().Store().AuditRows(context.Background(), audit.Query{After: -1, Before: -1})
	if err != nil {
		t.Fatal(err)
	}
	var records strings.Builder
	failed := 0
	for _, r := range rows {
		records.Write(r.Entry)
		records.WriteByte('\n')
		if r.Action == audit.ActionLogin && r.Outcome == audit.Failure && strings.HasPrefix(r.ActorID, "redacted:") {
			failed++
		}
	}
	if failed != 3 {
		t.Fatalf("%d failed logins audited under a redacted name, want 3:\n%s", failed, records.String())
	}
	for _, v := range []string{pw, jwtish, strings.ToLower(jwtish), rt} {
		if strings.Contains(records.String(), v) {
			t.Errorf("the audit log holds %q", v)
		}
	}
}

// TestMQTTRefusalsLeaveNoSecretInTheLog puts MQTT refusals in the
// suite-wide log check: a device key in the username field (and the id as
// the password), a refresh token and an access token there, and a Will
// whose payload holds a key.
func TestMQTTRefusalsLeaveNoSecretInTheLog(t *testing.T) {
	s := startStack(t, map[string]string{"LOG_LEVEL": "debug"})
	at, _ := s.user(t, "mqttuser")
	e2etest.Secret("access token", at)
	key := s.device(t, at, "swap-1")
	rt := e2etest.Secret("bogus refresh token", "unhidra_rt_"+e2etest.RandomHex(16))
	for _, user := range []string{key, rt, at} {
		if c, code, _ := e2etest.DialMQTT(t, s.mqtt, "swap", user, "swap-1"); c != nil || code == 0 {
			t.Fatalf("swapped credentials accepted (0x%02x)", code)
		}
	}
	if c, code, _ := e2etest.DialMQTT(t, s.mqtt, "pw", "swap-1", "not the key"); c != nil || code == 0 {
		t.Fatalf("a wrong key accepted (0x%02x)", code)
	}
	logs := s.logs.String()
	if n := strings.Count(logs, "mqtt connection refused: bad credentials"); n < 4 {
		t.Fatalf("%d MQTT refusals logged, want 4:\n%s", n, logs)
	}
	for _, v := range []string{key, rt, at, "not the key"} {
		if strings.Contains(logs, v) {
			t.Errorf("the server log holds %q", v)
		}
	}
}
