package httpapi_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/unhidra/unhidra/internal/httpapi"
	"github.com/unhidra/unhidra/internal/inmem"
	"github.com/unhidra/unhidra/internal/keys"
	"github.com/unhidra/unhidra/internal/sqlite"
	"github.com/unhidra/unhidra/internal/sqlitetest"
	"github.com/unhidra/unhidra/wire"
	"github.com/unhidra/unhidra/wire/e2eekeys"
)

var b64 = base64.RawStdEncoding

// keyDevice is a client device's test keys: it signs uploads as the
// contract says.
type keyDevice struct {
	user, id string
	priv     ed25519.PrivateKey
	curve    string
}

func newKeyDevice(t *testing.T, user, id string) *keyDevice {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &keyDevice{user: user, id: id, priv: priv, curve: randCurve(t)}
}

func randCurve(t *testing.T) string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b64.EncodeToString(b)
}

func (d *keyDevice) signed(t *testing.T, id string) keys.SignedKey {
	k := randCurve(t)
	return keys.SignedKey{ID: id, Key: k, Signature: b64.EncodeToString(ed25519.Sign(d.priv, e2eekeys.KeyMessage(d.user, d.id, id, k)))}
}

// upload is a valid upload with n one-time keys (ids prefix000…) and a
// fallback key.
func (d *keyDevice) upload(t *testing.T, prefix string, n int) keys.Upload {
	up := keys.Upload{
		Identity:          keys.IdentityKeys{Curve25519: d.curve, Ed25519: b64.EncodeToString(d.priv.Public().(ed25519.PublicKey))},
		IdentitySignature: b64.EncodeToString(ed25519.Sign(d.priv, e2eekeys.IdentityMessage(d.user, d.id, d.curve))),
	}
	for i := range n {
		up.OneTimeKeys = append(up.OneTimeKeys, d.signed(t, fmt.Sprintf("%s%03d", prefix, i)))
	}
	fb := d.signed(t, "fallback")
	up.FallbackKey = &fb
	return up
}

func newKeysAPI(t *testing.T) *httptest.Server {
	t.Helper()
	svc := keys.NewService(keys.Deps{Store: sqlite.NewKeyStore(sqlitetest.Open(t)), Broker: inmem.NewBroker()})
	auth := apiFakeAuth{
		"tok-alice": {Principal: wire.Principal{Kind: wire.KindUser, ID: "alice"}},
		"tok-bob":   {Principal: wire.Principal{Kind: wire.KindUser, ID: "bob"}},
		devKey:      {Principal: wire.Principal{Kind: wire.KindDevice, ID: "sensor"}},
	}
	srv := httptest.NewServer(httpapi.NewAPI(httpapi.APIDeps{Users: auth, Devices: auth, Routes: httpapi.KeyRoutes(svc, nil)}))
	t.Cleanup(srv.Close)
	return srv
}

// exerciseKeyRoutes drives every key route for the OpenAPI contract test.
func exerciseKeyRoutes(t *testing.T, c *contract) {
	gw := newKeysAPI(t).URL
	p := httpapi.APIPrefix + "/keys"
	d := newKeyDevice(t, "alice", "phone")
	c.call(gw, "PUT", p+"/devices/phone", "tok-alice", d.upload(t, "a", 12), 200)
	bad := d.upload(t, "b", 1)
	bad.IdentitySignature = bad.OneTimeKeys[0].Signature
	c.call(gw, "PUT", p+"/devices/phone", "tok-alice", bad, 400)
	c.call(gw, "PUT", p+"/devices/phone", devKey, d.upload(t, "c", 1), 403)
	c.call(gw, "PUT", p+"/devices/phone", "", d.upload(t, "c", 1), 401)
	c.call(gw, "PUT", p+"/devices/phone", "tok-alice", `{"identity":{"curve25519":"`+strings.Repeat("A", 70000)+`"}}`, 413)
	for i := range keys.MaxDevices - 1 {
		o := newKeyDevice(t, "alice", fmt.Sprint("d", i))
		c.call(gw, "PUT", p+"/devices/"+o.id, "tok-alice", o.upload(t, "a", 0), 200)
	}
	more := newKeyDevice(t, "alice", "eleventh")
	c.call(gw, "PUT", p+"/devices/eleventh", "tok-alice", more.upload(t, "a", 0), 409)
	c.call(gw, "GET", p+"/devices/phone/count", "tok-alice", nil, 200)
	c.call(gw, "GET", p+"/devices/phone/count", "tok-bob", nil, 404)
	c.call(gw, "GET", p+"/devices/bad%20id/count", "tok-alice", nil, 400)
	c.call(gw, "GET", p+"/users/alice", "tok-bob", nil, 200)
	c.call(gw, "GET", p+"/users/alice", devKey, nil, 403)
	c.call(gw, "POST", p+"/claim", "tok-bob", map[string]string{"user": "alice", "device_id": "phone"}, 200)
	c.call(gw, "POST", p+"/claim", "tok-bob", map[string]string{"user": "alice", "device_id": "nope"}, 404)
	c.call(gw, "POST", p+"/claim", "tok-bob", map[string]string{"user": "alice"}, 400)
	c.call(gw, "POST", p+"/claim", "tok-bob", `{"user":"`+strings.Repeat("u", httpapi.MaxJSONBody)+`"}`, 413)
	// Two claims above counted (the 404 one too); the rest of the minute's.
	for range keys.ClaimsPerMinute - 2 {
		c.call(gw, "POST", p+"/claim", "tok-bob", map[string]string{"user": "alice", "device_id": "phone"}, 200)
	}
	c.call(gw, "POST", p+"/claim", "tok-bob", map[string]string{"user": "alice", "device_id": "phone"}, 429)
	c.call(gw, "DELETE", p+"/devices/phone", "tok-alice", nil, 204)
	c.call(gw, "DELETE", p+"/devices/phone", "tok-alice", nil, 404)
}

func keyCall(t *testing.T, base, method, path, token string, body any) (int, []byte) {
	t.Helper()
	raw, err := json.Marshal(body)
	if err != nil {
		t.Error(err)
		return 0, nil
	}
	req, _ := http.NewRequest(method, base+path, bytes.NewReader(raw))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return 0, nil
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

func TestKeyUploadsAreValidated(t *testing.T) {
	gw := newKeysAPI(t).URL
	d := newKeyDevice(t, "alice", "phone")
	other := newKeyDevice(t, "alice", "phone")
	zero := b64.EncodeToString(make([]byte, 32))
	one := b64.EncodeToString(append([]byte{1}, make([]byte, 31)...))
	tests := []struct {
		name   string
		mutate func(up *keys.Upload)
		want   string
	}{
		{"a 31-byte identity key is refused", func(up *keys.Upload) { up.Identity.Curve25519 = b64.EncodeToString(make([]byte, 31)) }, "must be 32 bytes"},
		{"padded base64 is refused", func(up *keys.Upload) { up.Identity.Ed25519 += "=" }, "not unpadded standard base64"},
		{"the all-zero point is refused", func(up *keys.Upload) { up.OneTimeKeys[0].Key = zero }, "low-order"},
		{"the point 0100…00 is refused", func(up *keys.Upload) { up.Identity.Curve25519 = one }, "low-order"},
		{"a low-order fallback key is refused", func(up *keys.Upload) { up.FallbackKey.Key = zero }, "low-order"},
		{"a missing identity signature is refused", func(up *keys.Upload) { up.IdentitySignature = "" }, "identity_signature is required"},
		{"an identity signature by another key is refused", func(up *keys.Upload) {
			up.IdentitySignature = other.upload(t, "x", 0).IdentitySignature
		}, "does not verify"},
		{"a one-time key signed for another id is refused", func(up *keys.Upload) { up.OneTimeKeys[1].ID = "renamed" }, "one_time_keys[1].signature does not verify"},
		{"a short signature is refused", func(up *keys.Upload) { up.OneTimeKeys[0].Signature = up.OneTimeKeys[0].Signature[:40] }, "must be 64 bytes"},
		{"101 one-time keys are refused", func(up *keys.Upload) {
			for i := range 99 {
				up.OneTimeKeys = append(up.OneTimeKeys, d.signed(t, fmt.Sprint("z", i)))
			}
		}, "too many one-time keys"},
		{"a key id twice is refused", func(up *keys.Upload) { up.OneTimeKeys[1] = up.OneTimeKeys[0] }, "appears twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			up := d.upload(t, "a", 2)
			tc.mutate(&up)
			status, body := keyCall(t, gw, "PUT", "/api/v1/keys/devices/phone", "tok-alice", up)
			if status != 400 || !strings.Contains(string(body), tc.want) {
				t.Errorf("got %d %s, want 400 saying %q", status, body, tc.want)
			}
		})
	}
	// Signatures name the user: bob cannot publish alice's signed keys.
	if status, body := keyCall(t, gw, "PUT", "/api/v1/keys/devices/phone", "tok-bob", d.upload(t, "a", 1)); status != 400 {
		t.Errorf("alice's upload sent by bob: %d %s, want 400", status, body)
	}
	if status, body := keyCall(t, gw, "PUT", "/api/v1/keys/devices/phone", "tok-alice", d.upload(t, "a", 1)); status != 200 {
		t.Errorf("the valid upload: %d %s", status, body)
	}
}

func TestEachOneTimeKeyIsClaimedOnceThroughTheAPI(t *testing.T) {
	gw := newKeysAPI(t).URL
	d := newKeyDevice(t, "alice", "phone")
	if status, body := keyCall(t, gw, "PUT", "/api/v1/keys/devices/phone", "tok-alice", d.upload(t, "a", 40)); status != 200 {
		t.Fatalf("upload: %d %s", status, body)
	}
	var (
		mu        sync.Mutex
		seen      = map[string]bool{}
		fallbacks int
		wg        sync.WaitGroup
	)
	// 55 claims (under the limit of 60) of 40 keys.
	for range 55 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, body := keyCall(t, gw, "POST", "/api/v1/keys/claim", "tok-bob", map[string]string{"user": "alice", "device_id": "phone"})
			var b keys.Bundle
			if status != 200 || json.Unmarshal(body, &b) != nil {
				t.Errorf("claim: %d %s", status, body)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if b.OneTimeKey == nil {
				fallbacks++
				if b.FallbackKey == nil || b.FallbackKey.ID != "fallback" {
					t.Errorf("a claim with no one-time key left has fallback %+v", b.FallbackKey)
				}
				return
			}
			if seen[b.OneTimeKey.ID] {
				t.Errorf("one-time key %s handed out twice", b.OneTimeKey.ID)
			}
			seen[b.OneTimeKey.ID] = true
		}()
	}
	wg.Wait()
	if len(seen) != 40 || fallbacks != 15 {
		t.Errorf("got %d distinct one-time keys and %d fallback-only claims, want 40 and 15", len(seen), fallbacks)
	}
	status, body := keyCall(t, gw, "GET", "/api/v1/keys/devices/phone/count", "tok-alice", nil)
	if status != 200 || string(body) != `{"low":true,"one_time_key_count":0}`+"\n" {
		t.Errorf("count: %d %q", status, body)
	}
}
