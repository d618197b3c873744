package gateway

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/wstest"
	"github.com/unhidra/unhidra/wire"
)

func TestCredentialFormsEachGetWelcome(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.user("alice", "s1", time.Hour)
	key := e.device("dev1")
	tests := []struct {
		name      string
		opt       wstest.Options
		query     string
		wantProto string
		wantKind  string
	}{
		{"unhidra.v1 with a bearer token answers unhidra.v1", wstest.Options{Header: protoHeader("unhidra.v1, bearer." + tok)}, "", "unhidra.v1", wire.KindUser},
		{"unhidra.v1 with an api key answers unhidra.v1", wstest.Options{Header: protoHeader("unhidra.v1, apikey." + key)}, "", "unhidra.v1", wire.KindDevice},
		{"the seed's bearer form with a token answers bearer", wstest.Options{Header: protoHeader("bearer, " + tok)}, "", "bearer", wire.KindUser},
		{"the seed's bearer form with a device key answers bearer", wstest.Options{Header: protoHeader("bearer, " + key)}, "", "bearer", wire.KindDevice},
		{"the deprecated query token answers no subprotocol", wstest.Options{}, "?token=" + tok, "", wire.KindUser},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, resp, err := wstest.Dial(t.Context(), e.url+tt.query, tt.opt)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer c.Close()
			if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != tt.wantProto {
				t.Errorf("Sec-WebSocket-Protocol = %q, want %q", got, tt.wantProto)
			}
			for k, vs := range resp.Header {
				for _, v := range vs {
					if strings.Contains(v, tok) || strings.Contains(v, key) {
						t.Errorf("response header %s echoes the credential", k)
					}
				}
			}
			var w wire.Welcome
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			if typ, err := c.ReadJSON(&w); err != nil || typ != wire.TypeWelcome {
				t.Fatalf("got %q, %v; want welcome", typ, err)
			}
			if w.Principal.Kind != tt.wantKind || w.SessionID == "" || w.PingInterval != 60 || w.HeartbeatInterval != 60 || w.ServerTime.IsZero() {
				t.Errorf("welcome = %+v", w)
			}
		})
	}
}

// WS-1: protocol edge cases from Autobahn's classes, through raw frames.
func TestProtocolViolationsCloseWithTheRightCode(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.user("alice", "s1", time.Hour)
	text := func(s string) wstest.Frame { return wstest.Frame{Fin: true, Op: wstest.OpText, Payload: []byte(s)} }
	tests := []struct {
		name   string
		frames []wstest.Frame
		want   int
	}{
		{"an unmasked frame is a protocol error", []wstest.Frame{{Fin: true, Op: wstest.OpText, Payload: []byte(`{}`), Unmasked: true}}, CloseProtocolError},
		{"reserved data opcode 3 is a protocol error", []wstest.Frame{{Fin: true, Op: 0x3}}, CloseProtocolError},
		{"reserved control opcode 0xB is a protocol error", []wstest.Frame{{Fin: true, Op: 0xB}}, CloseProtocolError},
		{"a 126-byte ping is a protocol error", []wstest.Frame{{Fin: true, Op: wstest.OpPing, Payload: make([]byte, 126)}}, CloseProtocolError},
		{"a fragmented ping is a protocol error", []wstest.Frame{{Fin: false, Op: wstest.OpPing, Payload: []byte("a")}}, CloseProtocolError},
		{"RSV1 without an extension is a protocol error", []wstest.Frame{{Fin: true, RSV: 4, Op: wstest.OpText, Payload: []byte(`{}`)}}, CloseProtocolError},
		{"RSV3 is a protocol error", []wstest.Frame{{Fin: true, RSV: 1, Op: wstest.OpPing}}, CloseProtocolError},
		{"a continuation without a start is a protocol error", []wstest.Frame{{Fin: true, Op: wstest.OpContinuation, Payload: []byte("x")}}, CloseProtocolError},
		{"a new text frame inside a fragmented message is a protocol error", []wstest.Frame{{Fin: false, Op: wstest.OpText, Payload: []byte("{")}, text("{}")}, CloseProtocolError},
		{"a close frame with a one-byte body is a protocol error", []wstest.Frame{{Fin: true, Op: wstest.OpClose, Payload: []byte{3}}}, CloseProtocolError},
		{"a close frame with code 1005 is a protocol error", []wstest.Frame{{Fin: true, Op: wstest.OpClose, Payload: []byte{0x03, 0xED}}}, CloseProtocolError},
		{"invalid UTF-8 text closes with 1007", []wstest.Frame{text("{\"type\":\"\xff\"}")}, CloseInvalidPayload},
		{"invalid UTF-8 split across fragments closes with 1007", []wstest.Frame{{Fin: false, Op: wstest.OpText, Payload: []byte("\xce")}, {Fin: true, Op: wstest.OpContinuation, Payload: []byte("\x28")}}, CloseInvalidPayload},
		{"a binary frame closes with 1003", []wstest.Frame{{Fin: true, Op: wstest.OpBinary, Payload: []byte{1, 2}}}, CloseUnsupportedData},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := e.dial(t, tok)
			for _, f := range tt.frames {
				if err := c.WriteFrame(f); err != nil {
					t.Fatalf("write: %v", err)
				}
			}
			expectClose(t, c, tt.want)
		})
	}
}

func TestTenPingsGetTenPongsWithTheirPayloads(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial(t, e.user("alice", "s1", time.Hour))
	for i := range 10 {
		p := []byte{byte('a' + i), byte(i)}
		if err := c.WriteFrame(wstest.Frame{Fin: true, Op: wstest.OpPing, Payload: p}); err != nil {
			t.Fatal(err)
		}
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	for i := range 10 {
		f, err := c.ReadFrame()
		if err != nil {
			t.Fatalf("pong %d: %v", i, err)
		}
		if f.Op != wstest.OpPong || f.Payload[0] != byte('a'+i) || f.Masked {
			t.Fatalf("frame %d = op %#x payload %q masked %v, want an unmasked pong", i, f.Op, f.Payload, f.Masked)
		}
	}
}

func TestCloseHandshakeEchoesTheClientCode(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial(t, e.user("alice", "s1", time.Hour))
	if err := c.WriteClose(4321, "bye"); err != nil {
		t.Fatal(err)
	}
	expectClose(t, c, 4321)
	eventually(t, 5*time.Second, "connection released", func() bool { return e.srv.Connections() == 0 })
}

// WS-2: 64 KiB accepted, one byte more closes with 1009, also from fragments.
func TestMessageSizeLimit(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.user("alice", "s1", time.Hour)
	// A publish frame padded to exactly n bytes.
	frameOf := func(n int) []byte {
		head := `{"type":"publish","channel":"c1","text":"hi","id":1,"pad":"`
		tail := `"}`
		return []byte(head + strings.Repeat("p", n-len(head)-len(tail)) + tail)
	}
	fragments := func(b []byte, size int) []wstest.Frame {
		var out []wstest.Frame
		for i := 0; i < len(b); i += size {
			end := min(i+size, len(b))
			op := byte(wstest.OpContinuation)
			if i == 0 {
				op = wstest.OpText
			}
			out = append(out, wstest.Frame{Fin: end == len(b), Op: op, Payload: b[i:end]})
		}
		return out
	}
	tests := []struct {
		name   string
		frames []wstest.Frame
		ok     bool
	}{
		{"a 64 KiB frame is accepted", fragments(frameOf(wire.MaxFrameBytes), wire.MaxFrameBytes), true},
		{"64 KiB in 64 fragments is accepted", fragments(frameOf(wire.MaxFrameBytes), 1024), true},
		{"a 64 KiB + 1 frame closes with 1009", fragments(frameOf(wire.MaxFrameBytes+1), wire.MaxFrameBytes+1), false},
		{"64 KiB + 1 in 1 KiB fragments closes with 1009", fragments(frameOf(wire.MaxFrameBytes+1), 1024), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := e.dial(t, tok)
			for _, f := range tt.frames {
				if err := c.WriteFrame(f); err != nil {
					t.Fatalf("write: %v", err)
				}
			}
			if !tt.ok {
				expectClose(t, c, CloseTooLarge)
				return
			}
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			var ack wire.AckFrame
			if typ, err := c.ReadJSON(&ack); err != nil || typ != wire.TypeAck || string(ack.ID) != "1" {
				t.Fatalf("got %q %+v, %v; want an ack with id 1", typ, ack, err)
			}
		})
	}
}

func TestInvalidJSONAndUnknownTypesGetErrorFramesAndKeepTheConnection(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial(t, e.user("alice", "s1", time.Hour))
	tests := []struct {
		name   string
		frame  string
		wantID string
		code   string
	}{
		{"invalid JSON", `{"type":`, "", "invalid"},
		{"unknown type keeps the id", `{"type":"launch","id":"x-1"}`, `"x-1"`, "invalid"},
		{"a publish with two bodies", `{"type":"publish","channel":"c","text":"a","data":1,"id":5}`, "5", "invalid"},
		{"heartbeat without a devices service", `{"type":"heartbeat","device_id":"d","ts":1,"id":6}`, "6", "unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := c.WriteText(tt.frame); err != nil {
				t.Fatal(err)
			}
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			var ef wire.ErrorFrame
			if typ, err := c.ReadJSON(&ef); err != nil || typ != wire.TypeError {
				t.Fatalf("got %q, %v; want error", typ, err)
			}
			if ef.Code != tt.code || string(ef.ID) != tt.wantID {
				t.Errorf("error frame = %+v, want code %s id %s", ef, tt.code, tt.wantID)
			}
		})
	}
	roundTrip(t, c)
}

// WS-3: handshake refusals before the upgrade; credentials never echoed or logged.
func TestHandshakeRefusals(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.user("alice", "s1", time.Hour)
	key := e.device("dev1")
	bodyUnauthorized := `{"error":{"code":"unauthorized","message":"invalid token"}}`
	tests := []struct {
		name   string
		query  string
		opt    wstest.Options
		status int
		body   string
	}{
		{"a bad version gets 426", "", wstest.Options{Header: http.Header{"Sec-Websocket-Version": {"8"}, "Sec-Websocket-Protocol": {"unhidra.v1, bearer." + tok}}}, 426, ""},
		{"no key gets 400", "", wstest.Options{Omit: []string{"Sec-WebSocket-Key"}, Header: protoHeader("unhidra.v1, bearer." + tok)}, 400, ""},
		{"a malformed key gets 400", "", wstest.Options{Header: http.Header{"Sec-Websocket-Key": {"short"}, "Sec-Websocket-Protocol": {"unhidra.v1, bearer." + tok}}}, 400, ""},
		{"no credential gets 401", "", wstest.Options{}, 401, bodyUnauthorized},
		{"only unhidra.v1 gets 401", "", wstest.Options{Header: protoHeader("unhidra.v1")}, 401, bodyUnauthorized},
		{"a bad bearer token gets 401", "", wstest.Options{Header: protoHeader("unhidra.v1, bearer.eyJnope")}, 401, bodyUnauthorized},
		{"a bad api key gets 401", "", wstest.Options{Header: protoHeader("unhidra.v1, apikey.unhidra_dk_nope")}, 401, bodyUnauthorized},
		{"a bad query token gets 401", "?token=eyJnope", wstest.Options{}, 401, bodyUnauthorized},
		{"a device key in the URL gets 401", "?token=" + key, wstest.Options{}, 401, bodyUnauthorized},
		{"a device key as a bearer token in the URL gets 401", "?token=" + key + "&x=1", wstest.Options{}, 401, bodyUnauthorized},
		{"an empty bearer entry gets 401", "", wstest.Options{Header: protoHeader("unhidra.v1, bearer.")}, 401, bodyUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := e.handshake(t, e.url+tt.query, tt.opt)
			if resp.StatusCode != tt.status {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tt.status)
			}
			var b strings.Builder
			buf := make([]byte, 4096)
			n, _ := resp.Body.Read(buf)
			b.Write(buf[:n])
			body := strings.TrimSpace(b.String())
			if tt.body != "" && body != tt.body {
				t.Errorf("body = %s, want %s", body, tt.body)
			}
			if tt.status == 426 && resp.Header.Get("Sec-WebSocket-Version") != "13" {
				t.Errorf("426 without Sec-WebSocket-Version: 13")
			}
			for k, vs := range resp.Header {
				for _, v := range vs {
					if strings.Contains(v, tok) || strings.Contains(v, key) {
						t.Errorf("header %s echoes the credential", k)
					}
				}
			}
			if strings.Contains(body, tok) || strings.Contains(body, key) {
				t.Errorf("body echoes the credential")
			}
		})
	}
	// Connect successfully once with each form too, so accepted paths log as well.
	e.dial(t, tok)
	e.dialWith(t, wstest.Options{Header: protoHeader("unhidra.v1, apikey." + key)})
	c, _, err := wstest.Dial(t.Context(), e.url+"?token="+tok, wstest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	logs := e.logs.String()
	if logs == "" {
		t.Fatal("no logs captured; the check below would prove nothing")
	}
	for _, secret := range []string{tok, key, "token=", "eyJnope", "unhidra_dk_nope"} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain %q", secret)
		}
	}
	if got := counterValue(t, e.srv.met.refused.WithLabelValues("unauthorized")); got < 7 {
		t.Errorf("refused{unauthorized} = %v, want at least 7", got)
	}
}

// WS-4: only exact origins get 101.
func TestOriginRule(t *testing.T) {
	t.Run("with ALLOWED_ORIGINS", func(t *testing.T) {
		e := newEnv(t, func(c *Config, _ *Deps) {
			c.AllowedOrigins = []string{"https://app.example.com", "http://localhost:3000"}
		})
		tok := e.user("alice", "s1", time.Hour)
		tests := []struct {
			name   string
			origin []string
			ok     bool
		}{
			{"no Origin header is allowed (devices, bots)", nil, true},
			{"an exact entry is allowed", []string{"https://app.example.com"}, true},
			{"the second exact entry is allowed", []string{"http://localhost:3000"}, true},
			{"evil.test is refused", []string{"https://evil.test"}, false},
			{"another port is refused", []string{"https://app.example.com:8443"}, false},
			{"another scheme is refused", []string{"http://app.example.com"}, false},
			{"a suffix trick is refused", []string{"https://app.example.com.evil.test"}, false},
			{"a prefix trick is refused", []string{"https://evilapp.example.com"}, false},
			{"a trailing slash is refused", []string{"https://app.example.com/"}, false},
			{"a different case is refused", []string{"https://APP.example.com"}, false},
			{"null is refused", []string{"null"}, false},
			{"an empty Origin is refused", []string{""}, false},
			{"two Origin headers are refused", []string{"https://app.example.com", "https://evil.test"}, false},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				h := protoHeader("unhidra.v1, bearer." + tok)
				if tt.origin != nil {
					h["Origin"] = tt.origin
				}
				resp := e.handshake(t, e.url, wstest.Options{Header: h})
				want := http.StatusForbidden
				if tt.ok {
					want = http.StatusSwitchingProtocols
				}
				if resp.StatusCode != want {
					t.Errorf("status = %d, want %d", resp.StatusCode, want)
				}
			})
		}
	})
	t.Run("same-origin only with an empty list", func(t *testing.T) {
		e := newEnv(t, nil)
		tok := e.user("alice", "s1", time.Hour)
		host := strings.TrimPrefix(strings.TrimSuffix(e.url, "/ws"), "ws://")
		_, port, _ := strings.Cut(host, ":")
		tests := []struct {
			name   string
			origin string
			ok     bool
		}{
			{"the gateway's own page is allowed", "http://" + host, true},
			{"another host is refused", "http://evil.test:" + port, false},
			{"another port is refused", "http://127.0.0.1:1", false},
			{"https without TLS is refused", "https://" + host, false},
			{"a suffix trick is refused", "http://127.0.0.1.evil.test:" + port, false},
			{"userinfo is refused", "http://evil@" + host, false},
			{"null is refused", "null", false},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				h := protoHeader("unhidra.v1, bearer." + tok)
				h["Origin"] = []string{tt.origin}
				resp := e.handshake(t, e.url, wstest.Options{Header: h})
				want := http.StatusForbidden
				if tt.ok {
					want = http.StatusSwitchingProtocols
				}
				if resp.StatusCode != want {
					t.Errorf("status = %d, want %d", resp.StatusCode, want)
				}
			})
		}
	})
}

func TestWelcomeAnnouncesConfiguredIntervals(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *Deps) { c.PingInterval = 30 * time.Second; c.PongTimeout = 10 * time.Second })
	tok := e.user("alice", "s1", time.Hour)
	c, _, err := wstest.Dial(t.Context(), e.url, wstest.Options{Header: protoHeader("unhidra.v1, bearer." + tok)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, msg, err := c.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(msg, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"type", "session_id", "principal", "server_time", "ping_interval", "heartbeat_interval"} {
		if _, ok := m[k]; !ok {
			t.Errorf("welcome lacks %q: %s", k, msg)
		}
	}
	if m["ping_interval"].(float64) != 30 || m["heartbeat_interval"].(float64) != 60 {
		t.Errorf("welcome = %s", msg)
	}
}
