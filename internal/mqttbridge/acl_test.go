package mqttbridge_test

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestAuthRefusesBadCredentials covers MQ-3's first line with exact
// CONNACK codes: 0x86 in v5, 0x04 in 3.1.1.
func TestAuthRefusesBadCredentials(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	tests := []struct {
		name       string
		v          byte
		user, pass string
		want       byte
	}{
		{"v5 device with a wrong key is refused with 0x86", 5, "d1", "unhidra_dk_wrongwrongwrongwrongwrongwrongwrongwrongwro", 0x86},
		{"v3.1.1 device with a wrong key is refused with 0x04", 4, "d1", "unhidra_dk_wrongwrongwrongwrongwrongwrongwrongwrongwro", 0x04},
		{"v5 device key presented under another device id is refused", 5, "d2", h.keys["d1"], 0x86},
		{"v3.1.1 device key presented under another device id is refused", 4, "d2", h.keys["d1"], 0x04},
		{"v5 token under another username is refused", 5, "bob", "tok-alice", 0x86},
		{"v5 unknown token is refused", 5, "alice", "tok-nobody", 0x86},
		{"v3.1.1 missing password is refused", 4, "d1", "", 0x04},
		{"v5 anonymous is refused", 5, "", "", 0x86},
		{"v5 device with its own key is accepted", 5, "d1", h.keys["d1"], 0x00},
		{"v3.1.1 user with a token is accepted", 4, "alice", "tok-alice", 0x00},
		{"v5 username matches case-insensitively", 5, "Alice", "tok-alice", 0x00},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, h.srv.Addr())
			got := c.connack(t, connectPkt(tc.v, "c1", tc.user, tc.pass, 30, nil))
			if got != tc.want {
				t.Fatalf("CONNACK code = 0x%02x, want 0x%02x", got, tc.want)
			}
			if tc.want != 0 && !c.closedWithin(2*time.Second) {
				t.Fatal("refused connection left open")
			}
		})
	}
}

// TestDeviceACL covers MQ-3's ACL lines on the wire.
func TestDeviceACL(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	subTests := []struct {
		name   string
		v      byte
		filter string
		want   byte
	}{
		{"v5 device subscribes to its own commands", 5, "unhidra/devices/d1/commands", 0x01},
		{"v5 device subscribes to its whole subtree", 5, "unhidra/devices/d1/#", 0x01},
		{"v5 device may not subscribe to another device", 5, "unhidra/devices/d2/commands", 0x87},
		{"v5 device may not use a wildcard for the device level", 5, "unhidra/devices/+/commands", 0x87},
		{"v5 device may not read $SYS", 5, "$SYS/#", 0x87},
		{"v5 device may not subscribe to everything", 5, "#", 0x87},
		{"v5 device may not read a channel", 5, "unhidra/channels/general/messages", 0x87},
		{"v3.1.1 device may not subscribe to another device", 4, "unhidra/devices/d2/telemetry", 0x80},
		{"v3.1.1 device may not read $SYS", 4, "$SYS/broker/clients/connected", 0x80},
		{"v3.1.1 device subscribes to its own commands", 4, "unhidra/devices/d1/commands", 0x01},
	}
	for _, tc := range subTests {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, h.srv.Addr())
			if code := c.connack(t, connectPkt(tc.v, "acl", "d1", h.keys["d1"], 30, nil)); code != 0 {
				t.Fatalf("connect refused 0x%02x", code)
			}
			c.Write(subscribePkt(tc.v, 7, tc.filter, 1))
			for {
				hd, body, err := c.read(5 * time.Second)
				if err != nil {
					t.Fatalf("no SUBACK: %v", err)
				}
				if hd>>4 != 9 {
					continue // retained messages or commands
				}
				code := body[len(body)-1]
				if code != tc.want {
					t.Fatalf("SUBACK code = 0x%02x, want 0x%02x", code, tc.want)
				}
				return
			}
		})
	}

	t.Run("v5 device publishing outside its subtree gets PUBACK 0x87 and stays connected", func(t *testing.T) {
		c := dialRaw(t, h.srv.Addr())
		c.connack(t, connectPkt(5, "acl", "d1", h.keys["d1"], 30, nil))
		c.Write(publishPkt(5, "unhidra/devices/d2/telemetry", 1, 9, []byte(`{"t":1}`)))
		hd, body, err := c.read(5 * time.Second)
		if err != nil || hd>>4 != 4 || len(body) < 3 || body[2] != 0x87 {
			t.Fatalf("got header %x body %x err %v, want PUBACK 0x87", hd, body, err)
		}
		c.Write(publishPkt(5, "unhidra/devices/d1/telemetry", 1, 10, []byte(`{"t":1}`)))
		if hd, body, err := c.read(5 * time.Second); err != nil || hd>>4 != 4 || (len(body) > 2 && body[2] >= 0x80) {
			t.Fatalf("own publish after a refusal: header %x body %x err %v", hd, body, err)
		}
		if n := h.count(`SELECT COUNT(*) FROM telemetry WHERE device_id = 'd2'`); n != 0 {
			t.Fatalf("%d points stored for another device", n)
		}
	})
	t.Run("v3.1.1 device publishing outside its subtree is disconnected", func(t *testing.T) {
		c := dialRaw(t, h.srv.Addr())
		c.connack(t, connectPkt(4, "acl", "d1", h.keys["d1"], 30, nil))
		c.Write(publishPkt(4, "unhidra/devices/d2/telemetry", 1, 9, []byte(`{"t":1}`)))
		if !c.closedWithin(2 * time.Second) {
			t.Fatal("connection kept open")
		}
	})
	for _, v := range []byte{4, 5} {
		t.Run("a wildcard in a PUBLISH topic disconnects (protocol "+string('0'+v)+")", func(t *testing.T) {
			c := dialRaw(t, h.srv.Addr())
			c.connack(t, connectPkt(v, "acl", "d1", h.keys["d1"], 30, nil))
			c.Write(publishPkt(v, "unhidra/devices/d1/+", 0, 0, []byte(`{}`)))
			if !c.closedWithin(2 * time.Second) {
				t.Fatal("connection kept open")
			}
		})
	}
	t.Run("a device cannot set a will on another device's topic", func(t *testing.T) {
		c := dialRaw(t, h.srv.Addr())
		code := c.connack(t, connectPkt(5, "acl", "d1", h.keys["d1"], 30, &will{topic: "unhidra/devices/d2/status", payload: `{"online":false}`}))
		if code < 0x80 {
			t.Fatalf("CONNACK 0x%02x, want a refusal", code)
		}
	})
	if n := h.count(`SELECT COUNT(*) FROM telemetry`); n != 1 {
		t.Fatalf("%d telemetry rows, want exactly the one allowed publish", n)
	}
}

// TestUserACL: users read channels they may read and their own devices.
func TestUserACL(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	alice := mustV5(t, h.srv.Addr(), "a", "alice", "tok-alice")
	admin := mustV5(t, h.srv.Addr(), "adm", "admin", "tok-admin")
	tests := []struct {
		name   string
		c      *v5client
		filter string
		want   byte
	}{
		{"the owner subscribes to her device's telemetry", alice, "unhidra/devices/d1/telemetry", 0x01},
		{"the owner subscribes to her device's subtree", alice, "unhidra/devices/d1/#", 0x01},
		{"a user may not read another's device", alice, "unhidra/devices/d2/telemetry", 0x87},
		{"a user may not use device wildcards", alice, "unhidra/devices/+/telemetry", 0x87},
		{"a member reads her device channel", alice, "unhidra/channels/device:d1/messages", 0x01},
		{"a non-member may not read a device channel", alice, "unhidra/channels/device:d2/messages", 0x87},
		{"nobody subscribes across channels", admin, "unhidra/channels/+/messages", 0x87},
		{"a user may not read $SYS", alice, "$SYS/broker/uptime", 0x87},
		{"an admin reads every device", admin, "unhidra/devices/+/telemetry", 0x01},
		{"an admin reads $SYS", admin, "$SYS/broker/uptime", 0x01},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.c.sub(t, tc.filter, 1); got != tc.want {
				t.Fatalf("SUBACK = 0x%02x, want 0x%02x", got, tc.want)
			}
		})
	}
	t.Run("a user may not publish on a device topic", func(t *testing.T) {
		code, _ := alice.pub(t, "unhidra/devices/d1/telemetry", 1, false, `{"t":1}`)
		if code != 0x87 {
			t.Fatalf("PUBACK 0x%02x, want 0x87", code)
		}
	})
}

// lockedBuffer is a goroutine-safe log sink.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestNoSecretReachesTheLog: with debug logging, refused and accepted
// connections, refused publishes and revocations never log a key, a token
// or a password.
func TestNoSecretReachesTheLog(t *testing.T) {
	var logs lockedBuffer
	h := newHarness(t, harnessOpts{log: &logs})
	wrongKey := "unhidra_dk_THISISAWRONGKEYTHATMUSTNOTBELOGGED0123456"
	c := dialRaw(t, h.srv.Addr())
	c.connack(t, connectPkt(4, "x", "d1", wrongKey, 30, nil))
	c = dialRaw(t, h.srv.Addr())
	c.connack(t, connectPkt(5, "x", "alice", "tok-alice-but-wrong", 30, nil))
	d := mustV5(t, h.srv.Addr(), "ok", "d1", h.keys["d1"])
	d.pub(t, "unhidra/devices/d2/telemetry", 1, false, `{"t":1}`)
	d.pub(t, "unhidra/devices/d1/telemetry", 1, false, `not json`)
	a := mustV5(t, h.srv.Addr(), "a", "alice", "tok-alice")
	a.pub(t, "unhidra/channels/nope/messages", 1, false, `{"text":"x"}`)
	if err := h.registry.Revoke(context.Background(), alice(), "d1"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	out := logs.String()
	if !strings.Contains(out, "bad credentials") || !strings.Contains(out, "revoked") {
		t.Fatalf("log lacks the expected events:\n%s", out)
	}
	for _, secret := range []string{wrongKey, "tok-alice-but-wrong", "tok-alice", h.keys["d1"], h.keys["d2"], "THISISAWRONGKEY"} {
		if strings.Contains(out, secret) {
			t.Fatalf("log contains a secret %q:\n%s", secret, out)
		}
	}
}

// TestMetricsCountRefusals: the unhidra_mqtt_ collectors move.
func TestMetricsCountRefusals(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	c := dialRaw(t, h.srv.Addr())
	c.connack(t, connectPkt(4, "x", "d1", "unhidra_dk_bad", 30, nil))
	d := mustV5(t, h.srv.Addr(), "ok", "d1", h.keys["d1"])
	d.sub(t, "unhidra/devices/d2/#", 0)
	d.pub(t, "unhidra/devices/d1/telemetry", 1, false, `[]`)
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += "{" + l.GetValue() + "}"
			}
			got[key] += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	for name, min := range map[string]float64{
		"unhidra_mqtt_auth_failures_total":             1,
		"unhidra_mqtt_acl_denials_total":               1,
		"unhidra_mqtt_publish_rejected_total{invalid}": 1,
		"unhidra_mqtt_connections":                     1,
		"unhidra_mqtt_packets_received_total":          3,
		"unhidra_mqtt_packets_sent_total":              3,
	} {
		if got[name] < min {
			t.Errorf("%s = %v, want at least %v (all: %v)", name, got[name], min, got)
		}
	}
}
