package chat_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/chat"
	"github.com/unhidra/unhidra/internal/sqlite"
)

// QueueDeviceData stores a device's data message and the telemetry point
// it relays in one append (chat.Append.Telemetry): the ack names the
// stored message, the point reads back from the fleet store; a point of
// another device is refused before anything is queued; without the device
// channel neither is stored.
func TestQueueDeviceDataStoresThePointWithItsMessage(t *testing.T) {
	e := newEnv(t, chat.Options{})
	ctx := context.Background()
	fleet := sqlite.NewFleetStore(e.db)
	at := time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)
	seq := int64(4)
	point := func(dev string) *unhidra.TelemetryPoint {
		return &unhidra.TelemetryPoint{DeviceID: dev, TS: at, Seq: &seq, Data: json.RawMessage(`{"t":1}`), ReceivedAt: at}
	}
	data := json.RawMessage(`{"type":"telemetry","seq":4,"data":{"t":1}}`)

	wait, err := e.svc.QueueDeviceData(ctx, "d1", data, point("d1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wait(ctx); unhidra.ErrorCode(err) != unhidra.ENOTFOUND {
		t.Fatalf("without device:d1: %v, want not_found", err)
	}
	if pts, _ := fleet.QueryTelemetry(ctx, "d1", at.Add(-time.Hour), at.Add(time.Hour), 10); len(pts) != 0 {
		t.Fatalf("%d points stored for a message that was not", len(pts))
	}

	if _, err := e.svc.EnsureDeviceChannel(ctx, "d1", "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.QueueDeviceData(ctx, "d1", data, point("d2")); unhidra.ErrorCode(err) != unhidra.EFORBIDDEN {
		t.Fatalf("d1 queueing d2's point: %v, want forbidden", err)
	}
	wait, err = e.svc.QueueDeviceData(ctx, "d1", data, point("d1"))
	if err != nil {
		t.Fatal(err)
	}
	ack, err := wait(ctx)
	if err != nil || ack.Channel != "device:d1" || ack.Offset != 1 {
		t.Fatalf("ack %+v, %v; want device:d1 offset 1 (the refused point took none)", ack, err)
	}
	msgs, err := e.st.MessagesAfter(ctx, "device:d1", 0, 10)
	if err != nil || len(msgs) != 1 || msgs[0].ID != ack.MessageID || string(msgs[0].Data) != string(data) {
		t.Fatalf("messages %+v, %v; want the acked one with its data", msgs, err)
	}
	pts, err := fleet.QueryTelemetry(ctx, "d1", at.Add(-time.Hour), at.Add(time.Hour), 10)
	if err != nil || len(pts) != 1 || *pts[0].Seq != 4 || string(pts[0].Data) != `{"t":1}` {
		t.Fatalf("points %+v, %v; want the one its message carried", pts, err)
	}
}
