package mqttbridge_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/broker"
	"github.com/unhidra/unhidra/internal/brokertest"
	"github.com/unhidra/unhidra/internal/chat"
	"github.com/unhidra/unhidra/internal/device"
	"github.com/unhidra/unhidra/internal/mqttbridge"
	"github.com/unhidra/unhidra/wire"
)

func alice() unhidra.Identity {
	return unhidra.Identity{Principal: wire.Principal{Kind: wire.KindUser, ID: "alice"}, SessionID: "s-alice"}
}

type mqttCommand struct {
	CommandID string          `json:"command_id"`
	Name      string          `json:"name"`
	Params    json.RawMessage `json:"params"`
}

// TestCommandReachesAnMQTTDeviceAndItsResultComesBack: a command sent the
// REST way (Fleet.SendCommand) reaches the device subscribed on MQTT, is
// marked delivered, and the device's result makes it ok, with the result
// event in device:d1.
func TestCommandReachesAnMQTTDeviceAndItsResultComesBack(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	ctx := context.Background()
	frames := make(chan []byte, 64)
	unsub, _ := h.broker.Subscribe(broker.ChannelTopic("device:d1"), func(ev *broker.Event) { frames <- brokertest.FrameJSON(ev) })
	defer unsub()

	dev := mustV5(t, h.srv.Addr(), "esp", "d1", h.keys["d1"])
	dev.sub(t, "unhidra/devices/d1/commands", 1)
	c, err := h.fleet.SendCommand(ctx, alice(), "d1", "set_interval", json.RawMessage(`{"seconds":10}`), 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	m := dev.next(t, 5*time.Second)
	var got mqttCommand
	if err := json.Unmarshal(m.Payload, &got); err != nil || got.CommandID != c.ID || got.Name != "set_interval" || string(got.Params) != `{"seconds":10}` {
		t.Fatalf("device got %s on %s (%v)", m.Payload, m.Topic, err)
	}
	waitFor(t, 2*time.Second, "delivered", func() bool {
		cmd, _ := h.fleet.GetCommand(ctx, alice(), "d1", c.ID)
		return cmd.Status == device.CommandDelivered
	})
	if code, err := dev.pub(t, "unhidra/devices/d1/commands/result", 1, false, `{"command_id":"`+c.ID+`","status":"ok","result":{"applied":true}}`); code != 0 || err != nil {
		t.Fatalf("result PUBACK 0x%02x %v", code, err)
	}
	cmd, _ := h.fleet.GetCommand(ctx, alice(), "d1", c.ID)
	if cmd.Status != device.CommandOK || string(cmd.Result) != `{"applied":true}` {
		t.Fatalf("command after result: %+v", cmd)
	}
	deadline := time.After(3 * time.Second)
	for {
		select {
		case b := <-frames:
			var f wire.MessageFrame
			_ = json.Unmarshal(b, &f)
			var ev map[string]any
			_ = json.Unmarshal(f.Message.Data, &ev)
			if ev["type"] == "command_result" && ev["command_id"] == c.ID && ev["status"] == "ok" {
				return
			}
		case <-deadline:
			t.Fatal("no command_result event in device:d1")
		}
	}
}

// TestCommandIsHeldWhileTheDeviceIsOffline: a command sent while the device
// is away is delivered when it subscribes to its commands.
func TestCommandIsHeldWhileTheDeviceIsOffline(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	ctx := context.Background()
	c, err := h.fleet.SendCommand(ctx, alice(), "d1", "ping", nil, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if cmd, _ := h.fleet.GetCommand(ctx, alice(), "d1", c.ID); cmd.Status != device.CommandPending {
		t.Fatalf("status %s while offline, want pending", cmd.Status)
	}
	dev := mustV5(t, h.srv.Addr(), "esp", "d1", h.keys["d1"])
	dev.sub(t, "unhidra/devices/d1/#", 1)
	var got mqttCommand
	for got.CommandID == "" {
		m := dev.next(t, 5*time.Second)
		if m.Topic == "unhidra/devices/d1/commands" {
			_ = json.Unmarshal(m.Payload, &got)
		}
	}
	if got.CommandID != c.ID || got.Name != "ping" {
		t.Fatalf("got %+v", got)
	}
	waitFor(t, 2*time.Second, "delivered", func() bool {
		cmd, _ := h.fleet.GetCommand(ctx, alice(), "d1", c.ID)
		return cmd.Status == device.CommandDelivered
	})
}

// TestTelemetryFromAnotherTransportReachesMQTTSubscribers: a point posted
// the WebSocket way (Fleet.Telemetry) reaches an MQTT subscriber of
// unhidra/channels/device:d1/messages as Message JSON.
func TestTelemetryFromAnotherTransportReachesMQTTSubscribers(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	owner := mustV5(t, h.srv.Addr(), "a", "alice", "tok-alice")
	if code := owner.sub(t, "unhidra/channels/device:d1/messages", 1); code != 1 {
		t.Fatalf("SUBACK 0x%02x", code)
	}
	who := unhidra.Identity{Principal: wire.Principal{Kind: wire.KindDevice, ID: "d1"}}
	ack, err := h.fleet.Telemetry(context.Background(), who, device.TelemetryPoint{Data: json.RawMessage(`{"rssi":-60}`)})
	if err != nil {
		t.Fatal(err)
	}
	m := owner.next(t, 5*time.Second)
	var msg wire.Message
	if err := json.Unmarshal(m.Payload, &msg); err != nil {
		t.Fatal(err)
	}
	if msg.ID != ack.MessageID || msg.Offset != ack.Offset || msg.Channel != "device:d1" || msg.Sender.ID != "d1" {
		t.Fatalf("MQTT got %s, want the message of ack %+v", m.Payload, ack)
	}
}

// TestChannelMessagesFlowBetweenMQTTAndTheChatService: a user's MQTT
// publish on a channel topic is a chat message (acked after it is stored)
// that MQTT subscribers and broker subscribers (WebSocket) receive once,
// as Message JSON.
func TestChannelMessagesFlowBetweenMQTTAndTheChatService(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	ctx := context.Background()
	ch, _, err := h.chat.CreateChannel(ctx, alice(), chat.CreateChannel{Name: "ops", Kind: chat.KindPrivate, Members: []string{"bob"}})
	if err != nil {
		t.Fatal(err)
	}
	topic := "unhidra/channels/" + ch.ID + "/messages"
	bob := mustV5(t, h.srv.Addr(), "b", "bob", "tok-bob")
	if code := bob.sub(t, topic, 1); code != 1 {
		t.Fatalf("member SUBACK 0x%02x", code)
	}
	admin := mustV5(t, h.srv.Addr(), "adm", "admin", "tok-admin")
	if code := admin.sub(t, topic, 1); code < 0x80 {
		t.Fatalf("non-member of a private channel got SUBACK 0x%02x", code)
	}
	a := mustV5(t, h.srv.Addr(), "a", "alice", "tok-alice")
	if code, err := a.pub(t, topic, 1, false, `{"text":"deploy done","client_msg_id":"m1"}`); code != 0 || err != nil {
		t.Fatalf("PUBACK 0x%02x %v", code, err)
	}
	m := bob.next(t, 5*time.Second)
	var msg wire.Message
	if err := json.Unmarshal(m.Payload, &msg); err != nil || msg.Text == nil || *msg.Text != "deploy done" || msg.Sender.ID != "alice" || msg.Offset != 1 {
		t.Fatalf("bob got %s (%v)", m.Payload, err)
	}
	select {
	case extra := <-bob.msgs:
		t.Fatalf("bob got a second copy: %s", extra.Payload)
	case <-time.After(300 * time.Millisecond):
	}
	// Refusals come from the chat rules: a non-member cannot post.
	if code, _ := admin.pub(t, topic, 1, false, `{"text":"hi"}`); code != 0x87 {
		t.Fatalf("non-member post: PUBACK 0x%02x, want 0x87", code)
	}
	if code, _ := a.pub(t, topic, 1, false, `not json`); code != 0x99 {
		t.Fatalf("bad body: PUBACK 0x%02x, want 0x99", code)
	}
	// A post from another transport reaches the MQTT subscriber.
	text := "from the web"
	if _, err := h.chat.Publish(ctx, alice(), wire.Publish{Channel: ch.ID, Text: &text}); err != nil {
		t.Fatal(err)
	}
	m = bob.next(t, 5*time.Second)
	if err := json.Unmarshal(m.Payload, &msg); err != nil || *msg.Text != text || msg.Offset != 2 {
		t.Fatalf("bob got %s", m.Payload)
	}
}

// TestRemovedMemberStopsReceivingWithinThePermissionTTL: channel read
// permission is cached per session for PermissionTTL, then asked again.
func TestRemovedMemberStopsReceivingWithinThePermissionTTL(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	h := newHarness(t, harnessOpts{now: clock})
	ctx := context.Background()
	ch, _, err := h.chat.CreateChannel(ctx, alice(), chat.CreateChannel{Name: "ops", Kind: chat.KindPrivate, Members: []string{"bob"}})
	if err != nil {
		t.Fatal(err)
	}
	bob := mustV5(t, h.srv.Addr(), "b", "bob", "tok-bob")
	if code := bob.sub(t, "unhidra/channels/"+ch.ID+"/messages", 0); code != 0 {
		t.Fatalf("SUBACK 0x%02x", code)
	}
	say := func(s string) {
		if _, err := h.chat.Publish(ctx, alice(), wire.Publish{Channel: ch.ID, Text: &s}); err != nil {
			t.Fatal(err)
		}
	}
	say("one")
	bob.next(t, 5*time.Second)
	if err := h.chat.RemoveMember(ctx, alice(), ch.ID, "bob"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	now = now.Add(mqttbridge.PermissionTTL + time.Second)
	mu.Unlock()
	say("two")
	select {
	case m := <-bob.msgs:
		t.Fatalf("removed member still received %s", m.Payload)
	case <-time.After(500 * time.Millisecond):
	}
}
