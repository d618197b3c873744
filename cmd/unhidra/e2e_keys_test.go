package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/e2etest"
	"github.com/unhidra/unhidra/internal/keys"
	"github.com/unhidra/unhidra/wire"
	"github.com/unhidra/unhidra/wire/e2eekeys"
)

// signedUpload is a fresh identity for user's device dev, signed as the
// E2EE contract says, with one signed one-time key.
func signedUpload(t *testing.T, user, dev string) keys.Upload {
	t.Helper()
	b64 := base64.RawStdEncoding
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	raw := make([]byte, 64)
	rand.Read(raw)
	curve, otk := b64.EncodeToString(raw[:32]), b64.EncodeToString(raw[32:])
	return keys.Upload{
		Identity:          keys.IdentityKeys{Curve25519: curve, Ed25519: b64.EncodeToString(priv.Public().(ed25519.PublicKey))},
		IdentitySignature: b64.EncodeToString(ed25519.Sign(priv, e2eekeys.IdentityMessage(user, dev, curve))),
		OneTimeKeys:       []keys.SignedKey{{ID: "AAAAAQ", Key: otk, Signature: b64.EncodeToString(ed25519.Sign(priv, e2eekeys.KeyMessage(user, dev, "AAAAAQ", otk)))}},
	}
}

// TestAnIdentityKeyChangeReachesTheChannelsLiveAndTheAuditLog: alice's
// device changes its identity key; bob, subscribed to a channel they
// share, gets a key_change frame naming her device, and the change is in
// the audit log as e2ee.key_change.
func TestAnIdentityKeyChangeReachesTheChannelsLiveAndTheAuditLog(t *testing.T) {
	s := startStack(t, nil)
	alice, _ := s.user(t, "alice")
	bob, _ := s.user(t, "bob")
	ch := s.channel(t, alice, "team", "private", "bob")
	bobWS := e2etest.DialWS(t, s.wsURL, "unhidra.v1, bearer."+bob)
	bobWS.Send(t, map[string]any{"type": "subscribe", "channel": ch, "id": "s"})
	bobWS.Until(t, wire.TypeSubscribed, 5*time.Second)

	const path = "/api/v1/keys/devices/phone"
	e2etest.WantStatus(t, s.api(t, "PUT", path, alice, signedUpload(t, "alice", "phone")), 200, "first upload")
	e2etest.WantStatus(t, s.api(t, "PUT", path, alice, signedUpload(t, "alice", "phone")), 200, "upload of a new identity")

	f := bobWS.Until(t, wire.TypeKeyChange, 5*time.Second)
	var kc wire.KeyChangeFrame
	if err := json.Unmarshal(f.Raw, &kc); err != nil {
		t.Fatal(err)
	}
	if kc != (wire.KeyChangeFrame{Type: wire.TypeKeyChange, Channel: ch, User: "alice", DeviceID: "phone"}) {
		t.Errorf("key_change frame = %s", f.Raw)
	}
	r := s.api(t, "GET", "/api/v1/audit?action="+keys.ActionKeyChange, s.admin(t), nil)
	e2etest.WantStatus(t, r, 200, "audit")
	if !strings.Contains(string(r.Body), `"device_id":"phone"`) {
		t.Errorf("audit log has no key change of alice's phone: %s", r.Body)
	}
	// Only the new identity's keys are served.
	r = s.api(t, "POST", "/api/v1/keys/claim", bob, map[string]string{"user": "alice", "device_id": "phone"})
	e2etest.WantStatus(t, r, 200, "claim")
	var b keys.Bundle
	r.JSON(t, &b)
	if b.OneTimeKey == nil || b.OneTimeKey.ID != "AAAAAQ" {
		t.Errorf("claimed bundle = %s", r.Body)
	}
}

// TestADisabledUsersKeysLeaveTheDirectory: an administrator disables bob;
// his devices are gone from the key directory at once (no device listed, a
// claim answers not_found), alice in a channel they share gets a
// key_change frame for each, and the removal is audited as a key change.
func TestADisabledUsersKeysLeaveTheDirectory(t *testing.T) {
	s := startStack(t, nil)
	alice, _ := s.user(t, "alice")
	bob, _ := s.user(t, "bob")
	ch := s.channel(t, alice, "team", "private", "bob")
	for _, dev := range []string{"laptop", "phone"} {
		e2etest.WantStatus(t, s.api(t, "PUT", "/api/v1/keys/devices/"+dev, bob, signedUpload(t, "bob", dev)), 200, "upload of bob's "+dev)
	}
	e2etest.WantStatus(t, s.api(t, "PUT", "/api/v1/keys/devices/phone", alice, signedUpload(t, "alice", "phone")), 200, "upload of alice's phone")
	aliceWS := e2etest.DialWS(t, s.wsURL, "unhidra.v1, bearer."+alice)
	aliceWS.Send(t, map[string]any{"type": "subscribe", "channel": ch, "id": "s"})
	aliceWS.Until(t, wire.TypeSubscribed, 5*time.Second)

	admin := s.admin(t)
	e2etest.WantStatus(t, s.authAPI(t, "POST", "/admin/users/bob/disable", admin, nil), 200, "disable bob")

	r := s.api(t, "GET", "/api/v1/keys/users/bob", alice, nil)
	e2etest.WantStatus(t, r, 200, "bob's devices")
	var listed struct {
		Devices []keys.Device `json:"devices"`
	}
	r.JSON(t, &listed)
	if len(listed.Devices) != 0 || !strings.Contains(string(r.Body), `"devices"`) {
		t.Errorf("a disabled user's devices: %s, want none", r.Body)
	}
	r = s.api(t, "POST", "/api/v1/keys/claim", alice, map[string]string{"user": "bob", "device_id": "phone"})
	e2etest.WantStatus(t, r, 404, "claim of a disabled user's device")
	// Alice's own keys stay.
	e2etest.WantStatus(t, s.api(t, "POST", "/api/v1/keys/claim", admin, map[string]string{"user": "alice", "device_id": "phone"}), 200, "claim of alice's phone")

	announced := map[string]bool{}
	for range 2 {
		var kc wire.KeyChangeFrame
		if err := json.Unmarshal(aliceWS.Until(t, wire.TypeKeyChange, 5*time.Second).Raw, &kc); err != nil {
			t.Fatal(err)
		}
		if kc.Channel != ch || kc.User != "bob" {
			t.Errorf("key_change frame = %+v, want bob's in %s", kc, ch)
		}
		announced[kc.DeviceID] = true
	}
	if !announced["laptop"] || !announced["phone"] {
		t.Errorf("key_change frames for %v, want laptop and phone", announced)
	}
	r = s.api(t, "GET", "/api/v1/audit?action="+keys.ActionKeyChange, admin, nil)
	e2etest.WantStatus(t, r, 200, "audit")
	if n := strings.Count(string(r.Body), `"change":"user_disabled"`); n != 2 {
		t.Errorf("audit log has %d user_disabled key changes, want 2: %s", n, r.Body)
	}
}
