package httpapi_test

// The OpenAPI document against the real servers: every operation it names
// is driven through the auth API and the REST API (real services, real
// SQLite), successes and refusals alike, and every answer is checked
// against the document by internal/openapitest. A route the document does
// not name, a status it does not list for the route, or a body that does
// not match its schema fails the test; so does an operation of the
// document that this test never reached.

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/auth"
	"github.com/unhidra/unhidra/internal/device"
	"github.com/unhidra/unhidra/internal/httpapi"
	"github.com/unhidra/unhidra/internal/openapitest"
	"github.com/unhidra/unhidra/internal/ratelimit"
)

// contract sends requests, checks each exchange against the document and
// records which operations were exercised.
type contract struct {
	t    *testing.T
	seen map[string]bool
}

// call sends one request to base (a server's URL) and returns the answer's
// body; the status must be want. body is nil, a string sent as is, or a
// value sent as JSON.
func (c *contract) call(base, method, path, token string, body any, want int) []byte {
	c.t.Helper()
	var raw []byte
	switch b := body.(type) {
	case nil:
	case string:
		raw = []byte(b)
	default:
		var err error
		if raw, err = json.Marshal(b); err != nil {
			c.t.Fatal(err)
		}
	}
	var rd io.Reader
	if raw != nil {
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if raw != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	got, _ := io.ReadAll(res.Body)
	if res.StatusCode != want {
		c.t.Errorf("%s %s: got %d %s, want %d", method, path, res.StatusCode, got, want)
	}
	openapitest.Check(c.t, req, raw, res, got)
	if op, err := openapitest.Operation(method, path); err == nil {
		c.seen[op] = true
	}
	return got
}

func decodeInto(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
}

func TestEveryRouteAnswersAsTheOpenAPIDocumentSays(t *testing.T) {
	e := newDeviceHTTPEnv(t)
	c := &contract{t: t, seen: map[string]bool{}}
	ctx := context.Background()
	au, gw := e.auth.srv.URL, e.api.srv.URL
	const p = httpapi.APIPrefix

	// Operations.
	c.call(au, "GET", "/health", "", nil, 200)
	c.call(gw, "GET", p+"/openapi.json", "", nil, 200)
	c.call(au, "GET", "/debug/password-params", "", nil, 200)
	c.call(au, "GET", "/internal/ml/health", "", nil, 200)
	c.call(au, "GET", "/ready", "", nil, 200)
	e.auth.draining.Store(true)
	c.call(au, "GET", "/ready", "", nil, 503)
	e.auth.draining.Store(false)

	// Accounts and sessions.
	c.call(au, "POST", "/register", "", map[string]string{"username": "bob", "password": "bob password", "display_name": "Bob"}, 201)
	c.call(au, "POST", "/register", "", map[string]string{"username": "BOB", "password": "bob password"}, 409)
	c.call(au, "POST", "/register", "", map[string]string{"username": "x", "password": "bob password"}, 400)
	c.call(au, "POST", "/register", "", `{"username":"big","password":"`+strings.Repeat("p", httpapi.MaxJSONBody)+`"}`, 413)
	c.call(au, "POST", "/register", "", map[string]string{"username": "dora", "password": "dora password"}, 201)
	var pair auth.TokenPair
	decodeInto(t, c.call(au, "POST", "/login", "", map[string]string{"username": "bob", "password": "bob password"}, 200), &pair)
	bob := pair.AccessToken
	c.call(au, "POST", "/login", "", map[string]string{"username": "bob", "password": "wrong password"}, 401)
	c.call(au, "POST", "/login", "", `{"username":`, 400)
	decodeInto(t, c.call(au, "POST", "/token/refresh", "", map[string]string{"refresh_token": pair.RefreshToken}, 200), &pair)
	bob = pair.AccessToken
	c.call(au, "POST", "/token/refresh", "", map[string]string{"refresh_token": "unhidra_rt_forged"}, 401)
	c.call(au, "GET", "/me", bob, nil, 200)
	c.call(au, "GET", "/me", "", nil, 401)
	c.call(au, "PATCH", "/me", bob, map[string]string{"display_name": "Robert"}, 200)
	c.call(au, "PATCH", "/me", bob, map[string]string{}, 400)
	dora := e.auth.login(t, "dora", "dora password").AccessToken
	c.call(au, "POST", "/me/password", dora, map[string]string{"current_password": "dora password", "new_password": "dora new password"}, 204)
	c.call(au, "GET", "/admin/users", e.root, nil, 200)
	c.call(au, "GET", "/admin/users", e.alice, nil, 403)
	c.call(au, "POST", "/admin/users/dora/verify", e.root, nil, 200)
	c.call(au, "POST", "/admin/users/nobody/verify", e.root, nil, 404)
	c.call(au, "POST", "/admin/users/dora/disable", e.root, nil, 200)

	// Devices in the registry.
	var dev struct {
		DeviceID string `json:"device_id"`
		APIKey   string `json:"api_key"`
	}
	decodeInto(t, c.call(au, "POST", "/devices", e.alice, map[string]string{"name": "thermometer", "device_id": "thermo-1"}, 201), &dev)
	c.call(au, "POST", "/devices", e.alice, map[string]string{"name": "again", "device_id": "THERMO-1"}, 409)
	c.call(au, "POST", "/devices", e.alice, map[string]string{"name": "bad", "device_id": "-bad id"}, 400)
	c.call(au, "GET", "/devices", e.alice, nil, 200)
	c.call(au, "GET", "/devices/thermo-1", e.alice, nil, 200)
	c.call(au, "GET", "/devices/thermo-1", dev.APIKey, nil, 200)
	c.call(au, "GET", "/devices/no-such-device", e.alice, nil, 404)
	var rotated struct {
		APIKey string `json:"api_key"`
	}
	decodeInto(t, c.call(au, "POST", "/devices/thermo-1/rotate-key", e.alice, nil, 200), &rotated)
	key := rotated.APIKey

	// Channels and members.
	var ch struct{ ID string }
	decodeInto(t, c.call(gw, "POST", p+"/channels", e.alice, map[string]any{"name": "general", "kind": "public", "topic": "all"}, 201), &ch)
	general := p + "/channels/" + url.PathEscape(ch.ID)
	c.call(gw, "POST", p+"/channels", e.alice, map[string]any{"name": "x", "kind": "weird"}, 400)
	c.call(gw, "POST", p+"/channels", key, map[string]any{"name": "x", "kind": "public"}, 403)
	c.call(gw, "POST", p+"/channels", "", map[string]any{"name": "x", "kind": "public"}, 401)
	c.call(gw, "POST", p+"/channels", e.alice, map[string]any{"kind": "direct", "members": []string{"bob"}}, 201)
	c.call(gw, "POST", p+"/channels", e.alice, map[string]any{"kind": "direct", "members": []string{"bob"}}, 200)
	decodeInto(t, c.call(gw, "POST", p+"/channels", e.alice, map[string]any{"name": "secret", "kind": "private", "members": []string{"bob"}}, 201), &ch)
	secret := p + "/channels/" + url.PathEscape(ch.ID)
	c.call(gw, "GET", p+"/channels", e.alice, nil, 200)
	c.call(gw, "GET", p+"/channels", key, nil, 200)
	c.call(gw, "GET", general, e.alice, nil, 200)
	c.call(gw, "GET", p+"/channels/nothing-here", e.alice, nil, 403) // no leak of whether it exists
	c.call(gw, "PATCH", general, e.alice, map[string]any{"topic": "everyone"}, 200)
	c.call(gw, "PATCH", general, e.alice, map[string]any{}, 400)
	c.call(gw, "GET", secret+"/members", e.alice, nil, 200)
	c.call(gw, "GET", secret+"/members", e.root, nil, 403)
	c.call(gw, "POST", secret+"/accept", bob, nil, 200)
	c.call(gw, "PUT", secret+"/members/root", e.alice, map[string]string{"role": "admin"}, 200)
	c.call(gw, "PUT", secret+"/members/root", e.alice, map[string]string{"role": "emperor"}, 400)
	c.call(gw, "DELETE", secret+"/members/root", e.alice, nil, 204)
	c.call(gw, "POST", general+"/join", bob, nil, 200)
	c.call(gw, "POST", secret+"/join", e.root, nil, 403)
	c.call(gw, "POST", general+"/leave", e.alice, nil, 409) // the only owner, and bob stays
	c.call(gw, "POST", general+"/leave", bob, nil, 204)

	// Messages, threads, search.
	var msg struct{ ID string }
	decodeInto(t, c.call(gw, "POST", general+"/messages", e.alice, map[string]any{"text": "hello world", "client_msg_id": "c-1"}, 201), &msg)
	c.call(gw, "POST", general+"/messages", e.alice, map[string]any{"text": "hello world", "client_msg_id": "c-1"}, 200)
	c.call(gw, "POST", general+"/messages", e.alice, map[string]any{"data": map[string]any{"n": 1}}, 201)
	c.call(gw, "POST", general+"/messages", e.alice, map[string]any{"text": "reply", "thread_id": msg.ID}, 201)
	c.call(gw, "POST", general+"/messages", e.alice, map[string]any{"text": "a", "data": 1}, 400)
	c.call(gw, "POST", secret+"/messages", e.root, map[string]any{"text": "let me in"}, 403)
	c.call(gw, "GET", general+"/messages", e.alice, nil, 200)
	c.call(gw, "GET", general+"/messages?after=1&limit=2", key, nil, 403)
	c.call(gw, "GET", general+"/messages?limit=0", e.alice, nil, 400)
	c.call(gw, "GET", general+"/messages/"+msg.ID+"/thread", e.alice, nil, 200)
	c.call(gw, "GET", general+"/messages/no-such-message/thread", e.alice, nil, 404)
	c.call(gw, "GET", p+"/search?q=hello", e.alice, nil, 200)
	c.call(gw, "GET", p+"/search?q=hello", key, nil, 403)
	var edit struct{ ID string }
	decodeInto(t, c.call(gw, "POST", general+"/messages", e.alice, map[string]any{"text": "tpyo"}, 201), &edit)
	c.call(gw, "PATCH", general+"/messages/"+edit.ID, e.alice, map[string]any{"text": "typo"}, 200)
	c.call(gw, "PATCH", general+"/messages/"+edit.ID, bob, map[string]any{"text": "mine now"}, 403)
	c.call(gw, "DELETE", general+"/messages/"+edit.ID, e.alice, nil, 200)
	c.call(gw, "PATCH", general+"/messages/"+edit.ID, e.alice, map[string]any{"text": "back"}, 409)

	// Presence, connections, blocks.
	c.call(gw, "GET", p+"/presence?user=alice&user=bob", e.alice, nil, 200)
	c.call(gw, "GET", p+"/presence", e.alice, nil, 400)
	c.call(gw, "GET", p+"/admin/connections", e.root, nil, 200)
	c.call(gw, "GET", p+"/admin/connections", e.alice, nil, 403)
	c.call(gw, "POST", p+"/users/bob/block", e.alice, nil, 200)
	c.call(gw, "GET", p+"/blocks", e.alice, nil, 200)
	c.call(gw, "DELETE", p+"/users/bob/block", e.alice, nil, 204)

	// Device telemetry and commands.
	who, err := e.auth.devices.AuthenticateDeviceKey(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	seq := int64(7)
	if _, err := e.fleet.Telemetry(ctx, who, device.TelemetryPoint{Data: json.RawMessage(`{"t":21.5}`), Seq: &seq}); err != nil {
		t.Fatal(err)
	}
	thermo := p + "/devices/thermo-1"
	c.call(gw, "GET", thermo+"/telemetry", e.alice, nil, 200)
	c.call(gw, "GET", thermo+"/telemetry?since="+url.QueryEscape(time.Now().Add(-time.Hour).UTC().Format(time.RFC3339))+"&limit=10", key, nil, 200)
	c.call(gw, "GET", thermo+"/telemetry?since=yesterday", e.alice, nil, 400)
	c.call(gw, "GET", thermo+"/telemetry", bob, nil, 403)
	var cmd struct {
		ID string `json:"command_id"`
	}
	decodeInto(t, c.call(gw, "POST", thermo+"/commands", e.alice, map[string]any{"name": "ping", "params": map[string]int{"n": 1}, "timeout_s": 30}, 202), &cmd)
	c.call(gw, "POST", thermo+"/commands", e.alice, map[string]any{"name": "ping", "timeout_s": 0}, 400)
	c.call(gw, "GET", thermo+"/commands/"+cmd.ID, key, nil, 200)
	c.call(gw, "GET", thermo+"/commands/no-such-command", e.alice, nil, 404)

	// Ends.
	c.call(gw, "DELETE", secret, bob, nil, 403)
	c.call(gw, "DELETE", secret, e.alice, nil, 204)
	c.call(au, "DELETE", "/devices/thermo-1", e.alice, nil, 204)
	c.call(au, "DELETE", "/devices/thermo-1", bob, nil, 404)
	c.call(gw, "POST", thermo+"/commands", e.alice, map[string]any{"name": "ping"}, 409)
	c.call(au, "POST", "/logout", bob, nil, 204)
	c.call(au, "GET", "/me", bob, nil, 401)

	// /metrics and a 429, from an auth API that has both.
	limited := newAuthEnv(t, authEnvOpts{requestLimit: ratelimit.NewWindowLimiter(1, time.Minute, time.Now)})
	c.call(limited.srv.URL, "GET", "/metrics", "", nil, 200)
	c.call(limited.srv.URL, "POST", "/login", "", map[string]string{"username": "alice", "password": "alice password"}, 200)
	c.call(limited.srv.URL, "POST", "/login", "", map[string]string{"username": "alice", "password": "alice password"}, 429)

	// The audit log's routes, on an API with an audit service.
	exerciseAuditRoutes(t, c)
	// The E2EE key directory's routes (api_keys_test.go).
	exerciseKeyRoutes(t, c)
	// The encrypted files' routes (api_files_test.go).
	exerciseFileRoutes(t, c)

	ops, err := openapitest.Operations()
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range ops {
		if !c.seen[op] {
			t.Errorf("the document's %s was never exercised", op)
		}
	}
	for op := range c.seen {
		if !slices.Contains(ops, op) {
			t.Errorf("exercised %s, which the document does not have", op)
		}
	}
}

func TestTheServedOpenAPIDocumentIsValidOpenAPI31(t *testing.T) {
	e := newAPIEnv(t)
	res, err := http.Get(e.srv.URL + httpapi.OpenAPIPath)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET %s: %d %s", httpapi.OpenAPIPath, res.StatusCode, res.Header.Get("Content-Type"))
	}
	doc, err := openapitest.Load(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, httpapi.OpenAPI()) {
		t.Error("the served document is not the embedded one")
	}
	if doc.Paths.Find(httpapi.OpenAPIPath) == nil {
		t.Errorf("the document does not describe %s itself", httpapi.OpenAPIPath)
	}
}
