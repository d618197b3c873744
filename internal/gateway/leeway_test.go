package gateway

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/auth"
	"github.com/unhidra/unhidra/internal/chat"
	"github.com/unhidra/unhidra/internal/httpapi"
	"github.com/unhidra/unhidra/internal/sqlite"
	"github.com/unhidra/unhidra/internal/sqlitetest"
	"github.com/unhidra/unhidra/internal/wstest"
	"github.com/unhidra/unhidra/wire"
)

// An access token is accepted for 60 s past its exp (docs/protocol.md#auth-api) by the REST API
// and by the WebSocket handshake alike: both ask the real auth service, with
// the same clock, and the gateway adds no stricter check of its own. Before,
// the handshake refused a token the REST API still accepted.
func TestTokenLeewayIsTheSameOverHTTPAndWebSocket(t *testing.T) {
	ctx := context.Background()
	clk := &fakeClock{now: time.Now().UTC().Truncate(time.Second)}
	db := sqlitetest.Open(t)
	authSvc, err := auth.New(auth.Config{
		Secret: "gateway-leeway-test-secret-0123456789abcdef", AccessTTL: 15 * time.Minute,
		Params: auth.Params{MemoryKiB: 64, Iterations: 1, Parallelism: 1}, Now: clk.Now,
	}, auth.Deps{Store: sqlite.NewAuthStore(db)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := authSvc.CreateUser(ctx, auth.CreateUserInput{Username: "alice", Password: "alice password"}); err != nil {
		t.Fatal(err)
	}
	pair, err := authSvc.Login(ctx, auth.LoginInput{Username: "alice", Password: "alice password"})
	if err != nil {
		t.Fatal(err)
	}
	chatStore, err := sqlite.NewChatStore(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *Config, d *Deps) {
		c.Now = clk.Now
		c.TokenLeeway = 0 // the default: the auth service's
		d.Tokens = authSvc
		d.API = httpapi.NewAPI(httpapi.APIDeps{Chat: chat.NewService(chatStore, d.Broker, chat.Options{}), Users: authSvc})
	})
	exp := clk.Now().Add(15 * time.Minute)

	rest := func() int {
		req, _ := http.NewRequest(http.MethodGet, "http://"+e.srv.Addr()+"/api/v1/channels", nil)
		req.Header.Set("Authorization", "Bearer "+pair.AccessToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	ws := func(opt wstest.Options) int {
		return e.handshake(t, e.url, opt).StatusCode
	}
	viaProtocol := wstest.Options{Header: protoHeader("unhidra.v1, bearer." + pair.AccessToken)}
	viaQuery := wstest.Options{}
	queryURL := e.url + "?token=" + pair.AccessToken

	clk.Advance(exp.Add(30 * time.Second).Sub(clk.Now()))
	if got := rest(); got != http.StatusOK {
		t.Errorf("REST with a token expired 30 s ago: %d, want 200", got)
	}
	if got := ws(viaProtocol); got != http.StatusSwitchingProtocols {
		t.Errorf("WebSocket handshake with a token expired 30 s ago: %d, want 101", got)
	}
	if got := e.handshake(t, queryURL, viaQuery).StatusCode; got != http.StatusSwitchingProtocols {
		t.Errorf("WebSocket handshake (?token=) with a token expired 30 s ago: %d, want 101", got)
	}

	clk.Advance(60 * time.Second) // 90 s past exp
	if got := rest(); got != http.StatusUnauthorized {
		t.Errorf("REST with a token expired 90 s ago: %d, want 401", got)
	}
	if got := ws(viaProtocol); got != http.StatusUnauthorized {
		t.Errorf("WebSocket handshake with a token expired 90 s ago: %d, want 401", got)
	}
	if got := e.handshake(t, queryURL, viaQuery).StatusCode; got != http.StatusUnauthorized {
		t.Errorf("WebSocket handshake (?token=) with a token expired 90 s ago: %d, want 401", got)
	}
	if strings.Contains(e.logs.String(), pair.AccessToken) {
		t.Error("the access token reached the gateway's log")
	}
}

// A connection accepted inside the leeway stays open until the leeway ends,
// then closes with 4001; an in-band refresh inside the leeway is accepted
// too (the same rule at the handshake, on refresh and for the 4001 close).
func TestConnectionInsideTheLeewayClosesWhenItEnds(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *Deps) { c.TokenLeeway = time.Minute })
	inLeeway := func(name, session string, left time.Duration) string {
		tok := e.user(name, session, time.Hour)
		e.auth.add(tok, unhidra.Identity{
			Principal: wire.Principal{Kind: wire.KindUser, ID: name}, SessionID: session,
			ExpiresAt: time.Now().Add(left - time.Minute), // exp passed; leeway left
		})
		return tok
	}
	c := e.dial(t, inLeeway("alice", "s1", 400*time.Millisecond))
	roundTrip(t, c) // open although exp has passed
	expectClose(t, c, CloseTokenExpired)

	c = e.dial(t, inLeeway("bob", "s2", 300*time.Millisecond))
	if err := c.WriteText(`{"type":"refresh","token":"` + inLeeway("bob", "s2", 30*time.Second) + `","id":1}`); err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	var r wire.Refreshed
	if typ, err := c.ReadJSON(&r); err != nil || typ != wire.TypeRefreshed {
		t.Fatalf("refresh with a token inside the leeway: %q %v, want refreshed", typ, err)
	}
	time.Sleep(500 * time.Millisecond)
	roundTrip(t, c) // the refreshed token's leeway still runs

	expired := e.user("carol", "s3", -time.Hour)
	e.auth.add(expired, unhidra.Identity{Principal: wire.Principal{Kind: wire.KindUser, ID: "carol"}, SessionID: "s3", ExpiresAt: time.Now().Add(-61 * time.Second)})
	if resp := e.handshake(t, e.url, wstest.Options{Header: protoHeader("unhidra.v1, bearer." + expired)}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("token past the leeway: status %d, want 401", resp.StatusCode)
	}
}
