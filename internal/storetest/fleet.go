package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/auth"
	"github.com/unhidra/unhidra/internal/device"
)

// Fleet runs the conformance suite of device.FleetStore's online state and
// commands (the telemetry methods have their own suite, Telemetry). Each
// subtest starts with user alice and her devices d1 and d2 in the registry.
func Fleet(t *testing.T, open func(t *testing.T) DeviceStores) {
	tests := []struct {
		name string
		fn   func(t *testing.T, st DeviceStores)
	}{
		{"online changes are reported and recorded with last_seen", testSetOnline},
		{"an unknown device has no online state", testSetOnlineUnknown},
		{"a revoked device goes offline and never online again", testSetOnlineRevoked},
		{"a reset marks every device offline and counts those that were online", testResetOnline},
		{"a command is stored, read back with every field and scoped to its device", testCommandRoundTrip},
		{"a command for an unknown device is not_found, for a revoked one a conflict", testCommandRefused},
		{"pending commands are the open, undelivered, unexpired ones, oldest first", testPendingCommands},
		{"a transition moves a command only from the statuses named", testTransitionCommand},
		{"of concurrent transitions from one status exactly one moves", testTransitionConcurrent},
		{"expiry times out open commands due at or before now, once", testExpireCommands},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := open(t)
			aliceWithDevices(t, st.Users, st.Registry)
			tc.fn(t, st)
		})
	}
}

// aliceWithDevices is the fleet suites' starting point: user alice and her
// devices d1 and d2.
func aliceWithDevices(t *testing.T, users auth.Store, registry device.Store) {
	t.Helper()
	mkUsers(t, users, "alice")
	mkDevice(t, registry, "d1", "alice", 1)
	mkDevice(t, registry, "d2", "alice", 2)
}

func testSetOnline(t *testing.T, st DeviceStores) {
	ctx := context.Background()
	steps := []struct {
		name        string
		online      bool
		wantChanged bool
	}{
		{"going online from the initial offline state changes it", true, true},
		{"staying online does not", true, false},
		{"going offline does", false, true},
		{"staying offline does not", false, false},
		{"going online again does", true, true},
	}
	for i, s := range steps {
		at := devT0.Add(time.Duration(i+1) * time.Minute)
		changed, err := st.Fleet.SetOnline(ctx, "d1", s.online, at)
		if err != nil || changed != s.wantChanged {
			t.Errorf("%s: changed = %v, %v; want %v", s.name, changed, err, s.wantChanged)
		}
		d := getDevice(t, st.Registry, "d1")
		if d.Online != s.online || d.LastSeen == nil || !d.LastSeen.Equal(at) {
			t.Errorf("%s: device online %v, last_seen %v; want %v, %v", s.name, d.Online, d.LastSeen, s.online, at)
		}
	}
	if d := getDevice(t, st.Registry, "d2"); d.Online || d.LastSeen != nil {
		t.Errorf("d2 = %+v, want untouched", d)
	}
}

func testSetOnlineUnknown(t *testing.T, st DeviceStores) {
	for _, online := range []bool{true, false} {
		if _, err := st.Fleet.SetOnline(context.Background(), "nope", online, devT0); code(err) != unhidra.ENOTFOUND {
			t.Errorf("SetOnline(unknown, %v) = %v, want not_found", online, err)
		}
	}
}

func testSetOnlineRevoked(t *testing.T, st DeviceStores) {
	ctx := context.Background()
	if _, err := st.Fleet.SetOnline(ctx, "d1", true, devT0); err != nil {
		t.Fatal(err)
	}
	if err := st.Registry.RevokeDevice(ctx, "d1", devT0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if d := getDevice(t, st.Registry, "d1"); d.Online {
		t.Error("a device revoked while online still shows online")
	}
	if _, err := st.Fleet.SetOnline(ctx, "d1", true, devT0.Add(2*time.Second)); code(err) != unhidra.EFORBIDDEN {
		t.Errorf("SetOnline(true) after revocation: %v, want forbidden", err)
	}
	if d := getDevice(t, st.Registry, "d1"); d.Online {
		t.Error("a refused SetOnline(true) shows the revoked device online")
	}
	if _, err := st.Fleet.SetOnline(ctx, "d1", false, devT0.Add(3*time.Second)); err != nil {
		t.Errorf("going offline after revocation: %v, want no error", err)
	}
}

func testResetOnline(t *testing.T, st DeviceStores) {
	ctx := context.Background()
	if n, err := st.Fleet.ResetOnline(ctx); err != nil || n != 0 {
		t.Errorf("ResetOnline with none online = %d, %v; want 0", n, err)
	}
	for _, id := range []string{"d1", "d2"} {
		if _, err := st.Fleet.SetOnline(ctx, id, true, devT0); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := st.Fleet.ResetOnline(ctx); err != nil || n != 2 {
		t.Errorf("ResetOnline = %d, %v; want 2", n, err)
	}
	for _, id := range []string{"d1", "d2"} {
		if d := getDevice(t, st.Registry, id); d.Online {
			t.Errorf("%s online after a reset", id)
		}
	}
	if n, err := st.Fleet.ResetOnline(ctx); err != nil || n != 0 {
		t.Errorf("ResetOnline again = %d, %v; want 0", n, err)
	}
	if changed, err := st.Fleet.SetOnline(ctx, "d1", true, devT0.Add(time.Second)); err != nil || !changed {
		t.Errorf("SetOnline after a reset = %v, %v; want a change", changed, err)
	}
}

// command returns a pending command of dev created at off after devT0, due
// after ttl more.
func command(id, dev string, off, ttl time.Duration) device.Command {
	return device.Command{ID: id, DeviceID: dev, Name: "ping", Params: json.RawMessage(`{"a":1}`), Status: device.CommandPending,
		CreatedBy: "alice", CreatedAt: devT0.Add(off), Deadline: devT0.Add(off + ttl)}
}

func mkCommand(t *testing.T, st DeviceStores, c device.Command) {
	t.Helper()
	if err := st.Fleet.CreateCommand(context.Background(), c); err != nil {
		t.Fatalf("CreateCommand(%s): %v", c.ID, err)
	}
}

func commandIDs(cs []device.Command) string {
	var out []string
	for _, c := range cs {
		out = append(out, c.ID)
	}
	return fmt.Sprint(out)
}

func testCommandRoundTrip(t *testing.T, st DeviceStores) {
	ctx := context.Background()
	in := command("c1", "d1", 0, time.Minute)
	mkCommand(t, st, in)
	bare := command("c2", "d1", 0, time.Minute)
	bare.Params = nil
	mkCommand(t, st, bare)
	c, err := st.Fleet.GetCommand(ctx, "d1", "c1")
	if err != nil || c.ID != "c1" || c.DeviceID != "d1" || c.Name != "ping" || string(c.Params) != `{"a":1}` || c.Status != device.CommandPending ||
		c.Result != nil || c.CreatedBy != "alice" || !c.CreatedAt.Equal(in.CreatedAt) || !c.Deadline.Equal(in.Deadline) || c.DeliveredAt != nil || c.CompletedAt != nil {
		t.Errorf("GetCommand = %+v, %v; want %+v", c, err, in)
	}
	if c, err := st.Fleet.GetCommand(ctx, "d1", "c2"); err != nil || c.Params != nil {
		t.Errorf("GetCommand(no params) = %+v, %v; want nil Params", c, err)
	}
	if _, err := st.Fleet.GetCommand(ctx, "d2", "c1"); code(err) != unhidra.ENOTFOUND {
		t.Errorf("GetCommand through another device: %v, want not_found", err)
	}
	if _, err := st.Fleet.GetCommand(ctx, "d1", "c9"); code(err) != unhidra.ENOTFOUND {
		t.Errorf("GetCommand(unknown): %v, want not_found", err)
	}
	dup := command("c1", "d1", time.Hour, time.Minute)
	dup.Name = "other"
	if err := st.Fleet.CreateCommand(ctx, dup); code(err) != unhidra.ECONFLICT {
		t.Errorf("a second command c1: %v, want conflict", err)
	}
	if c, _ := st.Fleet.GetCommand(ctx, "d1", "c1"); c.Name != "ping" {
		t.Errorf("a refused duplicate changed the command: %+v", c)
	}
}

func testCommandRefused(t *testing.T, st DeviceStores) {
	ctx := context.Background()
	if err := st.Fleet.CreateCommand(ctx, command("c1", "nope", 0, time.Minute)); code(err) != unhidra.ENOTFOUND {
		t.Errorf("CreateCommand for an unknown device: %v, want not_found", err)
	}
	if err := st.Registry.RevokeDevice(ctx, "d1", devT0); err != nil {
		t.Fatal(err)
	}
	if err := st.Fleet.CreateCommand(ctx, command("c2", "d1", 0, time.Minute)); code(err) != unhidra.ECONFLICT {
		t.Errorf("CreateCommand for a revoked device: %v, want conflict", err)
	}
	if _, err := st.Fleet.GetCommand(ctx, "d1", "c2"); code(err) != unhidra.ENOTFOUND {
		t.Errorf("a refused command was stored: %v", err)
	}
	mkCommand(t, st, command("c3", "d2", 0, time.Minute))
}

func testPendingCommands(t *testing.T, st DeviceStores) {
	ctx := context.Background()
	mkCommand(t, st, command("c-late", "d1", 3*time.Second, time.Hour))
	mkCommand(t, st, command("c-first", "d1", 0, time.Hour))
	mkCommand(t, st, command("c-mid", "d1", time.Second, time.Hour))
	mkCommand(t, st, command("c-due", "d1", 0, time.Minute)) // deadline == now below
	mkCommand(t, st, command("c-sent", "d1", 0, time.Hour))  // delivered below
	mkCommand(t, st, command("c-other", "d2", 0, time.Hour)) // another device
	mkCommand(t, st, command("c-next", "d1", 2*time.Second, time.Hour))
	if _, moved, err := st.Fleet.TransitionCommand(ctx, "d1", "c-sent", []string{device.CommandPending}, device.CommandDelivered, nil, devT0); err != nil || !moved {
		t.Fatalf("deliver c-sent: %v, %v", moved, err)
	}
	now := devT0.Add(time.Minute)
	got, err := st.Fleet.PendingCommands(ctx, "d1", now, 10)
	if err != nil || commandIDs(got) != "[c-first c-mid c-next c-late]" {
		t.Errorf("PendingCommands = %s, %v; want [c-first c-mid c-next c-late] (oldest first; not delivered, not due, not d2's)", commandIDs(got), err)
	}
	if got, err := st.Fleet.PendingCommands(ctx, "d1", now, 2); err != nil || commandIDs(got) != "[c-first c-mid]" {
		t.Errorf("PendingCommands(limit 2) = %s, %v; want [c-first c-mid]", commandIDs(got), err)
	}
	if got, err := st.Fleet.PendingCommands(ctx, "d1", devT0, 10); err != nil || len(got) != 5 {
		t.Errorf("PendingCommands before any deadline = %s, %v; want 5 (all pending ones)", commandIDs(got), err)
	}
	if got, err := st.Fleet.PendingCommands(ctx, "nope", now, 10); err != nil || len(got) != 0 {
		t.Errorf("PendingCommands(unknown device) = %s, %v; want none", commandIDs(got), err)
	}
}

func testTransitionCommand(t *testing.T, st DeviceStores) {
	ctx := context.Background()
	mkCommand(t, st, command("c1", "d1", 0, time.Minute))
	open := []string{device.CommandPending, device.CommandDelivered}
	t1, t2 := devT0.Add(time.Second), devT0.Add(2*time.Second)

	c, moved, err := st.Fleet.TransitionCommand(ctx, "d1", "c1", []string{device.CommandPending}, device.CommandDelivered, nil, t1)
	if err != nil || !moved || c.Status != device.CommandDelivered || c.DeliveredAt == nil || !c.DeliveredAt.Equal(t1) || c.CompletedAt != nil || c.Result != nil {
		t.Fatalf("deliver = %+v, moved %v, %v; want delivered at %v", c, moved, err, t1)
	}
	c, moved, err = st.Fleet.TransitionCommand(ctx, "d1", "c1", []string{device.CommandPending}, device.CommandDelivered, nil, t2)
	if err != nil || moved || c.Status != device.CommandDelivered || !c.DeliveredAt.Equal(t1) {
		t.Errorf("deliver again = %+v, moved %v, %v; want the command unchanged, not moved", c, moved, err)
	}
	if _, _, err := st.Fleet.TransitionCommand(ctx, "d2", "c1", open, device.CommandOK, nil, t2); code(err) != unhidra.ENOTFOUND {
		t.Errorf("transition through another device: %v, want not_found", err)
	}
	if _, _, err := st.Fleet.TransitionCommand(ctx, "d1", "c9", open, device.CommandOK, nil, t2); code(err) != unhidra.ENOTFOUND {
		t.Errorf("transition of an unknown command: %v, want not_found", err)
	}
	c, moved, err = st.Fleet.TransitionCommand(ctx, "d1", "c1", open, device.CommandError, json.RawMessage(`"boom"`), t2)
	if err != nil || !moved || c.Status != device.CommandError || string(c.Result) != `"boom"` || c.CompletedAt == nil || !c.CompletedAt.Equal(t2) {
		t.Fatalf("complete = %+v, moved %v, %v; want error with its result at %v", c, moved, err, t2)
	}
	stored, err := st.Fleet.GetCommand(ctx, "d1", "c1")
	if err != nil || stored.Status != device.CommandError || string(stored.Result) != `"boom"` || stored.DeliveredAt == nil || !stored.DeliveredAt.Equal(t1) || !stored.CompletedAt.Equal(t2) {
		t.Errorf("GetCommand after completion = %+v, %v; want what the transition returned", stored, err)
	}
	c, moved, err = st.Fleet.TransitionCommand(ctx, "d1", "c1", open, device.CommandOK, json.RawMessage(`"late"`), t2.Add(time.Second))
	if err != nil || moved || c.Status != device.CommandError || string(c.Result) != `"boom"` {
		t.Errorf("a result for a final command = %+v, moved %v, %v; want unchanged", c, moved, err)
	}

	// A completion straight from pending, with no result: completed_at is
	// set, delivered_at and result stay empty.
	mkCommand(t, st, command("c2", "d1", 0, time.Minute))
	c, moved, err = st.Fleet.TransitionCommand(ctx, "d1", "c2", open, device.CommandOK, nil, t2)
	if err != nil || !moved || c.Status != device.CommandOK || c.CompletedAt == nil || c.DeliveredAt != nil || c.Result != nil {
		t.Errorf("pending → ok = %+v, moved %v, %v", c, moved, err)
	}
}

func testTransitionConcurrent(t *testing.T, st DeviceStores) {
	ctx := context.Background()
	mkCommand(t, st, command("c1", "d1", 0, time.Minute))
	const n = 8
	moves := make([]bool, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, moves[i], errs[i] = st.Fleet.TransitionCommand(ctx, "d1", "c1", []string{device.CommandPending}, device.CommandDelivered, nil, devT0.Add(time.Second))
		}()
	}
	wg.Wait()
	moved := 0
	for i := range moves {
		if errs[i] != nil {
			t.Errorf("transition %d: %v", i, errs[i])
		}
		if moves[i] {
			moved++
		}
	}
	if moved != 1 {
		t.Errorf("%d of %d concurrent deliveries moved the command, want exactly 1", moved, n)
	}
}

func testExpireCommands(t *testing.T, st DeviceStores) {
	ctx := context.Background()
	now := devT0.Add(time.Minute)
	mkCommand(t, st, command("c-due", "d1", 0, time.Minute))      // deadline == now
	mkCommand(t, st, command("c-past", "d2", 0, 30*time.Second))  // before now
	mkCommand(t, st, command("c-sent", "d1", 0, 45*time.Second))  // delivered, past
	mkCommand(t, st, command("c-done", "d1", 0, 10*time.Second))  // final, past
	mkCommand(t, st, command("c-future", "d1", 0, time.Minute+1)) // not yet due
	for id, to := range map[string]string{"c-sent": device.CommandDelivered, "c-done": device.CommandOK} {
		if _, moved, err := st.Fleet.TransitionCommand(ctx, "d1", id, []string{device.CommandPending}, to, nil, devT0); err != nil || !moved {
			t.Fatalf("move %s to %s: %v, %v", id, to, moved, err)
		}
	}
	got, err := st.Fleet.ExpireCommands(ctx, now, 2)
	if err != nil || len(got) != 2 {
		t.Fatalf("ExpireCommands(limit 2) = %s, %v; want 2", commandIDs(got), err)
	}
	rest, err := st.Fleet.ExpireCommands(ctx, now, 10)
	if err != nil || len(rest) != 1 {
		t.Fatalf("ExpireCommands after the first 2 = %s, %v; want the third", commandIDs(rest), err)
	}
	all := map[string]device.Command{}
	for _, c := range append(got, rest...) {
		all[c.ID] = c
		if c.Status != device.CommandTimeout || c.CompletedAt == nil || !c.CompletedAt.Equal(now) {
			t.Errorf("expired %s = %+v, want timeout completed at %v", c.ID, c, now)
		}
	}
	for _, id := range []string{"c-due", "c-past", "c-sent"} {
		if _, ok := all[id]; !ok {
			t.Errorf("%s was not expired (got %s + %s)", id, commandIDs(got), commandIDs(rest))
		}
	}
	if again, err := st.Fleet.ExpireCommands(ctx, now, 10); err != nil || len(again) != 0 {
		t.Errorf("ExpireCommands again = %s, %v; want none", commandIDs(again), err)
	}
	for id, want := range map[string]string{"c-due": device.CommandTimeout, "c-sent": device.CommandTimeout, "c-done": device.CommandOK, "c-future": device.CommandPending} {
		if c, err := st.Fleet.GetCommand(ctx, "d1", id); err != nil || c.Status != want {
			t.Errorf("GetCommand(%s) status = %q, %v; want %s", id, c.Status, err, want)
		}
	}
}
