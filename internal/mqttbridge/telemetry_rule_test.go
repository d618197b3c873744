package mqttbridge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/sqlite"
	"github.com/unhidra/unhidra/internal/wstest"
	"github.com/unhidra/unhidra/wire"
)

// wsSubscribe subscribes c to channel and reports whether the gateway
// granted it (subscribed) or refused it (an error frame with its code).
func wsSubscribe(t *testing.T, c *wstest.Conn, channel string) (granted bool, code string) {
	t.Helper()
	if err := c.WriteJSON(map[string]any{"type": "subscribe", "channel": channel, "id": "sub"}); err != nil {
		t.Fatal(err)
	}
	for {
		_, b, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("subscribe %s: %v", channel, err)
		}
		var f struct {
			Type string          `json:"type"`
			ID   json.RawMessage `json:"id"`
			Code string          `json:"code"`
		}
		_ = json.Unmarshal(b, &f)
		switch {
		case f.Type == wire.TypeSubscribed:
			return true, ""
		case f.Type == wire.TypeError && string(f.ID) == `"sub"`:
			return false, f.Code
		}
	}
}

// readingOf returns the reading a device-channel message relays ("" for
// another event).
func readingOf(data []byte) string {
	var ev struct {
		Type string          `json:"type"`
		Data json.RawMessage `json:"data"`
	}
	if json.Unmarshal(data, &ev) != nil || ev.Type != "telemetry" {
		return ""
	}
	return string(ev.Data)
}

// Device telemetry reaches WebSocket and MQTT subscribers under one rule,
// the read rule of the device's channel device:<id>: for every identity, a
// WebSocket subscription to device:d1, an MQTT subscription to
// unhidra/devices/d1/telemetry and one to unhidra/channels/device:d1/messages
// are all granted or all refused, and those granted see the same readings
// in the same order. The owner whose membership of device:d1 is gone reads
// nothing on either transport (the MQTT ACL used to ask the registry who
// owns the device instead).
func TestDeviceTelemetryReachesEveryTransportUnderOneRule(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	gw := startGateway(t, h)
	ctx := context.Background()
	if _, err := h.chat.EnsureDeviceChannel(ctx, "d1", "alice"); err != nil {
		t.Fatal(err)
	}

	type reader struct {
		name, user, token string
		ws                *wstest.Conn
		devTopic, chTopic *v5client
	}
	readers := []*reader{
		{name: "the owner", user: "alice", token: "tok-alice"},
		{name: "an admin", user: "admin", token: "tok-admin"},
		{name: "another user", user: "bob", token: "tok-bob"},
	}
	var granted []*reader
	check := func(r *reader, want bool) {
		t.Helper()
		r.ws = dialWS(t, gw, "unhidra.v1, bearer."+r.token)
		wsOK, wsCode := wsSubscribe(t, r.ws, "device:d1")
		r.devTopic = mustV5(t, h.srv.Addr(), r.user+"-dev-"+fmt.Sprint(len(granted)), r.user, r.token)
		devCode := r.devTopic.sub(t, "unhidra/devices/d1/telemetry", 1)
		r.chTopic = mustV5(t, h.srv.Addr(), r.user+"-ch-"+fmt.Sprint(len(granted)), r.user, r.token)
		chCode := r.chTopic.sub(t, "unhidra/channels/device:d1/messages", 1)
		if wsOK != want || (devCode < 0x80) != want || (chCode < 0x80) != want {
			t.Fatalf("%s: WebSocket granted %v (%s), MQTT device topic SUBACK 0x%02x, MQTT channel topic SUBACK 0x%02x; want all granted: %v",
				r.name, wsOK, wsCode, devCode, chCode, want)
		}
		if want {
			granted = append(granted, r)
		}
	}
	check(readers[0], true)
	check(readers[1], true)
	check(readers[2], false)
	// The owner's membership of device:d1 ends (as stored): a new session
	// of hers is refused on every transport alike.
	cs, err := sqlite.NewChatStore(ctx, h.db)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	if err := cs.RemoveMember(ctx, "device:d1", "alice"); err != nil {
		t.Fatal(err)
	}
	check(&reader{name: "the owner no longer a member", user: "alice", token: "tok-alice"}, false)

	dev := mustV5(t, h.srv.Addr(), "esp32", "d1", h.keys["d1"])
	want := []string{`{"temp":1}`, `{"temp":2.5}`, `{"rh":40,"temp":3}`}
	for _, p := range want {
		if code, err := dev.pub(t, "unhidra/devices/d1/telemetry", 1, false, p); code != 0 || err != nil {
			t.Fatalf("PUBACK 0x%02x %v", code, err)
		}
	}
	for _, r := range granted {
		_ = r.ws.SetDeadline(time.Now().Add(10 * time.Second))
		var ws, devTopic, chTopic []string
		for len(ws) < len(want) {
			var f wire.MessageFrame
			if err := r.ws.ReadUntil(wire.TypeMessage, &f); err != nil {
				t.Fatalf("%s over WebSocket: %v (got %v)", r.name, err, ws)
			}
			if v := readingOf(f.Message.Data); v != "" {
				ws = append(ws, v)
			}
		}
		for len(devTopic) < len(want) {
			devTopic = append(devTopic, string(r.devTopic.next(t, 10*time.Second).Payload))
		}
		for len(chTopic) < len(want) {
			var m wire.Message
			if err := json.Unmarshal(r.chTopic.next(t, 10*time.Second).Payload, &m); err != nil {
				t.Fatal(err)
			}
			if v := readingOf(m.Data); v != "" {
				chTopic = append(chTopic, v)
			}
		}
		if fmt.Sprint(ws) != fmt.Sprint(want) || fmt.Sprint(devTopic) != fmt.Sprint(want) || fmt.Sprint(chTopic) != fmt.Sprint(want) {
			t.Errorf("%s saw %v over WebSocket, %v on the MQTT device topic, %v on the MQTT channel topic; want %v on each",
				r.name, ws, devTopic, chTopic, want)
		}
	}
}
