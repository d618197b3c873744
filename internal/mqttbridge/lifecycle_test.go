package mqttbridge_test

import (
	"testing"
	"time"

	paho "github.com/eclipse/paho.golang/paho"
	pahov3 "github.com/eclipse/paho.mqtt.golang"
	"go.uber.org/goleak"
)

// TestRunStopsEverything: after Run returns, the broker, its listeners,
// client connections and the bridge goroutine are gone.
func TestRunStopsEverything(t *testing.T) {
	before := goleak.IgnoreCurrent()
	h := newHarness(t, harnessOpts{})
	c := dialRaw(t, h.srv.Addr())
	c.connack(t, connectPkt(4, "x", "d1", h.keys["d1"], 30, nil))
	c.Write(subscribePkt(4, 1, "unhidra/devices/d1/commands", 1))
	half := dialRaw(t, h.srv.Addr()) // never sends a CONNECT
	_ = half
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	h.stop()
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("stopping took %s", el)
	}
	if !c.closedWithin(time.Second) {
		t.Fatal("client connection left open after Run returned")
	}
	c.Close()
	half.Close()
	goleak.VerifyNone(t, before,
		// database/sql opener goroutines of closed pools end on their own.
		goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener"))
}

// TestPahoRetainedQoS0AndWill covers the rest of MQ-1 with both paho
// libraries: QoS 0 delivery, a retained status for a late subscriber, and a
// Will when the device's connection drops.
func TestPahoRetainedQoS0AndWill(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	// paho.golang (v5) device with a Will.
	dev, code, err := dialV5(t, h.srv.Addr(), "esp-v5", "d1", h.keys["d1"], func(c *paho.Connect) {
		c.WillMessage = &paho.WillMessage{Topic: "unhidra/devices/d1/status", Payload: []byte(`{"online":false,"by":"will"}`), QoS: 1}
	})
	if dev == nil {
		t.Fatalf("connect: 0x%02x %v", code, err)
	}
	if code, err := dev.pub(t, "unhidra/devices/d1/status", 1, true, `{"online":true}`); code != 0 || err != nil {
		t.Fatalf("retained status: 0x%02x %v", code, err)
	}
	// paho.mqtt.golang (3.1.1) owner subscribes late: gets the retained status.
	got := make(chan string, 16)
	opts := pahov3.NewClientOptions().AddBroker("tcp://" + h.srv.Addr()).SetClientID("owner-v3").
		SetUsername("alice").SetPassword("tok-alice").SetProtocolVersion(4).SetAutoReconnect(false)
	owner := pahov3.NewClient(opts)
	if tok := owner.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer owner.Disconnect(50)
	if tok := owner.Subscribe("unhidra/devices/d1/#", 0, func(_ pahov3.Client, m pahov3.Message) {
		got <- m.Topic() + " " + string(m.Payload())
	}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	const retained = `unhidra/devices/d1/status {"online":true}`
	expect := func(want string) {
		t.Helper()
		for {
			select {
			case m := <-got:
				if m == retained && want != retained {
					// mochi writes the PUBACK before it fans the message
					// out, so a subscription made right after the PUBACK
					// may see the status both retained and live.
					continue
				}
				if m != want {
					t.Fatalf("got %q, want %q", m, want)
				}
				return
			case <-time.After(5 * time.Second):
				t.Fatalf("no %q", want)
			}
		}
	}
	expect(retained)
	// QoS 0 telemetry from the v5 device reaches the 3.1.1 owner.
	if _, err := dev.pub(t, "unhidra/devices/d1/telemetry", 0, false, `{"q":0}`); err != nil {
		t.Fatal(err)
	}
	expect(`unhidra/devices/d1/telemetry {"q":0}`)
	waitFor(t, 2*time.Second, "QoS 0 point stored", func() bool { return h.count(`SELECT COUNT(*) FROM telemetry`) == 1 })
	// The device's connection drops without a DISCONNECT: the Will goes out.
	_ = dev.conn.Close()
	expect(`unhidra/devices/d1/status {"online":false,"by":"will"}`)
}
