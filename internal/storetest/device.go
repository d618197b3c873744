package storetest

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/auth"
	"github.com/unhidra/unhidra/internal/device"
)

// DeviceStores are the stores of one empty, migrated database that the
// device suites (Device, Fleet, Telemetry) run against: Users creates the
// accounts that own devices, Registry the devices, and Fleet is the fleet
// store on the same data (it reads and writes the devices' online state).
// Fleet may be nil for the Device suite.
type DeviceStores struct {
	Users    auth.Store
	Registry device.Store
	Fleet    device.FleetStore
}

// Device runs the device.Store (registry) conformance suite.
func Device(t *testing.T, open func(t *testing.T) DeviceStores) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s device.Store)
	}{
		{"a device is stored and read back with every field", testDeviceRoundTrip},
		{"a taken id is a conflict in any letter case", testDeviceConflict},
		{"ids are found in any letter case and come back as stored", testDeviceIDCase},
		{"every call naming an unknown device or key is not_found", testDeviceNotFound},
		{"devices are listed by id, all of them or one owner's", testDevicesList},
		{"the key hash finds its device and is replaced by a new one", testDeviceKeyHash},
		{"revocation is idempotent, keeps the first time and ends rekeying", testDeviceRevoke},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := open(t)
			mkUsers(t, st.Users, "alice", "bob")
			tc.fn(t, st.Registry)
		})
	}
	t.Run("a device's owner must be an account", func(t *testing.T) {
		st := open(t)
		mkUsers(t, st.Users, "alice")
		ctx := context.Background()
		if err := st.Registry.CreateDevice(ctx, device.Device{ID: "d1", Name: "x", Owner: "nobody", CreatedAt: devT0}, keyHashN(1)); err == nil {
			t.Error("CreateDevice with an unknown owner = nil, want an error")
		}
		if _, err := st.Registry.Device(ctx, "d1"); code(err) != unhidra.ENOTFOUND {
			t.Errorf("Device after a refused create: %v, want not_found", err)
		}
	})
}

var devT0 = time.Date(2026, 5, 1, 8, 0, 0, 5000, time.UTC)

func keyHashN(i int) []byte { return bytes.Repeat([]byte{byte(0x80 + i)}, 32) }

func mkDevice(t *testing.T, s device.Store, id, owner string, key int) device.Device {
	t.Helper()
	d := device.Device{ID: id, Name: "sensor " + id, Owner: owner, CreatedAt: devT0}
	if err := s.CreateDevice(context.Background(), d, keyHashN(key)); err != nil {
		t.Fatalf("CreateDevice(%s): %v", id, err)
	}
	return d
}

func getDevice(t *testing.T, s device.Store, id string) device.Device {
	t.Helper()
	d, err := s.Device(context.Background(), id)
	if err != nil {
		t.Fatalf("Device(%s): %v", id, err)
	}
	return d
}

func testDeviceRoundTrip(t *testing.T, s device.Store) {
	mkDevice(t, s, "d1", "alice", 1)
	d := getDevice(t, s, "d1")
	if d.ID != "d1" || d.Name != "sensor d1" || d.Owner != "alice" || !d.CreatedAt.Equal(devT0) ||
		d.Revoked || d.RevokedAt != nil || d.Online || d.LastSeen != nil {
		t.Errorf("Device = %+v, want d1 of alice created at %v, not revoked, offline, never seen", d, devT0)
	}
}

func testDeviceConflict(t *testing.T, s device.Store) {
	ctx := context.Background()
	mkDevice(t, s, "gh-1", "alice", 1)
	for i, id := range []string{"gh-1", "GH-1", "Gh-1"} {
		if err := s.CreateDevice(ctx, device.Device{ID: id, Name: "y", Owner: "bob", CreatedAt: devT0}, keyHashN(10+i)); code(err) != unhidra.ECONFLICT {
			t.Errorf("CreateDevice(%s) after gh-1: %v, want conflict", id, err)
		}
	}
	if d := getDevice(t, s, "gh-1"); d.Owner != "alice" || d.Name != "sensor gh-1" {
		t.Errorf("a refused create changed the device: %+v", d)
	}
	if ds, _ := s.Devices(ctx, "bob"); len(ds) != 0 {
		t.Errorf("Devices(bob) = %+v, want none", ds)
	}
}

func testDeviceIDCase(t *testing.T, s device.Store) {
	ctx := context.Background()
	mkDevice(t, s, "pump-7", "alice", 1)
	for _, id := range []string{"pump-7", "PUMP-7", "Pump-7"} {
		if d, err := s.Device(ctx, id); err != nil || d.ID != "pump-7" {
			t.Errorf("Device(%s) = %q, %v; want pump-7 as stored", id, d.ID, err)
		}
	}
	if err := s.SetKeyHash(ctx, "PUMP-7", keyHashN(2)); err != nil {
		t.Errorf("SetKeyHash(PUMP-7): %v", err)
	}
	if d, _, err := s.DeviceByKeyHash(ctx, keyHashN(2)); err != nil || d.ID != "pump-7" {
		t.Errorf("DeviceByKeyHash after SetKeyHash(PUMP-7) = %q, %v; want pump-7", d.ID, err)
	}
	if err := s.RevokeDevice(ctx, "Pump-7", devT0); err != nil {
		t.Errorf("RevokeDevice(Pump-7): %v", err)
	}
	if d := getDevice(t, s, "pump-7"); !d.Revoked {
		t.Error("RevokeDevice(Pump-7) did not revoke pump-7")
	}
}

func testDeviceNotFound(t *testing.T, s device.Store) {
	ctx := context.Background()
	mkDevice(t, s, "d1", "alice", 1)
	calls := map[string]func() error{
		"Device":          func() error { _, err := s.Device(ctx, "d2"); return err },
		"DeviceByKeyHash": func() error { _, _, err := s.DeviceByKeyHash(ctx, keyHashN(9)); return err },
		"RevokeDevice":    func() error { return s.RevokeDevice(ctx, "d2", devT0) },
		"SetKeyHash":      func() error { return s.SetKeyHash(ctx, "d2", keyHashN(9)) },
	}
	for name, call := range calls {
		if err := call(); code(err) != unhidra.ENOTFOUND {
			t.Errorf("%s(unknown) error = %v, want not_found", name, err)
		}
	}
	if _, _, err := s.DeviceByKeyHash(ctx, keyHashN(9)); code(err) != unhidra.ENOTFOUND {
		t.Errorf("SetKeyHash on an unknown device stored its hash: %v", err)
	}
}

func testDevicesList(t *testing.T, s device.Store) {
	ctx := context.Background()
	if ds, err := s.Devices(ctx, ""); err != nil || len(ds) != 0 {
		t.Errorf("Devices on an empty registry = %v, %v; want none", ds, err)
	}
	mkDevice(t, s, "d3", "alice", 3)
	mkDevice(t, s, "d1", "bob", 1)
	mkDevice(t, s, "d2", "alice", 2)
	ids := func(owner string) string {
		t.Helper()
		ds, err := s.Devices(ctx, owner)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, d := range ds {
			out = append(out, d.ID+"/"+d.Owner)
		}
		return fmt.Sprint(out)
	}
	for owner, want := range map[string]string{"": "[d1/bob d2/alice d3/alice]", "alice": "[d2/alice d3/alice]", "bob": "[d1/bob]", "carol": "[]"} {
		if got := ids(owner); got != want {
			t.Errorf("Devices(%q) = %s, want %s", owner, got, want)
		}
	}
}

func testDeviceKeyHash(t *testing.T, s device.Store) {
	ctx := context.Background()
	mkDevice(t, s, "d1", "alice", 1)
	mkDevice(t, s, "d2", "alice", 2)
	d, stored, err := s.DeviceByKeyHash(ctx, keyHashN(1))
	if err != nil || d.ID != "d1" || d.Owner != "alice" || !bytes.Equal(stored, keyHashN(1)) {
		t.Fatalf("DeviceByKeyHash = %+v, %x, %v; want d1 with its stored hash", d, stored, err)
	}
	if err := s.SetKeyHash(ctx, "d1", keyHashN(5)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.DeviceByKeyHash(ctx, keyHashN(1)); code(err) != unhidra.ENOTFOUND {
		t.Errorf("the replaced hash: %v, want not_found", err)
	}
	if d, stored, err := s.DeviceByKeyHash(ctx, keyHashN(5)); err != nil || d.ID != "d1" || !bytes.Equal(stored, keyHashN(5)) {
		t.Errorf("the new hash = %q, %x, %v; want d1", d.ID, stored, err)
	}
	if d, _, err := s.DeviceByKeyHash(ctx, keyHashN(2)); err != nil || d.ID != "d2" {
		t.Errorf("another device's hash = %q, %v; want d2 untouched", d.ID, err)
	}
}

func testDeviceRevoke(t *testing.T, s device.Store) {
	ctx := context.Background()
	mkDevice(t, s, "d1", "alice", 1)
	mkDevice(t, s, "d2", "alice", 2)
	if err := s.RevokeDevice(ctx, "d1", devT0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeDevice(ctx, "d1", devT0.Add(time.Hour)); err != nil {
		t.Errorf("revoking twice: %v, want no error", err)
	}
	d := getDevice(t, s, "d1")
	if !d.Revoked || d.RevokedAt == nil || !d.RevokedAt.Equal(devT0.Add(time.Minute)) || d.Online {
		t.Errorf("Device after revoke = %+v, want revoked at the first time, offline", d)
	}
	// The key still finds the device, marked revoked: the registry refuses
	// it on the flag, after the constant-time comparison.
	if d, _, err := s.DeviceByKeyHash(ctx, keyHashN(1)); err != nil || d.ID != "d1" || !d.Revoked {
		t.Errorf("DeviceByKeyHash of a revoked device = %+v, %v; want d1, revoked", d, err)
	}
	if err := s.SetKeyHash(ctx, "d1", keyHashN(7)); code(err) != unhidra.ENOTFOUND {
		t.Errorf("SetKeyHash on a revoked device: %v, want not_found", err)
	}
	if _, _, err := s.DeviceByKeyHash(ctx, keyHashN(7)); code(err) != unhidra.ENOTFOUND {
		t.Errorf("a revoked device was rekeyed: %v", err)
	}
	if d := getDevice(t, s, "d2"); d.Revoked {
		t.Error("revoking d1 revoked d2")
	}
}
