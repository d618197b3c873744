package mqttbridge_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/unhidra/unhidra/internal/chat"
	"github.com/unhidra/unhidra/internal/mqttbridge"
	"github.com/unhidra/unhidra/wire"
)

// Issue 7, item 1: a Will is a publish like any other. These fail against
// a broker that publishes Wills by itself (raw, unauthorized, retained).

// privateChannel creates alice's private channel (bob is not a member).
func privateChannel(t *testing.T, h *harness) string {
	t.Helper()
	ch, _, err := h.chat.CreateChannel(context.Background(), alice(), chat.CreateChannel{Name: "ops", Kind: chat.KindPrivate})
	if err != nil {
		t.Fatal(err)
	}
	return ch.ID
}

// withWill sets a paho Will.
func withWill(topic, payload string, retain bool, delay uint32) func(*paho.Connect) {
	return func(c *paho.Connect) {
		c.WillMessage = &paho.WillMessage{Topic: topic, Payload: []byte(payload), QoS: 1, Retain: retain}
		if delay > 0 {
			c.WillProperties = &paho.WillProperties{WillDelayInterval: &delay}
		}
	}
}

// nextWhere waits for a message that matches, skipping others.
func nextWhere(t *testing.T, v *v5client, what string, match func(*paho.Publish) bool) *paho.Publish {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case m := <-v.msgs:
			if match(m) {
				return m
			}
		case <-deadline:
			t.Fatalf("no %s within 5 s", what)
			return nil
		}
	}
}

func (h *harness) messages(channel string) int {
	return h.count(`SELECT COUNT(*) FROM messages WHERE channel_id = ?`, channel)
}

// noMessage asserts v receives nothing for a while (a retained message
// arrives right after the SUBACK).
func noMessage(t *testing.T, v *v5client, what string) {
	t.Helper()
	select {
	case m := <-v.msgs:
		t.Fatalf("%s: got %s %s", what, m.Topic, m.Payload)
	case <-time.After(500 * time.Millisecond):
	}
}

// TestAWillOnAChannelIsAStoredMessageOfAMember covers a private channel
// with paho (MQTT 5) and a raw 3.1.1 client: a non-member's Will is
// refused at CONNECT (0x87 / 0x05) and never reaches anyone; a member's
// Will, retain set and a forged sender inside, becomes one stored message
// from that member, delivered once as Message JSON; nothing is retained.
func TestAWillOnAChannelIsAStoredMessageOfAMember(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	ch := privateChannel(t, h)
	topic := mqttbridge.ChannelTopic(ch)
	forged := `{"text":"all clear","sender":{"kind":"user","id":"admin"}}`

	watch := mustV5(t, h.srv.Addr(), "watch", "alice", "tok-alice")
	if code := watch.sub(t, topic, 1); code != 1 {
		t.Fatalf("SUBACK 0x%02x", code)
	}
	if v, code, _ := dialV5(t, h.srv.Addr(), "intruder", "bob", "tok-bob", withWill(topic, forged, true, 0)); v != nil || code != 0x87 {
		t.Fatalf("a non-member's Will on a private channel: CONNACK 0x%02x, want 0x87", code)
	}
	raw := dialRaw(t, h.srv.Addr())
	if code := raw.connack(t, connectPkt(4, "intruder3", "bob", "tok-bob", 30, &will{topic: topic, payload: forged, retain: true})); code != 0x05 {
		t.Fatalf("3.1.1: CONNACK 0x%02x, want 0x05", code)
	}
	noMessage(t, watch, "after the refused Wills")

	dying, code, err := dialV5(t, h.srv.Addr(), "dying", "alice", "tok-alice", withWill(topic, forged, true, 0))
	if dying == nil {
		t.Fatalf("a member's Will: CONNACK 0x%02x %v", code, err)
	}
	_ = dying.conn.Close() // no DISCONNECT
	m := watch.next(t, 5*time.Second)
	var msg wire.Message
	if err := json.Unmarshal(m.Payload, &msg); err != nil || msg.Text == nil || *msg.Text != "all clear" || msg.Sender.ID != "alice" || msg.Offset != 1 {
		t.Fatalf("the Will reached the subscriber as %s (%v), want a stored message from alice", m.Payload, err)
	}
	if m.Retain {
		t.Error("the Will was delivered with retain set")
	}
	noMessage(t, watch, "a second copy")
	if n := h.messages(ch); n != 1 {
		t.Errorf("%d messages stored, want 1", n)
	}
	late := mustV5(t, h.srv.Addr(), "late", "alice", "tok-alice")
	late.sub(t, topic, 1)
	noMessage(t, late, "a late subscriber of a channel topic")
	if n := h.srv.RetainedMessages(); n != 0 {
		t.Errorf("%d retained messages, want 0", n)
	}

	// A clean DISCONNECT discards the Will.
	polite, _, _ := dialV5(t, h.srv.Addr(), "polite", "alice", "tok-alice", withWill(topic, `{"text":"never"}`, false, 0))
	_ = polite.c.Disconnect(&paho.Disconnect{})
	noMessage(t, watch, "after a clean DISCONNECT")
}

// TestAWillOnADeviceIsCheckedLikeItsPublish covers a device's channel and
// its own topics: nobody's Will may land on a device channel (not the
// owner's, not a stranger's, not the device's), a device's status Will must
// be a valid status, and a valid one is stored, delivered and retained as
// the device's one retained message.
func TestAWillOnADeviceIsCheckedLikeItsPublish(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	devChannel := mqttbridge.ChannelTopic("device:d1")
	status := mqttbridge.DeviceTopic("d1", "status")
	alarm := `{"data":{"type":"telemetry","data":{"smoke":true}}}`
	deep := `{"v":` + strings.Repeat("[", wire.MaxDepth+1) + strings.Repeat("]", wire.MaxDepth+1) + `}`
	for _, tc := range []struct {
		name, user, pass, topic, payload string
		v5, v3                           byte
	}{
		{"a stranger's Will on a device channel", "bob", "tok-bob", devChannel, alarm, 0x87, 0x05},
		{"the device's Will on its channel", "d1", h.keys["d1"], devChannel, alarm, 0x87, 0x05},
		{"a device's Will on another device", "d2", h.keys["d2"], status, `{"online":false}`, 0x87, 0x05},
		{"a non-JSON status Will", "d1", h.keys["d1"], status, `offline`, 0x99, 0x05},
		{"a status Will nested too deep", "d1", h.keys["d1"], status, deep, 0x99, 0x05},
		{"a status Will of invalid UTF-8", "d1", h.keys["d1"], status, "{\"fw\":\"\xff\"}", 0x99, 0x05},
		{"a telemetry Will that is no object", "d1", h.keys["d1"], mqttbridge.DeviceTopic("d1", "telemetry"), `[1]`, 0x99, 0x05},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if v, code, _ := dialV5(t, h.srv.Addr(), "w5", tc.user, tc.pass, withWill(tc.topic, tc.payload, true, 0)); v != nil || code != tc.v5 {
				t.Errorf("MQTT 5: CONNACK 0x%02x, want 0x%02x", code, tc.v5)
			}
			raw := dialRaw(t, h.srv.Addr())
			if code := raw.connack(t, connectPkt(4, "w3", tc.user, tc.pass, 30, &will{topic: tc.topic, payload: tc.payload, retain: true})); code != tc.v3 {
				t.Errorf("3.1.1: CONNACK 0x%02x, want 0x%02x", code, tc.v3)
			}
		})
	}

	if n := h.messages("device:d1"); n != 0 {
		t.Fatalf("%d messages in device:d1 after refused Wills", n)
	}
	// alice, the owner, may post to her device's channel: her Will is a
	// message from her, as her publish would be, never one from the device.
	owner, code, err := dialV5(t, h.srv.Addr(), "owner-will", "alice", "tok-alice", withWill(devChannel, `{"text":"going offline"}`, true, 0))
	if owner == nil {
		t.Fatalf("the owner's Will: CONNACK 0x%02x %v", code, err)
	}
	_ = owner.conn.Close()
	waitFor(t, 5*time.Second, "the owner's Will stored", func() bool {
		return h.count(`SELECT COUNT(*) FROM messages WHERE channel_id = 'device:d1' AND sender_kind = 'user' AND sender_id = 'alice'`) == 1
	})
	// A stored row is readable a moment before the group commit publishes
	// its event: let that event go first, so that what watch gets below can
	// only be a retained message.
	h.chat.Wait()
	watch := mustV5(t, h.srv.Addr(), "watch", "alice", "tok-alice")
	watch.sub(t, "unhidra/devices/d1/#", 1)
	watch.sub(t, devChannel, 1)
	noMessage(t, watch, "retained messages")

	dev, code, err := dialV5(t, h.srv.Addr(), "esp", "d1", h.keys["d1"], withWill(status, `{"online":false,"why":"power"}`, true, 0))
	if dev == nil {
		t.Fatalf("a valid status Will: CONNACK 0x%02x %v", code, err)
	}
	waitFor(t, 5*time.Second, "d1 online", func() bool { return h.count(`SELECT COUNT(*) FROM devices WHERE id = 'd1' AND online = 1`) == 1 })
	_ = dev.conn.Close()
	// The owner gets the Will on the status topic and its status event on
	// the device channel (after the "online" event of the connect).
	var sawWill, sawEvent bool
	nextWhere(t, watch, "the status Will and its event", func(m *paho.Publish) bool {
		sawWill = sawWill || m.Topic == status && string(m.Payload) == `{"online":false,"why":"power"}`
		sawEvent = sawEvent || m.Topic == devChannel && bytes.Contains(m.Payload, []byte(`"why":"power"`))
		return sawWill && sawEvent
	})
	late := mustV5(t, h.srv.Addr(), "late", "alice", "tok-alice")
	late.sub(t, status, 1)
	if m := late.next(t, 5*time.Second); string(m.Payload) != `{"online":false,"why":"power"}` || !m.Retain {
		t.Fatalf("late subscriber got %s (retain %v), want the retained status Will", m.Payload, m.Retain)
	}
	waitFor(t, 5*time.Second, "d1 offline", func() bool { return h.count(`SELECT COUNT(*) FROM devices WHERE id = 'd1' AND online = 0`) == 1 })
}

// TestRetainedMessagesAreOnePerDevice: retain set on every topic a client
// may publish to leaves one retained message per device (its last status)
// and none for channels, telemetry, heartbeats or command results.
func TestRetainedMessagesAreOnePerDevice(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	ch := privateChannel(t, h)
	d1 := mustV5(t, h.srv.Addr(), "d1", "d1", h.keys["d1"])
	d2 := mustV5(t, h.srv.Addr(), "d2", "d2", h.keys["d2"])
	a := mustV5(t, h.srv.Addr(), "a", "alice", "tok-alice")
	for i, p := range []struct {
		c              *v5client
		topic, payload string
	}{
		{d1, mqttbridge.DeviceTopic("d1", "telemetry"), `{"t":1}`},
		{d1, mqttbridge.DeviceTopic("d1", "heartbeat"), `{}`},
		{d1, mqttbridge.DeviceTopic("d1", "status"), `{"online":true,"n":1}`},
		{d1, mqttbridge.DeviceTopic("d1", "status"), `{"online":true,"n":2}`},
		{d2, mqttbridge.DeviceTopic("d2", "status"), `{"online":true}`},
		{a, mqttbridge.ChannelTopic(ch), `{"text":"retain me"}`},
	} {
		if code, err := p.c.pub(t, p.topic, 1, true, p.payload); code != 0 || err != nil {
			t.Fatalf("publish %d on %s: 0x%02x %v", i, p.topic, code, err)
		}
	}
	if n := h.srv.RetainedMessages(); n != 2 {
		t.Errorf("%d retained messages, want 2 (one status per device)", n)
	}
	late := mustV5(t, h.srv.Addr(), "late", "alice", "tok-alice")
	late.sub(t, "unhidra/devices/d1/#", 1)
	if m := late.next(t, 5*time.Second); string(m.Payload) != `{"online":true,"n":2}` {
		t.Fatalf("late subscriber got %s %s, want d1's last status", m.Topic, m.Payload)
	}
	noMessage(t, late, "a second retained message under d1")
}

// TestAWillDelayIsHonouredAndCancelledByAReconnect covers the v5 Will
// Delay Interval: the Will goes out after the delay, and a new connection
// with the same client id before then cancels it.
func TestAWillDelayIsHonouredAndCancelledByAReconnect(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	ch := privateChannel(t, h)
	topic := mqttbridge.ChannelTopic(ch)
	watch := mustV5(t, h.srv.Addr(), "watch", "alice", "tok-alice")
	watch.sub(t, topic, 1)

	c, code, err := dialV5(t, h.srv.Addr(), "flaky", "alice", "tok-alice", withWill(topic, `{"text":"cancelled"}`, false, 60))
	if c == nil {
		t.Fatalf("CONNACK 0x%02x %v", code, err)
	}
	_ = c.conn.Close()
	waitFor(t, 5*time.Second, "the delayed Will pending", func() bool { return h.srv.PendingWills() == 1 })
	back := mustV5(t, h.srv.Addr(), "flaky", "alice", "tok-alice")
	_ = back
	if n := h.srv.PendingWills(); n != 0 {
		t.Fatalf("%d delayed Wills after the client came back, want 0", n)
	}

	c, _, _ = dialV5(t, h.srv.Addr(), "gone", "alice", "tok-alice", withWill(topic, `{"text":"gone for good"}`, false, 1))
	_ = c.conn.Close()
	m := watch.next(t, 10*time.Second)
	var msg wire.Message
	if err := json.Unmarshal(m.Payload, &msg); err != nil || msg.Text == nil || *msg.Text != "gone for good" {
		t.Fatalf("got %s, want the delayed Will", m.Payload)
	}
	if n := h.messages(ch); n != 1 {
		t.Errorf("%d messages stored, want 1 (the cancelled Will never)", n)
	}
}

// TestMosquittoWillsAreChecked does the Will cases with Mosquitto's own
// clients (--will-*), MQTT 5 and 3.1.1: on a private channel a
// non-member's Will is refused and a member's is stored once and not
// retained; on a device channel a stranger's Will is refused; a device's
// non-JSON status Will is refused.
func TestMosquittoWillsAreChecked(t *testing.T) {
	sub := needTool(t, "mosquitto_sub")
	h := newHarness(t, harnessOpts{})
	ch := privateChannel(t, h)
	topic := mqttbridge.ChannelTopic(ch)
	host, port, _ := net.SplitHostPort(h.srv.Addr())
	watch := mustV5(t, h.srv.Addr(), "watch", "alice", "tok-alice")
	watch.sub(t, topic, 1)
	for i, v := range []string{"mqttv5", "mqttv311"} {
		t.Run(v, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			base := []string{"-h", host, "-p", port, "-V", v, "-W", "5", "-C", "1"}
			refused := func(what string, args ...string) {
				t.Helper()
				out, err := exec.CommandContext(ctx, sub, append(append([]string{}, base...), args...)...).CombinedOutput()
				if err == nil {
					t.Errorf("%s: mosquitto_sub connected: %s", what, out)
				}
				if s := strings.ToLower(string(out)); !strings.Contains(s, "not authori") && !strings.Contains(s, "payload format") {
					t.Errorf("%s: mosquitto_sub says %q, want a refusal", what, out)
				}
			}
			refused("a non-member's Will on a private channel", "-u", "bob", "-P", "tok-bob", "-t", "unhidra/devices/d2/status",
				"--will-topic", topic, "--will-payload", `{"text":"forged"}`, "--will-retain", "--will-qos", "1")
			refused("a stranger's Will on a device channel", "-u", "bob", "-P", "tok-bob", "-t", "unhidra/devices/d2/status",
				"--will-topic", mqttbridge.ChannelTopic("device:d1"), "--will-payload", `{"text":"fake alarm"}`, "--will-retain")
			refused("a device's non-JSON status Will", "-u", "d1", "-P", h.keys["d1"], "-t", "unhidra/devices/d1/commands",
				"--will-topic", mqttbridge.DeviceTopic("d1", "status"), "--will-payload", "offline", "--will-retain")

			dying := exec.CommandContext(ctx, sub, "-h", host, "-p", port, "-V", v, "-i", "dying-"+v, "-u", "alice", "-P", "tok-alice", "-k", "30",
				"-t", topic, "--will-topic", topic, "--will-payload", `{"text":"bye from `+v+`"}`, "--will-retain", "--will-qos", "1")
			if err := dying.Start(); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 5*time.Second, "the member connected", func() bool { return hasSession(h, "dying-"+v) })
			_ = dying.Process.Signal(syscall.SIGKILL)
			_ = dying.Wait()
			m := watch.next(t, 5*time.Second)
			var msg wire.Message
			if err := json.Unmarshal(m.Payload, &msg); err != nil || msg.Text == nil || *msg.Text != "bye from "+v || msg.Sender.ID != "alice" {
				t.Fatalf("the member's Will reached the channel as %s", m.Payload)
			}
			if n := h.messages(ch); n != i+1 {
				t.Errorf("%d messages stored, want %d", n, i+1)
			}
			// Nothing retained: a late mosquitto_sub times out with no message.
			out, err := exec.CommandContext(ctx, sub, "-h", host, "-p", port, "-V", v, "-u", "alice", "-P", "tok-alice", "-t", topic, "-C", "1", "-W", "2").CombinedOutput()
			if err == nil || len(bytes.TrimSpace(out)) > 0 && !strings.Contains(strings.ToLower(string(out)), "timed out") {
				t.Errorf("a late subscriber got %q (%v), want nothing retained", out, err)
			}
		})
	}
	noMessage(t, watch, "after the mosquitto cases")
}
