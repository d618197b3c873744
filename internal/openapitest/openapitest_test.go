package openapitest_test

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/unhidra/unhidra/internal/httpapi"
	"github.com/unhidra/unhidra/internal/openapitest"
)

func jsonHeader() http.Header {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	return h
}

const goodMessage = `{"id":"01J0000000000000000000000A","channel":"general","offset":1,"sender":{"kind":"user","id":"alice"},"created_at":"2025-01-02T03:04:05Z","text":"hi"}`

func TestTheEmbeddedDocumentIsValidOpenAPI31(t *testing.T) {
	doc, err := openapitest.Load(httpapi.OpenAPI())
	if err != nil {
		t.Fatal(err)
	}
	if got := doc.OpenAPI; got != "3.1.0" {
		t.Errorf("openapi: got %q, want 3.1.0", got)
	}
	for _, name := range []string{"bearerAuth", "deviceKey"} {
		if doc.Components.SecuritySchemes[name] == nil {
			t.Errorf("security scheme %s is missing", name)
		}
	}
}

func TestLoadRefusesWhatIsNotOpenAPI31(t *testing.T) {
	for name, doc := range map[string]string{
		"not JSON":           `{"openapi":`,
		"version 3.0":        `{"openapi":"3.0.3","info":{"title":"x","version":"1"},"paths":{}}`,
		"a broken reference": `{"openapi":"3.1.0","info":{"title":"x","version":"1"},"paths":{"/a":{"get":{"responses":{"200":{"$ref":"#/components/responses/Nope"}}}}}}`,
		"no info":            `{"openapi":"3.1.0","paths":{}}`,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := openapitest.Load([]byte(doc)); err == nil {
				t.Error("loaded, want an error")
			}
		})
	}
}

func TestValidateAcceptsWhatTheDocumentSays(t *testing.T) {
	req := httptest.NewRequest("POST", "/api/v1/channels/general/messages", nil)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer some.jwt.token")
	if err := openapitest.Validate(req, []byte(`{"text":"hi"}`), 201, jsonHeader(), []byte(goodMessage)); err != nil {
		t.Fatalf("a documented exchange was refused: %v", err)
	}
	h := jsonHeader()
	h.Set("Retry-After", "3")
	if err := openapitest.Validate(req, []byte(`{"text":"hi"}`), 429, h, []byte(`{"error":{"code":"rate_limited","message":"slow down"}}`)); err != nil {
		t.Fatalf("a documented refusal was refused: %v", err)
	}
}

func authed(r *http.Request) *http.Request {
	r.Header.Set("Authorization", "Bearer a.jwt.token")
	return r
}

func TestValidateRefusesWhatTheDocumentDoesNotSay(t *testing.T) {
	post := func() *http.Request {
		req := httptest.NewRequest("POST", "/api/v1/channels/general/messages", nil)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer some.jwt.token")
		return req
	}
	retry := jsonHeader()
	retry.Set("Retry-After", "3")
	cases := []struct {
		name    string
		req     *http.Request
		reqBody string
		status  int
		header  http.Header
		body    string
		want    string // a piece of the error
	}{
		{"a field of the wrong type", post(), `{"text":"hi"}`, 201, jsonHeader(),
			strings.Replace(goodMessage, `"offset":1`, `"offset":"1"`, 1), "offset"},
		{"a missing required field", post(), `{"text":"hi"}`, 201, jsonHeader(),
			strings.Replace(goodMessage, `"channel":"general",`, ``, 1), "channel"},
		{"an undocumented field", post(), `{"text":"hi"}`, 201, jsonHeader(),
			strings.Replace(goodMessage, `"text":"hi"`, `"text":"hi","secret":"x"`, 1), "secret"},
		{"an undocumented status", post(), `{"text":"hi"}`, 202, jsonHeader(), goodMessage, "status"},
		{"an error code that does not match the status", post(), `{"text":"hi"}`, 404, jsonHeader(),
			`{"error":{"code":"forbidden","message":"no"}}`, "code"},
		{"an error body of the wrong shape", post(), `{"text":"hi"}`, 400, jsonHeader(),
			`{"code":"invalid","message":"no"}`, "error"},
		{"a 429 without Retry-After", post(), `{"text":"hi"}`, 429, jsonHeader(),
			`{"error":{"code":"rate_limited","message":"slow down"}}`, "Retry-After"},
		{"a JSON answer with another content type", post(), `{"text":"hi"}`, 201, http.Header{"Content-Type": {"text/html"}}, goodMessage, "text/html"},
		{"a body on a documented empty answer", httptest.NewRequest("DELETE", "/api/v1/channels/general", nil), "", 204, jsonHeader(), `{"ok":true}`, "without a body"},
		{"a route the document does not have", httptest.NewRequest("GET", "/api/v1/nowhere", nil), "", 404, jsonHeader(),
			`{"error":{"code":"not_found","message":"no such route"}}`, "not an operation"},
		{"a method the document does not have", httptest.NewRequest("PUT", "/api/v1/channels", nil), "", 405, jsonHeader(), ``, "not an operation"},
		{"an accepted request with a body of the wrong type", post(), `{"text":5}`, 201, jsonHeader(), goodMessage, "accepted a request"},
		{"an accepted request with a bad query parameter", authed(httptest.NewRequest("GET", "/api/v1/channels/general/messages?limit=many", nil)), "", 200, jsonHeader(),
			`{"messages":[],"has_more":false}`, "limit"},
		{"an accepted request without a credential", httptest.NewRequest("GET", "/api/v1/channels", nil), "", 200, jsonHeader(), `[]`, "accepted a request"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var body []byte
			if c.reqBody != "" {
				body = []byte(c.reqBody)
			}
			err := openapitest.Validate(c.req, body, c.status, c.header, []byte(c.body))
			if err == nil {
				t.Fatal("accepted, want an error")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not mention %q", err, c.want)
			}
		})
	}
}

func TestAUsersOnlyRouteAcceptedWithADeviceKeyIsRefused(t *testing.T) {
	req := httptest.NewRequest("GET", "/api/v1/blocks", nil)
	req.Header.Set("Authorization", "Bearer unhidra_dk_abc")
	if err := openapitest.Validate(req, nil, 200, jsonHeader(), []byte(`[]`)); err == nil {
		t.Fatal("a device key on a users-only route passed")
	}
	req.Header.Set("Authorization", "Bearer a.jwt.token")
	if err := openapitest.Validate(req, nil, 200, jsonHeader(), []byte(`[]`)); err != nil {
		t.Fatalf("an access token on a users-only route: %v", err)
	}
}

// fakeTB records Errorf calls so the reporting helpers can be shown to fail.
type fakeTB struct {
	testing.TB
	failed bool
}

func (f *fakeTB) Helper()               {}
func (f *fakeTB) Errorf(string, ...any) { f.failed = true }

func TestCheckCallReportsAMismatch(t *testing.T) {
	ft := &fakeTB{TB: t}
	openapitest.CheckCall(ft, "GET", "/api/v1/channels", "tok", nil, 200, jsonHeader(), []byte(`[{"id":1}]`))
	if !ft.failed {
		t.Error("CheckCall reported nothing for a channel whose id is a number")
	}
	ft = &fakeTB{TB: t}
	openapitest.CheckCall(ft, "POST", "/login", "", map[string]string{"username": "alice", "password": "pw"}, 401, jsonHeader(),
		[]byte(`{"error":{"code":"unauthorized","message":"invalid username or password"}}`))
	if ft.failed {
		t.Error("CheckCall reported a documented refusal")
	}
}

func TestOperationNamesTheTemplate(t *testing.T) {
	got, err := openapitest.Operation("GET", "/api/v1/channels/general/messages?limit=5")
	if err != nil || got != "GET /api/v1/channels/{id}/messages" {
		t.Errorf("Operation = %q, %v; want GET /api/v1/channels/{id}/messages", got, err)
	}
	if _, err := openapitest.Operation("GET", "/api/v1/nowhere"); err == nil {
		t.Error("an unknown path named an operation")
	}
	ops, err := openapitest.Operations()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(ops, "POST /login") || !slices.Contains(ops, "GET /api/v1/openapi.json") {
		t.Errorf("Operations misses POST /login or GET /api/v1/openapi.json: %v", ops)
	}
}
