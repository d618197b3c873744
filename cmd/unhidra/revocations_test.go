package main

import (
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/e2etest"
)

// TestCommandLineRevocationsCloseLiveSessions: `unhidra user disable` and
// `unhidra device revoke`, run as separate commands beside the running
// server, close the live WebSocket (4003) and MQTT sessions they revoke
// within 5 s, through the revocation feed.
func TestCommandLineRevocationsCloseLiveSessions(t *testing.T) {
	s := startStack(t, nil)
	alice, _ := s.user(t, "alice")
	bob, _ := s.user(t, "bob")
	key := s.device(t, alice, "cli-dev")

	bobWS := e2etest.DialWS(t, s.wsURL, "unhidra.v1, bearer."+bob)
	bobMQ := e2etest.MustMQTT(t, s.mqtt, "bob-mq", "bob", bob)
	devWS := e2etest.DialWS(t, s.wsURL, "unhidra.v1, apikey."+key)
	aliceWS := e2etest.DialWS(t, s.wsURL, "unhidra.v1, bearer."+alice)

	start := time.Now()
	if _, err := s.cli(t, "", "user", "disable", "bob"); err != nil {
		t.Fatal(err)
	}
	if code, err := bobWS.CloseCode(5 * time.Second); err != nil || code != 4003 {
		t.Fatalf("bob's WebSocket after `user disable`: close %d, %v; want 4003 within 5 s", code, err)
	}
	select {
	case <-bobMQ.Gone:
	case <-time.After(5*time.Second - time.Since(start)):
		t.Fatal("bob's MQTT session still open 5 s after `user disable`")
	}
	t.Logf("user disable closed the live sessions in %s", time.Since(start).Round(time.Millisecond))

	start = time.Now()
	if _, err := s.cli(t, "", "device", "revoke", "cli-dev"); err != nil {
		t.Fatal(err)
	}
	if code, err := devWS.CloseCode(5 * time.Second); err != nil || code != 4003 {
		t.Fatalf("the device's WebSocket after `device revoke`: close %d, %v; want 4003 within 5 s", code, err)
	}
	t.Logf("device revoke closed the live session in %s", time.Since(start).Round(time.Millisecond))

	// Nobody else was touched.
	aliceWS.Send(t, map[string]any{"type": "presence", "status": "away"})
	if f, err := aliceWS.TryRead(1500 * time.Millisecond); err == nil && f.Type == "error" {
		t.Fatalf("alice's connection answered an error: %+v", f)
	}
	if code, err := aliceWS.CloseCode(200 * time.Millisecond); err == nil {
		t.Fatalf("alice's connection was closed (%d)", code)
	}
}
