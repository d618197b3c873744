package gateway

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/redact"
	"github.com/unhidra/unhidra/internal/wstest"
	"github.com/unhidra/unhidra/wire"
)

// Every credential a handshake can carry (bearer.<jwt> in
// Sec-WebSocket-Protocol, the seed's "bearer, <token>", ?token=, apikey.<key>)
// stays out of the gateway's log (captured at debug level), on every refusal
// path (unknown, expired, a device key in the URL, a malformed header, over
// the rate limit) and for an accepted connection from connect to close.
func TestGatewayLogNeverHoldsTheToken(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *Deps) { c.RateLimitIPPerMinute = 40 })
	unknown := "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJtYWxsb3J5In0.c2lnbmF0dXJlLW5vdC12YWxpZA"
	expired := e.user("alice", "s-old", -time.Hour)
	badKey := "unhidra_dk_thisKeyIsNotRegistered0123456789"
	good := e.user("alice", "s1", time.Hour)
	devKey := e.device("sensor-1")
	secrets := []string{unknown, expired, badKey, good, devKey}

	refused := []struct {
		name string
		url  string
		opt  wstest.Options
		want int
	}{
		{"unknown token in the subprotocol", e.url, wstest.Options{Header: protoHeader("unhidra.v1, bearer." + unknown)}, http.StatusUnauthorized},
		{"expired token in the subprotocol", e.url, wstest.Options{Header: protoHeader("unhidra.v1, bearer." + expired)}, http.StatusUnauthorized},
		{"expired token in the seed's form", e.url, wstest.Options{Header: protoHeader("bearer, " + expired)}, http.StatusUnauthorized},
		{"unknown token in the query", e.url + "?token=" + url.QueryEscape(unknown), wstest.Options{}, http.StatusUnauthorized},
		{"expired token in the query", e.url + "?token=" + url.QueryEscape(expired), wstest.Options{}, http.StatusUnauthorized},
		{"a device key in the query", e.url + "?token=" + devKey, wstest.Options{}, http.StatusUnauthorized},
		{"an unknown device key", e.url, wstest.Options{Header: protoHeader("unhidra.v1, apikey." + badKey)}, http.StatusUnauthorized},
		{"a malformed header around a token", e.url, wstest.Options{Header: protoHeader("unhidra.v1, bearer." + good + " x")}, http.StatusUnauthorized},
		{"a bad Origin with a good token", e.url, wstest.Options{Header: http.Header{"Sec-WebSocket-Protocol": {"unhidra.v1, bearer." + good}, "Origin": {"http://evil.example"}}}, http.StatusForbidden},
	}
	for _, r := range refused {
		if got := e.handshake(t, r.url, r.opt).StatusCode; got != r.want {
			t.Errorf("%s: status %d, want %d", r.name, got, r.want)
		}
	}
	// Accepted: a user and a device, both closed by the client.
	c := e.dial(t, good)
	roundTrip(t, c)
	c.WriteClose(1000, "")
	expectClose(t, c, 1000)
	d := e.dialWith(t, wstest.Options{Header: protoHeader("unhidra.v1, apikey." + devKey)})
	d.WriteClose(1000, "")
	expectClose(t, d, 1000)
	eventually(t, 5*time.Second, "two disconnect lines", func() bool {
		return strings.Count(e.logs.String(), "websocket client disconnected") == 2
	})
	// Over the rate limit, with a token.
	for range 40 {
		if e.handshake(t, e.url+"?token="+url.QueryEscape(good), wstest.Options{}).StatusCode == http.StatusTooManyRequests {
			break
		}
	}

	logs := e.logs.String()
	if !strings.Contains(logs, "websocket handshake refused") {
		t.Fatalf("no refusal was logged at all; the capture is not working:\n%s", logs)
	}
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("the log holds the credential %q:\n%s", s, logs)
		}
		// Not even its signature part or key body alone.
		if i := strings.LastIndexByte(s, '.'); i > 0 && len(s)-i > 8 && strings.Contains(logs, s[i+1:]) {
			t.Errorf("the log holds a piece of %q", s)
		}
	}
}

// Each connect and disconnect is one info line naming the principal (kind
// and id), the connection's session id, the remote address and, on
// disconnect, the reason and duration. A credential-shaped principal id is
// logged as its hash.
func TestConnectsAndDisconnectsAreLoggedAtInfo(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.user("alice", "s1", time.Hour)
	c, _, err := wstest.Dial(t.Context(), e.url, wstest.Options{Header: protoHeader("unhidra.v1, bearer." + tok)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	var w wire.Welcome
	if typ, err := c.ReadJSON(&w); err != nil || typ != wire.TypeWelcome {
		t.Fatalf("welcome: %q %v", typ, err)
	}
	eventually(t, 5*time.Second, "the connect line", func() bool {
		return strings.Contains(e.logs.String(), "websocket client connected")
	})
	connect := logLine(t, e.logs.String(), "websocket client connected")
	for _, want := range []string{"level=INFO", "kind=user", "id=alice", "session=" + w.SessionID, "remote=127.0.0.1", "peer=127.0.0.1:"} {
		mustContain(t, connect, want)
	}
	c.WriteClose(1000, "bye")
	expectClose(t, c, 1000)
	eventually(t, 5*time.Second, "the disconnect line", func() bool {
		return strings.Contains(e.logs.String(), "websocket client disconnected")
	})
	disconnect := logLine(t, e.logs.String(), "websocket client disconnected")
	for _, want := range []string{"level=INFO", "kind=user", "id=alice", "session=" + w.SessionID, "remote=127.0.0.1", "reason=client"} {
		mustContain(t, disconnect, want)
	}
	if !regexp.MustCompile(`duration=[0-9.]+(ms|s|µs)`).MatchString(disconnect) {
		t.Errorf("no duration in %q", disconnect)
	}

	// A device whose id looks like a credential is logged by its hash.
	odd := "unhidra_rt_lookslikeatoken"
	key := "unhidra_dk_k" + odd
	e.auth.add(key, unhidra.Identity{Principal: wire.Principal{Kind: wire.KindDevice, ID: odd}})
	d := e.dialWith(t, wstest.Options{Header: protoHeader("unhidra.v1, apikey." + key)})
	d.Close()
	eventually(t, 5*time.Second, "the device's disconnect line", func() bool {
		return strings.Count(e.logs.String(), "websocket client disconnected") == 2
	})
	logs := e.logs.String()
	if strings.Contains(logs, odd) {
		t.Errorf("a credential-shaped id was logged as is")
	}
	mustContain(t, logs, "kind=device id="+redact.Name(odd))
	mustContain(t, logs, "reason=read")
}

// logLine returns the first line of logs containing msg.
func logLine(t *testing.T, logs, msg string) string {
	t.Helper()
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, msg) {
			return l
		}
	}
	t.Fatalf("no %q line in:\n%s", msg, logs)
	return ""
}
