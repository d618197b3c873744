package mqttbridge_test

import (
	"bytes"
	"context"
	paho "github.com/eclipse/paho.golang/paho"
	"strings"
	"testing"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/broker"
	"github.com/unhidra/unhidra/internal/mqttbridge"
	"github.com/unhidra/unhidra/wire"
)

// TestSilentClientIsClosedAfterKeepaliveAndItsWillIsPublished covers MQ-5:
// a device with keep-alive 2 s that goes silent is closed within
// 1.5 × 2 s + 1 s, its Will reaches the owner, and it goes offline.
func TestSilentClientIsClosedAfterKeepaliveAndItsWillIsPublished(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	owner := mustV5(t, h.srv.Addr(), "a", "alice", "tok-alice")
	owner.sub(t, "unhidra/devices/d1/status", 1)

	for _, v := range []byte{4, 5} {
		c := dialRaw(t, h.srv.Addr())
		start := time.Now()
		if code := c.connack(t, connectPkt(v, "silent", "d1", h.keys["d1"], 2, &will{topic: "unhidra/devices/d1/status", payload: `{"online":false}`})); code != 0 {
			t.Fatalf("v%d connect refused 0x%02x", v, code)
		}
		waitFor(t, 2*time.Second, "device online", func() bool { return h.count(`SELECT online FROM devices WHERE id = 'd1'`) == 1 })
		if !c.closedWithin(4 * time.Second) {
			t.Fatalf("v%d silent client still open after 4 s", v)
		}
		if el := time.Since(start); el > 4*time.Second || el < 2*time.Second {
			t.Fatalf("v%d closed after %s, want between 2 s and 1.5 × 2 s + 1 s", v, el)
		}
		m := owner.next(t, 3*time.Second)
		if m.Topic != "unhidra/devices/d1/status" || string(m.Payload) != `{"online":false}` {
			t.Fatalf("v%d will: %s %s", v, m.Topic, m.Payload)
		}
		waitFor(t, 3*time.Second, "device offline", func() bool { return h.count(`SELECT online FROM devices WHERE id = 'd1'`) == 0 })
	}
}

// TestPingKeepsAClientAlive: a client that pings stays connected past its
// keep-alive.
func TestPingKeepsAClientAlive(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	c := dialRaw(t, h.srv.Addr())
	c.connack(t, connectPkt(4, "pinger", "d1", h.keys["d1"], 1, nil))
	for i := 0; i < 4; i++ {
		time.Sleep(700 * time.Millisecond)
		c.Write([]byte{0xc0, 0})
		hd, _, err := c.read(2 * time.Second)
		if err != nil || hd != 0xd0 {
			t.Fatalf("ping %d: header %x err %v", i, hd, err)
		}
	}
}

// TestQoS1IsNotAckedWhenTheStoreFails: with the database closed under a
// connected device, a v5 QoS 1 telemetry publish gets a failure PUBACK and a
// 3.1.1 one gets no PUBACK at all (the connection closes), so neither client
// believes an unstored message was stored.
func TestQoS1IsNotAckedWhenTheStoreFails(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	c5 := dialRaw(t, h.srv.Addr())
	c5.connack(t, connectPkt(5, "v5", "d1", h.keys["d1"], 30, nil))
	c3 := dialRaw(t, h.srv.Addr())
	c3.connack(t, connectPkt(4, "v3", "d2", h.keys["d2"], 30, nil))
	time.Sleep(200 * time.Millisecond) // let the connect-time status writes finish
	h.db.Close()

	c5.Write(publishPkt(5, "unhidra/devices/d1/telemetry", 1, 1, []byte(`{"t":1}`)))
	hd, body, err := c5.read(15 * time.Second)
	if err != nil || hd>>4 != 4 {
		t.Fatalf("v5: header %x err %v, want a PUBACK", hd, err)
	}
	if len(body) < 3 || body[2] < 0x80 {
		t.Fatalf("v5: PUBACK %x is a success for an unstored message", body)
	}

	c3.Write(publishPkt(4, "unhidra/devices/d2/telemetry", 1, 1, []byte(`{"t":1}`)))
	for {
		hd, _, err := c3.read(15 * time.Second)
		if err != nil {
			break // closed without a PUBACK: the client will resend
		}
		if hd>>4 == 4 {
			t.Fatal("v3.1.1: PUBACK sent for an unstored message")
		}
	}
}

// TestRevocationDisconnectsMQTTSessions covers KEY-1 and TOK-4 for MQTT:
// revoking a device key and ending a user session close the live MQTT
// connections within 5 s; other sessions stay.
func TestRevocationDisconnectsMQTTSessions(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	d1 := dialRaw(t, h.srv.Addr())
	d1.connack(t, connectPkt(4, "x", "d1", h.keys["d1"], 30, nil))
	d2 := mustV5(t, h.srv.Addr(), "y", "d2", h.keys["d2"])
	alice := dialRaw(t, h.srv.Addr())
	alice.connack(t, connectPkt(5, "z", "alice", "tok-alice", 30, nil))
	bob := mustV5(t, h.srv.Addr(), "w", "bob", "tok-bob")
	waitFor(t, 2*time.Second, "4 sessions", func() bool { return h.srv.Connections() == 4 })

	start := time.Now()
	if err := h.registry.Revoke(context.Background(), unhidra.Identity{Principal: wire.Principal{Kind: wire.KindUser, ID: "alice"}, SessionID: "s"}, "d1"); err != nil {
		t.Fatal(err)
	}
	if !d1.closedWithin(5 * time.Second) {
		t.Fatal("revoked device still connected after 5 s")
	}
	t.Logf("device revocation closed the MQTT session in %s", time.Since(start))
	// The revoked key no longer connects.
	again := dialRaw(t, h.srv.Addr())
	if code := again.connack(t, connectPkt(4, "x", "d1", h.keys["d1"], 30, nil)); code != 0x04 {
		t.Fatalf("revoked key: CONNACK 0x%02x, want 0x04", code)
	}

	start = time.Now()
	if err := h.broker.Publish(context.Background(), broker.RevocationTopic, broker.RevocationEvent(broker.Revocation{Kind: broker.RevokeSession, ID: "s-alice"})); err != nil {
		t.Fatal(err)
	}
	if !alice.closedWithin(5 * time.Second) {
		t.Fatal("logged-out user still connected after 5 s")
	}
	t.Logf("session revocation closed the MQTT session in %s", time.Since(start))
	waitFor(t, 2*time.Second, "2 sessions left", func() bool { return h.srv.Connections() == 2 })
	if code := bob.sub(t, "unhidra/devices/d2/#", 0); code != 0 {
		t.Fatalf("bob's session was affected: SUBACK 0x%02x", code)
	}
	if code, err := d2.pub(t, "unhidra/devices/d2/heartbeat", 1, false, `{"free_heap":1}`); code != 0 || err != nil {
		t.Fatalf("d2's session was affected: 0x%02x %v", code, err)
	}
}

// TestOversizedPacketClosesTheConnection: the 64 KiB packet limit.
func TestOversizedPacketClosesTheConnection(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	c := dialRaw(t, h.srv.Addr())
	c.connack(t, connectPkt(4, "big", "d1", h.keys["d1"], 30, nil))
	big := `{"x":"` + strings.Repeat("a", 70<<10) + `"}`
	c.Write(publishPkt(4, "unhidra/devices/d1/telemetry", 1, 1, []byte(big)))
	if !c.closedWithin(3 * time.Second) {
		t.Fatal("a 70 KiB packet did not close the connection")
	}
	if n := h.count(`SELECT COUNT(*) FROM telemetry`); n != 0 {
		t.Fatalf("%d rows stored from an oversized packet", n)
	}
}

// TestUserSessionEndsWhenItsTokenExpires: MQTT has no in-band refresh, so
// a user's session closes when the access token expires.
func TestUserSessionEndsWhenItsTokenExpires(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.tokens.mu.Lock()
	h.tokens.m["tok-short"] = unhidra.Identity{Principal: wire.Principal{Kind: wire.KindUser, ID: "bob"}, SessionID: "s-short", ExpiresAt: time.Now().Add(time.Second)}
	h.tokens.mu.Unlock()
	c := dialRaw(t, h.srv.Addr())
	if code := c.connack(t, connectPkt(5, "short", "bob", "tok-short", 30, nil)); code != 0 {
		t.Fatalf("CONNACK 0x%02x", code)
	}
	if !c.closedWithin(6 * time.Second) {
		t.Fatal("session outlived its token by 5 s")
	}
}

// TestMQTTConnectionsAreRegisteredWithPresence: live MQTT connections show
// in the presence service (GET /api/v1/admin/connections) with transport
// mqtt and leave it on disconnect.
func TestMQTTConnectionsAreRegisteredWithPresence(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	c := mustV5(t, h.srv.Addr(), "esp", "d1", h.keys["d1"])
	c.sub(t, "unhidra/devices/d1/commands", 1)
	var found bool
	waitFor(t, 2*time.Second, "presence connection", func() bool {
		for _, ci := range h.presence.Connections() {
			if ci.Principal.ID == "d1" && ci.Transport == "mqtt" {
				found = len(ci.Subscriptions) == 1 && ci.Subscriptions[0] == "unhidra/devices/d1/commands"
				return true
			}
		}
		return false
	})
	if !found {
		t.Fatalf("connection listed without its subscription: %+v", h.presence.Connections())
	}
	_ = c.c.Disconnect(&paho.Disconnect{})
	waitFor(t, 2*time.Second, "presence cleared", func() bool { return len(h.presence.Connections()) == 0 })
}

// TestPasswordChangeAndDisableCloseTheRightSessions covers TOK-4's other
// revocation kinds: user_except keeps the session that changed the
// password, user closes every session of the user.
func TestPasswordChangeAndDisableCloseTheRightSessions(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.tokens.mu.Lock()
	h.tokens.m["tok-alice-2"] = unhidra.Identity{Principal: wire.Principal{Kind: wire.KindUser, ID: "alice"}, SessionID: "s-alice-2"}
	h.tokens.m["tok-bob-2"] = unhidra.Identity{Principal: wire.Principal{Kind: wire.KindUser, ID: "bob"}, SessionID: "s-bob-2"}
	h.tokens.mu.Unlock()
	conn := func(user, tok string) *rawConn {
		c := dialRaw(t, h.srv.Addr())
		if code := c.connack(t, connectPkt(4, tok, user, tok, 30, nil)); code != 0 {
			t.Fatalf("%s: CONNACK 0x%02x", tok, code)
		}
		return c
	}
	a1, a2 := conn("alice", "tok-alice"), conn("alice", "tok-alice-2")
	b1, b2 := conn("bob", "tok-bob"), conn("bob", "tok-bob-2")
	d := conn("d1", h.keys["d1"])
	waitFor(t, 2*time.Second, "5 sessions", func() bool { return h.srv.Connections() == 5 })
	publish := func(r broker.Revocation) {
		if err := h.broker.Publish(context.Background(), broker.RevocationTopic, broker.RevocationEvent(r)); err != nil {
			t.Fatal(err)
		}
	}
	publish(broker.Revocation{Kind: broker.RevokeUserExcept, ID: "alice", Except: "s-alice-2"})
	if !a1.closedWithin(5 * time.Second) {
		t.Fatal("password change left the other session open")
	}
	publish(broker.Revocation{Kind: broker.RevokeUser, ID: "bob"})
	for i, c := range []*rawConn{b1, b2} {
		if !c.closedWithin(5 * time.Second) {
			t.Fatalf("disabled user's session %d still open", i+1)
		}
	}
	waitFor(t, 2*time.Second, "2 sessions left", func() bool { return h.srv.Connections() == 2 })
	for name, c := range map[string]*rawConn{"the session that changed the password": a2, "the device": d} {
		c.Write([]byte{0xc0, 0})
		if hd, _, err := c.read(2 * time.Second); err != nil || hd != 0xd0 {
			t.Fatalf("%s was affected: %x %v", name, hd, err)
		}
	}
}

// TestNoKeepaliveGetsTheServerKeepalive: a client asking for keep-alive 0
// gets MaxKeepalive (announced in the v5 CONNACK) and is closed when silent.
func TestNoKeepaliveGetsTheServerKeepalive(t *testing.T) {
	h := newHarness(t, harnessOpts{cfg: mqttbridge.Config{MaxKeepalive: 1}})
	c5 := dialRaw(t, h.srv.Addr())
	c5.Write(connectPkt(5, "k5", "d1", h.keys["d1"], 0, nil))
	hd, body, err := c5.read(5 * time.Second)
	if err != nil || hd>>4 != 2 || body[1] != 0 {
		t.Fatalf("CONNACK %x %x %v", hd, body, err)
	}
	// Properties: 0x13 is Server Keep Alive (two bytes).
	if !bytes.Contains(body[2:], []byte{0x13, 0x00, 0x01}) {
		t.Fatalf("CONNACK properties %x lack Server Keep Alive 1", body[2:])
	}
	c3 := dialRaw(t, h.srv.Addr())
	start := time.Now()
	c3.connack(t, connectPkt(4, "k3", "d2", h.keys["d2"], 0, nil))
	if !c3.closedWithin(4 * time.Second) {
		t.Fatal("a silent client without keep-alive stayed open")
	}
	t.Logf("closed after %s", time.Since(start))
}
