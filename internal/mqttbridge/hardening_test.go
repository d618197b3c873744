package mqttbridge_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/unhidra/unhidra/internal/mqttbridge"
	"github.com/unhidra/unhidra/internal/redact"
	"github.com/unhidra/unhidra/wire"
)

// TestSwappedCredentialsNeverReachTheLog: a CONNECT with the key (or a
// refresh token, or an access token) in the username field and the device
// id in the password field, and a Will refused at CONNECT, log the
// refusal with a short hash of the username, never the credential.
func TestSwappedCredentialsNeverReachTheLog(t *testing.T) {
	var logs lockedBuffer
	h := newHarness(t, harnessOpts{log: &logs})
	refresh := "unhidra_rt_AAAABBBBCCCCDDDDEEEEFFFF0123456789abcdef"
	jwt := "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
	typedPassword := "correct horse battery staple"
	for _, user := range []string{h.keys["d1"], refresh, jwt, typedPassword} {
		for _, v := range []byte{4, 5} {
			c := dialRaw(t, h.srv.Addr())
			if code := c.connack(t, connectPkt(v, "x", user, "d1", 30, nil)); code == 0 {
				t.Fatalf("swapped credentials accepted")
			}
		}
	}
	c := dialRaw(t, h.srv.Addr())
	c.connack(t, connectPkt(5, "w", "d1", h.keys["d1"], 30, &will{topic: mqttbridge.DeviceTopic("d1", "status"), payload: `{"secret":"` + refresh + `"`}))
	waitFor(t, 5*time.Second, "the refusals logged", func() bool {
		return strings.Count(logs.String(), "bad credentials") >= 8 && strings.Contains(logs.String(), "will not accepted")
	})
	out := logs.String()
	for _, secret := range []string{h.keys["d1"], refresh, jwt, typedPassword, "unhidra_dk_", "unhidra_rt_", "eyJ"} {
		if strings.Contains(out, secret) {
			t.Fatalf("log contains %q:\n%s", secret, out)
		}
	}
	if !strings.Contains(out, redact.Hash(h.keys["d1"])) {
		t.Errorf("log lacks the key's hash, which lets an operator match a refusal:\n%s", out)
	}
}

// TestV311ConnackCodesStayInV311: refusals the broker would answer with
// MQTT 5 reason codes reach a 3.1.1 client as 3.1.1 return codes (0–5).
func TestV311ConnackCodesStayInV311(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	persistentNoID := connectPkt(4, "", "d1", h.keys["d1"], 30, nil)
	flags := func(pkt []byte) *byte { return &pkt[bytes.Index(pkt, []byte("MQTT"))+5] }
	*flags(persistentNoID) &^= 0x02 // clear "clean session": a persistent session needs a client id
	reserved := connectPkt(4, "r", "d1", h.keys["d1"], 30, nil)
	*flags(reserved) |= 0x01 // the reserved flag bit
	for name, tc := range map[string]struct {
		pkt  []byte
		want byte
	}{
		"a persistent session without a client id": {persistentNoID, 0x02},
		"the reserved flag set":                    {reserved, 0x03},
		"a bad key":                                {connectPkt(4, "k", "d1", "unhidra_dk_wrong", 30, nil), 0x04},
	} {
		c := dialRaw(t, h.srv.Addr())
		if code := c.connack(t, tc.pkt); code != tc.want {
			t.Errorf("%s: CONNACK 0x%02x, want 0x%02x", name, code, tc.want)
		}
	}
}

// TestMQTTPayloadsShareTheJSONRules: a channel message or telemetry over
// MQTT nested deeper than wire.MaxDepth, or with invalid UTF-8 or a lone
// surrogate, gets PUBACK 0x99 and stores nothing; the deepest allowed
// passes.
func TestMQTTPayloadsShareTheJSONRules(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	ch := privateChannel(t, h)
	a := mustV5(t, h.srv.Addr(), "a", "alice", "tok-alice")
	d := mustV5(t, h.srv.Addr(), "d", "d1", h.keys["d1"])
	nest := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	for _, tc := range []struct {
		name  string
		c     *v5client
		topic string
		body  string
		want  byte
	}{
		{"channel data at the limit", a, mqttbridge.ChannelTopic(ch), `{"data":` + nest(wire.MaxDepth) + `}`, 0},
		{"channel data too deep", a, mqttbridge.ChannelTopic(ch), `{"data":` + nest(wire.MaxDepth+1) + `}`, 0x99},
		{"channel text of invalid UTF-8", a, mqttbridge.ChannelTopic(ch), "{\"text\":\"caf\xe9\"}", 0x99},
		{"channel text with a lone surrogate", a, mqttbridge.ChannelTopic(ch), `{"text":"\udc00"}`, 0x99},
		{"telemetry too deep", d, mqttbridge.DeviceTopic("d1", "telemetry"), `{"v":` + nest(wire.MaxDepth) + `}`, 0x99},
		{"telemetry of invalid UTF-8", d, mqttbridge.DeviceTopic("d1", "telemetry"), "{\"v\":\"\xff\"}", 0x99},
		{"a command result too deep", d, mqttbridge.DeviceTopic("d1", "commands/result"), `{"command_id":"c","status":"ok","result":` + nest(wire.MaxDepth+1) + `}`, 0x99},
	} {
		if code, _ := tc.c.pub(t, tc.topic, 1, false, tc.body); code != tc.want {
			t.Errorf("%s: PUBACK 0x%02x, want 0x%02x", tc.name, code, tc.want)
		}
	}
	if n := h.messages(ch); n != 1 {
		t.Errorf("%d messages stored, want 1 (the one at the limit)", n)
	}
	if n := h.count(`SELECT COUNT(*) FROM telemetry`); n != 0 {
		t.Errorf("%d telemetry points stored, want 0", n)
	}
}

// TestConnectsAndDisconnectsAreLoggedAtInfo: an operator sees every MQTT
// client, user or device, come and go at info level, with no credential.
func TestConnectsAndDisconnectsAreLoggedAtInfo(t *testing.T) {
	var logs lockedBuffer
	h := newHarness(t, harnessOpts{log: &logs})
	a := mustV5(t, h.srv.Addr(), "a", "alice", "tok-alice")
	d := mustV5(t, h.srv.Addr(), "d", "d1", h.keys["d1"])
	_ = a.c.Disconnect(&paho.Disconnect{})
	_ = d.conn.Close()
	waitFor(t, 5*time.Second, "two disconnects logged", func() bool { return strings.Count(logs.String(), "mqtt client disconnected") == 2 })
	out := logs.String()
	for _, want := range []string{
		`level=INFO msg="mqtt client connected" component=mqtt kind=user id=alice`,
		`level=INFO msg="mqtt client connected" component=mqtt kind=device id=d1`,
		`level=INFO msg="mqtt client disconnected" component=mqtt kind=user id=alice`,
		`level=INFO msg="mqtt client disconnected" component=mqtt kind=device id=d1`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	for _, secret := range []string{"tok-alice", h.keys["d1"]} {
		if strings.Contains(out, secret) {
			t.Errorf("log holds %q", secret)
		}
	}
}
