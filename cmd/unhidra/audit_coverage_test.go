package main

// Audit coverage (TESTPLAN AUD-4): every security event of docs SPEC §9,
// driven through its real transport (HTTP with X-Forwarded-For from a
// trusted proxy, real WebSocket handshakes, a real MQTT v5 client), reaches
// the audit seam exactly once, names its edge (transport, request id,
// client IP) and carries no secret.

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/audit"
	"github.com/unhidra/unhidra/internal/config"
	"github.com/unhidra/unhidra/internal/e2etest"
	"github.com/unhidra/unhidra/internal/httpx"
	"github.com/unhidra/unhidra/internal/platform"
	"github.com/unhidra/unhidra/internal/wstest"
)

// auditTap is the node's AuditTap: every event, completed from its context
// as a recorder does (audit.Complete).
type auditTap struct {
	mu  sync.Mutex
	evs []audit.Event
}

func (a *auditTap) Audit(ctx context.Context, e audit.Event) {
	e = audit.Complete(ctx, e, time.Now())
	a.mu.Lock()
	a.evs = append(a.evs, e)
	a.mu.Unlock()
}

func (a *auditTap) events() []audit.Event {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.evs)
}

// auditStack is the whole server with a tap, behind a "proxy": requests
// come from 127.0.0.1, a trusted proxy, with X-Forwarded-For naming the
// client.
type auditStack struct {
	*stack
	tap     *auditTap
	secrets map[string]string // secret → what it is
	n       int               // request ids handed out
}

func startAuditStack(t *testing.T, extra map[string]string) *auditStack {
	t.Helper()
	tap := &auditTap{}
	pw := e2etest.Secret("admin password", "e2e-admin-"+e2etest.RandomHex(8))
	e := map[string]string{
		"UNHIDRA_SERVICES":            "auth,gateway,mqtt",
		"UNHIDRA_ADMIN_PASSWORD":      pw,
		"RATE_LIMIT_IP_PER_MINUTE":    "100000",
		"RATE_LIMIT_LOGIN_PER_MINUTE": "2",
		"TRUSTED_PROXIES":             "127.0.0.1/32",
		"REGISTRATION":                "approval",
		"MAX_CONNECTIONS_PER_USER":    "1",
		"LOG_LEVEL":                   "info",
	}
	for k, v := range extra {
		e[k] = v
	}
	opts := cheapHash
	opts.AuditTap = tap
	s := &stack{testServer: startServer(t, e, opts), adminPW: pw}
	s.gwURL = "http://" + s.app.GatewayAddr()
	s.wsURL = "ws://" + s.app.GatewayAddr() + "/ws"
	s.mqtt = s.app.MQTTAddr()
	e2etest.WaitHTTP(t, s.gwURL+"/ready", 10*time.Second)
	a := &auditStack{stack: s, tap: tap, secrets: map[string]string{}}
	a.secret("admin password", pw)
	return a
}

// secret registers a secret that no log line and no audit event may hold.
func (a *auditStack) secret(what, s string) string {
	a.secrets[s] = what
	return e2etest.Secret(what, s)
}

// reqID returns a new request id for the client to send.
func (a *auditStack) reqID() string {
	a.n++
	return fmt.Sprintf("aud4-%03d", a.n)
}

// reply is an answer with the request id that was sent.
type reply struct {
	e2etest.Reply
	sent string // the X-Request-ID sent ("" none)
}

// do makes one request from client IP ip through the trusted proxy, with
// request id rid (empty: none).
func (a *auditStack) do(t *testing.T, base, method, path, bearer, ip, rid string, body any) reply {
	t.Helper()
	h := http.Header{"X-Forwarded-For": {ip}}
	if rid != "" {
		h.Set(httpx.RequestIDHeader, rid)
	}
	return reply{Reply: e2etest.HTTPCallWith(t, base, method, path, bearer, body, h), sent: rid}
}

// want is one expected audit event.
type want struct {
	action, outcome, target string
	actor                   string // "" any
	transport, ip           string // ip "": none
	// rid is the request id; one ending in "*" is a prefix; "" is none.
	rid     string
	details map[string]string
}

func (w want) String() string {
	return fmt.Sprintf("%s/%s target=%q actor=%q via %s rid=%q ip=%q %v", w.action, w.outcome, w.target, w.actor, w.transport, w.rid, w.ip, w.details)
}

func (w want) matches(e audit.Event) bool {
	if e.Action != w.action || e.Outcome != w.outcome || e.Target != w.target || e.Transport != w.transport || e.IP != w.ip {
		return false
	}
	if w.actor != "" && e.Actor.String() != w.actor {
		return false
	}
	if p, ok := strings.CutSuffix(w.rid, "*"); ok {
		if !strings.HasPrefix(e.RequestID, p) || len(e.RequestID) <= len(p) {
			return false
		}
	} else if e.RequestID != w.rid {
		return false
	}
	for k, v := range w.details {
		if e.Details[k] != v {
			return false
		}
	}
	return true
}

func show(e audit.Event) string {
	return fmt.Sprintf("%s/%s target=%q actor=%q via %s rid=%q ip=%q reason=%q %v", e.Action, e.Outcome, e.Target, e.Actor, e.Transport, e.RequestID, e.IP, e.Reason, e.Details)
}

// scenario drives every audited event once (or as many times as wants
// says) and returns what it expects.
type scenario struct {
	a     *auditStack
	wants []want
	ips   int
}

func (sc *scenario) expect(w want) { sc.wants = append(sc.wants, w) }

// http is one call that must answer status and cause the events ws
// (their transport, request id and IP are the call's).
func (sc *scenario) http(t *testing.T, base, method, path, bearer, ip string, body any, status int, ws ...want) reply {
	t.Helper()
	rid := sc.a.reqID()
	r := sc.a.do(t, base, method, path, bearer, ip, rid, body)
	if r.Status != status {
		t.Fatalf("%s %s: %d %s, want %d", method, path, r.Status, r.Body, status)
	}
	if got := r.Header.Get(httpx.RequestIDHeader); got != rid {
		t.Fatalf("%s %s: X-Request-ID answered %q, want the %q sent", method, path, got, rid)
	}
	sc.after(r, ip, ws...)
	return r
}

// after expects the events ws of the call that answered r, from ip.
func (sc *scenario) after(r reply, ip string, ws ...want) {
	for _, w := range ws {
		w.transport, w.rid, w.ip = audit.TransportHTTP, r.sent, ip
		sc.expect(w)
	}
}

// freshIP is a client address no call used yet (logins are limited to two
// a minute per client IP).
func (sc *scenario) freshIP() string {
	sc.ips++
	return fmt.Sprintf("10.9.%d.%d", sc.ips/200, 1+sc.ips%200)
}

type loginAnswer struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
}

// sid is the session id of an access token (its sid claim).
func sid(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT")
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		SID string `json:"sid"`
	}
	if err := json.Unmarshal(b, &c); err != nil || c.SID == "" {
		t.Fatalf("no sid claim: %v", err)
	}
	return c.SID
}

func (sc *scenario) login(t *testing.T, user, pw string) loginAnswer {
	t.Helper()
	r := sc.http(t, sc.a.url, "POST", "/login", "", sc.freshIP(), map[string]string{"username": user, "password": pw}, 200,
		want{action: audit.ActionLogin, outcome: audit.Success, actor: "user:" + user})
	var p loginAnswer
	r.JSON(t, &p)
	sc.a.secret("access token of "+user, p.AccessToken)
	sc.a.secret("refresh token of "+user, p.RefreshToken)
	return p
}

func idOf(t *testing.T, r reply) string {
	t.Helper()
	var v struct {
		ID string `json:"id"`
	}
	r.JSON(t, &v)
	if v.ID == "" {
		t.Fatalf("no id in %s", r.Body)
	}
	return v.ID
}

// wsRefused makes a handshake that must be refused with status, sending
// request id rid from client ip; it returns the answer's X-Request-ID.
func (sc *scenario) wsRefused(t *testing.T, h http.Header, ip, rid string, status int) string {
	t.Helper()
	h = h.Clone()
	h.Set("X-Forwarded-For", ip)
	if rid != "" {
		h.Set(httpx.RequestIDHeader, rid)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, res, err := wstest.Dial(ctx, sc.a.wsURL, wstest.Options{Header: h})
	if err == nil {
		c.Close()
		t.Fatalf("handshake %v accepted, want %d", h, status)
	}
	if res == nil || res.StatusCode != status {
		t.Fatalf("handshake: %v %v, want %d", res, err, status)
	}
	return res.Header.Get(httpx.RequestIDHeader)
}

// run drives the events of SPEC §9 through the auth API, the REST API, the
// WebSocket handshake and MQTT CONNECT.
func (sc *scenario) run(t *testing.T) {
	a := sc.a
	authURL, gw := a.url, a.gwURL
	const ipAdmin, ipAlice, ipBob, ipDave, ipCarol = "198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4", "198.51.100.5"

	// The admin created at start-up: the server itself.
	sc.expect(want{action: audit.ActionUserCreate, outcome: audit.Success, target: "admin", actor: "operator:cli", transport: audit.TransportSystem})
	admin := sc.login(t, "admin", a.adminPW)

	// Registration (approval), a login refused until verified, verification.
	pws := map[string]string{}
	for _, u := range []struct{ name, ip string }{{"alice", ipAlice}, {"bob", ipBob}, {"dave", ipDave}, {"carol", ipCarol}} {
		pws[u.name] = a.secret("password of "+u.name, "pw-"+u.name+"-"+e2etest.RandomHex(6))
		sc.http(t, authURL, "POST", "/register", "", u.ip, map[string]string{"username": u.name, "password": pws[u.name]}, 201,
			want{action: audit.ActionRegister, outcome: audit.Success, target: u.name, actor: "user:" + u.name})
	}
	sc.http(t, authURL, "POST", "/login", "", sc.freshIP(), map[string]string{"username": "alice", "password": pws["alice"]}, 403,
		want{action: audit.ActionLogin, outcome: audit.Failure, actor: "user:alice"})
	for _, u := range []string{"alice", "bob", "dave", "carol"} {
		sc.http(t, authURL, "POST", "/admin/users/"+u+"/verify", admin.AccessToken, ipAdmin, nil, 200,
			want{action: audit.ActionUserVerify, outcome: audit.Success, target: u, actor: "user:admin"})
	}
	alice := sc.login(t, "alice", pws["alice"])
	bob := sc.login(t, "bob", pws["bob"])
	dave := sc.login(t, "dave", pws["dave"])
	// A verification by someone who is not an administrator.
	sc.http(t, authURL, "POST", "/admin/users/dave/verify", bob.AccessToken, ipBob, nil, 403,
		want{action: audit.ActionUserVerify, outcome: audit.Failure, target: "dave", actor: "user:bob"})

	// Login failures: an unknown user, a wrong password, then the client
	// IP's limit (RATE_LIMIT_LOGIN_PER_MINUTE=2: the third attempt).
	const ipFlood = "203.0.113.9"
	sc.http(t, authURL, "POST", "/login", "", ipFlood, map[string]string{"username": "nobody", "password": a.secret("a wrong password", "whatever-1234")}, 401,
		want{action: audit.ActionLogin, outcome: audit.Failure})
	sc.http(t, authURL, "POST", "/login", "", ipFlood, map[string]string{"username": "alice", "password": a.secret("a wrong password", "not-alices-password")}, 401,
		want{action: audit.ActionLogin, outcome: audit.Failure})
	sc.http(t, authURL, "POST", "/login", "", ipFlood, map[string]string{"username": "alice", "password": pws["alice"]}, 429,
		want{action: audit.ActionLogin, outcome: audit.Failure})

	// Disabling: refused to a non-admin, done by the admin; the disabled
	// account's login is refused.
	sc.http(t, authURL, "POST", "/admin/users/carol/disable", dave.AccessToken, ipDave, nil, 403,
		want{action: audit.ActionUserDisable, outcome: audit.Failure, target: "carol", actor: "user:dave"})
	sc.http(t, authURL, "POST", "/admin/users/carol/disable", admin.AccessToken, ipAdmin, nil, 200,
		want{action: audit.ActionUserDisable, outcome: audit.Success, target: "carol", actor: "user:admin"})
	sc.http(t, authURL, "POST", "/login", "", sc.freshIP(), map[string]string{"username": "carol", "password": pws["carol"]}, 403,
		want{action: audit.ActionLogin, outcome: audit.Failure, actor: "user:carol"})

	// Refresh: a rotation is not an event, presenting the rotated token
	// again is (and ends the session).
	r := sc.http(t, authURL, "POST", "/token/refresh", "", ipAlice, map[string]string{"refresh_token": alice.RefreshToken}, 200)
	var rotated loginAnswer
	r.JSON(t, &rotated)
	a.secret("rotated access token", rotated.AccessToken)
	a.secret("rotated refresh token", rotated.RefreshToken)
	sc.http(t, authURL, "POST", "/token/refresh", "", ipAlice, map[string]string{"refresh_token": alice.RefreshToken}, 401,
		want{action: audit.ActionTokenReuse, outcome: audit.Failure, target: sid(t, alice.AccessToken), actor: "user:alice"})

	// Logout.
	bob2 := sc.login(t, "bob", pws["bob"])
	sc.http(t, authURL, "POST", "/logout", bob2.AccessToken, ipBob, nil, 204,
		want{action: audit.ActionLogout, outcome: audit.Success, target: sid(t, bob2.AccessToken), actor: "user:bob"})

	// Password change: a wrong current password, then a good change.
	alice = sc.login(t, "alice", pws["alice"])
	sc.http(t, authURL, "POST", "/me/password", alice.AccessToken, ipAlice, map[string]string{"current_password": a.secret("a wrong current password", "wrong-current-pw"), "new_password": a.secret("a refused new password", "irrelevant-new-pw")}, 403,
		want{action: audit.ActionPasswordChange, outcome: audit.Failure, target: "alice", actor: "user:alice"})
	newPW := a.secret("alice's new password", "pw-alice-new-"+e2etest.RandomHex(6))
	sc.http(t, authURL, "POST", "/me/password", alice.AccessToken, ipAlice, map[string]string{"current_password": pws["alice"], "new_password": newPW}, 204,
		want{action: audit.ActionPasswordChange, outcome: audit.Success, target: "alice", actor: "user:alice"})

	// Devices: registered (its channel made with it), refused to others,
	// rotated, revoked.
	r = sc.http(t, authURL, "POST", "/devices", alice.AccessToken, ipAlice, map[string]string{"name": "sensor", "device_id": "dev-1"}, 201,
		want{action: audit.ActionDeviceRegister, outcome: audit.Success, target: "dev-1", actor: "user:alice"},
		want{action: audit.ActionChannelCreate, outcome: audit.Success, target: "device:dev-1", actor: "user:alice"})
	var dev struct {
		APIKey string `json:"api_key"`
	}
	r.JSON(t, &dev)
	a.secret("device API key", dev.APIKey)
	sc.http(t, authURL, "POST", "/devices", bob.AccessToken, ipBob, map[string]string{"name": "x", "device_id": "dev-2", "owner": "alice"}, 403,
		want{action: audit.ActionDeviceRegister, outcome: audit.Failure, target: "dev-2", actor: "user:bob"})
	sc.http(t, authURL, "POST", "/devices/dev-1/rotate-key", bob.AccessToken, ipBob, nil, 404,
		want{action: audit.ActionDeviceRotate, outcome: audit.Failure, target: "dev-1", actor: "user:bob"})
	r = sc.http(t, authURL, "POST", "/devices/dev-1/rotate-key", alice.AccessToken, ipAlice, nil, 200,
		want{action: audit.ActionDeviceRotate, outcome: audit.Success, target: "dev-1", actor: "user:alice"})
	var rot struct {
		APIKey string `json:"api_key"`
	}
	r.JSON(t, &rot)
	a.secret("rotated device API key", rot.APIKey)
	sc.http(t, authURL, "DELETE", "/devices/dev-1", bob.AccessToken, ipBob, nil, 404,
		want{action: audit.ActionDeviceRevoke, outcome: audit.Failure, target: "dev-1", actor: "user:bob"})
	sc.http(t, authURL, "DELETE", "/devices/dev-1", alice.AccessToken, ipAlice, nil, 204,
		want{action: audit.ActionDeviceRevoke, outcome: audit.Success, target: "dev-1", actor: "user:alice"})

	// Channels and memberships on the REST API.
	r = sc.http(t, gw, "POST", "/api/v1/channels", alice.AccessToken, ipAlice, map[string]any{"name": "general", "kind": "public"}, 201)
	general := idOf(t, r)
	sc.after(r, ipAlice, want{action: audit.ActionChannelCreate, outcome: audit.Success, target: general, actor: "user:alice"})
	r = sc.http(t, gw, "POST", "/api/v1/channels", alice.AccessToken, ipAlice, map[string]any{"name": "team", "kind": "private", "members": []string{"bob"}}, 201)
	team := idOf(t, r)
	sc.after(r, ipAlice, want{action: audit.ActionChannelCreate, outcome: audit.Success, target: team, actor: "user:alice"},
		want{action: audit.ActionMemberAdd, outcome: audit.Success, target: team, actor: "user:alice", details: map[string]string{"user": "bob", "role": "member"}})
	sc.http(t, gw, "POST", "/api/v1/channels/"+team+"/join", bob.AccessToken, ipBob, nil, 200) // accepts the invitation: no change of membership
	sc.http(t, gw, "PUT", "/api/v1/channels/"+team+"/members/dave", bob.AccessToken, ipBob, map[string]string{}, 403,
		want{action: audit.ActionMemberAdd, outcome: audit.Failure, target: team, actor: "user:bob", details: map[string]string{"user": "dave"}})
	sc.http(t, gw, "PUT", "/api/v1/channels/"+team+"/members/dave", alice.AccessToken, ipAlice, map[string]string{"role": "admin"}, 200,
		want{action: audit.ActionMemberAdd, outcome: audit.Success, target: team, actor: "user:alice", details: map[string]string{"user": "dave", "role": "admin"}})
	sc.http(t, gw, "PUT", "/api/v1/channels/"+team+"/members/dave", alice.AccessToken, ipAlice, map[string]string{"role": "member"}, 200,
		want{action: audit.ActionMemberRole, outcome: audit.Success, target: team, actor: "user:alice", details: map[string]string{"user": "dave", "role": "member"}})
	sc.http(t, gw, "DELETE", "/api/v1/channels/"+team+"/members/dave", alice.AccessToken, ipAlice, nil, 204,
		want{action: audit.ActionMemberRemove, outcome: audit.Success, target: team, actor: "user:alice", details: map[string]string{"user": "dave"}})
	sc.http(t, gw, "POST", "/api/v1/channels/"+general+"/join", dave.AccessToken, ipDave, nil, 200,
		want{action: audit.ActionMemberJoin, outcome: audit.Success, target: general, actor: "user:dave", details: map[string]string{"user": "dave"}})
	sc.http(t, gw, "POST", "/api/v1/channels/"+general+"/leave", dave.AccessToken, ipDave, nil, 204,
		want{action: audit.ActionMemberLeave, outcome: audit.Success, target: general, actor: "user:dave", details: map[string]string{"user": "dave"}})

	// Messages: deleted by the channel's owner (an event), by their author
	// (none), refused to a member who is neither.
	m1 := idOf(t, sc.http(t, gw, "POST", "/api/v1/channels/"+team+"/messages", bob.AccessToken, ipBob, map[string]string{"text": "one"}, 201))
	m2 := idOf(t, sc.http(t, gw, "POST", "/api/v1/channels/"+team+"/messages", bob.AccessToken, ipBob, map[string]string{"text": "two"}, 201))
	m3 := idOf(t, sc.http(t, gw, "POST", "/api/v1/channels/"+team+"/messages", alice.AccessToken, ipAlice, map[string]string{"text": "three"}, 201))
	sc.http(t, gw, "DELETE", "/api/v1/channels/"+team+"/messages/"+m1, alice.AccessToken, ipAlice, nil, 200,
		want{action: audit.ActionMessageDelete, outcome: audit.Success, target: team, actor: "user:alice", details: map[string]string{"message": m1, "author": "user:bob"}})
	sc.http(t, gw, "DELETE", "/api/v1/channels/"+team+"/messages/"+m2, bob.AccessToken, ipBob, nil, 200)
	sc.http(t, gw, "DELETE", "/api/v1/channels/"+team+"/messages/"+m3, bob.AccessToken, ipBob, nil, 403,
		want{action: audit.ActionMessageDelete, outcome: audit.Failure, target: team, actor: "user:bob", details: map[string]string{"message": m3, "author": "user:alice"}})

	// Channel deletion: refused to a member, done by the owner.
	sc.http(t, gw, "DELETE", "/api/v1/channels/"+team, bob.AccessToken, ipBob, nil, 403,
		want{action: audit.ActionChannelDelete, outcome: audit.Failure, target: team, actor: "user:bob"})
	sc.http(t, gw, "DELETE", "/api/v1/channels/"+general, alice.AccessToken, ipAlice, nil, 204,
		want{action: audit.ActionChannelDelete, outcome: audit.Success, target: general, actor: "user:alice"})

	// WebSocket handshakes refused: a bad credential, another origin, over
	// the per-user limit (MAX_CONNECTIONS_PER_USER=1).
	refusedWS := func(reason, cause, actor, ip string, h http.Header, status int) {
		t.Helper()
		rid := a.reqID()
		if got := sc.wsRefused(t, h, ip, rid, status); got != rid {
			t.Fatalf("refused handshake answered X-Request-ID %q, want %q", got, rid)
		}
		w := want{action: audit.ActionConnectionRefused, outcome: audit.Failure, actor: actor, transport: audit.TransportWebSocket, rid: rid, ip: ip,
			details: map[string]string{"transport": "websocket", "cause": cause}}
		if actor == "" {
			w.actor = ":" // nobody: the zero principal
		}
		sc.expect(w)
		_ = reason
	}
	bogus := a.secret("bogus access token", "eyJhbGciOiJIUzI1NiJ9."+e2etest.RandomHex(20)+"."+e2etest.RandomHex(20))
	refusedWS(audit.RefusedAuth, "unauthorized", "", "192.0.2.10", http.Header{"Sec-WebSocket-Protocol": {"unhidra.v1, bearer." + bogus}}, 401)
	refusedWS(audit.RefusedOrigin, "origin", "", "192.0.2.11", http.Header{"Origin": {"https://evil.example"}, "Sec-WebSocket-Protocol": {"unhidra.v1, bearer." + dave.AccessToken}}, 403)
	live := e2etest.DialWS(t, a.wsURL, "unhidra.v1, bearer."+dave.AccessToken)
	defer live.Close()
	refusedWS(audit.RefusedLimit, "user_limit", "user:dave", "192.0.2.12", http.Header{"Sec-WebSocket-Protocol": {"unhidra.v1, bearer." + dave.AccessToken}}, 429)

	// MQTT: a CONNECT with a bad credential (a revoked device's key).
	if m, code, _ := e2etest.DialMQTT(t, a.mqtt, "bad-client", "dev-1", rot.APIKey); m != nil || code == 0 {
		t.Fatalf("MQTT CONNECT with a revoked key: accepted (code 0x%02x)", code)
	}
	sc.expect(want{action: audit.ActionConnectionRefused, outcome: audit.Failure, transport: audit.TransportMQTT, rid: "mqtt_*", ip: "127.0.0.1",
		details: map[string]string{"transport": "mqtt", "cause": "credentials"}})
}

// waitEvents waits until the tap holds n events (the MQTT refusal is
// recorded on the broker's goroutine) or a while has passed.
func waitEvents(tap *auditTap, n int) []audit.Event {
	deadline := time.Now().Add(5 * time.Second)
	for {
		evs := tap.events()
		if len(evs) >= n || time.Now().After(deadline) {
			time.Sleep(200 * time.Millisecond) // and nothing more arrives
			return tap.events()
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TESTPLAN AUD-4: every event listed in SPEC §9 produces exactly one
// record, with its outcome, its transport, its request id (the one the
// client sent, on HTTP and WebSocket) and its client IP; nothing else is
// recorded.
func TestEveryAuditedEventIsRecordedOnce(t *testing.T) {
	a := startAuditStack(t, nil)
	sc := &scenario{a: a}
	sc.run(t)
	evs := waitEvents(a.tap, len(sc.wants))

	used := make([]bool, len(evs))
	for _, w := range sc.wants {
		found := false
		for i, e := range evs {
			if !used[i] && w.matches(e) {
				used[i], found = true, true
				break
			}
		}
		if !found {
			t.Errorf("no event %v", w)
		}
	}
	for i, e := range evs {
		if !used[i] {
			t.Errorf("unexpected event %s", show(e))
		}
		if e.Transport == "" || (e.RequestID == "" && e.Transport != audit.TransportSystem) {
			t.Errorf("event without its edge: %s", show(e))
		}
	}
	// Each expected event was matched by a distinct one, and no event is
	// left over: exactly one each.
	if len(evs) != len(sc.wants) {
		t.Errorf("%d events recorded, want %d", len(evs), len(sc.wants))
	}
	if t.Failed() {
		var all []string
		for _, e := range evs {
			all = append(all, show(e))
		}
		sort.Strings(all)
		t.Logf("recorded:\n%s", strings.Join(all, "\n"))
	}
}

// No password, access or refresh token, or device API key used in the
// audited flows (nor a client's mistyped one) is in any field of any
// event, as it is, in hex or in base64.
func TestNoSecretInAnyAuditEvent(t *testing.T) {
	a := startAuditStack(t, nil)
	sc := &scenario{a: a}
	sc.run(t)
	// Secrets typed where names go: a password and a refresh token as a
	// login name, a device key as an MQTT user name, a token as a
	// registration name.
	pwAsName := a.secret("password typed as a username", "tr0ub4dor-"+e2etest.RandomHex(8))
	a.do(t, a.url, "POST", "/login", "", "203.0.113.20", "", map[string]string{"username": pwAsName, "password": "x-password-1"})
	rt := a.secret("refresh token typed as a username", "unhidra_rt_"+e2etest.RandomHex(16))
	a.do(t, a.url, "POST", "/login", "", "203.0.113.21", "", map[string]string{"username": rt, "password": "x-password-1"})
	key := a.secret("device key typed as an MQTT user", "unhidra_dk_"+e2etest.RandomHex(16))
	_, _, _ = e2etest.DialMQTT(t, a.mqtt, "mistyped", key, key)
	// The refresh token is no valid username (refused as bad input, not
	// audited); the password-shaped name and the MQTT CONNECT are events.
	evs := waitEvents(a.tap, len(sc.wants)+2)
	if len(evs) < len(sc.wants)+2 {
		t.Fatalf("%d events, want at least %d", len(evs), len(sc.wants)+2)
	}
	for _, e := range evs {
		fields := []string{e.Action, e.Actor.Kind, e.Actor.ID, e.Target, e.IP, e.Outcome, e.Reason, e.Transport, e.RequestID}
		for k, v := range e.Details {
			fields = append(fields, k, v)
		}
		rec := strings.Join(fields, "\x00")
		for s, what := range a.secrets {
			for _, form := range []string{s, hex.EncodeToString([]byte(s)), base64.StdEncoding.EncodeToString([]byte(s)), base64.RawURLEncoding.EncodeToString([]byte(s))} {
				if strings.Contains(rec, form) || strings.Contains(strings.ToLower(rec), strings.ToLower(form)) {
					t.Errorf("a %s is in the audit event %s", what, show(e))
				}
			}
		}
	}
}

// A client's valid X-Request-ID is answered back (auth API, REST API,
// WebSocket handshake, accepted or refused) and is the request id of the
// audit event the request caused; an invalid one (too long, a space, a
// slash) is replaced by a generated one, which is answered and recorded
// instead.
func TestRequestIDIsEchoedAndLandsInTheAuditEvent(t *testing.T) {
	a := startAuditStack(t, map[string]string{"RATE_LIMIT_LOGIN_PER_MINUTE": "100"})
	lastEvent := func(action string) audit.Event {
		t.Helper()
		evs := a.tap.events()
		for i := len(evs) - 1; i >= 0; i-- {
			if evs[i].Action == action {
				return evs[i]
			}
		}
		t.Fatalf("no %s event", action)
		return audit.Event{}
	}
	check := func(what, sent, answered string, e audit.Event) {
		t.Helper()
		valid := httpx.ValidRequestID(sent)
		switch {
		case valid && answered != sent:
			t.Errorf("%s: sent %q, answered %q", what, sent, answered)
		case !valid && (answered == sent || !httpx.ValidRequestID(answered)):
			t.Errorf("%s: sent the invalid %q, answered %q (want a new valid id)", what, sent, answered)
		}
		if e.RequestID != answered {
			t.Errorf("%s: event request id %q, answered %q", what, e.RequestID, answered)
		}
	}
	pw := a.adminPW
	var token string
	for i, sent := range []string{"client-id.1", strings.Repeat("x", 65), "bad id", "a/b"} {
		r := a.do(t, a.url, "POST", "/login", "", fmt.Sprintf("198.51.100.%d", 10+i), sent, map[string]string{"username": "admin", "password": pw})
		if r.Status != 200 {
			t.Fatalf("login: %d %s", r.Status, r.Body)
		}
		var p loginAnswer
		r.JSON(t, &p)
		token = a.secret("admin access token", p.AccessToken)
		a.secret("admin refresh token", p.RefreshToken)
		check("login with "+sent, sent, r.Header.Get(httpx.RequestIDHeader), lastEvent(audit.ActionLogin))

		r = a.do(t, a.gwURL, "POST", "/api/v1/channels", token, "198.51.100.50", sent, map[string]any{"name": fmt.Sprintf("c%d", i), "kind": "public"})
		if r.Status != 201 {
			t.Fatalf("create channel: %d %s", r.Status, r.Body)
		}
		check("REST call with "+sent, sent, r.Header.Get(httpx.RequestIDHeader), lastEvent(audit.ActionChannelCreate))

		h := http.Header{"Sec-WebSocket-Protocol": {"unhidra.v1, bearer.not-a-token-" + e2etest.RandomHex(8)}}
		rid := (&scenario{a: a}).wsRefused(t, h, "192.0.2.20", sent, 401)
		check("refused handshake with "+sent, sent, rid, lastEvent(audit.ActionConnectionRefused))
	}
	// An accepted handshake answers the id in its 101.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, res, err := wstest.Dial(ctx, a.wsURL, wstest.Options{Header: http.Header{"Sec-WebSocket-Protocol": {"unhidra.v1, bearer." + token}, httpx.RequestIDHeader: {"ws-ok-1"}}})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if got := res.Header.Get(httpx.RequestIDHeader); got != "ws-ok-1" {
		t.Fatalf("101 answered X-Request-ID %q, want ws-ok-1", got)
	}
}

// The administration commands (user create/verify/disable/set-password,
// device register/revoke) each append one record to the server's audit
// log, by the operator, over the command line, with a request id of their
// own, and with no password or key in it.
func TestAdminCommandsAreAuditedOnceAsTheOperator(t *testing.T) {
	s := startServer(t, map[string]string{"REGISTRATION": "approval"}, cheapHash)
	pw := e2etest.Secret("password set by the CLI", "cli-pw-"+e2etest.RandomHex(8))
	pw2 := e2etest.Secret("password reset by the CLI", "cli-pw2-"+e2etest.RandomHex(8))
	e2etest.WantStatus(t, s.call(t, "POST", "/register", "", map[string]string{"username": "erin", "password": pw}), 201, "register erin")
	out := map[string]string{}
	for _, c := range []struct {
		stdin string
		args  []string
	}{
		{pw + "\n", []string{"user", "create", "frank", "--password-stdin"}},
		{"", []string{"user", "verify", "erin"}},
		{pw2 + "\n", []string{"user", "set-password", "erin", "--password-stdin"}},
		{"", []string{"device", "register", "probe", "--owner", "frank", "--id", "probe-1"}},
		{"", []string{"device", "revoke", "probe-1"}},
		{"", []string{"user", "disable", "erin"}},
	} {
		o, err := s.cli(t, c.stdin, c.args...)
		if err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		out[strings.Join(c.args[:2], " ")] = o
	}
	key := ""
	for _, l := range strings.Split(out["device register"], "\n") {
		if k, ok := strings.CutPrefix(l, "api_key: "); ok {
			key = e2etest.Secret("device key of the CLI", k)
		}
	}
	if key == "" {
		t.Fatalf("no key printed: %q", out["device register"])
	}

	ctx := context.Background()
	cfg, err := config.Load(nil, s.getenv)
	if err != nil {
		t.Fatal(err)
	}
	b, err := platform.OpenBackend(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	rows, err := b.Audit.AuditRows(ctx, audit.Query{After: -1, Before: -1, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{ // action → target
		audit.ActionUserCreate:     "frank",
		audit.ActionUserVerify:     "erin",
		audit.ActionPasswordChange: "erin",
		audit.ActionDeviceRegister: "probe-1",
		audit.ActionDeviceRevoke:   "probe-1",
		audit.ActionUserDisable:    "erin",
	}
	got := map[string]int{}
	ids := map[string]bool{}
	for _, row := range rows {
		rec, err := audit.DecodeRecord(row.Entry)
		if err != nil {
			t.Fatal(err)
		}
		for _, sec := range []string{pw, pw2, key} {
			if strings.Contains(string(row.Entry), sec) {
				t.Errorf("a secret is in the record %s", row.Entry)
			}
		}
		if rec.Transport != audit.TransportCLI {
			continue
		}
		if rec.Action == audit.ActionChannelCreate {
			// The device channel registering a device makes, for its owner.
			if rec.Target != "device:probe-1" || rec.RequestID == "" {
				t.Errorf("CLI record %s", row.Entry)
			}
			continue
		}
		if rec.Actor.Principal().String() != "operator:cli" || rec.Outcome != audit.Success || want[rec.Action] != rec.Target || rec.RequestID == "" || rec.IP != "" {
			t.Errorf("CLI record %s", row.Entry)
		}
		got[rec.Action]++
		ids[rec.RequestID] = true
	}
	for action := range want {
		if got[action] != 1 {
			t.Errorf("%s recorded %d times over the command line, want once", action, got[action])
		}
	}
	if len(ids) != len(want) {
		t.Errorf("%d request ids for %d commands", len(ids), len(want))
	}
}
