package mqttbridge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	pahov3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/unhidra/unhidra/internal/broker"
	"github.com/unhidra/unhidra/internal/brokertest"
	"github.com/unhidra/unhidra/wire"
)

// TestPahoV5DeviceTelemetryIsStoredAndFansOut covers MQ-1 for MQTT 5: a
// device's QoS 1 telemetry is acked after it is stored, reaches an MQTT
// subscriber (its owner) and the device channel (what WebSocket subscribers
// of device:d1 get).
func TestPahoV5DeviceTelemetryIsStoredAndFansOut(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	frames := make(chan []byte, 16)
	unsub, _ := h.broker.Subscribe(broker.ChannelTopic("device:d1"), func(ev *broker.Event) { frames <- brokertest.FrameJSON(ev) })
	defer unsub()

	owner := mustV5(t, h.srv.Addr(), "alice-app", "alice", "tok-alice")
	if code := owner.sub(t, "unhidra/devices/d1/telemetry", 1); code != 1 {
		t.Fatalf("owner's SUBACK = 0x%02x, want granted QoS 1", code)
	}
	dev := mustV5(t, h.srv.Addr(), "esp32", "d1", h.keys["d1"])
	code, err := dev.pub(t, "unhidra/devices/d1/telemetry", 1, false, `{"temp":21.5}`)
	if err != nil || code >= 0x80 {
		t.Fatalf("PUBACK 0x%02x, %v", code, err)
	}
	if n := h.count(`SELECT COUNT(*) FROM telemetry WHERE device_id = 'd1'`); n != 1 {
		t.Fatalf("%d telemetry rows after the PUBACK, want 1", n)
	}
	m := owner.next(t, 5*time.Second)
	if m.Topic != "unhidra/devices/d1/telemetry" || string(m.Payload) != `{"temp":21.5}` {
		t.Fatalf("owner got %s %s", m.Topic, m.Payload)
	}
	deadline := time.After(5 * time.Second)
	for {
		select {
		case b := <-frames:
			var f wire.MessageFrame
			if err := json.Unmarshal(b, &f); err != nil {
				t.Fatal(err)
			}
			var ev struct {
				Type string
				Data map[string]float64
			}
			_ = json.Unmarshal(f.Message.Data, &ev)
			if ev.Type != "telemetry" {
				continue // status events of the connection come first
			}
			if ev.Data["temp"] != 21.5 || f.Message.Sender.ID != "d1" || f.Offset < 1 {
				t.Fatalf("device channel frame %s", b)
			}
			return
		case <-deadline:
			t.Fatal("telemetry never reached the device channel")
		}
	}
}

// TestPahoV311Publishes1000QoS1MessagesWithoutLoss covers MQ-1's count: a
// 3.1.1 client sends 1,000 QoS 1 telemetry messages; every PUBACKed one is
// stored.
func TestPahoV311Publishes1000QoS1MessagesWithoutLoss(t *testing.T) {
	h := newHarness(t, harnessOpts{devices: 4})
	const perDevice = 250
	ctx := context.Background()
	_ = ctx
	done := make(chan error, 4)
	for d := 0; d < 4; d++ {
		id := fmt.Sprintf("dev-%d", d)
		go func() {
			opts := pahov3.NewClientOptions().AddBroker("tcp://" + h.srv.Addr()).SetClientID("c-" + id).
				SetUsername(id).SetPassword(h.keys[id]).SetProtocolVersion(4).SetAutoReconnect(false).SetConnectRetry(false)
			c := pahov3.NewClient(opts)
			if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				done <- fmt.Errorf("%s connect: %v", id, tok.Error())
				return
			}
			defer c.Disconnect(100)
			toks := make([]pahov3.Token, 0, perDevice)
			for i := 0; i < perDevice; i++ {
				toks = append(toks, c.Publish("unhidra/devices/"+id+"/telemetry", 1, false, fmt.Sprintf(`{"data":{"i":%d},"seq":%d}`, i, i)))
			}
			for i, tok := range toks {
				if !tok.WaitTimeout(60*time.Second) || tok.Error() != nil {
					done <- fmt.Errorf("%s publish %d: %v", id, i, tok.Error())
					return
				}
			}
			done <- nil
		}()
	}
	for i := 0; i < 4; i++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if n := h.count(`SELECT COUNT(*) FROM telemetry`); n != 4*perDevice {
		t.Fatalf("stored %d points after %d PUBACKs", n, 4*perDevice)
	}
	if n := h.count(`SELECT COUNT(DISTINCT device_id || '/' || seq) FROM telemetry`); n != 4*perDevice {
		t.Fatalf("stored %d distinct (device, seq), want %d", n, 4*perDevice)
	}
}

// TestQoS2TelemetryIsStoredBeforeThePUBREC: QoS 2 works too; the store
// write happens before mochi sends the PUBREC.
func TestQoS2TelemetryIsStoredBeforeThePUBREC(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	c := dialRaw(t, h.srv.Addr())
	c.connack(t, connectPkt(5, "q2", "d1", h.keys["d1"], 30, nil))
	c.Write(publishPkt(5, "unhidra/devices/d1/telemetry", 2, 77, []byte(`{"q":2}`)))
	hd, body, err := c.read(5 * time.Second)
	if err != nil || hd>>4 != 5 || body[0] != 0 || body[1] != 77 {
		t.Fatalf("want PUBREC for 77, got %x %x %v", hd, body, err)
	}
	if n := h.count(`SELECT COUNT(*) FROM telemetry WHERE data = '{"q":2}'`); n != 1 {
		t.Fatalf("%d rows when the PUBREC arrived", n)
	}
	c.Write([]byte{0x62, 0x02, 0, 77}) // PUBREL
	hd, body, err = c.read(5 * time.Second)
	if err != nil || hd>>4 != 7 || body[1] != 77 {
		t.Fatalf("want PUBCOMP, got %x %x %v", hd, body, err)
	}
}
