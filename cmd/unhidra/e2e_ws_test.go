package main

// Chat over the whole server: real listeners, real clients on every
// transport (the raw-frame WebSocket client, REST, paho MQTT 5), one
// database. What only the integrated system can show: that a rule holds the
// same way on every transport, and that revocations issued on the auth API
// reach live sessions on the gateway and the MQTT broker.

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/e2etest"
	"github.com/unhidra/unhidra/wire"
)

// TestSeedCheckEveryCredentialFormGetsWelcome is the seed's own check
// (`wscat -c "ws://localhost:9000/ws?token=<JWT>"` gets `welcome`) and the
// other credential forms of docs/protocol.md#handshake, for users and devices.
func TestSeedCheckEveryCredentialFormGetsWelcome(t *testing.T) {
	s := startStack(t, nil)
	alice, _ := s.user(t, "alice")
	key := s.device(t, alice, "seed-dev")

	tests := []struct {
		name, url, protocol string
		wantProto           string
		wantKind, wantID    string
	}{
		{"a user with ?token= (the seed's check)", s.wsURL + "?token=" + alice, "", "", wire.KindUser, "alice"},
		{"a user with unhidra.v1, bearer.<token>", s.wsURL, "unhidra.v1, bearer." + alice, "unhidra.v1", wire.KindUser, "alice"},
		{"a user with the seed's bearer, <token>", s.wsURL, "bearer, " + alice, "bearer", wire.KindUser, "alice"},
		{"a device with unhidra.v1, apikey.<key>", s.wsURL, "unhidra.v1, apikey." + key, "unhidra.v1", wire.KindDevice, "seed-dev"},
		{"a device with the seed's bearer, <key>", s.wsURL, "bearer, " + key, "bearer", wire.KindDevice, "seed-dev"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := e2etest.DialWS(t, tc.url, tc.protocol)
			if got := c.Response.Header.Get("Sec-WebSocket-Protocol"); got != tc.wantProto {
				t.Errorf("Sec-WebSocket-Protocol %q, want %q", got, tc.wantProto)
			}
			for k, vs := range c.Response.Header {
				for _, v := range vs {
					if strings.Contains(v, alice) || strings.Contains(v, key) {
						t.Errorf("the response header %s echoes the credential", k)
					}
				}
			}
			w := c.Welcome
			if w.Principal.Kind != tc.wantKind || w.Principal.ID != tc.wantID {
				t.Errorf("welcome principal %+v, want %s %s", w.Principal, tc.wantKind, tc.wantID)
			}
			if w.SessionID == "" || w.PingInterval != 30 || w.HeartbeatInterval != 60 || w.ServerTime.IsZero() {
				t.Errorf("welcome %+v lacks session_id, ping_interval 30, heartbeat_interval 60 or server_time", w)
			}
		})
	}
	t.Run("no credential and a bad one get 401 with the SPEC body before the upgrade", func(t *testing.T) {
		for _, proto := range []string{"", "unhidra.v1, bearer.not-a-token", "bearer, unhidra_dk_" + strings.Repeat("x", 40)} {
			_, err := e2etest.TryWS(s.wsURL, proto)
			if err == nil || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), `{"error":{"code":"unauthorized","message":"invalid token"}}`) {
				t.Errorf("protocol %q: %v, want 401 invalid token", proto, err)
			}
		}
	})
	t.Run("a device key in the URL is refused", func(t *testing.T) {
		if _, err := e2etest.TryWS(s.wsURL+"?token="+key, ""); err == nil {
			t.Fatal("a device key in the query string was accepted")
		}
	})
}

// TestChatAcrossTransports: two users in a private channel made over REST,
// publishing over WebSocket; a third user is refused on REST, WebSocket and
// MQTT alike (MSG-5); MSG-1's idempotent client_msg_id over the real server.
func TestChatAcrossTransports(t *testing.T) {
	s := startStack(t, nil)
	alice, _ := s.user(t, "alice")
	bob, _ := s.user(t, "bob")
	carol, _ := s.user(t, "carol")
	ch := s.channel(t, alice, "plans", "private", "bob")

	wa := e2etest.DialWS(t, s.wsURL, "unhidra.v1, bearer."+alice)
	wb := e2etest.DialWS(t, s.wsURL, "unhidra.v1, bearer."+bob)
	for _, c := range []*e2etest.WSConn{wa, wb} {
		c.Send(t, map[string]any{"type": "subscribe", "id": 1, "channel": ch})
		if f := c.Until(t, wire.TypeSubscribed, 10*time.Second); f.Channel != ch || f.Offset != 0 {
			t.Fatalf("subscribed %s", f.Raw)
		}
	}
	// Bob also listens over MQTT with his access token.
	mb := e2etest.MustMQTT(t, s.mqtt, "bob-phone", "bob", bob)
	topic := "unhidra/channels/" + ch + "/messages"
	if rc := mb.Subscribe(t, topic, 1); rc > 1 {
		t.Fatalf("bob's SUBACK 0x%02x on his own channel", rc)
	}

	const n = 25
	acks := map[string]e2etest.Frame{}
	for i := 1; i <= n; i++ {
		wb.Send(t, map[string]any{"type": "publish", "id": i, "channel": ch, "client_msg_id": fmt.Sprintf("b-%d", i), "text": fmt.Sprintf("hello %d", i)})
	}
	for len(acks) < n {
		f := wb.Read(t, 10*time.Second)
		switch f.Type {
		case wire.TypeAck:
			acks[string(f.ID)] = f
		case wire.TypeMessage:
		default:
			t.Fatalf("bob got %s", f.Raw)
		}
	}
	var received []wire.Message
	for len(received) < n {
		f := wa.Until(t, wire.TypeMessage, 10*time.Second)
		m := f.Msg(t)
		if f.Offset != m.Offset || f.Channel != ch {
			t.Fatalf("frame offset %d channel %s, message offset %d", f.Offset, f.Channel, m.Offset)
		}
		received = append(received, m)
	}
	t.Run("the other member receives offsets 1..N in order", func(t *testing.T) {
		for i, m := range received {
			if m.Offset != int64(i+1) || m.Text == nil || *m.Text != fmt.Sprintf("hello %d", i+1) || m.Sender.ID != "bob" || m.ClientMsgID != fmt.Sprintf("b-%d", i+1) {
				t.Fatalf("message %d: %+v", i, m)
			}
			if a := acks[fmt.Sprint(i+1)]; a.MessageID != m.ID || a.Offset != m.Offset {
				t.Fatalf("ack %s does not match the delivered message %s/%d", a.Raw, m.ID, m.Offset)
			}
		}
	})
	t.Run("REST history equals what was received", func(t *testing.T) {
		h := e2etest.History(t, s.gwURL, ch, alice)
		if len(h) != n {
			t.Fatalf("history has %d messages, want %d", len(h), n)
		}
		for i := range h {
			if h[i].ID != received[i].ID || h[i].Offset != received[i].Offset || *h[i].Text != *received[i].Text {
				t.Fatalf("history[%d] %+v, received %+v", i, h[i], received[i])
			}
		}
	})
	t.Run("the MQTT subscriber gets the same messages as Message JSON", func(t *testing.T) {
		for i := 1; i <= n; i++ {
			p := mb.Next(t, 10*time.Second)
			var m wire.Message
			if err := json.Unmarshal(p.Payload, &m); err != nil || m.Offset != int64(i) || m.ID != received[i-1].ID {
				t.Fatalf("MQTT message %d: %s (%v)", i, p.Payload, err)
			}
		}
	})
	t.Run("the same client_msg_id again returns the first ack and stores nothing", func(t *testing.T) {
		for i := range 5 {
			wb.Send(t, map[string]any{"type": "publish", "id": 100 + i, "channel": ch, "client_msg_id": "b-3", "text": "hello 3 again"})
			f := wb.Until(t, wire.TypeAck, 10*time.Second)
			if f.MessageID != acks["3"].MessageID || f.Offset != 3 {
				t.Fatalf("repeat ack %s, want message %s offset 3", f.Raw, acks["3"].MessageID)
			}
		}
		r := s.api(t, "POST", "/api/v1/channels/"+ch+"/messages", bob, map[string]any{"client_msg_id": "b-4", "text": "over REST"})
		e2etest.WantStatus(t, r, 200, "a REST repeat of a WebSocket client_msg_id")
		if h := e2etest.History(t, s.gwURL, ch, bob); len(h) != n {
			t.Fatalf("history has %d messages after the repeats, want %d", len(h), n)
		}
	})
	t.Run("an outsider is refused on REST, WebSocket and MQTT alike", func(t *testing.T) {
		e2etest.WantStatus(t, s.api(t, "GET", "/api/v1/channels/"+ch+"/messages", carol, nil), 403, "outsider's history")
		e2etest.WantStatus(t, s.api(t, "POST", "/api/v1/channels/"+ch+"/messages", carol, map[string]any{"text": "let me in"}), 403, "outsider's REST post")
		e2etest.WantStatus(t, s.api(t, "GET", "/api/v1/channels/"+ch+"/messages/"+received[0].ID+"/thread", carol, nil), 403, "outsider's thread")
		wc := e2etest.DialWS(t, s.wsURL, "unhidra.v1, bearer."+carol)
		wc.Send(t, map[string]any{"type": "subscribe", "id": "s", "channel": ch})
		if f := wc.Until(t, wire.TypeError, 10*time.Second); f.Code != "forbidden" || string(f.ID) != `"s"` {
			t.Errorf("outsider's subscribe: %s", f.Raw)
		}
		wc.Send(t, map[string]any{"type": "publish", "id": "p", "channel": ch, "text": "let me in"})
		if f := wc.Until(t, wire.TypeError, 10*time.Second); f.Code != "forbidden" || string(f.ID) != `"p"` {
			t.Errorf("outsider's publish: %s", f.Raw)
		}
		mc := e2etest.MustMQTT(t, s.mqtt, "carol-1", "carol", carol)
		if rc := mc.Subscribe(t, topic, 1); rc < 0x80 {
			t.Errorf("outsider's MQTT SUBACK 0x%02x, want a failure (0x87)", rc)
		}
		if rc := mc.Publish(t, topic, []byte(`{"text":"let me in"}`)); rc != 0x87 {
			t.Errorf("outsider's MQTT PUBACK 0x%02x, want 0x87", rc)
		}
		if h := e2etest.History(t, s.gwURL, ch, alice); len(h) != n {
			t.Fatalf("history has %d messages after the outsider's attempts, want %d", len(h), n)
		}
	})
}

// TestRecoveryAfterReconnect: a subscriber drops, messages are published,
// it comes back with `since` and gets exactly the missed messages in order,
// then live ones, with no duplicate.
func TestRecoveryAfterReconnect(t *testing.T) {
	s := startStack(t, nil)
	alice, _ := s.user(t, "alice")
	bob, _ := s.user(t, "bob")
	ch := s.channel(t, alice, "recovery", "private", "bob")
	for i := 1; i <= 5; i++ {
		e2etest.WantStatus(t, s.api(t, "POST", "/api/v1/channels/"+ch+"/messages", alice, map[string]any{"text": fmt.Sprintf("before %d", i)}), 201, "post")
	}
	wb := e2etest.DialWS(t, s.wsURL, "unhidra.v1, bearer."+bob)
	wb.Send(t, map[string]any{"type": "subscribe", "channel": ch})
	if f := wb.Until(t, wire.TypeSubscribed, 10*time.Second); f.Offset != 5 {
		t.Fatalf("subscribed at %d, want 5", f.Offset)
	}
	wb.Close()

	wa := e2etest.DialWS(t, s.wsURL, "unhidra.v1, bearer."+alice)
	for i := 6; i <= 30; i++ {
		wa.Send(t, map[string]any{"type": "publish", "channel": ch, "client_msg_id": fmt.Sprint(i), "text": fmt.Sprintf("missed %d", i)})
	}
	for range 25 {
		wa.Until(t, wire.TypeAck, 10*time.Second)
	}

	wb = e2etest.DialWS(t, s.wsURL, "unhidra.v1, bearer."+bob)
	wb.Send(t, map[string]any{"type": "subscribe", "channel": ch, "since": 5})
	f := wb.Until(t, wire.TypeSubscribed, 10*time.Second)
	if !f.Recovered || f.Offset != 30 {
		t.Fatalf("subscribed %s, want recovered:true at offset 30", f.Raw)
	}
	// One live message while (or right after) the recovery is delivered.
	wa.Send(t, map[string]any{"type": "publish", "channel": ch, "text": "live 31"})
	seen := map[int64]bool{}
	for want := int64(6); want <= 31; want++ {
		f := wb.Until(t, wire.TypeMessage, 10*time.Second)
		if f.Offset != want || seen[f.Offset] {
			t.Fatalf("got offset %d, want %d (a gap, a duplicate or out of order)", f.Offset, want)
		}
		seen[f.Offset] = true
	}
	if f, err := wb.TryRead(300 * time.Millisecond); err == nil && f.Type == wire.TypeMessage {
		t.Fatalf("an extra message after the recovery: %s", f.Raw)
	}

	t.Run("since beyond the recovery window gives recovered:false and no partial batch", func(t *testing.T) {
		// The window is 1,000 messages; 1,001 are posted over REST from
		// several clients at once (the group commit keeps it quick; REST
		// is not under the WebSocket's per-connection frame limit).
		total := 1001
		const workers = 8
		errs := make(chan error, workers)
		for w := range workers {
			go func() {
				for j := w; j < total; j += workers {
					r := e2etest.HTTPCall(t, s.gwURL, "POST", "/api/v1/channels/"+ch+"/messages", alice, map[string]any{"text": fmt.Sprintf("flood %d", j)})
					if r.Status != 201 {
						errs <- fmt.Errorf("post: %d %s", r.Status, r.Body)
						return
					}
				}
				errs <- nil
			}()
		}
		for range workers {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		late := e2etest.DialWS(t, s.wsURL, "unhidra.v1, bearer."+bob)
		late.Send(t, map[string]any{"type": "subscribe", "channel": ch, "since": 31})
		f := late.Until(t, wire.TypeSubscribed, 10*time.Second)
		if f.Recovered || f.Offset != 31+int64(total) {
			t.Fatalf("subscribed %s, want recovered:false at %d", f.Raw, 31+total)
		}
		if f, err := late.TryRead(300 * time.Millisecond); err == nil && f.Type == wire.TypeMessage {
			t.Fatalf("a message was replayed although recovery was refused: %s", f.Raw)
		}
	})
}

// TestRevocationsReachLiveSessions is TOK-4 across the whole server: after
// logout, password change and an admin's disable, the token is refused over
// HTTP at once, the user's WebSocket closes with 4003 and the user's MQTT
// session is disconnected, each within 5 s.
func TestRevocationsReachLiveSessions(t *testing.T) {
	s := startStack(t, nil)
	admin := s.admin(t)
	_, pw := s.user(t, "dora")

	type live struct {
		ws   *e2etest.WSConn
		mq   *e2etest.MQTTClient
		name string
	}
	connect := func(t *testing.T, tok, name string) live {
		return live{ws: e2etest.DialWS(t, s.wsURL, "unhidra.v1, bearer."+tok), mq: e2etest.MustMQTT(t, s.mqtt, "dora-"+name, "dora", tok), name: name}
	}
	expectClosed := func(t *testing.T, l live, began time.Time) {
		t.Helper()
		code, err := l.ws.CloseCode(5*time.Second - time.Since(began))
		if code != 4003 {
			t.Errorf("%s: WebSocket close %d (%v), want 4003 within 5 s", l.name, code, err)
		} else {
			t.Logf("%s: WebSocket closed 4003 after %v", l.name, time.Since(began).Round(time.Millisecond))
		}
		select {
		case <-l.mq.Gone:
			t.Logf("%s: MQTT disconnected after %v", l.name, time.Since(began).Round(time.Millisecond))
		case <-time.After(5*time.Second - time.Since(began)):
			t.Errorf("%s: MQTT session still connected 5 s after the revocation", l.name)
		}
	}
	expectRefused := func(t *testing.T, tok string) {
		t.Helper()
		e2etest.WantStatus(t, s.authAPI(t, "GET", "/me", tok, nil), 401, "the auth API right after")
		e2etest.WantStatus(t, s.api(t, "GET", "/api/v1/channels", tok, nil), 401, "the REST API right after")
		if _, err := e2etest.TryWS(s.wsURL, "unhidra.v1, bearer."+tok); err == nil || !strings.Contains(err.Error(), "401") {
			t.Errorf("a new WebSocket with the revoked token: %v, want 401", err)
		}
		if m, code, _ := e2etest.DialMQTT(t, s.mqtt, "dora-again", "dora", tok); m != nil || code != 0x86 {
			t.Errorf("a new MQTT session with the revoked token: CONNACK 0x%02x, want 0x86", code)
		}
	}

	t.Run("logout", func(t *testing.T) {
		tok := s.login(t, "dora", pw).AccessToken
		l := connect(t, tok, "logout")
		began := time.Now()
		e2etest.WantStatus(t, s.authAPI(t, "POST", "/logout", tok, nil), 204, "logout")
		expectRefused(t, tok)
		expectClosed(t, l, began)
	})
	t.Run("password change ends the other sessions and keeps the changing one", func(t *testing.T) {
		keep := s.login(t, "dora", pw).AccessToken
		other := s.login(t, "dora", pw).AccessToken
		kept := connect(t, keep, "kept")
		l := connect(t, other, "other")
		newPW := e2etest.Secret("password", "dora's second password")
		began := time.Now()
		e2etest.WantStatus(t, s.authAPI(t, "POST", "/me/password", keep, map[string]string{"current_password": pw, "new_password": newPW}), 204, "password change")
		pw = newPW
		expectRefused(t, other)
		expectClosed(t, l, began)
		kept.ws.Send(t, map[string]any{"type": "presence", "status": "away"})
		kept.ws.Send(t, map[string]any{"type": "subscribe", "channel": "nope-" + e2etest.RandomHex(4)})
		if f := kept.ws.Until(t, wire.TypeError, 5*time.Second); f.Code == "" {
			t.Errorf("the changing session's socket: %s", f.Raw)
		}
		select {
		case <-kept.mq.Gone:
			t.Error("the changing session's MQTT connection was closed")
		default:
		}
	})
	t.Run("an admin disables the account", func(t *testing.T) {
		tok := s.login(t, "dora", pw).AccessToken
		l := connect(t, tok, "disable")
		began := time.Now()
		e2etest.WantStatus(t, s.authAPI(t, "POST", "/admin/users/dora/disable", admin, nil), 200, "disable")
		expectRefused(t, tok)
		expectClosed(t, l, began)
	})
}
