package device_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/device"
	"github.com/unhidra/unhidra/internal/sqlite"
)

func TestHeartbeatSetsOnlineAndLastSeenAndRelaysAnEvent(t *testing.T) {
	e := newFleetEnv(t)
	ctx := context.Background()
	hb, err := device.ParseHeartbeat([]byte(`{"device_id":"d1","ts":1772359200,"free_heap":51234}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.fleet.Heartbeat(ctx, asDevice("d1"), hb); err != nil {
		t.Fatal(err)
	}
	online, ls := e.deviceRow(t, "d1")
	if !online || ls == "" {
		t.Fatalf("online=%v last_seen=%q, want online with last_seen", online, ls)
	}
	if types := e.fleetPosts.types(); len(types) != 2 || types[0] != "status" || types[1] != "heartbeat" {
		t.Fatalf("events %v, want status then heartbeat", types)
	}
	if ev := e.fleetPosts.last(); ev["free_heap"] != float64(51234) {
		t.Fatalf("heartbeat event %v lost free_heap", ev)
	}
	e.fleetClock.Add(time.Minute)
	if err := e.fleet.Heartbeat(ctx, asDevice("d1"), device.Heartbeat{}); err != nil {
		t.Fatal(err)
	}
	if types := e.fleetPosts.types(); len(types) != 3 {
		t.Fatalf("events %v, want no second status event while online", types)
	}
	_, ls2 := e.deviceRow(t, "d1")
	if ls2 <= ls {
		t.Fatalf("last_seen %q did not move past %q", ls2, ls)
	}
	if err := e.fleet.Heartbeat(ctx, asDevice("d1"), device.Heartbeat{DeviceID: "d2"}); unhidra.ErrorCode(err) != unhidra.EFORBIDDEN {
		t.Fatalf("heartbeat naming another device: %v, want forbidden", err)
	}
}

func TestDeviceGoesOfflineWhenItsLastConnectionEnds(t *testing.T) {
	e := newFleetEnv(t)
	ctx := context.Background()
	if err := e.fleet.Connected(ctx, "d1"); err != nil {
		t.Fatal(err)
	}
	if err := e.fleet.Connected(ctx, "d1"); err != nil {
		t.Fatal(err)
	}
	if err := e.fleet.Disconnected(ctx, "d1"); err != nil {
		t.Fatal(err)
	}
	if online, _ := e.deviceRow(t, "d1"); !online {
		t.Fatal("offline while a second connection is open")
	}
	if err := e.fleet.Disconnected(ctx, "d1"); err != nil {
		t.Fatal(err)
	}
	if online, _ := e.deviceRow(t, "d1"); online {
		t.Fatal("online after the last connection ended")
	}
	if types := e.fleetPosts.types(); len(types) != 2 {
		t.Fatalf("events %v, want one status per change", types)
	}
}

func TestStatusPayloadSetsOnlineState(t *testing.T) {
	e := newFleetEnv(t)
	ctx := context.Background()
	if err := e.fleet.Status(ctx, asDevice("d2"), []byte(`{"online":true,"fw":"1.2"}`)); err != nil {
		t.Fatal(err)
	}
	if online, _ := e.deviceRow(t, "d2"); !online {
		t.Fatal("not online after online:true")
	}
	if err := e.fleet.Status(ctx, asDevice("d2"), []byte(`{"online":false}`)); err != nil {
		t.Fatal(err)
	}
	if online, _ := e.deviceRow(t, "d2"); online {
		t.Fatal("online after online:false")
	}
	var ev map[string]json.RawMessage
	_ = json.Unmarshal(e.fleetPosts.msgs[0].Data, &ev)
	if string(ev["status"]) != `{"online":true,"fw":"1.2"}` {
		t.Fatalf("status event carries %s, want the device's payload", ev["status"])
	}
	for _, bad := range []string{`"x"`, `{"online":"yes"}`, `nope`} {
		if err := e.fleet.Status(ctx, asDevice("d2"), []byte(bad)); unhidra.ErrorCode(err) != unhidra.EINVALID {
			t.Fatalf("status %s: %v, want invalid", bad, err)
		}
	}
}

func TestOfflineGraceAbsorbsAQuickReconnect(t *testing.T) {
	e := newFleetEnv(t)
	ctx := context.Background()
	f := device.NewFleet(device.FleetOptions{Store: sqlite.NewFleetStore(e.db), Broker: e.broker, Channels: e.fleetPosts, Now: e.fleetClock.Now, OfflineGrace: time.Hour})
	if err := f.Connected(ctx, "d1"); err != nil {
		t.Fatal(err)
	}
	if err := f.Disconnected(ctx, "d1"); err != nil {
		t.Fatal(err)
	}
	if err := f.Connected(ctx, "d1"); err != nil {
		t.Fatal(err)
	}
	if online, _ := e.deviceRow(t, "d1"); !online {
		t.Fatal("offline during the grace period")
	}
	if types := e.fleetPosts.types(); len(types) != 1 {
		t.Fatalf("events %v, want only the first online status", types)
	}

	short := device.NewFleet(device.FleetOptions{Store: sqlite.NewFleetStore(e.db), Broker: e.broker, Channels: e.fleetPosts, Now: e.fleetClock.Now, OfflineGrace: 10 * time.Millisecond})
	if err := short.Connected(ctx, "d2"); err != nil {
		t.Fatal(err)
	}
	if err := short.Disconnected(ctx, "d2"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if online, _ := e.deviceRow(t, "d2"); !online {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("d2 still online 5 s after a 10 ms grace")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestResetOnlineMarksEveryDeviceOffline(t *testing.T) {
	e := newFleetEnv(t)
	ctx := context.Background()
	for _, d := range []string{"d1", "d2"} {
		if err := e.fleet.Connected(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.fleet.ResetOnline(ctx); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"d1", "d2"} {
		if online, _ := e.deviceRow(t, d); online {
			t.Fatalf("%s still online after ResetOnline", d)
		}
	}
}

// TestReconnectAfterAnOfflineStatusGoesOnline: a device whose Will (or own
// status) said {"online":false} while its old connection was still counted
// goes online again when a new connection opens before the old one's end
// is counted (the order an MQTT takeover of the client id gives).
func TestReconnectAfterAnOfflineStatusGoesOnline(t *testing.T) {
	e := newFleetEnv(t)
	ctx := context.Background()
	if err := e.fleet.Connected(ctx, "d1"); err != nil {
		t.Fatal(err)
	}
	if err := e.fleet.Status(ctx, asDevice("d1"), []byte(`{"online":false}`)); err != nil {
		t.Fatal(err)
	}
	if err := e.fleet.Connected(ctx, "d1"); err != nil {
		t.Fatal(err)
	}
	if err := e.fleet.Disconnected(ctx, "d1"); err != nil {
		t.Fatal(err)
	}
	if online, _ := e.deviceRow(t, "d1"); !online {
		t.Fatal("offline with a new connection open after the old one's offline status")
	}
	if err := e.fleet.Disconnected(ctx, "d1"); err != nil {
		t.Fatal(err)
	}
	if online, _ := e.deviceRow(t, "d1"); online {
		t.Fatal("online after the last connection ended")
	}
}
