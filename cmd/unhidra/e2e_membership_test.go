package main

import (
	"encoding/json"
	"testing"
	"time"

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

	bobMQ := mustMQTT(t, s.mqtt, "bob-mq", "bob", bob)
	if rc := bobMQ.subscribe(t, topic, 1); rc >= 0x80 {
		t.Fatalf("bob's MQTT subscribe refused: %#x", rc)
	}
	carolMQ := mustMQTT(t, s.mqtt, "carol-mq", "carol", carol)
	if rc := carolMQ.subscribe(t, topic, 1); rc >= 0x80 {
		t.Fatalf("carol's MQTT subscribe refused: %#x", rc)
	}
	bobWS := dialWS(t, s.wsURL, "unhidra.v1, bearer."+bob)
	bobWS.send(t, map[string]any{"type": "subscribe", "channel": ch, "id": "s"})
	bobWS.until(t, wire.TypeSubscribed, 5*time.Second)

	post := func(text string) {
		t.Helper()
		wantStatus(t, s.api(t, "POST", "/api/v1/channels/"+ch+"/messages", alice, map[string]string{"text": text}), 201, "post "+text)
	}
	textOf := func(payload []byte) string {
		var m wire.Message
		if err := json.Unmarshal(payload, &m); err != nil || m.Text == nil {
			t.Fatalf("not a text message: %s", payload)
		}
		return *m.Text
	}

	post("before")
	if got := textOf(bobMQ.next(t, 5*time.Second).Payload); got != "before" {
		t.Fatalf("bob over MQTT got %q, want before", got)
	}
	if got := textOf(carolMQ.next(t, 5*time.Second).Payload); got != "before" {
		t.Fatalf("carol over MQTT got %q, want before", got)
	}
	if f := bobWS.until(t, wire.TypeMessage, 5*time.Second); *f.msg(t).Text != "before" {
		t.Fatalf("bob over WebSocket got %+v, want before", f.msg(t))
	}

	wantStatus(t, s.api(t, "DELETE", "/api/v1/channels/"+ch+"/members/bob", alice, nil), 204, "remove bob")
	bobWS.until(t, wire.TypeUnsubscribed, 5*time.Second)

	post("after")
	// carol's copy shows the message went out; bob's copies would have
	// been sent at the same moment.
	if got := textOf(carolMQ.next(t, 5*time.Second).Payload); got != "after" {
		t.Fatalf("carol over MQTT got %q, want after", got)
	}
	select {
	case p := <-bobMQ.msgs:
		t.Fatalf("bob still received over MQTT after his removal: %s", p.Payload)
	case <-time.After(time.Second):
	}
	if f, err := bobWS.tryRead(time.Second); err == nil && f.Type == wire.TypeMessage {
		t.Fatalf("bob still received over WebSocket after his removal: %+v", f)
	}
}
