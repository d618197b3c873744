package main

// Devices over the whole server: commands from REST reach a device on
// whichever transport it uses, telemetry crosses from MQTT to WebSocket and
// back, and revoking a key on the auth API ends the device's live sessions
// on both transports (KEY-1).

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/e2etest"
	"github.com/unhidra/unhidra/wire"
)

type commandState struct {
	CommandID string          `json:"command_id"`
	Name      string          `json:"name"`
	Status    string          `json:"status"`
	Result    json.RawMessage `json:"result"`
}

func (s *stack) sendCommand(t *testing.T, tok, dev, name, params string) string {
	t.Helper()
	r := s.api(t, "POST", "/api/v1/devices/"+dev+"/commands", tok, map[string]any{"name": name, "params": json.RawMessage(params), "timeout_s": 60})
	e2etest.WantStatus(t, r, 202, "send command "+name+" to "+dev)
	var c commandState
	e2etest.Decode(t, r, &c)
	if c.CommandID == "" || c.Status != "pending" {
		t.Fatalf("command answer %s, want a command_id and status pending", r.Body)
	}
	return c.CommandID
}

func (s *stack) command(t *testing.T, tok, dev, id string) commandState {
	t.Helper()
	r := s.api(t, "GET", "/api/v1/devices/"+dev+"/commands/"+id, tok, nil)
	e2etest.WantStatus(t, r, 200, "get command")
	var c commandState
	e2etest.Decode(t, r, &c)
	return c
}

// waitCommand polls until the command has the wanted status.
func (s *stack) waitCommand(t *testing.T, tok, dev, id, status string) commandState {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c := s.command(t, tok, dev, id)
		if c.Status == status {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("command %s of %s is %q, want %q", id, dev, c.Status, status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestDeviceCommandsReachEveryTransport(t *testing.T) {
	s := startStack(t, nil)
	alice, _ := s.user(t, "alice")
	mqKey := s.device(t, alice, "dev-mqtt")
	wsKey := s.device(t, alice, "dev-ws")

	t.Run("a REST command reaches a device on MQTT and its result comes back", func(t *testing.T) {
		dm := e2etest.MustMQTT(t, s.mqtt, "dev-mqtt-1", "dev-mqtt", mqKey)
		if rc := dm.Subscribe(t, "unhidra/devices/dev-mqtt/commands", 1); rc > 1 {
			t.Fatalf("SUBACK 0x%02x on the device's own command topic", rc)
		}
		id := s.sendCommand(t, alice, "dev-mqtt", "set_interval", `{"seconds":5}`)
		p := dm.Next(t, 10*time.Second)
		var got commandState
		var params struct {
			Params struct{ Seconds int } `json:"params"`
		}
		if json.Unmarshal(p.Payload, &got) != nil || json.Unmarshal(p.Payload, &params) != nil || got.CommandID != id || got.Name != "set_interval" || params.Params.Seconds != 5 {
			t.Fatalf("command on MQTT %s, want %s set_interval {seconds:5}", p.Payload, id)
		}
		s.waitCommand(t, alice, "dev-mqtt", id, "delivered")
		res := fmt.Sprintf(`{"command_id":%q,"status":"ok","result":{"interval":5}}`, id)
		if rc := dm.Publish(t, "unhidra/devices/dev-mqtt/commands/result", []byte(res)); rc != 0 {
			t.Fatalf("PUBACK 0x%02x for the result", rc)
		}
		c := s.waitCommand(t, alice, "dev-mqtt", id, "ok")
		if !strings.Contains(string(c.Result), `"interval":5`) {
			t.Errorf("result %s", c.Result)
		}
	})
	t.Run("a REST command reaches a device on WebSocket and its result comes back", func(t *testing.T) {
		dw := e2etest.DialWS(t, s.wsURL, "unhidra.v1, apikey."+wsKey)
		id := s.sendCommand(t, alice, "dev-ws", "ping", `{}`)
		f := dw.Until(t, wire.TypeCommand, 10*time.Second)
		if f.CommandID != id || f.Name != "ping" {
			t.Fatalf("command frame %s, want %s ping", f.Raw, id)
		}
		if c := s.command(t, alice, "dev-ws", id); c.Status != "delivered" {
			t.Errorf("a command handed to a WebSocket device is %q, want delivered", c.Status)
		}
		dw.Send(t, map[string]any{"type": "command_result", "command_id": id, "status": "ok", "result": map[string]bool{"pong": true}})
		c := s.waitCommand(t, alice, "dev-ws", id, "ok")
		if !strings.Contains(string(c.Result), `"pong":true`) {
			t.Errorf("result %s", c.Result)
		}
	})
	t.Run("a command sent while an MQTT device is offline is delivered when it subscribes", func(t *testing.T) {
		id := s.sendCommand(t, alice, "dev-mqtt", "ping", `{}`)
		time.Sleep(100 * time.Millisecond)
		if c := s.command(t, alice, "dev-mqtt", id); c.Status != "pending" {
			t.Fatalf("a command for an offline device is %q, want pending", c.Status)
		}
		dm := e2etest.MustMQTT(t, s.mqtt, "dev-mqtt-2", "dev-mqtt", mqKey)
		dm.Subscribe(t, "unhidra/devices/dev-mqtt/commands", 1)
		p := dm.Next(t, 10*time.Second)
		if !strings.Contains(string(p.Payload), id) {
			t.Fatalf("first command after reconnecting: %s, want %s", p.Payload, id)
		}
		s.waitCommand(t, alice, "dev-mqtt", id, "delivered")
	})
	t.Run("a command sent while a WebSocket device is offline is delivered when it connects", func(t *testing.T) {
		id := s.sendCommand(t, alice, "dev-ws", "ping", `{}`)
		time.Sleep(100 * time.Millisecond)
		dw := e2etest.DialWS(t, s.wsURL, "unhidra.v1, apikey."+wsKey)
		f, err := dw.TryRead(5 * time.Second)
		for err == nil && f.Type != wire.TypeCommand {
			f, err = dw.TryRead(5 * time.Second)
		}
		if err != nil || f.CommandID != id {
			t.Fatalf("no command frame for the held command %s after connecting (%v): the gateway does not hand a device its pending commands", id, err)
		}
		s.waitCommand(t, alice, "dev-ws", id, "delivered")
	})
	t.Run("devices and strangers may not send commands", func(t *testing.T) {
		bob, _ := s.user(t, "bob")
		e2etest.WantStatus(t, s.api(t, "POST", "/api/v1/devices/dev-ws/commands", bob, map[string]any{"name": "ping"}), 403, "another user's command")
		e2etest.WantStatus(t, s.api(t, "POST", "/api/v1/devices/dev-ws/commands", wsKey, map[string]any{"name": "ping"}), 403, "a device key on a user route")
	})
}

func TestTelemetryCrossesTransports(t *testing.T) {
	s := startStack(t, nil)
	alice, _ := s.user(t, "alice")
	mqKey := s.device(t, alice, "sensor-mqtt")
	wsKey := s.device(t, alice, "sensor-ws")

	t.Run("the owner can subscribe to device:D before the device first connects", func(t *testing.T) {
		// docs/protocol.md#channels: every device has its channel; a dashboard opened before
		// the device is powered on must not be refused.
		wa := e2etest.DialWS(t, s.wsURL, "unhidra.v1, bearer."+alice)
		wa.Send(t, map[string]any{"type": "subscribe", "id": 1, "channel": "device:sensor-never"})
		s.device(t, alice, "sensor-never")
		wa.Send(t, map[string]any{"type": "subscribe", "id": 2, "channel": "device:sensor-never"})
		for {
			f := wa.Read(t, 10*time.Second)
			if string(f.ID) != "2" {
				continue
			}
			if f.Type != wire.TypeSubscribed {
				t.Fatalf("the owner's subscribe to a new device's channel: %s", f.Raw)
			}
			break
		}
	})
	t.Run("MQTT telemetry reaches a WebSocket subscriber of device:D", func(t *testing.T) {
		dm := e2etest.MustMQTT(t, s.mqtt, "sensor-mqtt-1", "sensor-mqtt", mqKey)
		// The device's first message makes sure its channel exists.
		if rc := dm.Publish(t, "unhidra/devices/sensor-mqtt/heartbeat", []byte(`{"device_id":"sensor-mqtt","ts":1}`)); rc != 0 {
			t.Fatalf("heartbeat PUBACK 0x%02x", rc)
		}
		wa := e2etest.DialWS(t, s.wsURL, "unhidra.v1, bearer."+alice)
		wa.Send(t, map[string]any{"type": "subscribe", "channel": "device:sensor-mqtt"})
		if f := wa.Until(t, wire.TypeSubscribed, 10*time.Second); f.Channel != "device:sensor-mqtt" {
			t.Fatalf("subscribed %s", f.Raw)
		}
		if rc := dm.Publish(t, "unhidra/devices/sensor-mqtt/telemetry", []byte(`{"data":{"temp":21.5},"seq":1}`)); rc != 0 {
			t.Fatalf("PUBACK 0x%02x", rc)
		}
		for {
			f := wa.Until(t, wire.TypeMessage, 10*time.Second)
			m := f.Msg(t)
			if strings.Contains(string(m.Data), `"telemetry"`) {
				if !strings.Contains(string(m.Data), `21.5`) || m.Sender.Kind != wire.KindDevice || m.Sender.ID != "sensor-mqtt" {
					t.Fatalf("telemetry message %s", f.Raw)
				}
				break
			}
		}
	})
	t.Run("WebSocket telemetry reaches the owner's MQTT subscription", func(t *testing.T) {
		dw := e2etest.DialWS(t, s.wsURL, "unhidra.v1, apikey."+wsKey)
		dw.Send(t, map[string]any{"type": "heartbeat", "id": 0, "device_id": "sensor-ws", "ts": 1})
		dw.Until(t, wire.TypeHeartbeatAck, 10*time.Second)
		ma := e2etest.MustMQTT(t, s.mqtt, "alice-dash", "alice", alice)
		topic := "unhidra/channels/device:sensor-ws/messages"
		if rc := ma.Subscribe(t, topic, 1); rc > 1 {
			t.Fatalf("the owner's SUBACK 0x%02x on %s", rc, topic)
		}
		dw.Send(t, map[string]any{"type": "telemetry", "id": 1, "data": map[string]float64{"humidity": 40.25}, "seq": 1})
		if f := dw.Until(t, wire.TypeAck, 10*time.Second); f.Channel != "device:sensor-ws" {
			t.Fatalf("telemetry ack %s", f.Raw)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			p := ma.Next(t, time.Until(deadline))
			var m wire.Message
			if err := json.Unmarshal(p.Payload, &m); err != nil {
				t.Fatalf("not a Message: %s", p.Payload)
			}
			if strings.Contains(string(m.Data), "40.25") {
				break
			}
		}
	})
	t.Run("mosquitto_pub (v5) telemetry reaches a mosquitto_sub (3.1.1) subscriber of the owner", func(t *testing.T) {
		for _, tool := range []string{"mosquitto_pub", "mosquitto_sub"} {
			if _, err := exec.LookPath(tool); err != nil {
				if os.Getenv("UNHIDRA_CHECK") != "" {
					t.Fatalf("%s is not installed (make deps installs it)", tool)
				}
				t.Skipf("%s is not installed", tool)
			}
		}
		host, port, _ := net.SplitHostPort(s.mqtt)
		sub := exec.Command("mosquitto_sub", "-h", host, "-p", port, "-V", "mqttv311", "-q", "1", "-d", "-i", "alice-mosq",
			"-u", "alice", "-P", alice, "-t", "unhidra/channels/device:sensor-mqtt/messages", "-W", "30")
		var out e2etest.SyncBuffer
		sub.Stdout, sub.Stderr = &out, &out
		if err := sub.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = sub.Process.Kill(); _ = sub.Wait() }()
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(out.String(), "SUBACK") {
			if time.Now().After(deadline) {
				t.Fatalf("mosquitto_sub got no SUBACK:\n%s", out.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
		pub := exec.Command("mosquitto_pub", "-h", host, "-p", port, "-V", "mqttv5", "-q", "1", "-i", "sensor-mosq",
			"-u", "sensor-mqtt", "-P", mqKey, "-t", "unhidra/devices/sensor-mqtt/telemetry", "-m", `{"data":{"lux":777.5},"seq":5}`)
		if b, err := pub.CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_pub: %v %s", err, b)
		}
		deadline = time.Now().Add(10 * time.Second)
		for !strings.Contains(out.String(), `"lux":777.5`) {
			if time.Now().After(deadline) {
				t.Fatalf("mosquitto_sub did not receive the telemetry message:\n%s", out.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
		for _, l := range e2etest.Lines(out.String(), `"lux":777.5`) {
			if !strings.Contains(l, `"sender":{"kind":"device","id":"sensor-mqtt"}`) {
				t.Errorf("not a Message from the device: %s", l)
			}
		}
		if strings.Contains(out.String(), "SUBACK") && strings.Contains(out.String(), "granted qos 128") {
			t.Fatalf("the owner's subscription was refused:\n%s", out.String())
		}
	})
	t.Run("the telemetry route returns the points of a time range", func(t *testing.T) {
		dm := e2etest.MustMQTT(t, s.mqtt, "sensor-mqtt-2", "sensor-mqtt", mqKey)
		base := time.Now().UTC().Add(-3 * time.Hour).Truncate(time.Second)
		for i := range 3 {
			ts := base.Add(time.Duration(i) * time.Hour).Format(time.RFC3339)
			p := fmt.Sprintf(`{"data":{"n":%d},"ts":%q,"seq":%d}`, i, ts, 10+i)
			if rc := dm.Publish(t, "unhidra/devices/sensor-mqtt/telemetry", []byte(p)); rc != 0 {
				t.Fatalf("PUBACK 0x%02x", rc)
			}
		}
		q := url.Values{"since": {base.Add(30 * time.Minute).Format(time.RFC3339)}, "until": {base.Add(90 * time.Minute).Format(time.RFC3339)}}
		r := s.api(t, "GET", "/api/v1/devices/sensor-mqtt/telemetry?"+q.Encode(), alice, nil)
		e2etest.WantStatus(t, r, 200, "telemetry query")
		var out struct {
			Points []struct {
				TS   time.Time       `json:"ts"`
				Data json.RawMessage `json:"data"`
				Seq  *int64          `json:"seq"`
			} `json:"points"`
		}
		e2etest.Decode(t, r, &out)
		if len(out.Points) != 1 || out.Points[0].Seq == nil || *out.Points[0].Seq != 11 || !out.Points[0].TS.Equal(base.Add(time.Hour)) {
			t.Fatalf("points in the range %s", r.Body)
		}
		r = s.api(t, "GET", "/api/v1/devices/sensor-mqtt/telemetry?since="+url.QueryEscape(base.Format(time.RFC3339)), alice, nil)
		e2etest.Decode(t, r, &out)
		var seqs []int64
		for _, p := range out.Points {
			if p.Seq != nil && *p.Seq >= 10 {
				seqs = append(seqs, *p.Seq)
			}
		}
		if fmt.Sprint(seqs) != "[10 11 12]" {
			t.Fatalf("the timestamped points since the first, oldest first: seqs %v, want [10 11 12]: %s", seqs, r.Body)
		}
		bob, _ := s.user(t, "bob")
		e2etest.WantStatus(t, s.api(t, "GET", "/api/v1/devices/sensor-mqtt/telemetry", bob, nil), 403, "another user's telemetry")
	})
}

// TestDeviceRevocationEndsLiveSessions is KEY-1's live part: DELETE
// /devices/{id} on the auth API closes the device's WebSocket (4003) and
// MQTT session within 5 s; the key is refused afterwards on both.
func TestDeviceRevocationEndsLiveSessions(t *testing.T) {
	s := startStack(t, nil)
	alice, _ := s.user(t, "alice")
	key := s.device(t, alice, "doomed")
	ws := e2etest.DialWS(t, s.wsURL, "unhidra.v1, apikey."+key)
	mq := e2etest.MustMQTT(t, s.mqtt, "doomed-1", "doomed", key)
	began := time.Now()
	e2etest.WantStatus(t, s.authAPI(t, "DELETE", "/devices/doomed", alice, nil), 204, "revoke")
	code, err := ws.CloseCode(5 * time.Second)
	if code != 4003 {
		t.Errorf("WebSocket close %d (%v), want 4003 within 5 s", code, err)
	}
	select {
	case <-mq.Gone:
	case <-time.After(5*time.Second - time.Since(began)):
		t.Error("the MQTT session is still connected 5 s after the revocation")
	}
	t.Logf("sessions ended %v after the revocation", time.Since(began).Round(time.Millisecond))
	for _, proto := range []string{"unhidra.v1, apikey." + key, "bearer, " + key} {
		if _, err := e2etest.TryWS(s.wsURL, proto); err == nil || !strings.Contains(err.Error(), "401") {
			t.Errorf("a WebSocket with the revoked key: %v, want 401", err)
		}
	}
	if m, rc, _ := e2etest.DialMQTT(t, s.mqtt, "doomed-2", "doomed", key); m != nil || rc != 0x86 {
		t.Errorf("MQTT CONNACK 0x%02x with the revoked key, want 0x86", rc)
	}
	e2etest.WantStatus(t, s.api(t, "GET", "/api/v1/devices/doomed/telemetry", key, nil), 401, "REST with the revoked key")
}
