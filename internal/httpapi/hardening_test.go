package httpapi_test

import (
	"strings"
	"testing"

	"github.com/unhidra/unhidra/internal/httpapi"
)

// deepData is a message body whose data nests n objects deep.
func deepData(n int) string {
	return `{"data":` + strings.Repeat(`{"a":`, n) + "1" + strings.Repeat("}", n) + `}`
}

func TestJSONAnswersAreNotSniffed(t *testing.T) {
	t.Run("on the auth API", func(t *testing.T) {
		e := newAuthEnv(t, authEnvOpts{})
		for _, tc := range []struct {
			what         string
			method, path string
			body         any
			status       int
		}{
			{"a success", "GET", "/debug/password-params", nil, 200},
			{"a login", "POST", "/login", map[string]string{"username": "alice", "password": "alice password"}, 200},
			{"a 400", "POST", "/login", "not json", 400},
			{"a 401", "GET", "/me", nil, 401},
			{"a 404", "GET", "/nowhere", nil, 404},
			{"health", "GET", "/health", nil, 200},
		} {
			r := e.do(t, tc.method, tc.path, tc.body)
			if r.status != tc.status || r.header.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("%s: %d, X-Content-Type-Options %q; want %d and nosniff", tc.what, r.status, r.header.Get("X-Content-Type-Options"), tc.status)
			}
		}
	})
	t.Run("on the REST API", func(t *testing.T) {
		e := newAPIEnv(t)
		ch := e.mkChannel("tok-alice", "general", "public", nil)
		for _, tc := range []struct {
			what         string
			method, path string
			token        string
			body         any
			status       int
		}{
			{"a list", "GET", "/api/v1/channels", "tok-alice", nil, 200},
			{"a post", "POST", "/api/v1/channels/" + ch.ID + "/messages", "tok-alice", map[string]any{"text": "hi"}, 201},
			{"a 400", "POST", "/api/v1/channels", "tok-alice", "{", 400},
			{"a 401", "GET", "/api/v1/channels", "", nil, 401},
			{"a 404", "GET", "/api/v1/nowhere", "tok-alice", nil, 404},
		} {
			r := e.do(tc.method, tc.path, tc.token, tc.body)
			if r.status != tc.status || r.header.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("%s: %d, X-Content-Type-Options %q; want %d and nosniff", tc.what, r.status, r.header.Get("X-Content-Type-Options"), tc.status)
			}
		}
	})
}

func TestJSONBodiesAreBoundedInDepthAndMustBeUTF8(t *testing.T) {
	t.Run("on the REST API", func(t *testing.T) {
		e := newAPIEnv(t)
		ch := e.mkChannel("tok-alice", "general", "public", nil)
		msgs := "/api/v1/channels/" + ch.ID + "/messages"
		e.run(t, []apiCase{
			{"data nested 32 deep is stored", "POST", msgs, "tok-alice", deepData(httpapi.MaxJSONDepth), 201, ""},
			{"data nested 33 deep is 400", "POST", msgs, "tok-alice", deepData(httpapi.MaxJSONDepth + 1), 400, "invalid"},
			{"data nested 10000 deep is 400", "POST", msgs, "tok-alice", deepData(10000), 400, "invalid"},
			{"invalid UTF-8 in the text is 400", "POST", msgs, "tok-alice", "{\"text\":\"caf\xe9\"}", 400, "invalid"},
			{"a lone surrogate escape in the text is 400", "POST", msgs, "tok-alice", `{"text":"\ud800"}`, 400, "invalid"},
			{"invalid UTF-8 in a channel name is 400", "POST", "/api/v1/channels", "tok-alice", "{\"name\":\"x\xff\",\"kind\":\"public\"}", 400, "invalid"},
			{"a deep channel body is 400", "POST", "/api/v1/channels", "tok-alice", `{"name":"deep","kind":"public","x":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`, 400, "invalid"},
			{"real Unicode text is stored", "POST", msgs, "tok-alice", `{"text":"café 😀 \ud83d\ude00"}`, 201, ""},
		})
		// What was stored is what was sent: no U+FFFD slipped in.
		r := e.do("GET", msgs, "tok-alice", nil)
		if strings.Contains(string(r.body), "\uFFFD") || strings.Contains(strings.ToLower(string(r.body)), `\ufffd`) {
			t.Errorf("history holds a replacement character: %s", r.body)
		}
	})
	t.Run("on the auth API", func(t *testing.T) {
		e := newAuthEnv(t, authEnvOpts{})
		for _, tc := range []struct {
			what string
			body string
		}{
			{"a login nested 33 deep", `{"username":"alice","password":"alice password","x":` + strings.Repeat("[", 33) + strings.Repeat("]", 33) + `}`},
			{"a login with invalid UTF-8 in the password", "{\"username\":\"alice\",\"password\":\"alice passwor\xe9\"}"},
			{"a register with a lone surrogate", `{"username":"zed","password":"zed password \udfff"}`},
		} {
			path := "/login"
			if strings.HasPrefix(tc.what, "a register") {
				path = "/register"
			}
			if r := e.do(t, "POST", path, tc.body); r.status != 400 || r.errorCode() != "invalid" {
				t.Errorf("%s: %d %s, want 400 invalid", tc.what, r.status, r.body)
			}
		}
		if r := e.do(t, "POST", "/login", `{"username":"alice","password":"alice password","x":`+strings.Repeat("[", 32)+strings.Repeat("]", 32)+`}`); r.status != 200 {
			t.Errorf("a login with a field nested 32 deep: %d %s, want 200", r.status, r.body)
		}
	})
}
