package storetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/keys"
)

// Keys runs the keys.Store (E2EE key directory) conformance suite. The
// store checks no signature (the service does), so the keys here are
// placeholders.
func Keys(t *testing.T, open func(t *testing.T) keys.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s keys.Store)
	}{
		{"an upload is read back and a repeated one adds keys, skipping known ids", testKeysRoundTrip},
		{"each one-time key is claimed once, oldest first, then only the fallback key", testKeysClaimOrder},
		{"200 concurrent claims of 150 keys hand out each key exactly once", testKeysConcurrentClaims},
		{"a new identity drops the old keys and says it replaced them", testKeysIdentityChange},
		{"more one-time keys than the limit are refused and nothing is stored", testKeysTooMany},
		{"a device beyond the limit is a conflict", testKeysTooManyDevices},
		{"unknown devices are not_found and deleting one removes its keys", testKeysNotFound},
		{"deleting a user removes every device of theirs with its keys and no other", testKeysDeleteUser},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

var keysT0 = time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC)

func keyPut(user, dev, identity string, otks int, fallback bool) keys.Put {
	p := keys.Put{
		User: user, DeviceID: dev, Identity: keys.IdentityKeys{Curve25519: "c-" + identity, Ed25519: "e-" + identity},
		IdentitySignature: "sig-" + identity, At: keysT0, MaxKeys: keys.MaxOneTimeKeys, MaxDevices: keys.MaxDevices,
	}
	for i := range otks {
		p.OneTimeKeys = append(p.OneTimeKeys, keys.SignedKey{ID: fmt.Sprintf("k%03d", i), Key: fmt.Sprintf("key-%s-%d", identity, i), Signature: "s"})
	}
	if fallback {
		p.FallbackKey = &keys.SignedKey{ID: "fb", Key: "fallback-" + identity, Signature: "fs"}
	}
	return p
}

func mustPut(t *testing.T, s keys.Store, p keys.Put) keys.PutResult {
	t.Helper()
	res, err := s.PutKeys(context.Background(), p)
	if err != nil {
		t.Fatalf("PutKeys(%s/%s): %v", p.User, p.DeviceID, err)
	}
	return res
}

func testKeysRoundTrip(t *testing.T, s keys.Store) {
	ctx := context.Background()
	res := mustPut(t, s, keyPut("alice", "phone", "A", 3, true))
	if !res.Created || res.Replaced || res.OneTimeKeyCount != 3 {
		t.Fatalf("first upload = %+v, want created with 3 keys", res)
	}
	// Again with k000..k004: three known ids skipped, two added.
	res = mustPut(t, s, keyPut("alice", "phone", "A", 5, false))
	if res.Created || res.Replaced || res.OneTimeKeyCount != 5 {
		t.Fatalf("second upload = %+v, want 5 keys, neither created nor replaced", res)
	}
	d, err := s.Device(ctx, "alice", "phone")
	if err != nil {
		t.Fatal(err)
	}
	if d.Identity.Curve25519 != "c-A" || d.Identity.Ed25519 != "e-A" || d.IdentitySignature != "sig-A" || d.OneTimeKeyCount != 5 || !d.CreatedAt.Equal(keysT0) {
		t.Errorf("Device = %+v", d)
	}
	mustPut(t, s, keyPut("alice", "laptop", "B", 0, false))
	devs, err := s.Devices(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 2 || devs[0].DeviceID != "laptop" || devs[1].DeviceID != "phone" || devs[1].OneTimeKeyCount != 5 {
		t.Errorf("Devices = %+v, want laptop then phone with 5 keys", devs)
	}
	if devs, _ := s.Devices(ctx, "nobody"); devs == nil || len(devs) != 0 {
		t.Errorf("Devices(nobody) = %#v, want an empty list", devs)
	}
	// The fallback key of the first upload is kept by the second.
	b, err := s.Claim(ctx, "alice", "phone")
	if err != nil {
		t.Fatal(err)
	}
	if b.FallbackKey == nil || b.FallbackKey.Key != "fallback-A" {
		t.Errorf("fallback after an upload without one = %+v, want the first one kept", b.FallbackKey)
	}
}

func testKeysClaimOrder(t *testing.T, s keys.Store) {
	ctx := context.Background()
	mustPut(t, s, keyPut("bob", "d", "A", 2, true))
	for i, want := range []string{"k000", "k001", ""} {
		b, err := s.Claim(ctx, "bob", "d")
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		if b.OneTimeKey != nil {
			got = b.OneTimeKey.ID
		}
		if got != want {
			t.Errorf("claim %d: one-time key %q, want %q", i, got, want)
		}
		if b.FallbackKey == nil || b.FallbackKey.ID != "fb" || b.Identity.Curve25519 != "c-A" || b.IdentitySignature != "sig-A" || b.User != "bob" || b.DeviceID != "d" {
			t.Errorf("claim %d: bundle %+v", i, b)
		}
	}
	if n, err := s.Count(ctx, "bob", "d"); err != nil || n != 0 {
		t.Errorf("Count after draining = %d, %v; want 0", n, err)
	}
	mustPut(t, s, keyPut("bob", "nofb", "C", 0, false))
	if b, err := s.Claim(ctx, "bob", "nofb"); err != nil || b.OneTimeKey != nil || b.FallbackKey != nil {
		t.Errorf("claim of a device without keys = %+v, %v; want identity only", b, err)
	}
}

func testKeysConcurrentClaims(t *testing.T, s keys.Store) {
	ctx := context.Background()
	p := keyPut("carol", "d", "A", 100, true)
	mustPut(t, s, p)
	p2 := keyPut("carol", "d", "A", 0, false)
	for i := range 50 {
		p2.OneTimeKeys = append(p2.OneTimeKeys, keys.SignedKey{ID: fmt.Sprintf("x%03d", i), Key: fmt.Sprint("x", i), Signature: "s"})
	}
	// 100 then 50 more: the limit is on what is held, so upload after a few claims.
	for range 50 {
		if _, err := s.Claim(ctx, "carol", "d"); err != nil {
			t.Fatal(err)
		}
	}
	mustPut(t, s, p2)
	const claims = 200
	var (
		mu       sync.Mutex
		seen     = map[string]int{}
		fallback int
		wg       sync.WaitGroup
		errs     = make(chan error, claims)
	)
	for range claims {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, err := s.Claim(ctx, "carol", "d")
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if b.OneTimeKey == nil {
				fallback++
				return
			}
			seen[b.OneTimeKey.ID]++
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Claim: %v", err)
	}
	if len(seen) != 100 {
		t.Errorf("distinct keys handed out = %d, want 100", len(seen))
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("key %s handed out %d times", id, n)
		}
	}
	if fallback != claims-100 {
		t.Errorf("claims answered with the fallback key only = %d, want %d", fallback, claims-100)
	}
}

func testKeysIdentityChange(t *testing.T, s keys.Store) {
	ctx := context.Background()
	mustPut(t, s, keyPut("dave", "d", "A", 4, true))
	res := mustPut(t, s, keyPut("dave", "d", "B", 1, false))
	if !res.Replaced || res.Created || res.OneTimeKeyCount != 1 {
		t.Fatalf("upload of a new identity = %+v, want replaced with 1 key", res)
	}
	b, err := s.Claim(ctx, "dave", "d")
	if err != nil {
		t.Fatal(err)
	}
	if b.Identity.Curve25519 != "c-B" || b.OneTimeKey == nil || b.OneTimeKey.Key != "key-B-0" || b.FallbackKey != nil {
		t.Errorf("bundle after the change = %+v, want only the new identity's keys", b)
	}
}

func testKeysTooMany(t *testing.T, s keys.Store) {
	ctx := context.Background()
	mustPut(t, s, keyPut("erin", "d", "A", 60, false))
	p := keyPut("erin", "d", "A", 0, false)
	for i := range 41 {
		p.OneTimeKeys = append(p.OneTimeKeys, keys.SignedKey{ID: fmt.Sprintf("n%03d", i), Key: "n", Signature: "s"})
	}
	if _, err := s.PutKeys(ctx, p); code(err) != unhidra.EINVALID {
		t.Errorf("upload to 101 keys: %v, want invalid", err)
	}
	if n, _ := s.Count(ctx, "erin", "d"); n != 60 {
		t.Errorf("count after the refused upload = %d, want 60", n)
	}
}

func testKeysTooManyDevices(t *testing.T, s keys.Store) {
	ctx := context.Background()
	for i := range keys.MaxDevices {
		mustPut(t, s, keyPut("fay", fmt.Sprint("d", i), "A", 0, false))
	}
	if _, err := s.PutKeys(ctx, keyPut("fay", "one-more", "A", 0, false)); code(err) != unhidra.ECONFLICT {
		t.Errorf("device %d: %v, want conflict", keys.MaxDevices+1, err)
	}
	// A known device may still upload; another user is not counted.
	mustPut(t, s, keyPut("fay", "d0", "A", 1, false))
	mustPut(t, s, keyPut("gus", "d0", "A", 0, false))
}

func testKeysNotFound(t *testing.T, s keys.Store) {
	ctx := context.Background()
	if _, err := s.Claim(ctx, "hal", "d"); code(err) != unhidra.ENOTFOUND {
		t.Errorf("Claim unknown: %v, want not_found", err)
	}
	if _, err := s.Count(ctx, "hal", "d"); code(err) != unhidra.ENOTFOUND {
		t.Errorf("Count unknown: %v, want not_found", err)
	}
	if err := s.DeleteDevice(ctx, "hal", "d"); code(err) != unhidra.ENOTFOUND {
		t.Errorf("DeleteDevice unknown: %v, want not_found", err)
	}
	mustPut(t, s, keyPut("hal", "d", "A", 3, true))
	if _, err := s.Claim(ctx, "other", "d"); code(err) != unhidra.ENOTFOUND {
		t.Errorf("Claim of another user's device id: %v, want not_found", err)
	}
	if err := s.DeleteDevice(ctx, "hal", "d"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Device(ctx, "hal", "d"); code(err) != unhidra.ENOTFOUND {
		t.Errorf("Device after delete: %v, want not_found", err)
	}
	res := mustPut(t, s, keyPut("hal", "d", "A", 0, false))
	if !res.Created || res.OneTimeKeyCount != 0 {
		t.Errorf("upload after delete = %+v, want a new device with no old keys", res)
	}
}

func testKeysDeleteUser(t *testing.T, s keys.Store) {
	ctx := context.Background()
	if ids, err := s.DeleteUser(ctx, "ivy"); err != nil || ids == nil || len(ids) != 0 {
		t.Errorf("DeleteUser of a user without devices = %#v, %v; want an empty list", ids, err)
	}
	mustPut(t, s, keyPut("ivy", "phone", "A", 3, true))
	mustPut(t, s, keyPut("ivy", "laptop", "B", 2, false))
	mustPut(t, s, keyPut("jay", "phone", "C", 1, false))
	ids, err := s.DeleteUser(ctx, "ivy")
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 2 || ids[0] != "laptop" || ids[1] != "phone" {
		t.Errorf("DeleteUser(ivy) = %v, want [laptop phone]", ids)
	}
	if devs, err := s.Devices(ctx, "ivy"); err != nil || len(devs) != 0 {
		t.Errorf("Devices after DeleteUser = %+v, %v; want none", devs, err)
	}
	if _, err := s.Claim(ctx, "ivy", "phone"); code(err) != unhidra.ENOTFOUND {
		t.Errorf("Claim after DeleteUser: %v, want not_found", err)
	}
	if n, err := s.Count(ctx, "jay", "phone"); err != nil || n != 1 {
		t.Errorf("another user's device after DeleteUser = %d keys, %v; want kept with 1", n, err)
	}
	// The one-time keys went with the devices.
	if res := mustPut(t, s, keyPut("ivy", "phone", "A", 0, false)); !res.Created || res.OneTimeKeyCount != 0 {
		t.Errorf("upload after DeleteUser = %+v, want a new device with no old keys", res)
	}
	if ids, err := s.DeleteUser(ctx, "ivy"); err != nil || len(ids) != 1 || ids[0] != "phone" {
		t.Errorf("DeleteUser again = %v, %v; want [phone]", ids, err)
	}
}
