package mqttbridge_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/device"
	"github.com/unhidra/unhidra/internal/gateway"
	"github.com/unhidra/unhidra/internal/wstest"
	"github.com/unhidra/unhidra/wire"
)

// startGateway runs the real WebSocket gateway on the harness's services.
func startGateway(t *testing.T, h *harness) string {
	t.Helper()
	gw, err := gateway.New(gateway.Config{Addr: "127.0.0.1:0"}, gateway.Deps{
		Tokens: h.tokens, DeviceKeys: h.registry, Chat: h.chat, Presence: h.presence,
		Devices: gateway.DeviceFrames{Fleet: h.fleet}, Broker: h.broker,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = gw.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return gw.Addr()
}

func dialWS(t *testing.T, addr, proto string) *wstest.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := wstest.Dial(ctx, "ws://"+addr+"/ws", wstest.Options{Header: http.Header{"Sec-Websocket-Protocol": {proto}}})
	if err != nil {
		t.Fatalf("dial %s: %v", proto[:12], err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	if err := c.ReadUntil("welcome", nil); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestTelemetryAndCommandsCrossMQTTAndWebSocket is the docs/protocol.md#mqtt promise with
// the real gateway: MQTT telemetry reaches a WebSocket subscriber of
// device:D and WebSocket telemetry reaches an MQTT subscriber; a command
// sent the REST way reaches a device on either transport.
func TestTelemetryAndCommandsCrossMQTTAndWebSocket(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	ctx := context.Background()
	gw := startGateway(t, h)

	// MQTT → WebSocket.
	aliceWS := dialWS(t, gw, "unhidra.v1, bearer.tok-alice")
	if err := aliceWS.WriteJSON(map[string]any{"type": "subscribe", "channel": "device:d1", "id": 1}); err != nil {
		t.Fatal(err)
	}
	if err := aliceWS.ReadUntil("subscribed", nil); err != nil {
		t.Fatal(err)
	}
	mdev := mustV5(t, h.srv.Addr(), "esp-mqtt", "d1", h.keys["d1"])
	if code, err := mdev.pub(t, "unhidra/devices/d1/telemetry", 1, false, `{"temp":19.25}`); code != 0 || err != nil {
		t.Fatalf("PUBACK 0x%02x %v", code, err)
	}
	for {
		var f wire.MessageFrame
		if err := aliceWS.ReadUntil("message", &f); err != nil {
			t.Fatalf("WebSocket subscriber: %v", err)
		}
		var ev struct {
			Type string
			Data map[string]float64
		}
		_ = json.Unmarshal(f.Message.Data, &ev)
		if ev.Type == "telemetry" {
			if ev.Data["temp"] != 19.25 || f.Channel != "device:d1" {
				t.Fatalf("WebSocket got %+v", f)
			}
			break
		}
	}

	// WebSocket → MQTT.
	bob := mustV5(t, h.srv.Addr(), "bob-mqtt", "bob", "tok-bob")
	if code := bob.sub(t, "unhidra/channels/device:d2/messages", 1); code != 1 {
		t.Fatalf("SUBACK 0x%02x", code)
	}
	wdev := dialWS(t, gw, "unhidra.v1, apikey."+h.keys["d2"])
	if err := wdev.WriteJSON(map[string]any{"type": "telemetry", "id": "t1", "data": map[string]any{"rssi": -70}, "seq": 1}); err != nil {
		t.Fatal(err)
	}
	var ack wire.AckFrame
	if err := wdev.ReadUntil("ack", &ack); err != nil {
		t.Fatal(err)
	}
	for {
		m := bob.next(t, 5*time.Second)
		var msg wire.Message
		if err := json.Unmarshal(m.Payload, &msg); err != nil {
			t.Fatal(err)
		}
		if msg.ID == ack.MessageID {
			if msg.Offset != ack.Offset || msg.Sender.ID != "d2" {
				t.Fatalf("MQTT got %s for ack %+v", m.Payload, ack)
			}
			break
		}
	}

	// REST-way commands reach both transports.
	mdev.sub(t, "unhidra/devices/d1/commands", 1)
	c1, err := h.fleet.SendCommand(ctx, alice(), "d1", "ping", nil, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for {
		m := mdev.next(t, 5*time.Second)
		if m.Topic == "unhidra/devices/d1/commands" {
			var got mqttCommand
			_ = json.Unmarshal(m.Payload, &got)
			if got.CommandID != c1.ID {
				t.Fatalf("MQTT device got %s", m.Payload)
			}
			break
		}
	}
	bobID := alice()
	bobID.Principal.ID = "bob"
	c2, err := h.fleet.SendCommand(ctx, bobID, "d2", "reboot", json.RawMessage(`{"delay":1}`), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var cf wire.CommandFrame
	if err := wdev.ReadUntil("command", &cf); err != nil {
		t.Fatal(err)
	}
	if cf.CommandID != c2.ID || cf.Name != "reboot" || string(cf.Params) != `{"delay":1}` {
		t.Fatalf("WebSocket device got %+v", cf)
	}
	if err := wdev.WriteJSON(map[string]any{"type": "command_result", "command_id": c2.ID, "status": "ok"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, "WebSocket command result", func() bool {
		got, _ := h.fleet.GetCommand(ctx, bobID, "d2", c2.ID)
		return got.Status == device.CommandOK
	})
}
