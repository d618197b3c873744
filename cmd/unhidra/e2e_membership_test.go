package main

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/e2etest"
	"github.com/unhidra/unhidra/wire"
)

// TestRemovedMemberStopsReceivingOnEveryTransport: once a member is removed
// from a private channel, nothing posted afterwards reaches them, neither on
// a live WebSocket subscription (ended with `unsubscribed`) nor on a live
// MQTT subscription, while the remaining members still receive.
func TestRemovedMemberStopsReceivingOnEveryTransport(t *testing.T) {
	s := startStack(t, nil)
	alice, _ := s.user(t, "alice")
	bob, _ := s.user(t, "bob")
	carol, _ := s.user(t, "carol")
	ch := s.channel(t, alice, "team", "private", "bob", "carol")
	topic := "unhidra/channels/" + ch + "/messages"

	bobMQ := e2etest.MustMQTT(t, s.mqtt, "bob-mq", "bob", bob)
	if rc := bobMQ.Subscribe(t, topic, 1); rc >= 0x80 {
		t.Fatalf("bob's MQTT subscribe refused: %#x", rc)
	}
	carolMQ := e2etest.MustMQTT(t, s.mqtt, "carol-mq", "carol", carol)
	if rc := carolMQ.Subscribe(t, topic, 1); rc >= 0x80 {
		t.Fatalf("carol's MQTT subscribe refused: %#x", rc)
	}
	bobWS := e2etest.DialWS(t, s.wsURL, "unhidra.v1, bearer."+bob)
	bobWS.Send(t, map[string]any{"type": "subscribe", "channel": ch, "id": "s"})
	bobWS.Until(t, wire.TypeSubscribed, 5*time.Second)

	post := func(text string) {
		t.Helper()
		e2etest.WantStatus(t, s.api(t, "POST", "/api/v1/channels/"+ch+"/messages", alice, map[string]string{"text": text}), 201, "post "+text)
	}
	textOf := func(payload []byte) string {
		var m wire.Message
		if err := json.Unmarshal(payload, &m); err != nil || m.Text == nil {
			t.Fatalf("not a text message: %s", payload)
		}
		return *m.Text
	}

	post("before")
	if got := textOf(bobMQ.Next(t, 5*time.Second).Payload); got != "before" {
		t.Fatalf("bob over MQTT got %q, want before", got)
	}
	if got := textOf(carolMQ.Next(t, 5*time.Second).Payload); got != "before" {
		t.Fatalf("carol over MQTT got %q, want before", got)
	}
	if f := bobWS.Until(t, wire.TypeMessage, 5*time.Second); *f.Msg(t).Text != "before" {
		t.Fatalf("bob over WebSocket got %+v, want before", f.Msg(t))
	}

	e2etest.WantStatus(t, s.api(t, "DELETE", "/api/v1/channels/"+ch+"/members/bob", alice, nil), 204, "remove bob")
	bobWS.Until(t, wire.TypeUnsubscribed, 5*time.Second)

	post("after")
	// carol's copy shows the message went out; bob's copies would have
	// been sent at the same moment.
	if got := textOf(carolMQ.Next(t, 5*time.Second).Payload); got != "after" {
		t.Fatalf("carol over MQTT got %q, want after", got)
	}
	select {
	case p := <-bobMQ.Msgs:
		t.Fatalf("bob still received over MQTT after his removal: %s", p.Payload)
	case <-time.After(time.Second):
	}
	if f, err := bobWS.TryRead(time.Second); err == nil && f.Type == wire.TypeMessage {
		t.Fatalf("bob still received over WebSocket after his removal: %+v", f)
	}
}
