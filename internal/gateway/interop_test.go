package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
	gorilla "github.com/gorilla/websocket"

	"github.com/unhidra/unhidra/wire"
)

// Real WebSocket client libraries interoperate: handshake with each
// credential form, welcome, subscribe, publish, receive, clean close.
func TestInteropWithWebSocketLibraries(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.user("alice", "s1", time.Hour)

	t.Run("coder/websocket with unhidra.v1 and a bearer subprotocol", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, resp, err := websocket.Dial(ctx, e.url, &websocket.DialOptions{Subprotocols: []string{"unhidra.v1", "bearer." + tok}})
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer c.CloseNow()
		if c.Subprotocol() != "unhidra.v1" || resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("subprotocol %q status %d", c.Subprotocol(), resp.StatusCode)
		}
		read := func() map[string]any {
			_, b, err := c.Read(ctx)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			var m map[string]any
			json.Unmarshal(b, &m)
			return m
		}
		if m := read(); m["type"] != wire.TypeWelcome {
			t.Fatalf("first frame %v", m)
		}
		c.Write(ctx, websocket.MessageText, []byte(`{"type":"subscribe","channel":"lib"}`))
		if m := read(); m["type"] != wire.TypeSubscribed {
			t.Fatalf("got %v", m)
		}
		c.Write(ctx, websocket.MessageText, []byte(`{"type":"publish","channel":"lib","text":"hi","id":1}`))
		got := map[string]bool{}
		for len(got) < 2 {
			got[read()["type"].(string)] = true
		}
		if !got[wire.TypeAck] || !got[wire.TypeMessage] {
			t.Fatalf("got %v, want an ack and the message", got)
		}
		if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
			t.Errorf("close handshake: %v", err)
		}
	})

	t.Run("gorilla/websocket with the seed's bearer form", func(t *testing.T) {
		c, resp, err := gorillaDialer().Dial(e.url, http.Header{"Sec-WebSocket-Protocol": {"bearer, " + tok}})
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer c.Close()
		if resp.Header.Get("Sec-WebSocket-Protocol") != "bearer" {
			t.Fatalf("subprotocol %q", resp.Header.Get("Sec-WebSocket-Protocol"))
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		var w wire.Welcome
		if err := c.ReadJSON(&w); err != nil || w.Type != wire.TypeWelcome || w.Principal.ID != "alice" {
			t.Fatalf("welcome %+v %v", w, err)
		}
		// gorilla answers the server's pings itself; a ping of ours gets a pong.
		pong := make(chan string, 1)
		c.SetPongHandler(func(s string) error { pong <- s; return nil })
		c.WriteControl(gorilla.PingMessage, []byte("x"), time.Now().Add(time.Second))
		go c.ReadMessage()
		select {
		case s := <-pong:
			if s != "x" {
				t.Errorf("pong %q", s)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no pong")
		}
	})

	t.Run("gorilla/websocket with the deprecated query token", func(t *testing.T) {
		c, _, err := gorillaDialer().Dial(e.url+"?token="+tok, nil)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		var w wire.Welcome
		if err := c.ReadJSON(&w); err != nil || w.Type != wire.TypeWelcome {
			t.Fatalf("welcome %+v %v", w, err)
		}
	})
}

func gorillaDialer() *gorilla.Dialer {
	return &gorilla.Dialer{HandshakeTimeout: 10 * time.Second}
}
