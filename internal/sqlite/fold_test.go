package sqlite_test

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/device"
	"github.com/unhidra/unhidra/internal/sqlite"
)

// seqs returns the seq of each of device's points from since, in the order
// QueryTelemetry gives them.
func seqs(t *testing.T, st *sqlite.FleetStore, dev string, limit int) []int64 {
	t.Helper()
	pts, err := st.QueryTelemetry(context.Background(), dev, time.Time{}, fleetT0.Add(time.Hour), limit)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]int64, len(pts))
	for i, p := range pts {
		out[i] = *p.Seq
	}
	return out
}

func count(t *testing.T, db *sqlite.DB, q string) int {
	t.Helper()
	var n int
	if err := db.Reader().QueryRow(q).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// Points are read the same before, during and after their fold, in time
// order, points of one ts in the order they were stored, whichever stage
// each is in.
func TestTelemetryReadsTheSameBeforeAndAfterItIsFolded(t *testing.T) {
	db, st := fleetTestDB(t)
	ctx := context.Background()
	add := func(pts ...device.TelemetryPoint) {
		t.Helper()
		if err := st.AppendTelemetry(ctx, pts); err != nil {
			t.Fatal(err)
		}
	}
	at := func(s int) time.Time { return fleetT0.Add(time.Duration(s) * time.Second) }
	// d1: ts 3, 1, 2, and two more at ts 2 later; d2 interleaved.
	add(point("d1", at(3), 30), point("d2", at(1), 100), point("d1", at(1), 10))
	add(point("d1", at(2), 20))
	want := []int64{10, 20, 30}
	if got := seqs(t, st, "d1", 10); !slices.Equal(got, want) {
		t.Fatalf("unfolded: %v, want %v", got, want)
	}
	moved, err := db.FoldTelemetry(ctx)
	if err != nil || moved != 4 {
		t.Fatalf("folded %d (%v), want 4", moved, err)
	}
	// Newer points of an already folded ts sort after the folded ones.
	add(point("d1", at(2), 21), point("d2", at(2), 200))
	add(point("d1", at(2), 22))
	want = []int64{10, 20, 21, 22, 30}
	if got := seqs(t, st, "d1", 10); !slices.Equal(got, want) {
		t.Fatalf("half folded: %v, want %v", got, want)
	}
	if got := seqs(t, st, "d1", 3); !slices.Equal(got, want[:3]) {
		t.Fatalf("limit 3 across both stages: %v, want %v", got, want[:3])
	}
	if moved, err := db.FoldTelemetry(ctx); err != nil || moved != 3 {
		t.Fatalf("folded %d (%v), want 3", moved, err)
	}
	if got := seqs(t, st, "d1", 10); !slices.Equal(got, want) {
		t.Fatalf("folded: %v, want %v", got, want)
	}
	if got := seqs(t, st, "d2", 10); !slices.Equal(got, []int64{100, 200}) {
		t.Fatalf("d2: %v", got)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM telemetry_recent`); n != 0 {
		t.Fatalf("%d points left unfolded", n)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM telemetry_points`); n != 7 {
		t.Fatalf("%d points folded, want 7", n)
	}
	if moved, err := db.FoldTelemetry(ctx); err != nil || moved != 0 {
		t.Fatalf("an empty fold moved %d (%v)", moved, err)
	}
}

// A fold stopped between its inserts and its delete (a crash) leaves points
// in both stages: each is read once, and the next fold finishes the move
// without a duplicate.
func TestAPointInBothStagesIsReadOnce(t *testing.T) {
	db, st := fleetTestDB(t)
	ctx := context.Background()
	for i := range 5 {
		if err := st.AppendTelemetry(ctx, []device.TelemetryPoint{point("d1", fleetT0.Add(time.Duration(i)*time.Second), i)}); err != nil {
			t.Fatal(err)
		}
	}
	// The fold's inserts for the first three points, as a crash would leave them.
	if _, err := db.Writer().Exec(`INSERT INTO telemetry_points (device_id, ts, id, seq, data, received_at)
		SELECT device_id, ts, id, seq, data, received_at FROM telemetry_recent ORDER BY pid LIMIT 3`); err != nil {
		t.Fatal(err)
	}
	want := []int64{0, 1, 2, 3, 4}
	if got := seqs(t, st, "d1", 10); !slices.Equal(got, want) {
		t.Fatalf("read %v, want %v", got, want)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM telemetry WHERE device_id = 'd1'`); n != 5 {
		t.Fatalf("the telemetry view has %d points, want 5", n)
	}
	if _, err := db.FoldTelemetry(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM telemetry_points`); n != 5 {
		t.Fatalf("%d points after the fold, want 5", n)
	}
	if got := seqs(t, st, "d1", 10); !slices.Equal(got, want) {
		t.Fatalf("after the fold: %v, want %v", got, want)
	}
}

// Pruning removes old points from both stages.
func TestPruningReachesPointsNotYetFolded(t *testing.T) {
	db, st := fleetTestDB(t)
	ctx := context.Background()
	for i := range 4 {
		if err := st.AppendTelemetry(ctx, []device.TelemetryPoint{point("d1", fleetT0.Add(time.Duration(i)*time.Second), i)}); err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			if _, err := db.FoldTelemetry(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	// 0 and 1 are folded, 2 and 3 are not; the cut falls between 2 and 3.
	n, err := st.PruneTelemetry(ctx, fleetT0.Add(2500*time.Millisecond))
	if err != nil || n != 3 {
		t.Fatalf("pruned %d (%v), want 3", n, err)
	}
	if got := seqs(t, st, "d1", 10); !slices.Equal(got, []int64{3}) {
		t.Fatalf("left %v, want [3]", got)
	}
}

// The folder moves points on its own, and points it has not moved when the
// database closes are still there when it opens again.
func TestTheFolderRunsInTheBackgroundAndCloseKeepsTheRest(t *testing.T) {
	db, st := fleetTestDB(t)
	ctx := context.Background()
	if err := st.AppendTelemetry(ctx, []device.TelemetryPoint{point("d1", fleetT0, 1), point("d2", fleetT0, 2)}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for count(t, db, `SELECT COUNT(*) FROM telemetry_recent`) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the folder did not move the points within 20 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := count(t, db, `SELECT COUNT(*) FROM telemetry_points`); n != 2 {
		t.Fatalf("%d points folded, want 2", n)
	}

	path := filepath.Join(t.TempDir(), "closed.db")
	db2, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if err := db2.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := db2.Writer().Exec(`INSERT INTO users (username, display_name, password_hash, created_at, updated_at) VALUES ('alice', 'alice', 'x', '', '');
		INSERT INTO devices (id, name, owner, key_hash, created_at) VALUES ('d1', 'd1', 'alice', x'01', '')`); err != nil {
		t.Fatal(err)
	}
	if err := sqlite.NewFleetStore(db2).AppendTelemetry(ctx, []device.TelemetryPoint{point("d1", fleetT0, 7)}); err != nil {
		t.Fatal(err)
	}
	if err := db2.Close(); err != nil { // at once: the folder has not run
		t.Fatal(err)
	}
	db3, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db3.Close()
	if got := seqs(t, sqlite.NewFleetStore(db3), "d1", 10); !slices.Equal(got, []int64{7}) {
		t.Fatalf("after reopening: %v, want [7]", got)
	}
}
