package mqttbridge_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"

	paho "github.com/eclipse/paho.golang/paho"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/chat"
	"github.com/unhidra/unhidra/internal/keys"
	"github.com/unhidra/unhidra/internal/mqttbridge"
	"github.com/unhidra/unhidra/internal/sqlite"
	"github.com/unhidra/unhidra/wire"
	"github.com/unhidra/unhidra/wire/e2eekeys"
)

// signedUpload is a fresh identity for user's device dev, signed as the
// key directory requires.
func signedUpload(t *testing.T, user, dev string) keys.Upload {
	t.Helper()
	b64 := base64.RawStdEncoding
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c := make([]byte, 32)
	rand.Read(c)
	curve := b64.EncodeToString(c)
	return keys.Upload{
		Identity:          keys.IdentityKeys{Curve25519: curve, Ed25519: b64.EncodeToString(pub)},
		IdentitySignature: b64.EncodeToString(ed25519.Sign(priv, e2eekeys.IdentityMessage(user, dev, curve))),
	}
}

// nextOn returns the next message of c whatever its topic.
func nextOn(t *testing.T, c *v5client) (topic string, body map[string]any) {
	t.Helper()
	m := c.next(t, 10*time.Second)
	if err := json.Unmarshal(m.Payload, &body); err != nil {
		t.Fatalf("payload on %s is not JSON: %q", m.Topic, m.Payload)
	}
	return m.Topic, body
}

// TestKeyChangeReachesMQTTSubscribersOfTheEventsTopic: a member subscribed
// to unhidra/channels/C/events gets the key_change frame of another
// member's new identity key, the messages topic carries only messages, a
// non-member may not subscribe, nobody publishes to the events topic, and
// leaving the messages topic keeps the events coming.
func TestKeyChangeReachesMQTTSubscribersOfTheEventsTopic(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	ctx := context.Background()
	alice := unhidra.Identity{Principal: wire.Principal{Kind: wire.KindUser, ID: "alice"}}
	ch, _, err := h.chat.CreateChannel(ctx, alice, chat.CreateChannel{Name: "team", Kind: chat.KindPrivate, Members: []string{"bob"}})
	if err != nil {
		t.Fatal(err)
	}
	dir := keys.NewService(keys.Deps{Store: sqlite.NewKeyStore(h.db), Broker: h.broker, Channels: h.chat})

	bob := mustV5(t, h.srv.Addr(), "b", "bob", "tok-bob")
	if got := bob.sub(t, mqttbridge.EventsTopic(ch.ID), 1); got != 0x01 {
		t.Fatalf("member's SUBACK for the events topic = 0x%02x, want 0x01", got)
	}
	if got := bob.sub(t, mqttbridge.ChannelTopic(ch.ID), 1); got != 0x01 {
		t.Fatalf("member's SUBACK for the messages topic = 0x%02x, want 0x01", got)
	}
	// admin reads every device channel but is no member of this one.
	admin := mustV5(t, h.srv.Addr(), "adm", "admin", "tok-admin")
	if got := admin.sub(t, mqttbridge.EventsTopic(ch.ID), 1); got != 0x87 {
		t.Errorf("non-member's SUBACK for the events topic = 0x%02x, want 0x87", got)
	}
	if got := bob.sub(t, "unhidra/channels/+/events", 1); got != 0x87 {
		t.Errorf("SUBACK for events across channels = 0x%02x, want 0x87", got)
	}
	if code, _ := bob.pub(t, mqttbridge.EventsTopic(ch.ID), 1, false, `{"text":"forged"}`); code != 0x87 {
		t.Errorf("PUBACK for a publish to the events topic = 0x%02x, want 0x87", code)
	}

	for range 2 { // the second upload is an identity-key change
		if _, err := dir.Upload(ctx, alice, "phone", signedUpload(t, "alice", "phone")); err != nil {
			t.Fatal(err)
		}
	}
	text := "after the change"
	if _, err := h.chat.Publish(ctx, alice, wire.Publish{Channel: ch.ID, Text: &text}); err != nil {
		t.Fatal(err)
	}
	// The frame, then the message: relayed in the channel's order.
	topic, body := nextOn(t, bob)
	want := map[string]any{"type": "key_change", "channel": ch.ID, "user": "alice", "device_id": "phone"}
	if topic != mqttbridge.EventsTopic(ch.ID) || len(body) != len(want) {
		t.Fatalf("first delivery %s %v, want the key_change frame on the events topic", topic, body)
	}
	for k, v := range want {
		if body[k] != v {
			t.Errorf("key_change %s = %v, want %v", k, body[k], v)
		}
	}
	if topic, body := nextOn(t, bob); topic != mqttbridge.ChannelTopic(ch.ID) || body["text"] != "after the change" {
		t.Fatalf("second delivery %s %v, want the message on the messages topic", topic, body)
	}
	if n := len(admin.msgs); n != 0 {
		t.Errorf("the non-member received %d publishes", n)
	}

	// Leaving the messages topic keeps the events topic fed.
	uctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := bob.c.Unsubscribe(uctx, &paho.Unsubscribe{Topics: []string{mqttbridge.ChannelTopic(ch.ID)}}); err != nil {
		t.Fatal(err)
	}
	if err := dir.Delete(ctx, alice, "phone"); err != nil {
		t.Fatal(err)
	}
	if topic, body := nextOn(t, bob); topic != mqttbridge.EventsTopic(ch.ID) || body["type"] != "key_change" || body["device_id"] != "phone" {
		t.Fatalf("after leaving the messages topic: %s %v, want the key_change of the deleted device", topic, body)
	}
}
