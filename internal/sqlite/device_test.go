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

func TestDeviceStoreIDsAreCaseInsensitive(t *testing.T) {
	db := authTestDB(t)
	ctx := context.Background()
	sqlite.NewAuthStore(db).CreateUser(ctx, authUser("alice"))
	s := sqlite.NewDeviceStore(db)
	if err := s.CreateDevice(ctx, device.Device{ID: "gh-1", Name: "x", Owner: "alice", CreatedAt: authT0}, bytes.Repeat([]byte{1}, 32)); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateDevice(ctx, device.Device{ID: "GH-1", Name: "y", Owner: "alice", CreatedAt: authT0}, bytes.Repeat([]byte{2}, 32)); unhidra.ErrorCode(err) != unhidra.ECONFLICT {
		t.Fatalf("GH-1 after gh-1: %v, want conflict", err)
	}
	for _, id := range []string{"GH-1", "gH-1", "gh-1"} {
		if d, err := s.Device(ctx, id); err != nil || d.ID != "gh-1" {
			t.Errorf("Device(%s) = %+v, %v; want gh-1 as stored", id, d, err)
		}
	}
	if err := s.RevokeDevice(ctx, "GH-1", authT0); err != nil {
		t.Fatal(err)
	}
	if d, _ := s.Device(ctx, "gh-1"); !d.Revoked {
		t.Error("RevokeDevice(GH-1) did not revoke gh-1")
	}
}

// An existing database may hold ids that differ only in case (stored before
// ids were case-insensitive): the migration must apply anyway, keep both,
// and refuse any further id in another case.
func TestDeviceIDMigrationKeepsExistingIDsThatCollide(t *testing.T) {
	db := authTestDB(t)
	ctx := context.Background()
	sqlite.NewAuthStore(db).CreateUser(ctx, authUser("alice"))
	w := db.Writer()
	// Back to the schema before the migration.
	for _, q := range []string{`DROP TRIGGER devices_id_unique_nocase`, `DROP INDEX devices_id_nocase`, `DELETE FROM schema_migrations WHERE name = '0008_device_id_nocase.sql'`} {
		if _, err := w.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	for i, id := range []string{"Pump", "pump", "Valve"} {
		if _, err := w.ExecContext(ctx, `INSERT INTO devices (id, name, owner, key_hash, created_at) VALUES (?, ?, 'alice', ?, ?)`,
			id, id, []byte{byte(i)}, sqlite.Time(authT0)); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Migrate(ctx); err != nil {
		t.Fatalf("migration on colliding ids: %v", err)
	}
	s := sqlite.NewDeviceStore(db)
	for id, want := range map[string]string{"Pump": "Pump", "pump": "pump", "PUMP": "", "valve": "Valve"} {
		d, err := s.Device(ctx, id)
		if err != nil || (want != "" && d.ID != want) || (want == "" && d.ID != "Pump" && d.ID != "pump") {
			t.Errorf("Device(%s) = %q, %v; want %q", id, d.ID, err, want)
		}
	}
	for _, id := range []string{"PUMP", "valve"} {
		if err := s.CreateDevice(ctx, device.Device{ID: id, Name: id, Owner: "alice", CreatedAt: authT0}, []byte("new-"+id)); unhidra.ErrorCode(err) != unhidra.ECONFLICT {
			t.Errorf("CreateDevice(%s) after the migration: %v, want conflict", id, err)
		}
	}
}
