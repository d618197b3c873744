package sqlite_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/chat"
	"github.com/unhidra/unhidra/internal/device"
	"github.com/unhidra/unhidra/internal/sqlite"
	"github.com/unhidra/unhidra/internal/sqlitetest"
	"github.com/unhidra/unhidra/internal/storetest"
	"github.com/unhidra/unhidra/wire"
)

var fleetT0 = time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)

// fleetTestDB is a migrated database with user alice and devices d1, d2.
func fleetTestDB(t testing.TB) (*sqlite.DB, *sqlite.FleetStore) {
	t.Helper()
	ctx := context.Background()
	db := sqlitetest.Open(t)
	exec := func(q string, args ...any) {
		if _, err := db.Writer().ExecContext(ctx, q, args...); err != nil {
			t.Fatal(err)
		}
	}
	exec(`INSERT INTO users (username, display_name, password_hash, created_at, updated_at) VALUES ('alice', 'alice', 'x', ?, ?)`, sqlite.Time(fleetT0), sqlite.Time(fleetT0))
	for _, d := range []string{"d1", "d2"} {
		exec(`INSERT INTO devices (id, name, owner, key_hash, created_at) VALUES (?, ?, 'alice', ?, ?)`, d, d, []byte("h"+d), sqlite.Time(fleetT0))
	}
	return db, sqlite.NewFleetStore(db)
}

func point(dev string, ts time.Time, i int) device.TelemetryPoint {
	seq := int64(i)
	return device.TelemetryPoint{DeviceID: dev, TS: ts, Seq: &seq, Data: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i)), ReceivedAt: ts}
}

func TestFleetStoreTelemetryRangeIsHalfOpenAndOrdered(t *testing.T) {
	_, st := fleetTestDB(t)
	ctx := context.Background()
	var batch []device.TelemetryPoint
	for i := 9; i >= 0; i-- { // stored out of order
		batch = append(batch, point("d1", fleetT0.Add(time.Duration(i)*time.Second), i))
	}
	batch = append(batch, point("d2", fleetT0.Add(3*time.Second), 99))
	if err := st.AppendTelemetry(ctx, batch); err != nil {
		t.Fatal(err)
	}
	got, err := st.QueryTelemetry(ctx, "d1", fleetT0.Add(2*time.Second), fleetT0.Add(5*time.Second), 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || *got[0].Seq != 2 || *got[2].Seq != 4 {
		t.Fatalf("got %d points starting at seq %v, want seq 2, 3, 4 (since inclusive, until exclusive)", len(got), got)
	}
	if got, _ := st.QueryTelemetry(ctx, "d1", time.Time{}, fleetT0.Add(time.Hour), 4); len(got) != 4 || *got[3].Seq != 3 {
		t.Fatalf("limit 4: %d points", len(got))
	}
}

func TestFleetStoreTelemetryMovesLastSeenOnlyForward(t *testing.T) {
	db, st := fleetTestDB(t)
	ctx := context.Background()
	if err := st.AppendTelemetry(ctx, []device.TelemetryPoint{point("d1", fleetT0, 1)}); err != nil {
		t.Fatal(err)
	}
	if err := st.AppendTelemetry(ctx, []device.TelemetryPoint{point("d1", fleetT0.Add(-time.Hour), 2)}); err != nil {
		t.Fatal(err)
	}
	var ls string
	if err := db.Reader().QueryRow(`SELECT last_seen FROM devices WHERE id = 'd1'`).Scan(&ls); err != nil {
		t.Fatal(err)
	}
	if ls != sqlite.Time(fleetT0) {
		t.Fatalf("last_seen = %s, want %s", ls, sqlite.Time(fleetT0))
	}
}

func TestFleetStorePrunesInChunks(t *testing.T) {
	db, st := fleetTestDB(t)
	ctx := context.Background()
	// 12,000 points one millisecond apart from fleetT0, written in one
	// statement (in the format sqlite.Time writes) into the folded stage.
	if _, err := db.Writer().ExecContext(ctx, `INSERT INTO telemetry_points (device_id, ts, id, seq, data, received_at)
		WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 11999)
		SELECT 'd1', printf('2026-05-01T08:%02d:%02d.%09dZ', i / 60000, (i / 1000) % 60, (i % 1000) * 1000000), i + 1, i, '{}', ?
		FROM n`, sqlite.Time(fleetT0)); err != nil {
		t.Fatal(err)
	}
	if first, _ := st.QueryTelemetry(ctx, "d1", fleetT0.Add(1500*time.Millisecond), fleetT0.Add(time.Hour), 1); len(first) != 1 || *first[0].Seq != 1500 {
		t.Fatalf("generated timestamps do not match sqlite.Time: %+v", first)
	}
	n, err := st.PruneTelemetry(ctx, fleetT0.Add(11000*time.Millisecond))
	if err != nil || n != 11000 {
		t.Fatalf("pruned %d (%v), want 11000 across three chunks", n, err)
	}
	left, _ := st.QueryTelemetry(ctx, "d1", time.Time{}, fleetT0.Add(time.Hour), 5000)
	if len(left) != 1000 || *left[0].Seq != 11000 {
		t.Fatalf("%d left starting at %v", len(left), *left[0].Seq)
	}
}

func TestFleetStoreSetOnline(t *testing.T) {
	_, st := fleetTestDB(t)
	ctx := context.Background()
	steps := []struct {
		name        string
		online      bool
		wantChanged bool
	}{
		{"going online from the initial offline state changes it", true, true},
		{"staying online does not", true, false},
		{"going offline does", false, true},
	}
	for i, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			changed, err := st.SetOnline(ctx, "d1", s.online, fleetT0.Add(time.Duration(i)*time.Second))
			if err != nil || changed != s.wantChanged {
				t.Fatalf("changed = %v (%v), want %v", changed, err, s.wantChanged)
			}
		})
	}
	t.Run("an unknown device is not found", func(t *testing.T) {
		if _, err := st.SetOnline(ctx, "nope", true, fleetT0); unhidra.ErrorCode(err) != unhidra.ENOTFOUND {
			t.Fatalf("err = %v, want not_found", err)
		}
	})
}

func TestFleetStoreCommandTransitions(t *testing.T) {
	_, st := fleetTestDB(t)
	ctx := context.Background()
	mk := func(id, dev string, deadline time.Duration) device.Command {
		c := device.Command{ID: id, DeviceID: dev, Name: "ping", Params: json.RawMessage(`{"a":1}`), Status: device.CommandPending,
			CreatedBy: "alice", CreatedAt: fleetT0, Deadline: fleetT0.Add(deadline)}
		if err := st.CreateCommand(ctx, c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	mk("c1", "d1", time.Minute)
	mk("c2", "d1", 2*time.Minute)
	mk("c3", "d2", time.Minute)
	if err := st.CreateCommand(ctx, device.Command{ID: "c1", DeviceID: "d1", Name: "x", Status: "pending", CreatedBy: "a", CreatedAt: fleetT0, Deadline: fleetT0}); unhidra.ErrorCode(err) != unhidra.ECONFLICT {
		t.Fatalf("duplicate id: %v, want conflict", err)
	}
	pend, err := st.PendingCommands(ctx, "d1", fleetT0, 10)
	if err != nil || len(pend) != 2 || pend[0].ID != "c1" || string(pend[0].Params) != `{"a":1}` {
		t.Fatalf("pending %+v (%v)", pend, err)
	}
	if _, err := st.GetCommand(ctx, "d2", "c1"); unhidra.ErrorCode(err) != unhidra.ENOTFOUND {
		t.Fatalf("command of another device: %v, want not_found", err)
	}
	c, moved, err := st.TransitionCommand(ctx, "d1", "c1", []string{device.CommandPending}, device.CommandDelivered, nil, fleetT0.Add(time.Second))
	if err != nil || !moved || c.Status != device.CommandDelivered || c.DeliveredAt == nil {
		t.Fatalf("deliver: %+v moved %v err %v", c, moved, err)
	}
	if _, moved, _ := st.TransitionCommand(ctx, "d1", "c1", []string{device.CommandPending}, device.CommandDelivered, nil, fleetT0); moved {
		t.Fatal("a delivered command moved from pending again")
	}
	c, moved, err = st.TransitionCommand(ctx, "d1", "c1", []string{device.CommandPending, device.CommandDelivered}, device.CommandError, json.RawMessage(`"boom"`), fleetT0.Add(2*time.Second))
	if err != nil || !moved || c.Status != device.CommandError || string(c.Result) != `"boom"` || c.CompletedAt == nil {
		t.Fatalf("result: %+v moved %v err %v", c, moved, err)
	}
	stored, _ := st.GetCommand(ctx, "d1", "c1")
	if stored.Status != device.CommandError || string(stored.Result) != `"boom"` || stored.DeliveredAt == nil || stored.CompletedAt == nil {
		t.Fatalf("stored: %+v", stored)
	}
	exp, err := st.ExpireCommands(ctx, fleetT0.Add(time.Minute), 10)
	if err != nil || len(exp) != 1 || exp[0].ID != "c3" || exp[0].Status != device.CommandTimeout {
		t.Fatalf("expired %+v (%v), want c3 only (c1 is final, c2 not due)", exp, err)
	}
	if exp, _ := st.ExpireCommands(ctx, fleetT0.Add(time.Minute), 10); len(exp) != 0 {
		t.Fatalf("expired again: %+v", exp)
	}
}

func TestFleetStoreLastSeenHasOneSecondResolution(t *testing.T) {
	db, st := fleetTestDB(t)
	ctx := context.Background()
	lastSeen := func() string {
		var ls string
		if err := db.Reader().QueryRow(`SELECT last_seen FROM devices WHERE id = 'd1'`).Scan(&ls); err != nil {
			t.Fatal(err)
		}
		return ls
	}
	for _, step := range []struct {
		name string
		at   time.Time
		want time.Time
	}{
		{"the first point sets last_seen", fleetT0, fleetT0},
		{"a point within the resolution leaves it", fleetT0.Add(sqlite.LastSeenResolution / 2), fleetT0},
		{"a point a resolution later moves it", fleetT0.Add(sqlite.LastSeenResolution), fleetT0.Add(sqlite.LastSeenResolution)},
	} {
		t.Run(step.name, func(t *testing.T) {
			if err := st.AppendTelemetry(ctx, []device.TelemetryPoint{point("d1", step.at, 1)}); err != nil {
				t.Fatal(err)
			}
			if got := lastSeen(); got != sqlite.Time(step.want) {
				t.Fatalf("last_seen = %s, want %s", got, sqlite.Time(step.want))
			}
		})
	}
}

// TestChatStoreWritesTelemetryRowsWithTheirMessages covers
// chat.Append.Telemetry on SQLite: the point a message carries is stored in
// the message's transaction and moves its device's last_seen; a message
// that is not stored (a per-append error, which uses no offset, or a
// duplicate) stores no point.
func TestChatStoreWritesTelemetryRowsWithTheirMessages(t *testing.T) {
	db, st := fleetTestDB(t)
	ctx := context.Background()
	cs, err := sqlite.NewChatStore(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	if err := cs.CreateChannel(ctx, chat.Channel{ID: "device:d1", Name: "d1", Kind: chat.KindDevice, CreatedBy: "alice", CreatedAt: fleetT0}, "", nil); err != nil {
		t.Fatal(err)
	}
	msg := func(id, cmid string) wire.Message {
		return wire.Message{ID: id, Channel: "device:d1", Sender: wire.Principal{Kind: wire.KindDevice, ID: "d1"}, CreatedAt: fleetT0, ClientMsgID: cmid, Data: []byte(`{"type":"telemetry"}`)}
	}
	pt := func(at time.Duration, i int) *unhidra.TelemetryPoint {
		p := point("d1", fleetT0.Add(at), i)
		return &p
	}
	orphan := msg("M2", "")
	orphan.ThreadID = "no-such-message"
	res, err := cs.AppendMessages(ctx, []chat.Append{
		{Msg: msg("M1", "c1"), Telemetry: pt(0, 1)},
		{Msg: orphan, Telemetry: pt(time.Second, 2)},
		{Msg: msg("M3", ""), Telemetry: pt(2*time.Second, 3)},
		{Msg: msg("M4", "")},
		{Msg: msg("M5", "c1"), Telemetry: pt(3*time.Hour, 5)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Err != nil || res[0].Msg.Offset != 1 || res[2].Err != nil || res[2].Msg.Offset != 2 || res[3].Msg.Offset != 3 {
		t.Fatalf("results %+v: want offsets 1, -, 2, 3", res)
	}
	if unhidra.ErrorCode(res[1].Err) != unhidra.EINVALID {
		t.Fatalf("a reply to no message: err %v, want invalid", res[1].Err)
	}
	if !res[4].Duplicate || res[4].Msg.ID != "M1" {
		t.Fatalf("a repeated client_msg_id: %+v, want M1 as a duplicate", res[4])
	}
	pts, err := st.QueryTelemetry(ctx, "d1", fleetT0.Add(-time.Hour), fleetT0.Add(24*time.Hour), 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(pts) != 2 || *pts[0].Seq != 1 || *pts[1].Seq != 3 {
		t.Fatalf("telemetry rows %+v, want seqs 1 and 3", pts)
	}
	var lastSeen string
	if err := db.Reader().QueryRow(`SELECT last_seen FROM devices WHERE id = 'd1'`).Scan(&lastSeen); err != nil {
		t.Fatal(err)
	}
	if lastSeen != sqlite.Time(fleetT0.Add(2*time.Second)) {
		t.Fatalf("last_seen = %s, want %s: the newest stored point's, not the duplicate's", lastSeen, sqlite.Time(fleetT0.Add(2*time.Second)))
	}
}

func TestFleetStoreRevokedDevices(t *testing.T) {
	db, st := fleetTestDB(t)
	ctx := context.Background()
	if _, err := st.SetOnline(ctx, "d1", true, fleetT0); err != nil {
		t.Fatal(err)
	}
	if err := sqlite.NewDeviceStore(db).RevokeDevice(ctx, "d1", fleetT0); err != nil {
		t.Fatal(err)
	}
	t.Run("a revoked device cannot go online again", func(t *testing.T) {
		if _, err := st.SetOnline(ctx, "d1", true, fleetT0.Add(time.Second)); unhidra.ErrorCode(err) != unhidra.EFORBIDDEN {
			t.Fatalf("SetOnline(true) after revocation: %v, want forbidden", err)
		}
		var online bool
		db.Reader().QueryRow(`SELECT online FROM devices WHERE id = 'd1'`).Scan(&online)
		if online {
			t.Error("a revoked device shows online")
		}
		if _, err := st.SetOnline(ctx, "d1", false, fleetT0.Add(time.Second)); err != nil {
			t.Errorf("going offline: %v", err)
		}
	})
	t.Run("a revoked device takes no command", func(t *testing.T) {
		c := device.Command{ID: "c1", DeviceID: "d1", Name: "ping", Status: device.CommandPending, CreatedBy: "alice", CreatedAt: fleetT0, Deadline: fleetT0.Add(time.Minute)}
		if err := st.CreateCommand(ctx, c); unhidra.ErrorCode(err) != unhidra.ECONFLICT {
			t.Fatalf("CreateCommand for a revoked device: %v, want conflict", err)
		}
		c.DeviceID = "nope"
		if err := st.CreateCommand(ctx, c); unhidra.ErrorCode(err) != unhidra.ENOTFOUND {
			t.Fatalf("CreateCommand for an unknown device: %v, want not_found", err)
		}
		c.DeviceID = "d2"
		if err := st.CreateCommand(ctx, c); err != nil {
			t.Fatalf("CreateCommand for a live device: %v", err)
		}
	})
}

// The telemetry point a chat append carries, on SQLite: the chat and fleet
// stores on one database, as the composition root opens them.
func TestTelemetryWithMessagesConformance(t *testing.T) {
	storetest.TelemetryWithMessages(t, func(t *testing.T) storetest.TelemetryStores {
		db := sqlitetest.Open(t)
		cs, err := sqlite.NewChatStore(context.Background(), db)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cs.Close() })
		return storetest.TelemetryStores{
			DeviceStores: storetest.DeviceStores{Users: sqlite.NewAuthStore(db), Registry: sqlite.NewDeviceStore(db), Fleet: sqlite.NewFleetStore(db)},
			Chat:         cs,
		}
	})
}
