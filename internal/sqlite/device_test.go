package sqlite_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/device"
	"github.com/unhidra/unhidra/internal/sqlite"
)

func TestDeviceStoreRegistryRoundTrip(t *testing.T) {
	db := authTestDB(t)
	ctx := context.Background()
	sqlite.NewAuthStore(db).CreateUser(ctx, authUser("alice"))
	s := sqlite.NewDeviceStore(db)
	h1, h2 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	d := device.Device{ID: "d1", Name: "sensor", Owner: "alice", CreatedAt: authT0}
	if err := s.CreateDevice(ctx, d, h1); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateDevice(ctx, d, h2); unhidra.ErrorCode(err) != unhidra.ECONFLICT {
		t.Fatalf("duplicate id: %v", err)
	}
	if err := s.CreateDevice(ctx, device.Device{ID: "d2", Name: "x", Owner: "nobody", CreatedAt: authT0}, h2); err == nil {
		t.Fatal("a device with an unknown owner was stored")
	}
	got, stored, err := s.DeviceByKeyHash(ctx, h1)
	if err != nil || got.ID != "d1" || !bytes.Equal(stored, h1) || got.Online || got.LastSeen != nil || !got.CreatedAt.Equal(authT0) {
		t.Fatalf("by hash: %+v %v", got, err)
	}
	if err := s.SetKeyHash(ctx, "d1", h2); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.DeviceByKeyHash(ctx, h1); unhidra.ErrorCode(err) != unhidra.ENOTFOUND {
		t.Fatalf("old hash after SetKeyHash: %v", err)
	}
	if err := s.RevokeDevice(ctx, "d1", authT0); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeDevice(ctx, "d1", authT0.Add(1)); err != nil {
		t.Fatalf("revoking twice: %v", err)
	}
	got, _ = s.Device(ctx, "d1")
	if !got.Revoked || !got.RevokedAt.Equal(authT0) {
		t.Fatalf("after revoke %+v, want revoked at the first time", got)
	}
	if err := s.SetKeyHash(ctx, "d1", h1); unhidra.ErrorCode(err) != unhidra.ENOTFOUND {
		t.Fatalf("rekeying a revoked device: %v", err)
	}
	if ds, _ := s.Devices(ctx, "alice"); len(ds) != 1 {
		t.Errorf("alice's devices %v", ds)
	}
	if ds, _ := s.Devices(ctx, "bob"); len(ds) != 0 {
		t.Errorf("bob's devices %v", ds)
	}
}
