package sqlite_test

import (
	"context"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/device"
	"github.com/unhidra/unhidra/internal/sqlite"
)

// A database written before migration 0009 (telemetry as a rowid table with
// two indexes) keeps every point, its seq, data and order, and new points
// sort after the old ones of the same ts.
func TestTheTelemetryMigrationKeepsEveryPointInOrder(t *testing.T) {
	db, st := fleetTestDB(t)
	ctx := context.Background()
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.Writer().ExecContext(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	// Back to the shape of 0005, with points in it.
	exec(`DROP VIEW telemetry`)
	exec(`DROP TABLE telemetry_recent`)
	exec(`DROP TABLE telemetry_points`)
	exec(`CREATE TABLE telemetry (id INTEGER PRIMARY KEY, device_id TEXT NOT NULL, ts TEXT NOT NULL, seq INTEGER, data TEXT NOT NULL, received_at TEXT NOT NULL)`)
	exec(`CREATE INDEX telemetry_device_ts ON telemetry (device_id, ts)`)
	exec(`CREATE INDEX telemetry_ts ON telemetry (ts)`)
	ts := sqlite.Time(fleetT0)
	for i := 1; i <= 5; i++ {
		dev := "d1"
		if i%2 == 0 {
			dev = "d2"
		}
		// Two points of d1 share a ts: the order they were stored in is kept.
		exec(`INSERT INTO telemetry (device_id, ts, seq, data, received_at) VALUES (?, ?, ?, ?, ?)`, dev, ts, i, `{"i":1}`, ts)
	}
	exec(`DELETE FROM schema_migrations WHERE version IN (9, 13)`)
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	var indexes int
	if err := db.Reader().QueryRow(`SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'telemetry_points' AND sql IS NOT NULL`).Scan(&indexes); err != nil {
		t.Fatal(err)
	}
	if indexes != 0 {
		t.Errorf("%d secondary indexes left on telemetry, want none (the key is the index)", indexes)
	}
	if err := st.AppendTelemetry(ctx, []device.TelemetryPoint{{DeviceID: "d1", TS: fleetT0, Seq: ptr(int64(99)), Data: []byte(`{"new":1}`), ReceivedAt: fleetT0.Add(time.Second)}}); err != nil {
		t.Fatal(err)
	}
	pts, err := st.QueryTelemetry(ctx, "d1", fleetT0, fleetT0.Add(time.Second), 10)
	if err != nil {
		t.Fatal(err)
	}
	var seqs []int64
	for _, p := range pts {
		seqs = append(seqs, *p.Seq)
	}
	if len(seqs) != 4 || seqs[0] != 1 || seqs[1] != 3 || seqs[2] != 5 || seqs[3] != 99 {
		t.Fatalf("d1's points in order %v, want [1 3 5 99]", seqs)
	}
	if pts2, _ := st.QueryTelemetry(ctx, "d2", fleetT0, fleetT0.Add(time.Second), 10); len(pts2) != 2 {
		t.Fatalf("d2 has %d points, want 2", len(pts2))
	}
}

func ptr[T any](v T) *T { return &v }
