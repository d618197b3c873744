package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/chat"
	"github.com/unhidra/unhidra/internal/httpapi"
	"github.com/unhidra/unhidra/internal/inmem"
	"github.com/unhidra/unhidra/internal/presence"
	"github.com/unhidra/unhidra/internal/sqlite"
	"github.com/unhidra/unhidra/internal/sqlitetest"
	"github.com/unhidra/unhidra/wire"
)

// apiFakeAuth maps bearer credentials to identities: the transport edge.
type apiFakeAuth map[string]unhidra.Identity

func (f apiFakeAuth) AuthenticateToken(_ context.Context, tok string) (unhidra.Identity, error) {
	if id, ok := f[tok]; ok && !id.IsDevice() {
		return id, nil
	}
	return unhidra.Identity{}, unhidra.Errorf(unhidra.EUNAUTHORIZED, "invalid token")
}

func (f apiFakeAuth) AuthenticateDeviceKey(_ context.Context, key string) (unhidra.Identity, error) {
	if id, ok := f[key]; ok && id.IsDevice() {
		return id, nil
	}
	return unhidra.Identity{}, errors.New("no such key")
}

type apiEnv struct {
	t    *testing.T
	srv  *httptest.Server
	chat *chat.Service
	pres *presence.Service
}

const devKey = "unhidra_dk_sensorkey"

func newAPIEnv(t *testing.T) *apiEnv {
	t.Helper()
	ctx := context.Background()
	db := sqlitetest.Open(t)
	st, err := sqlite.NewChatStore(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	bus := inmem.NewBroker()
	svc := chat.NewService(st, bus, chat.Options{})
	pres := presence.NewService(presence.Options{Store: st, Channels: st, Publisher: bus, Peers: st})
	auth := apiFakeAuth{
		"tok-alice": {Principal: wire.Principal{Kind: wire.KindUser, ID: "alice"}},
		"tok-bob":   {Principal: wire.Principal{Kind: wire.KindUser, ID: "bob"}},
		"tok-carol": {Principal: wire.Principal{Kind: wire.KindUser, ID: "carol"}},
		"tok-root":  {Principal: wire.Principal{Kind: wire.KindUser, ID: "root"}, Roles: []string{unhidra.RoleAdmin}},
		devKey:      {Principal: wire.Principal{Kind: wire.KindDevice, ID: "sensor"}},
	}
	h := httpapi.NewAPI(httpapi.APIDeps{
		Chat: svc, Presence: pres, Users: auth, Devices: auth,
		Routes: func(mux *http.ServeMux, user, anyone func(httpapi.APIHandler) http.Handler) {
			mux.Handle("GET /api/v1/devices/{id}/ping", anyone(func(w http.ResponseWriter, r *http.Request, who unhidra.Identity) {
				httpapi.WriteJSON(w, http.StatusOK, map[string]string{"device": r.PathValue("id"), "caller": who.Principal.ID})
			}))
		},
	})
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		srv.Close()
		svc.Wait()
		st.Close()
		db.Close()
	})
	return &apiEnv{t: t, srv: srv, chat: svc, pres: pres}
}

type apiResp struct {
	status int
	header http.Header
	body   []byte
}

func (r apiResp) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

func (r apiResp) code() string {
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	_ = json.Unmarshal(r.body, &e)
	return e.Error.Code
}

// do sends a request; body may be nil, a string (sent raw as JSON) or a
// value to encode.
func (e *apiEnv) do(method, path, token string, body any) apiResp {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	return apiResp{status: res.StatusCode, header: res.Header, body: raw}
}

func (e *apiEnv) mkChannel(token, name, kind string, extra map[string]any) chat.Channel {
	e.t.Helper()
	body := map[string]any{"name": name, "kind": kind}
	for k, v := range extra {
		body[k] = v
	}
	r := e.do("POST", "/api/v1/channels", token, body)
	if r.status != http.StatusCreated {
		e.t.Fatalf("create channel: %d %s", r.status, r.body)
	}
	var ch chat.Channel
	r.decode(e.t, &ch)
	return ch
}

func (e *apiEnv) post(token, ch string, body any) apiResp {
	return e.do("POST", "/api/v1/channels/"+url.PathEscape(ch)+"/messages", token, body)
}

type apiCase struct {
	name   string
	method string
	path   string
	token  string
	body   any
	status int
	code   string
}

func (e *apiEnv) run(t *testing.T, cases []apiCase) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(tc.method, tc.path, tc.token, tc.body)
			if r.status != tc.status {
				t.Fatalf("%s %s: status %d (%s), want %d", tc.method, tc.path, r.status, r.body, tc.status)
			}
			if tc.code != "" && r.code() != tc.code {
				t.Errorf("error code %q, want %q (%s)", r.code(), tc.code, r.body)
			}
			if r.status >= 400 && !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
				t.Errorf("error answered with Content-Type %q", r.header.Get("Content-Type"))
			}
		})
	}
}

func TestAPIAuthentication(t *testing.T) {
	e := newAPIEnv(t)
	e.run(t, []apiCase{
		{"no credential is 401", "GET", "/api/v1/channels", "", nil, 401, "unauthorized"},
		{"an unknown token is 401", "GET", "/api/v1/channels", "nope", nil, 401, "unauthorized"},
		{"an unknown device key is 401", "GET", "/api/v1/channels", "unhidra_dk_wrong", nil, 401, "unauthorized"},
		{"a device key on a user route is 403", "POST", "/api/v1/channels", devKey, map[string]any{"name": "x", "kind": "public"}, 403, "forbidden"},
		{"a device key on search is 403", "GET", "/api/v1/search?q=x", devKey, nil, 403, "forbidden"},
		{"a device lists only its own channels", "GET", "/api/v1/channels", devKey, nil, 200, ""},
		{"an unknown route is a JSON 404", "GET", "/api/v1/nothing/here", "tok-alice", nil, 404, "not_found"},
		{"device telemetry is not served by the chat API", "GET", "/api/v1/devices/sensor/telemetry", "tok-alice", nil, 404, "not_found"},
		{"extra routes plug in through Routes", "GET", "/api/v1/devices/sensor/ping", devKey, nil, 200, ""},
	})
	r := e.do("GET", "/api/v1/channels", "", nil)
	if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("401 without WWW-Authenticate: %v", r.header)
	}
}

func TestAPIChannels(t *testing.T) {
	e := newAPIEnv(t)
	pub := e.mkChannel("tok-alice", "general", "public", map[string]any{"topic": "all things"})
	priv := e.mkChannel("tok-alice", "secret plans", "private", map[string]any{"members": []string{"bob"}})
	ch := "/api/v1/channels/"
	e.run(t, []apiCase{
		{"bad JSON is 400", "POST", "/api/v1/channels", "tok-alice", `{"name":`, 400, "invalid"},
		{"trailing data is 400", "POST", "/api/v1/channels", "tok-alice", `{"name":"a","kind":"public"} {}`, 400, "invalid"},
		{"an unknown kind is 400", "POST", "/api/v1/channels", "tok-alice", map[string]any{"name": "x", "kind": "club"}, 400, "invalid"},
		{"a device kind is 400", "POST", "/api/v1/channels", "tok-alice", map[string]any{"name": "x", "kind": "device"}, 400, "invalid"},
		{"a name with control characters is 400", "POST", "/api/v1/channels", "tok-alice", map[string]any{"name": "a\u0007b", "kind": "public"}, 400, "invalid"},
		{"an empty name is 400", "POST", "/api/v1/channels", "tok-alice", map[string]any{"name": "  ", "kind": "public"}, 400, "invalid"},
		{"a body over 64 KiB is 413", "POST", "/api/v1/channels", "tok-alice", `{"name":"` + strings.Repeat("a", 70<<10) + `"}`, 413, "too_large"},
		{"anyone reads a public channel", "GET", ch + pub.ID, "tok-carol", nil, 200, ""},
		{"a member reads a private channel", "GET", ch + priv.ID, "tok-bob", nil, 200, ""},
		{"a non-member gets 403 on a private channel", "GET", ch + priv.ID, "tok-carol", nil, 403, "forbidden"},
		{"an unknown channel is the same 403", "GET", ch + "01JAAAAAAAAAAAAAAAAAAAAAAA", "tok-carol", nil, 403, "forbidden"},
		{"a plain member may not rename", "PATCH", ch + priv.ID, "tok-bob", map[string]any{"name": "mine"}, 403, "forbidden"},
		{"an empty patch is 400", "PATCH", ch + priv.ID, "tok-alice", map[string]any{}, 400, "invalid"},
		{"the owner renames and sets the topic", "PATCH", ch + priv.ID, "tok-alice", map[string]any{"name": "new plans", "topic": "t"}, 200, ""},
		{"a plain member may not delete", "DELETE", ch + priv.ID, "tok-bob", nil, 403, "forbidden"},
		{"the owner deletes", "DELETE", ch + priv.ID, "tok-alice", nil, 204, ""},
		{"a deleted channel is 403", "GET", ch + priv.ID, "tok-alice", nil, 403, "forbidden"},
	})
	var list []chat.Channel
	e.do("GET", "/api/v1/channels", "tok-carol", nil).decode(t, &list)
	if len(list) != 1 || list[0].ID != pub.ID || list[0].Topic != "all things" {
		t.Errorf("carol's channel list = %+v, want only the public channel", list)
	}
	// Direct channels: the second create returns the first (200).
	r1 := e.do("POST", "/api/v1/channels", "tok-alice", map[string]any{"kind": "direct", "members": []string{"bob"}})
	r2 := e.do("POST", "/api/v1/channels", "tok-bob", map[string]any{"kind": "direct", "members": []string{"alice"}})
	var d1, d2 chat.Channel
	r1.decode(t, &d1)
	r2.decode(t, &d2)
	if r1.status != 201 || r2.status != 200 || d1.ID != d2.ID {
		t.Errorf("direct channel: %d %s / %d %s, want 201 then 200 with the same id", r1.status, d1.ID, r2.status, d2.ID)
	}
}

func TestAPIMembers(t *testing.T) {
	e := newAPIEnv(t)
	pub := e.mkChannel("tok-alice", "general", "public", nil)
	priv := e.mkChannel("tok-alice", "core", "private", nil)
	m := "/api/v1/channels/" + priv.ID + "/members/"
	e.run(t, []apiCase{
		{"a non-member may not list members of a private channel", "GET", "/api/v1/channels/" + priv.ID + "/members", "tok-bob", nil, 403, "forbidden"},
		{"a non-member may not add members", "PUT", m + "carol", "tok-bob", nil, 403, "forbidden"},
		{"the owner adds a member without a body", "PUT", m + "bob", "tok-alice", nil, 200, ""},
		{"the owner makes carol an admin", "PUT", m + "carol", "tok-alice", map[string]any{"role": "admin"}, 200, ""},
		{"an unknown role is 400", "PUT", m + "dave", "tok-alice", map[string]any{"role": "king"}, 400, "invalid"},
		{"an invalid user name is 400", "PUT", m + "Dave%20X", "tok-alice", nil, 400, "invalid"},
		{"a plain member may not remove others", "DELETE", m + "carol", "tok-bob", nil, 403, "forbidden"},
		{"an admin removes a member", "DELETE", m + "bob", "tok-carol", nil, 204, ""},
		{"removing a non-member is 404", "DELETE", m + "bob", "tok-carol", nil, 404, "not_found"},
		{"a private channel cannot be joined", "POST", "/api/v1/channels/" + priv.ID + "/join", "tok-bob", nil, 403, "forbidden"},
		{"a public channel can be joined", "POST", "/api/v1/channels/" + pub.ID + "/join", "tok-bob", nil, 200, ""},
		{"joining twice is fine", "POST", "/api/v1/channels/" + pub.ID + "/join", "tok-bob", nil, 200, ""},
		{"a member leaves", "POST", "/api/v1/channels/" + pub.ID + "/leave", "tok-bob", nil, 204, ""},
		{"leaving what one is not in is 403", "POST", "/api/v1/channels/" + pub.ID + "/leave", "tok-bob", nil, 403, "forbidden"},
		{"the only owner may not leave while others remain", "POST", "/api/v1/channels/" + priv.ID + "/leave", "tok-alice", nil, 409, "conflict"},
	})
	var ms []chat.Member
	e.do("GET", "/api/v1/channels/"+priv.ID+"/members", "tok-carol", nil).decode(t, &ms)
	if len(ms) != 2 || ms[0].User != "alice" || ms[1].User != "carol" || ms[1].Role != "admin" {
		t.Errorf("members = %+v, want alice (owner) and carol (admin)", ms)
	}
}

func TestAPIMessages(t *testing.T) {
	e := newAPIEnv(t)
	priv := e.mkChannel("tok-alice", "core", "private", map[string]any{"members": []string{"bob"}})
	sec := e.mkChannel("tok-alice", "vault", "private", map[string]any{"e2ee": true})
	msgs := "/api/v1/channels/" + priv.ID + "/messages"

	r := e.post("tok-alice", priv.ID, map[string]any{"text": "hello", "client_msg_id": "c1"})
	if r.status != 201 {
		t.Fatalf("post: %d %s", r.status, r.body)
	}
	var first wire.Message
	r.decode(t, &first)
	if first.Offset != 1 || first.Sender.ID != "alice" || *first.Text != "hello" || first.ClientMsgID != "c1" {
		t.Errorf("posted message = %+v", first)
	}
	r = e.post("tok-alice", priv.ID, map[string]any{"text": "hello again", "client_msg_id": "c1"})
	var dup wire.Message
	r.decode(t, &dup)
	if r.status != 200 || dup.ID != first.ID || dup.Offset != 1 {
		t.Errorf("repeat of c1: %d %+v, want 200 with the first message", r.status, dup)
	}
	for i := 0; i < 5; i++ {
		if r := e.post("tok-bob", priv.ID, map[string]any{"text": "more", "thread_id": first.ID}); r.status != 201 {
			t.Fatalf("reply: %d %s", r.status, r.body)
		}
	}
	mid := msgs + "/" + first.ID
	e.run(t, []apiCase{
		{"posting to a non-member channel is 403", "POST", msgs, "tok-carol", map[string]any{"text": "x"}, 403, "forbidden"},
		{"history of a non-member channel is 403", "GET", msgs, "tok-carol", nil, 403, "forbidden"},
		{"a thread of a non-member channel is 403", "GET", mid + "/thread", "tok-carol", nil, 403, "forbidden"},
		{"posting to an unknown channel is 403", "POST", "/api/v1/channels/01JAAAAAAAAAAAAAAAAAAAAAAA/messages", "tok-alice", map[string]any{"text": "x"}, 403, "forbidden"},
		{"bad JSON is 400", "POST", msgs, "tok-alice", `{"text":}`, 400, "invalid"},
		{"no body field is 400", "POST", msgs, "tok-alice", map[string]any{}, 400, "invalid"},
		{"two bodies are 400", "POST", msgs, "tok-alice", map[string]any{"text": "a", "data": 1}, 400, "invalid"},
		{"a channel in the body that differs is 400", "POST", msgs, "tok-alice", map[string]any{"text": "a", "channel": "other"}, 400, "invalid"},
		{"text over 16 KiB is 413", "POST", msgs, "tok-alice", map[string]any{"text": strings.Repeat("é", 9000)}, 413, "too_large"},
		{"an e2ee body in a plaintext channel is 400", "POST", msgs, "tok-alice", map[string]any{"e2ee": map[string]any{"ct": "x"}}, 400, "invalid"},
		{"text in an e2ee channel is 400", "POST", "/api/v1/channels/" + sec.ID + "/messages", "tok-alice", map[string]any{"text": "plain"}, 400, "invalid"},
		{"an e2ee body in an e2ee channel is 201", "POST", "/api/v1/channels/" + sec.ID + "/messages", "tok-alice", map[string]any{"e2ee": map[string]any{"ct": "x"}}, 201, ""},
		{"data is 201", "POST", msgs, "tok-alice", map[string]any{"data": map[string]any{"temp": 21.5}}, 201, ""},
		{"limit over 200 is 400", "GET", msgs + "?limit=201", "tok-alice", nil, 400, "invalid"},
		{"limit 0 is 400", "GET", msgs + "?limit=0", "tok-alice", nil, 400, "invalid"},
		{"a non-numeric before is 400", "GET", msgs + "?before=abc", "tok-alice", nil, 400, "invalid"},
		{"a negative after is 400", "GET", msgs + "?after=-1", "tok-alice", nil, 400, "invalid"},
		{"before not above after is 400", "GET", msgs + "?after=5&before=5", "tok-alice", nil, 400, "invalid"},
		{"someone else may not edit", "PATCH", mid, "tok-bob", map[string]any{"text": "x"}, 403, "forbidden"},
		{"an edit with no body is 400", "PATCH", mid, "tok-alice", map[string]any{}, 400, "invalid"},
		{"the author edits", "PATCH", mid, "tok-alice", map[string]any{"text": "hello, edited"}, 200, ""},
		{"an unknown message is 404", "PATCH", msgs + "/01JAAAAAAAAAAAAAAAAAAAAAAA", "tok-alice", map[string]any{"text": "x"}, 404, "not_found"},
		{"a thread of an unknown message is 404", "GET", msgs + "/01JAAAAAAAAAAAAAAAAAAAAAAA/thread", "tok-alice", nil, 404, "not_found"},
		{"a thread limit over 200 is 400", "GET", mid + "/thread?limit=500", "tok-alice", nil, 400, "invalid"},
	})

	var pg struct {
		Root     *wire.Message  `json:"root"`
		Messages []wire.Message `json:"messages"`
		HasMore  bool           `json:"has_more"`
	}
	e.do("GET", msgs+"?limit=3", "tok-bob", nil).decode(t, &pg)
	if len(pg.Messages) != 3 || pg.Messages[0].Offset != 7 || pg.Messages[2].Offset != 5 || !pg.HasMore {
		t.Errorf("newest page = %d msgs starting at %d, has_more %v; want 7,6,5 and more", len(pg.Messages), pg.Messages[0].Offset, pg.HasMore)
	}
	e.do("GET", msgs+"?before=3&limit=3", "tok-bob", nil).decode(t, &pg)
	if len(pg.Messages) != 2 || pg.Messages[0].Offset != 2 || pg.HasMore {
		t.Errorf("page before 3 = %+v has_more %v; want 2,1 and no more", pg.Messages, pg.HasMore)
	}
	e.do("GET", msgs+"?after=5", "tok-bob", nil).decode(t, &pg)
	if len(pg.Messages) != 2 || pg.Messages[0].Offset != 6 || pg.HasMore {
		t.Errorf("page after 5 = %d msgs, has_more %v; want 6,7 oldest first", len(pg.Messages), pg.HasMore)
	}
	e.do("GET", msgs+"?after=0&limit=2", "tok-bob", nil).decode(t, &pg)
	if len(pg.Messages) != 2 || pg.Messages[0].Offset != 1 || pg.Messages[1].Offset != 2 || !pg.HasMore {
		t.Errorf("page after 0 = %d msgs from %d, has_more %v; want 1,2 oldest first and more", len(pg.Messages), pg.Messages[0].Offset, pg.HasMore)
	}
	e.do("GET", mid+"/thread?limit=3", "tok-bob", nil).decode(t, &pg)
	if pg.Root == nil || pg.Root.ID != first.ID || *pg.Root.Text != "hello, edited" || len(pg.Messages) != 3 || !pg.HasMore {
		t.Errorf("thread = root %v, %d replies, more %v", pg.Root, len(pg.Messages), pg.HasMore)
	}

	// Delete: the author's tombstone keeps the offset.
	r = e.do("DELETE", mid, "tok-alice", nil)
	var tomb wire.Message
	r.decode(t, &tomb)
	if r.status != 200 || !tomb.Deleted || tomb.Text != nil || tomb.Offset != 1 {
		t.Errorf("delete = %d %+v", r.status, tomb)
	}
	if r := e.do("DELETE", msgs+"/"+pg.Messages[0].ID, "tok-carol", nil); r.status != 403 {
		t.Errorf("a non-member deleting: %d, want 403", r.status)
	}
}

func TestAPIDeviceChannel(t *testing.T) {
	e := newAPIEnv(t)
	ch, err := e.chat.EnsureDeviceChannel(context.Background(), "sensor", "alice")
	if err != nil {
		t.Fatal(err)
	}
	path := "/api/v1/channels/" + url.PathEscape(ch.ID) + "/messages"
	e.run(t, []apiCase{
		{"the device posts data to its channel", "POST", path, devKey, map[string]any{"data": map[string]any{"temp": 20}}, 201, ""},
		{"the owner reads it", "GET", path, "tok-alice", nil, 200, ""},
		{"an admin reads it", "GET", path, "tok-root", nil, 200, ""},
		{"another user may not", "GET", path, "tok-bob", nil, 403, "forbidden"},
		{"the device may not post elsewhere", "POST", "/api/v1/channels/device:other/messages", devKey, map[string]any{"text": "x"}, 403, "forbidden"},
	})
}

func TestAPISearch(t *testing.T) {
	e := newAPIEnv(t)
	pub := e.mkChannel("tok-alice", "general", "public", nil)
	priv := e.mkChannel("tok-alice", "core", "private", nil)
	sec := e.mkChannel("tok-alice", "vault", "private", map[string]any{"e2ee": true})
	e.post("tok-alice", pub.ID, map[string]any{"text": "the quarterly rocket launch"})
	e.post("tok-alice", priv.ID, map[string]any{"text": "rocket budget is secret"})
	e.post("tok-alice", sec.ID, map[string]any{"e2ee": map[string]any{"ct": "rocket"}})
	count := func(token, q string) (int, int) {
		r := e.do("GET", "/api/v1/search?"+q, token, nil)
		var hits []wire.Message
		if r.status == 200 {
			r.decode(t, &hits)
		}
		return r.status, len(hits)
	}
	tests := []struct {
		name, token, q string
		status, hits   int
	}{
		{"alice finds public and private text", "tok-alice", "q=rocket", 200, 2},
		{"bob finds only the public one", "tok-bob", "q=rocket", 200, 1},
		{"a channel filter narrows", "tok-alice", "q=rocket&channel=" + priv.ID, 200, 1},
		{"an e2ee channel filter finds nothing", "tok-alice", "q=rocket&channel=" + sec.ID, 200, 0},
		{"a channel one may not read is 403", "tok-bob", "q=rocket&channel=" + priv.ID, 403, 0},
		{"a prefix works", "tok-bob", "q=rock*", 200, 1},
		{"a lone quote is 400, never 500", "tok-alice", "q=" + url.QueryEscape(`"`), 400, 0},
		{"a lone star is 400", "tok-alice", "q=" + url.QueryEscape(`*`), 400, 0},
		{"NEAR( is a plain word", "tok-alice", "q=" + url.QueryEscape(`NEAR(rocket`), 200, 0},
		{"quotes inside words are plain text", "tok-alice", "q=" + url.QueryEscape(`rocket" OR "x`), 200, 0},
		{"column filters are plain text", "tok-alice", "q=" + url.QueryEscape(`text:rocket`), 200, 0},
		{"a missing q is 400", "tok-alice", "", 400, 0},
		{"limit over 100 is 400", "tok-alice", "q=rocket&limit=101", 400, 0},
		{"a query over 256 bytes is 400", "tok-alice", "q=" + strings.Repeat("a", 300), 400, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, hits := count(tc.token, tc.q)
			if status != tc.status || hits != tc.hits {
				t.Errorf("status %d with %d hits, want %d with %d", status, hits, tc.status, tc.hits)
			}
		})
	}
}

func TestAPIPresenceAndConnections(t *testing.T) {
	e := newAPIEnv(t)
	ctx := context.Background()
	conn := &presence.Conn{SessionID: "s1", Identity: unhidra.Identity{Principal: wire.Principal{Kind: wire.KindUser, ID: "bob"}},
		RemoteIP: "127.0.0.1", Transport: presence.TransportWS, ConnectedAt: time.Now().UTC()}
	if err := e.pres.Connect(ctx, conn); err != nil {
		t.Fatal(err)
	}
	defer e.pres.Disconnect(ctx, conn)
	var ps []presence.Presence
	r := e.do("GET", "/api/v1/presence?user=bob&user=carol&user=bob", "tok-alice", nil)
	r.decode(t, &ps)
	if r.status != 200 || len(ps) != 0 {
		t.Errorf("presence of strangers = %d %+v, want 200 and nobody", r.status, ps)
	}
	pair, _, err := e.chat.CreateChannel(ctx, unhidra.Identity{Principal: wire.Principal{Kind: wire.KindUser, ID: "alice"}},
		chat.CreateChannel{Name: "pair", Kind: chat.KindPrivate, Members: []string{"bob", "carol"}})
	if err != nil {
		t.Fatal(err)
	}
	r = e.do("GET", "/api/v1/presence?user=bob&user=carol", "tok-alice", nil)
	r.decode(t, &ps)
	if r.status != 200 || len(ps) != 0 {
		t.Errorf("presence of people alice added but who have not accepted = %d %+v, want nobody", r.status, ps)
	}
	for _, tok := range []string{"tok-bob", "tok-carol"} {
		if r := e.do("POST", "/api/v1/channels/"+pair.ID+"/accept", tok, nil); r.status != 200 {
			t.Fatalf("accept: %d %s", r.status, r.body)
		}
	}
	r = e.do("GET", "/api/v1/presence?user=bob&user=carol&user=bob", "tok-alice", nil)
	r.decode(t, &ps)
	if r.status != 200 || len(ps) != 2 || ps[0].User != "bob" || ps[0].Status != "online" || ps[1].Status != "offline" {
		t.Errorf("presence = %d %+v, want bob online, carol offline", r.status, ps)
	}
	r = e.do("GET", "/api/v1/presence?user=bob", "tok-root", nil)
	r.decode(t, &ps)
	if r.status != 200 || len(ps) != 1 || ps[0].Status != "online" {
		t.Errorf("an admin asking = %d %+v, want bob online", r.status, ps)
	}
	e.run(t, []apiCase{
		{"presence without users is 400", "GET", "/api/v1/presence", "tok-alice", nil, 400, "invalid"},
		{"presence of an invalid name is 400", "GET", "/api/v1/presence?user=" + url.QueryEscape("a b"), "tok-alice", nil, 400, "invalid"},
		{"connections are for admins only", "GET", "/api/v1/admin/connections", "tok-alice", nil, 403, "forbidden"},
		{"a device may not list connections", "GET", "/api/v1/admin/connections", devKey, nil, 403, "forbidden"},
	})
	var conns []presence.ConnInfo
	r = e.do("GET", "/api/v1/admin/connections", "tok-root", nil)
	r.decode(t, &conns)
	if r.status != 200 || len(conns) != 1 || conns[0].SessionID != "s1" || conns[0].Principal.ID != "bob" || conns[0].Transport != "ws" {
		t.Errorf("connections = %d %+v", r.status, conns)
	}
}

// TestAPIDirectConsentLeaveAndBlock: the consent, leave and block rules
// end to end over REST.
func TestAPIDirectConsentLeaveAndBlock(t *testing.T) {
	e := newAPIEnv(t)
	ctx := context.Background()
	for _, u := range []string{"alice", "bob"} {
		c := &presence.Conn{SessionID: "s-" + u, Identity: unhidra.Identity{Principal: wire.Principal{Kind: wire.KindUser, ID: u}},
			RemoteIP: "127.0.0.1", Transport: presence.TransportWS, ConnectedAt: time.Now().UTC()}
		if err := e.pres.Connect(ctx, c); err != nil {
			t.Fatal(err)
		}
		defer e.pres.Disconnect(ctx, c)
	}
	sees := func(token, user string) bool {
		t.Helper()
		var ps []presence.Presence
		r := e.do("GET", "/api/v1/presence?user="+user, token, nil)
		r.decode(t, &ps)
		if r.status != 200 {
			t.Fatalf("presence: %d %s", r.status, r.body)
		}
		return len(ps) == 1
	}
	dm := e.mkChannel("tok-alice", "", "direct", map[string]any{"members": []string{"bob"}})
	if sees("tok-alice", "bob") || sees("tok-bob", "alice") {
		t.Errorf("presence visible across a direct channel bob has not accepted")
	}
	var ms []chat.Member
	r := e.do("GET", "/api/v1/channels/"+dm.ID+"/members", "tok-alice", nil)
	r.decode(t, &ms)
	if len(ms) != 2 || ms[0].AcceptedAt == nil || ms[1].User != "bob" || ms[1].AcceptedAt != nil {
		t.Errorf("members = %s, want alice accepted and bob pending", r.body)
	}
	var m chat.Member
	r = e.do("POST", "/api/v1/channels/"+dm.ID+"/accept", "tok-bob", nil)
	r.decode(t, &m)
	if r.status != 200 || m.User != "bob" || m.AcceptedAt == nil {
		t.Fatalf("accept = %d %s", r.status, r.body)
	}
	if !sees("tok-alice", "bob") || !sees("tok-bob", "alice") {
		t.Errorf("presence not visible both ways after bob accepted")
	}

	e.run(t, []apiCase{
		{"a stranger cannot accept", "POST", "/api/v1/channels/" + dm.ID + "/accept", "tok-carol", nil, 403, "forbidden"},
		{"bob leaves the direct channel", "POST", "/api/v1/channels/" + dm.ID + "/leave", "tok-bob", nil, 204, ""},
		{"bob reads no more", "GET", "/api/v1/channels/" + dm.ID + "/messages", "tok-bob", nil, 403, "forbidden"},
		{"alice keeps the history", "GET", "/api/v1/channels/" + dm.ID + "/messages", "tok-alice", nil, 200, ""},
		{"alice cannot post to nobody", "POST", "/api/v1/channels/" + dm.ID + "/messages", "tok-alice", map[string]any{"text": "hello?"}, 403, "forbidden"},
		{"alice reopens it: the same channel", "POST", "/api/v1/channels", "tok-alice", map[string]any{"kind": "direct", "members": []string{"bob"}}, 200, ""},
		{"bob is back, pending: no presence", "GET", "/api/v1/channels/" + dm.ID + "/messages", "tok-bob", nil, 200, ""},
		{"alice leaves through the members route", "DELETE", "/api/v1/channels/" + dm.ID + "/members/alice", "tok-alice", nil, 204, ""},
	})
	if sees("tok-bob", "alice") {
		t.Errorf("bob sees alice after she left")
	}

	// carol and alice talk; then alice blocks carol.
	ca := e.mkChannel("tok-carol", "", "direct", map[string]any{"members": []string{"alice"}})
	if r := e.post("tok-alice", ca.ID, map[string]any{"text": "hi carol"}); r.status != 201 {
		t.Fatalf("alice answering: %d %s", r.status, r.body)
	}
	if !sees("tok-carol", "alice") {
		t.Errorf("carol does not see alice after alice answered")
	}
	var b chat.Block
	r = e.do("POST", "/api/v1/users/carol/block", "tok-alice", nil)
	r.decode(t, &b)
	if r.status != 200 || b.User != "carol" || b.CreatedAt.IsZero() {
		t.Fatalf("block = %d %s", r.status, r.body)
	}
	if sees("tok-carol", "alice") || sees("tok-alice", "carol") {
		t.Errorf("presence visible across a block")
	}
	var bs []chat.Block
	r = e.do("GET", "/api/v1/blocks", "tok-alice", nil)
	r.decode(t, &bs)
	if r.status != 200 || len(bs) != 1 || bs[0].User != "carol" {
		t.Errorf("blocks = %d %s, want carol", r.status, r.body)
	}
	e.run(t, []apiCase{
		{"carol's message is refused", "POST", "/api/v1/channels/" + ca.ID + "/messages", "tok-carol", map[string]any{"text": "please"}, 403, "forbidden"},
		{"carol cannot open a new one", "POST", "/api/v1/channels", "tok-carol", map[string]any{"kind": "direct", "members": []string{"alice"}}, 403, "forbidden"},
		{"carol cannot put alice in a channel", "POST", "/api/v1/channels", "tok-carol", map[string]any{"name": "x", "kind": "private", "members": []string{"alice"}}, 403, "forbidden"},
		{"blocking oneself is invalid", "POST", "/api/v1/users/alice/block", "tok-alice", nil, 400, "invalid"},
		{"a device cannot block", "POST", "/api/v1/users/alice/block", devKey, nil, 403, "forbidden"},
		{"a device has no block list", "GET", "/api/v1/blocks", devKey, nil, 403, "forbidden"},
		{"alice unblocks carol", "DELETE", "/api/v1/users/carol/block", "tok-alice", nil, 204, ""},
		{"unblocking again is fine", "DELETE", "/api/v1/users/carol/block", "tok-alice", nil, 204, ""},
		{"carol may write again", "POST", "/api/v1/channels/" + ca.ID + "/messages", "tok-carol", map[string]any{"text": "thanks"}, 201, ""},
	})
	r = e.do("GET", "/api/v1/blocks", "tok-alice", nil)
	if r.status != 200 || strings.TrimSpace(string(r.body)) != "[]" {
		t.Errorf("blocks after unblocking = %d %s, want []", r.status, r.body)
	}
}

// TestAPIChannelCreationQuota: the 101st channel of a day is 429 with
// Retry-After.
func TestAPIChannelCreationQuota(t *testing.T) {
	e := newAPIEnv(t)
	ctx := context.Background()
	bob := unhidra.Identity{Principal: wire.Principal{Kind: wire.KindUser, ID: "bob"}}
	for i := 0; i < chat.MaxChannelsPerDay; i++ {
		if _, _, err := e.chat.CreateChannel(ctx, bob, chat.CreateChannel{Name: "room", Kind: chat.KindPrivate}); err != nil {
			t.Fatalf("channel %d: %v", i+1, err)
		}
	}
	r := e.do("POST", "/api/v1/channels", "tok-bob", map[string]any{"name": "one more", "kind": "public"})
	if r.status != http.StatusTooManyRequests || r.code() != unhidra.ERATELIMITED {
		t.Fatalf("channel %d: %d %s, want 429 rate_limited", chat.MaxChannelsPerDay+1, r.status, r.body)
	}
	if ra := r.header.Get("Retry-After"); ra == "" || ra == "0" {
		t.Errorf("Retry-After = %q, want the seconds until a slot frees", ra)
	}
	if r := e.do("POST", "/api/v1/channels", "tok-root", map[string]any{"name": "admin room", "kind": "public"}); r.status != 201 {
		t.Errorf("an admin creating: %d %s", r.status, r.body)
	}
}
