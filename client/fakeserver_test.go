package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/unhidra/unhidra/wire"
)

// fakeGateway speaks the gateway's side of docs/protocol.md#handshake and #frames over a real WebSocket:
// the transport edge the client talks to, with just enough state (acks,
// idempotent publishes, channel history) to check the client's behaviour.
type fakeGateway struct {
	t   *testing.T
	srv *httptest.Server

	mu              sync.Mutex
	keys            map[string]string // api key → device id
	down            bool              // answer 503 to handshakes
	handshakes      int
	protocols       [][]string
	conns           []*websocket.Conn
	telemetry       []map[string]any
	published       map[string]int64 // client_msg_id → offset
	history         map[string][]int64
	subscribes      []map[string]any
	results         []map[string]any
	heartbeats      int
	dropNextPublish bool    // close the connection instead of acking the next publish
	extraLive       []int64 // offsets to send again right after a since-recovery
}

func newFakeGateway(t *testing.T, tlsServer bool) *fakeGateway {
	g := &fakeGateway{t: t, keys: map[string]string{"unhidra_dk_good": "dev1"},
		published: map[string]int64{}, history: map[string][]int64{}}
	if tlsServer {
		g.srv = httptest.NewTLSServer(http.HandlerFunc(g.serve))
	} else {
		g.srv = httptest.NewServer(http.HandlerFunc(g.serve))
	}
	t.Cleanup(func() { g.kill(); g.srv.Close() })
	return g
}

func (g *fakeGateway) url() string { return "ws" + strings.TrimPrefix(g.srv.URL, "http") + "/ws" }

func (g *fakeGateway) setDown(d bool) { g.mu.Lock(); g.down = d; g.mu.Unlock() }

// kill drops every open connection without a close handshake.
func (g *fakeGateway) kill() {
	g.mu.Lock()
	conns := g.conns
	g.conns = nil
	g.mu.Unlock()
	for _, c := range conns {
		c.CloseNow()
	}
}

func (g *fakeGateway) serve(w http.ResponseWriter, r *http.Request) {
	var protos []string
	for _, h := range r.Header.Values("Sec-WebSocket-Protocol") {
		for _, p := range strings.Split(h, ",") {
			protos = append(protos, strings.TrimSpace(p))
		}
	}
	g.mu.Lock()
	g.handshakes++
	g.protocols = append(g.protocols, protos)
	down := g.down
	g.mu.Unlock()
	if down {
		http.Error(w, `{"error":{"code":"unavailable","message":"down"}}`, http.StatusServiceUnavailable)
		return
	}
	var dev string
	if len(protos) == 2 && protos[0] == "unhidra.v1" && strings.HasPrefix(protos[1], "apikey.") {
		g.mu.Lock()
		dev = g.keys[strings.TrimPrefix(protos[1], "apikey.")]
		g.mu.Unlock()
	}
	if dev == "" {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"error":{"code":"unauthorized","message":"invalid token"}}`))
		return
	}
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"unhidra.v1"}})
	if err != nil {
		return
	}
	g.mu.Lock()
	g.conns = append(g.conns, c)
	g.mu.Unlock()
	ctx := context.Background()
	send := func(v any) {
		b, _ := json.Marshal(v)
		_ = c.Write(ctx, websocket.MessageText, b)
	}
	send(wire.Welcome{Type: wire.TypeWelcome, SessionID: "s1", Principal: wire.Principal{Kind: wire.KindDevice, ID: dev},
		ServerTime: time.Now(), PingInterval: 30, HeartbeatInterval: 60})
	for {
		_, raw, err := c.Read(ctx)
		if err != nil {
			return
		}
		var f map[string]any
		if json.Unmarshal(raw, &f) != nil {
			continue
		}
		id := f["id"]
		switch f["type"] {
		case wire.TypeTelemetry:
			g.mu.Lock()
			g.telemetry = append(g.telemetry, f)
			n := len(g.telemetry)
			g.mu.Unlock()
			send(map[string]any{"type": "ack", "id": id, "channel": "device:" + dev, "message_id": "m", "offset": n})
		case wire.TypePublish:
			ch, _ := f["channel"].(string)
			cm, _ := f["client_msg_id"].(string)
			g.mu.Lock()
			if g.dropNextPublish {
				g.dropNextPublish = false
				off := g.store(ch, cm)
				_ = off
				g.mu.Unlock()
				c.CloseNow()
				return
			}
			off := g.store(ch, cm)
			g.mu.Unlock()
			send(map[string]any{"type": "ack", "id": id, "channel": ch, "message_id": cm, "offset": off})
		case wire.TypeSubscribe:
			ch, _ := f["channel"].(string)
			g.mu.Lock()
			g.subscribes = append(g.subscribes, f)
			hist := append([]int64(nil), g.history[ch]...)
			extra := g.extraLive
			g.extraLive = nil
			g.mu.Unlock()
			head := int64(len(hist))
			since, hasSince := f["since"].(float64)
			send(map[string]any{"type": "subscribed", "id": id, "channel": ch, "offset": head, "recovered": hasSince})
			if hasSince {
				for o := int64(since) + 1; o <= head; o++ {
					send(msgFrame(ch, o))
				}
				for _, o := range extra {
					send(msgFrame(ch, o))
				}
			}
		case wire.TypeHeartbeat:
			g.mu.Lock()
			g.heartbeats++
			g.mu.Unlock()
			send(map[string]any{"type": "heartbeat_ack", "id": id, "server_time": time.Now()})
		case wire.TypeCommandResult:
			g.mu.Lock()
			g.results = append(g.results, f)
			g.mu.Unlock()
		}
	}
}

// store appends a message unless its client_msg_id is known; g.mu is held.
func (g *fakeGateway) store(ch, cm string) int64 {
	if off, ok := g.published[cm]; ok && cm != "" {
		return off
	}
	g.history[ch] = append(g.history[ch], int64(len(g.history[ch])+1))
	off := int64(len(g.history[ch]))
	g.published[cm] = off
	return off
}

func msgFrame(ch string, off int64) wire.MessageFrame {
	text := "m"
	return wire.MessageFrame{Type: wire.TypeMessage, Channel: ch, Offset: off,
		Message: wire.Message{ID: "m", Channel: ch, Offset: off, Text: &text}}
}

// broadcast sends a frame to every open connection.
func (g *fakeGateway) broadcast(v any) {
	b, _ := json.Marshal(v)
	g.mu.Lock()
	conns := append([]*websocket.Conn(nil), g.conns...)
	g.mu.Unlock()
	for _, c := range conns {
		_ = c.Write(context.Background(), websocket.MessageText, b)
	}
}

// eventually polls cond until it holds or 10 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
