package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/chat"
	"github.com/unhidra/unhidra/internal/device"
	"github.com/unhidra/unhidra/internal/inmem"
	"github.com/unhidra/unhidra/internal/sqlite"
	"github.com/unhidra/unhidra/internal/sqlitetest"
	"github.com/unhidra/unhidra/wire"
)

// deviceFleet is a real fleet on SQLite with the real chat service as its
// Channels, as `unhidra serve` wires it: user alice owns device d1.
type deviceFleet struct {
	db    *sqlite.DB
	fleet *device.Fleet
	chat  *chat.Service
}

type fleetOwnerMap map[string]string

func (o fleetOwnerMap) DeviceOwner(_ context.Context, id string) (string, error) {
	if u, ok := o[id]; ok {
		return u, nil
	}
	return "", unhidra.Errorf(unhidra.ENOTFOUND, "device not found")
}

type everyUser struct{}

func (everyUser) UserExists(context.Context, string) (bool, error) { return true, nil }

func newDeviceFleet(t *testing.T, log *slog.Logger) *deviceFleet {
	t.Helper()
	ctx := context.Background()
	db := sqlitetest.Open(t)
	sqlitetest.AddUsers(t, db, "alice")
	if _, err := db.Writer().ExecContext(ctx, `INSERT INTO devices (id, name, owner, key_hash, created_at) VALUES ('d1', 'd1', 'alice', ?, ?)`,
		[]byte("hash-d1"), sqlite.Time(time.Now())); err != nil {
		t.Fatal(err)
	}
	cs, err := sqlite.NewChatStore(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	b := inmem.NewBroker()
	svc := chat.NewService(cs, b, chat.Options{Users: everyUser{}})
	t.Cleanup(svc.Wait)
	f := device.NewFleet(device.FleetOptions{
		Store: sqlite.NewFleetStore(db), Broker: b, Channels: svc, Owners: fleetOwnerMap{"d1": "alice"}, Logger: log,
		EnsureChannel: func(ctx context.Context, id, owner string) error {
			_, err := svc.EnsureDeviceChannel(ctx, id, owner)
			return err
		},
	})
	return &deviceFleet{db: db, fleet: f, chat: svc}
}

func (e *deviceFleet) online(t *testing.T, id string) bool {
	t.Helper()
	var online bool
	if err := e.db.Reader().QueryRow(`SELECT online FROM devices WHERE id = ?`, id).Scan(&online); err != nil {
		t.Fatal(err)
	}
	return online
}

var (
	frameAlice = unhidra.Identity{Principal: wire.Principal{Kind: wire.KindUser, ID: "alice"}}
	frameD1    = unhidra.Identity{Principal: wire.Principal{Kind: wire.KindDevice, ID: "d1"}}
)

func decodeFrame(t *testing.T, s string) wire.ClientFrame {
	t.Helper()
	f, err := wire.DecodeClientFrame([]byte(s))
	if err != nil {
		t.Fatalf("decode %s: %v", s, err)
	}
	return f
}

// DeviceFrames turns a device's WebSocket frames into the fleet calls MQTT
// and REST make: a heartbeat keeps its extra fields in the device channel,
// a telemetry frame is stored (its point and its channel message) before
// its ack, a command_result completes the command.
func TestDeviceFramesAdaptWebSocketFramesToTheFleet(t *testing.T) {
	e := newDeviceFleet(t, nil)
	ctx := context.Background()
	fr := DeviceFrames{Fleet: e.fleet}
	if err := fr.Heartbeat(ctx, frameD1, decodeFrame(t, `{"type":"heartbeat","device_id":"d1","ts":1772359200,"free_heap":4242,"uptime_s":9}`)); err != nil {
		t.Fatal(err)
	}
	msgs, _, err := e.chat.History(ctx, frameAlice, "device:d1", chat.Page{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	var hb map[string]any
	for _, m := range msgs {
		var ev map[string]any
		if json.Unmarshal(m.Data, &ev) == nil && ev["type"] == "heartbeat" {
			hb = ev
		}
	}
	if hb["free_heap"] != float64(4242) || hb["uptime_s"] != float64(9) {
		t.Fatalf("heartbeat event %v lost extra fields (history %+v)", hb, msgs)
	}
	ack, err := fr.Telemetry(ctx, frameD1, decodeFrame(t, `{"type":"telemetry","id":1,"data":{"t":3},"seq":5,"ts":"2026-03-01T11:59:00Z"}`))
	if err != nil || ack.Channel != "device:d1" || ack.Offset == 0 {
		t.Fatalf("telemetry ack %+v %v, want one of device:d1 with an offset", ack, err)
	}
	pts, _ := e.fleet.QueryTelemetry(ctx, frameD1, "d1", time.Time{}, time.Time{}, 0)
	if len(pts) != 1 || *pts[0].Seq != 5 || pts[0].TS.Minute() != 59 {
		t.Fatalf("stored %+v", pts)
	}
	if _, err := fr.Telemetry(ctx, frameD1, decodeFrame(t, `{"type":"telemetry","data":{"t":3},"ts":"yesterday"}`)); unhidra.ErrorCode(err) != unhidra.EINVALID {
		t.Fatalf("a telemetry frame with a bad ts: %v, want invalid", err)
	}
	c, err := e.fleet.SendCommand(ctx, frameAlice, "d1", "ping", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := fr.CommandResult(ctx, frameD1, decodeFrame(t, `{"type":"command_result","command_id":"`+c.ID+`","status":"ok","result":{"pong":true}}`)); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.fleet.GetCommand(ctx, frameD1, "d1", c.ID); got.Status != device.CommandOK {
		t.Fatalf("status %s after the frame", got.Status)
	}
}

func TestAWebSocketDeviceSessionGetsItsPendingCommandsAndClaimsEachOnce(t *testing.T) {
	e := newDeviceFleet(t, nil)
	ctx := context.Background()
	c1, _ := e.fleet.SendCommand(ctx, frameAlice, "d1", "ping", nil, 0)
	c2, _ := e.fleet.SendCommand(ctx, frameAlice, "d1", "set_interval", json.RawMessage(`{"seconds":5}`), 0)
	fr := DeviceFrames{Fleet: e.fleet}
	got, err := fr.DeviceConnected(ctx, frameD1)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].CommandID != c1.ID || got[1].CommandID != c2.ID || got[1].Type != "command" || string(got[1].Params) != `{"seconds":5}` {
		t.Fatalf("pending %+v, want both commands in order", got)
	}
	if !e.online(t, "d1") {
		t.Fatal("not online while connected")
	}
	for _, id := range []string{c1.ID, c2.ID} {
		if won, err := fr.CommandDelivered(ctx, "d1", id); err != nil || !won {
			t.Fatalf("first claim of %s: %v %v, want won", id, won, err)
		}
		if won, _ := fr.CommandDelivered(ctx, "d1", id); won {
			t.Fatalf("%s claimed twice: a second transport would deliver it again", id)
		}
		if c, _ := e.fleet.GetCommand(ctx, frameD1, "d1", id); c.Status != device.CommandDelivered {
			t.Fatalf("%s is %s, want delivered", id, c.Status)
		}
	}
	if again, _ := fr.DeviceConnected(ctx, frameD1); len(again) != 0 {
		t.Fatalf("a second connection got %+v, want no command delivered twice", again)
	}
	if _, err := fr.DeviceConnected(ctx, frameAlice); unhidra.ErrorCode(err) != unhidra.EFORBIDDEN {
		t.Fatalf("a user's device session: %v, want forbidden", err)
	}
	fr.DeviceDisconnected(ctx, frameD1)
	if !e.online(t, "d1") {
		t.Fatal("offline while its second connection is still open")
	}
	fr.DeviceDisconnected(ctx, frameD1)
	if e.online(t, "d1") {
		t.Fatal("online after its last connection ended")
	}
}

// A WebSocket device session is logged by the fleet as the websocket
// transport's.
func TestDeviceFramesNameTheWebSocketTransport(t *testing.T) {
	var buf syncBuffer
	e := newDeviceFleet(t, slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})))
	fr := DeviceFrames{Fleet: e.fleet}
	ctx := context.Background()
	if _, err := fr.DeviceConnected(ctx, frameD1); err != nil {
		t.Fatal(err)
	}
	fr.DeviceDisconnected(ctx, frameD1)
	type line struct{ Level, Msg, Device, Transport string }
	var got []line
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var v line
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if v.Msg == "device connected" || v.Msg == "device disconnected" {
			got = append(got, v)
		}
	}
	want := []line{{"INFO", "device connected", "d1", "websocket"}, {"INFO", "device disconnected", "d1", "websocket"}}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("connect/disconnect lines %+v, want %+v\nlog:\n%s", got, want, buf.String())
	}
}

// The log of a session's end that could not be recorded goes to Log.
func TestDeviceFramesLogWhatADisconnectCouldNotRecord(t *testing.T) {
	e := newDeviceFleet(t, nil)
	var buf bytes.Buffer
	fr := DeviceFrames{Fleet: e.fleet, Log: slog.New(slog.NewTextHandler(&buf, nil))}
	ctx := context.Background()
	if _, err := fr.DeviceConnected(ctx, frameD1); err != nil {
		t.Fatal(err)
	}
	e.db.Close()
	fr.DeviceDisconnected(ctx, frameD1)
	if !strings.Contains(buf.String(), "device disconnect bookkeeping failed") || !strings.Contains(buf.String(), "device=d1") {
		t.Fatalf("log %q, want the failed bookkeeping of d1", buf.String())
	}
}
