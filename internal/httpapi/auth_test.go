package httpapi_test

import (
	"github.com/unhidra/unhidra/internal/ratelimit"

	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/unhidra/unhidra/internal/auth"
	"github.com/unhidra/unhidra/internal/device"
	"github.com/unhidra/unhidra/internal/httpapi"
	"github.com/unhidra/unhidra/internal/sqlite"
	"github.com/unhidra/unhidra/internal/sqlitetest"
)

const authTestSecret = "httpapi-auth-test-secret-0123456789ab"

type authEnv struct {
	srv      *httptest.Server
	api      *httpapi.AuthAPI
	authSvc  *auth.Service
	devices  *device.Service
	draining atomic.Bool
	client   *http.Client // nil: http.DefaultClient (no cookie jar)
}

type authEnvOpts struct {
	loginPerMinute int
	trusted        []netip.Prefix
	origins        []string
	requestLimit   httpapi.Limiter
	log            *slog.Logger // the service's and the API's; nil: none
	trustProxyTLS  bool
	tls            bool // serve HTTPS
}

func newAuthEnv(t *testing.T, o authEnvOpts) *authEnv {
	t.Helper()
	db := sqlitetest.Open(t)
	if o.loginPerMinute == 0 {
		o.loginPerMinute = 1000
	}
	reg := prometheus.NewRegistry()
	e := &authEnv{}
	var err error
	e.authSvc, err = auth.New(auth.Config{Secret: authTestSecret, LoginPerMinute: o.loginPerMinute, Params: auth.Params{MemoryKiB: 64, Iterations: 1, Parallelism: 1}},
		auth.Deps{Store: sqlite.NewAuthStore(db), Registerer: reg, Log: o.log})
	if err != nil {
		t.Fatal(err)
	}
	e.devices, err = device.NewService(device.Config{Secret: authTestSecret}, device.Deps{Store: sqlite.NewDeviceStore(db), Users: e.authSvc})
	if err != nil {
		t.Fatal(err)
	}
	e.api = &httpapi.AuthAPI{
		Auth: e.authSvc, Devices: e.devices,
		TrustedProxies: o.trusted, AllowedOrigins: o.origins, GatewayPort: 9000,
		Health: db.Ping, Draining: e.draining.Load,
		Metrics:      promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
		HTTPMetrics:  httpapi.NewHTTPMetrics(reg),
		RequestLimit: o.requestLimit,
		Log:          o.log, TrustProxyTLS: o.trustProxyTLS,
	}
	if o.tls {
		e.srv = httptest.NewTLSServer(e.api.Handler())
	} else {
		e.srv = httptest.NewServer(e.api.Handler())
	}
	t.Cleanup(e.srv.Close)
	ctx := context.Background()
	if _, err := e.authSvc.CreateUser(ctx, auth.CreateUserInput{Username: "root", Password: "root password", Admin: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.authSvc.CreateUser(ctx, auth.CreateUserInput{Username: "alice", Password: "alice password"}); err != nil {
		t.Fatal(err)
	}
	return e
}

type authResp struct {
	status int
	header http.Header
	body   []byte
}

func (r authResp) errorCode() string {
	var b struct {
		Error struct{ Code, Message string }
	}
	_ = json.Unmarshal(r.body, &b)
	return b.Error.Code
}

// do sends a request; body may be a string (sent as is) or a value (JSON).
func (e *authEnv) do(t *testing.T, method, path string, body any, hdr ...string) authResp {
	t.Helper()
	var rd io.Reader
	ct := "application/json"
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, e.srv.URL+path, rd)
	if rd != nil {
		req.Header.Set("Content-Type", ct)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	client := http.DefaultClient
	if e.client != nil {
		client = e.client
	}
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return authResp{res.StatusCode, res.Header, b}
}

func (e *authEnv) login(t *testing.T, name, pw string) auth.TokenPair {
	t.Helper()
	r := e.do(t, "POST", "/login", map[string]string{"username": name, "password": pw})
	if r.status != 200 {
		t.Fatalf("login %s: %d %s", name, r.status, r.body)
	}
	var p auth.TokenPair
	json.Unmarshal(r.body, &p)
	return p
}

func TestAuthAPIBadInputGetsAClear4xx(t *testing.T) {
	e := newAuthEnv(t, authEnvOpts{})
	big := `{"username":"alice","password":"` + strings.Repeat("x", 10<<20) + `"}`
	tests := []struct {
		name, path, body, ctype string
		status                  int
		code                    string
	}{
		{"invalid JSON", "/login", `{"username":`, "application/json", 400, "invalid"},
		{"a JSON array", "/login", `[1,2]`, "application/json", 400, "invalid"},
		{"trailing data after the JSON", "/login", `{"username":"alice","password":"x"} {}`, "application/json", 400, "invalid"},
		{"an empty body", "/register", ``, "application/json", 400, "invalid"},
		{"a 10 MiB body", "/login", big, "application/json", 413, "too_large"},
		{"a 10 MiB registration", "/register", big, "application/json", 413, "too_large"},
		{"a form content type", "/login", `username=alice&password=x`, "application/x-www-form-urlencoded", 400, "invalid"},
		{"text/plain", "/register", `{"username":"bob","password":"bob password"}`, "text/plain", 400, "invalid"},
		{"a NUL in the username", "/register", `{"username":"bob\u0000x","password":"bob password"}`, "application/json", 400, "invalid"},
		{"CR LF in the username", "/register", `{"username":"bob\r\nx","password":"bob password"}`, "application/json", 400, "invalid"},
		{"a NUL in a login username", "/login", `{"username":"alice\u0000","password":"alice password"}`, "application/json", 400, "invalid"},
		{"a 1 MiB username", "/register", `{"username":"` + strings.Repeat("a", 1<<20) + `","password":"bob password"}`, "application/json", 413, "too_large"},
		{"a 60 KiB username", "/login", `{"username":"` + strings.Repeat("a", 60<<10) + `","password":"bob password"}`, "application/json", 400, "invalid"},
		{"a 1025-byte password at registration", "/register", `{"username":"bob","password":"` + strings.Repeat("p", 1025) + `"}`, "application/json", 400, "invalid"},
		{"a 1025-byte password at login", "/login", `{"username":"alice","password":"` + strings.Repeat("p", 1025) + `"}`, "application/json", 400, "invalid"},
		{"a 7-byte password", "/register", `{"username":"bob","password":"1234567"}`, "application/json", 400, "invalid"},
		{"a wrong type for a field", "/login", `{"username":42,"password":"x"}`, "application/json", 400, "invalid"},
		{"a control character in a display name", "/register", `{"username":"bob","password":"bob password","display_name":"a\u0007b"}`, "application/json", 400, "invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name+" is answered "+fmt.Sprint(tt.status), func(t *testing.T) {
			req, _ := http.NewRequest("POST", e.srv.URL+tt.path, strings.NewReader(tt.body))
			req.Header.Set("Content-Type", tt.ctype)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<16))
			res.Body.Close()
			r := authResp{res.StatusCode, res.Header, b}
			if r.status != tt.status || r.errorCode() != tt.code {
				t.Fatalf("got %d %s, want %d %s", r.status, r.body, tt.status, tt.code)
			}
			if len(r.body) > 300 {
				t.Errorf("error body is %d bytes; it should not echo the input", len(r.body))
			}
		})
	}
}

func TestAuthAPIRefusesCredentialsInTheURL(t *testing.T) {
	e := newAuthEnv(t, authEnvOpts{})
	p := e.login(t, "root", "root password")
	r := e.do(t, "POST", "/devices", map[string]string{"name": "sensor"}, "Authorization", "Bearer "+p.AccessToken)
	var d struct {
		APIKey string `json:"api_key"`
	}
	json.Unmarshal(r.body, &d)
	if !device.LooksLikeKey(d.APIKey) {
		t.Fatalf("register device: %d %s", r.status, r.body)
	}
	for _, q := range []string{
		"api_key=" + d.APIKey, "key=" + d.APIKey, "token=" + d.APIKey, "x=" + d.APIKey,
		"apikey=whatever", "access_token=" + p.AccessToken, "token=" + p.AccessToken,
		"x=" + url.QueryEscape(d.APIKey), "x=unhidra%5Fdk%5F" + d.APIKey[11:],
		"refresh_token=" + p.RefreshToken,
	} {
		for _, path := range []string{"/me", "/devices", "/health"} {
			r := e.do(t, "GET", path+"?"+q, nil)
			if r.status != 400 {
				t.Errorf("GET %s?%.30s…: %d, want 400", path, q, r.status)
			}
			if bytes.Contains(r.body, []byte(d.APIKey[11:])) || bytes.Contains(r.body, []byte(p.AccessToken)) {
				t.Errorf("the answer echoes the credential")
			}
		}
	}
	if r := e.do(t, "GET", "/devices", nil, "Authorization", "Bearer "+p.AccessToken); r.status != 200 {
		t.Errorf("the header form is refused: %d", r.status)
	}
}

func TestAuthAPIDeviceKeysCannotCallUserRoutes(t *testing.T) {
	e := newAuthEnv(t, authEnvOpts{})
	p := e.login(t, "root", "root password")
	r := e.do(t, "POST", "/devices", map[string]string{"name": "sensor", "device_id": "s1"}, "Authorization", "Bearer "+p.AccessToken)
	var d struct {
		APIKey string `json:"api_key"`
	}
	json.Unmarshal(r.body, &d)
	key := "Bearer " + d.APIKey
	for _, c := range []struct{ method, path string }{
		{"GET", "/me"}, {"PATCH", "/me"}, {"POST", "/me/password"}, {"POST", "/logout"},
		{"GET", "/devices"}, {"POST", "/devices"}, {"GET", "/devices/s2"}, {"DELETE", "/devices/s1"},
		{"POST", "/devices/s1/rotate-key"}, {"GET", "/admin/users"}, {"POST", "/admin/users/alice/disable"},
	} {
		r := e.do(t, c.method, c.path, `{"display_name":"x","name":"x","current_password":"x","new_password":"yyyyyyyy"}`, "Authorization", key)
		if r.status != 403 && r.status != 401 {
			t.Errorf("%s %s with a device key: %d %s, want 403", c.method, c.path, r.status, r.body)
		}
	}
	if r := e.do(t, "GET", "/devices/s1", nil, "Authorization", key); r.status != 200 || !strings.Contains(string(r.body), `"device_id":"s1"`) {
		t.Errorf("a device reading its own record: %d %s", r.status, r.body)
	}
	if r := e.do(t, "GET", "/devices/s1", nil, "Authorization", "Bearer "+p.AccessToken); r.status != 200 || strings.Contains(string(r.body), `"revoked":true`) {
		t.Fatalf("the device was changed by its own key: %d %s", r.status, r.body)
	}
}

func TestAuthAPILoginLimitsOverHTTP(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	e := newAuthEnv(t, authEnvOpts{loginPerMinute: 10, trusted: trusted})
	login := func(pw, xff string) authResp {
		return e.do(t, "POST", "/login", map[string]string{"username": "alice", "password": pw}, "X-Forwarded-For", xff)
	}
	for i := range 10 {
		if r := login("wrong password", "203.0.113.1"); r.status != 401 {
			t.Fatalf("attempt %d: %d %s", i+1, r.status, r.body)
		}
	}
	r := login("alice password", "203.0.113.1")
	if r.status != 429 || r.errorCode() != "rate_limited" {
		t.Fatalf("11th attempt with the right password: %d %s, want 429", r.status, r.body)
	}
	if ra := r.header.Get("Retry-After"); ra == "" || ra == "0" {
		t.Errorf("Retry-After = %q", ra)
	}
	if r := login("alice password", "203.0.113.2"); r.status != 200 {
		t.Fatalf("another client IP behind the trusted proxy: %d %s", r.status, r.body)
	}
	// The account cap: 10 failures above plus 10 more from other IPs.
	for i := range 10 {
		if r := login("wrong password", fmt.Sprintf("198.51.100.%d", i+1)); r.status != 401 {
			t.Fatalf("failure %d: %d", 11+i, r.status)
		}
	}
	if r := login("alice password", "198.51.100.200"); r.status != 429 {
		t.Fatalf("after 20 failures from many IPs the account answered %d, want 429", r.status)
	}
	if r := e.do(t, "POST", "/login", map[string]string{"username": "root", "password": "root password"}, "X-Forwarded-For", "198.51.100.201"); r.status != 200 {
		t.Errorf("another account was affected: %d", r.status)
	}
}

func TestAuthAPIIgnoresForwardedForFromUntrustedPeers(t *testing.T) {
	e := newAuthEnv(t, authEnvOpts{loginPerMinute: 3})
	for i := range 3 {
		e.do(t, "POST", "/login", map[string]string{"username": "alice", "password": "wrong password"}, "X-Forwarded-For", fmt.Sprintf("203.0.113.%d", i))
	}
	r := e.do(t, "POST", "/login", map[string]string{"username": "alice", "password": "alice password"}, "X-Forwarded-For", "203.0.113.99")
	if r.status != 429 {
		t.Fatalf("a spoofed X-Forwarded-For escaped the limit: %d", r.status)
	}
}

func TestAuthAPIPerIPRequestLimit(t *testing.T) {
	clk := time.Unix(1_800_000_000, 0)
	e := newAuthEnv(t, authEnvOpts{requestLimit: ratelimit.NewBucketLimiter(60, 3, func() time.Time { return clk })})
	for i := range 3 {
		if r := e.do(t, "GET", "/debug/password-params", nil); r.status != 200 {
			t.Fatalf("request %d: %d", i+1, r.status)
		}
	}
	r := e.do(t, "GET", "/debug/password-params", nil)
	if r.status != 429 || r.header.Get("Retry-After") != "1" {
		t.Fatalf("4th request: %d Retry-After=%q, want 429 and 1", r.status, r.header.Get("Retry-After"))
	}
	for _, p := range []string{"/health", "/ready", "/metrics"} {
		if r := e.do(t, "GET", p, nil); r.status != 200 {
			t.Errorf("%s under the limit: %d", p, r.status)
		}
	}
}

func TestAuthAPICORS(t *testing.T) {
	t.Run("with ALLOWED_ORIGINS only exact entries are allowed", func(t *testing.T) {
		e := newAuthEnv(t, authEnvOpts{origins: []string{"https://app.example.com"}})
		for origin, allowed := range map[string]bool{
			"https://app.example.com":      true,
			"http://app.example.com":       false,
			"https://app.example.com:8443": false,
			"https://app.example.com.evil": false,
			"https://evilapp.example.com":  false,
			"null":                         false,
		} {
			r := e.do(t, "OPTIONS", "/login", nil, "Origin", origin, "Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "content-type")
			got := r.header.Get("Access-Control-Allow-Origin") == origin
			if got != allowed || (allowed && r.status != 204) || (!allowed && r.status != 403) {
				t.Errorf("preflight from %s: %d allow=%q, want allowed=%v", origin, r.status, r.header.Get("Access-Control-Allow-Origin"), allowed)
			}
		}
	})
	t.Run("without ALLOWED_ORIGINS the gateway page on the same host is allowed", func(t *testing.T) {
		e := newAuthEnv(t, authEnvOpts{})
		u, _ := url.Parse(e.srv.URL)
		for origin, allowed := range map[string]bool{
			"http://127.0.0.1:9000":   true, // GATEWAY_PORT on the same host
			"http://" + u.Host:        true, // same origin
			"http://127.0.0.1:9001":   false,
			"http://localhost:9000":   false,
			"http://evil.test:9000":   false,
			"http://127.0.0.1.evil:9": false,
		} {
			r := e.do(t, "GET", "/debug/password-params", nil, "Origin", origin)
			if got := r.header.Get("Access-Control-Allow-Origin") == origin; got != allowed {
				t.Errorf("origin %s: allowed=%v, want %v", origin, got, allowed)
			}
		}
	})
}

func TestAuthAPIOperationalEndpoints(t *testing.T) {
	e := newAuthEnv(t, authEnvOpts{})
	if r := e.do(t, "GET", "/health", nil); r.status != 200 || strings.TrimSpace(string(r.body)) != `{"status":"ok"}` {
		t.Errorf("/health: %d %s", r.status, r.body)
	}
	if r := e.do(t, "GET", "/ready", nil); r.status != 200 {
		t.Errorf("/ready: %d", r.status)
	}
	e.draining.Store(true)
	if r := e.do(t, "GET", "/ready", nil); r.status != 503 {
		t.Errorf("/ready while draining: %d, want 503", r.status)
	}
	if r := e.do(t, "GET", "/health", nil); r.status != 200 {
		t.Errorf("/health while draining: %d, want 200", r.status)
	}
	e.login(t, "alice", "alice password")
	e.do(t, "POST", "/login", map[string]string{"username": "alice", "password": "wrong password"})
	r := e.do(t, "GET", "/metrics", nil)
	for _, want := range []string{
		`unhidra_auth_login_attempts_total{outcome="success"} 1`,
		`unhidra_auth_login_attempts_total{outcome="bad_credentials"} 1`,
		`unhidra_http_requests_total{code="200",route="POST /login",server="auth"} 1`,
		`unhidra_http_requests_total{code="401",route="POST /login",server="auth"} 1`,
		`unhidra_auth_password_hash_seconds_count`,
		`unhidra_auth_hash_queue_depth 0`,
		`unhidra_auth_active_sessions 1`,
	} {
		if !strings.Contains(string(r.body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if r := e.do(t, "GET", "/debug/password-params", nil); !strings.Contains(string(r.body), `"algorithm":"argon2id"`) || !strings.Contains(string(r.body), `"version":19`) {
		t.Errorf("password params: %s", r.body)
	}
	if r := e.do(t, "GET", "/internal/ml/health", nil); strings.TrimSpace(string(r.body)) != `{"restarts":0,"status":"disabled"}` {
		t.Errorf("ml health: %s", r.body)
	}
	for _, p := range []string{"/nope", "/auth/sso/start", "/auth/passkey/begin"} {
		if r := e.do(t, "GET", p, nil); r.status != 404 || r.errorCode() != "not_found" {
			t.Errorf("%s: %d %s", p, r.status, r.body)
		}
	}
}

func TestAuthAPIAccountRoutes(t *testing.T) {
	e := newAuthEnv(t, authEnvOpts{})
	r := e.do(t, "POST", "/register", map[string]string{"username": "Carol", "password": "carol password", "display_name": "Carol C"})
	if r.status != 201 || !strings.Contains(string(r.body), `"username":"carol"`) || !strings.Contains(string(r.body), `"verified":true`) {
		t.Fatalf("register: %d %s", r.status, r.body)
	}
	if r := e.do(t, "POST", "/register", map[string]string{"username": "carol", "password": "carol password"}); r.status != 409 {
		t.Fatalf("register taken: %d", r.status)
	}
	carol := e.login(t, "carol", "carol password")
	bearer := "Bearer " + carol.AccessToken
	if r := e.do(t, "GET", "/me", nil); r.status != 401 || r.header.Get("WWW-Authenticate") == "" {
		t.Errorf("/me without a token: %d", r.status)
	}
	if r := e.do(t, "PATCH", "/me", map[string]string{"display_name": "Carol Z"}, "Authorization", bearer); r.status != 200 || !strings.Contains(string(r.body), "Carol Z") {
		t.Errorf("PATCH /me: %d %s", r.status, r.body)
	}
	if r := e.do(t, "GET", "/admin/users", nil, "Authorization", bearer); r.status != 403 {
		t.Errorf("non-admin /admin/users: %d", r.status)
	}
	root := "Bearer " + e.login(t, "root", "root password").AccessToken
	r = e.do(t, "GET", "/admin/users", nil, "Authorization", root)
	if r.status != 200 || !strings.Contains(string(r.body), `"username":"carol"`) || strings.Contains(string(r.body), "argon2") {
		t.Errorf("admin /admin/users: %d %s", r.status, r.body)
	}
	if r := e.do(t, "POST", "/admin/users/carol/verify", nil, "Authorization", root); r.status != 200 {
		t.Errorf("verify: %d %s", r.status, r.body)
	}
	if r := e.do(t, "POST", "/admin/users/nobody/disable", nil, "Authorization", root); r.status != 404 {
		t.Errorf("disable unknown: %d", r.status)
	}
	if r := e.do(t, "POST", "/admin/users/carol/disable", nil, "Authorization", root); r.status != 200 || !strings.Contains(string(r.body), `"disabled":true`) {
		t.Errorf("disable: %d %s", r.status, r.body)
	}
	if r := e.do(t, "GET", "/me", nil, "Authorization", bearer); r.status != 401 {
		t.Errorf("disabled user's token: %d, want 401", r.status)
	}
}

func FuzzHasURLCredential(f *testing.F) {
	h := httpapi.RefuseURLCredentials(nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	f.Add("api_key=unhidra_dk_abc")
	f.Add("a=b&c=d")
	f.Add("x=unhidra%5Fdk%5Fabc")
	f.Add("%zz=1")
	f.Fuzz(func(t *testing.T, q string) {
		if strings.ContainsAny(q, "# \x00\r\n") {
			return
		}
		req := httptest.NewRequest("GET", "/me", nil)
		req.URL.RawQuery = q
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		vals, _ := url.ParseQuery(q)
		for k, vs := range vals {
			for _, v := range append(vs, k) {
				if strings.Contains(v, "unhidra_dk_") && rec.Code != 400 {
					t.Fatalf("query %q carries a device key and was let through", q)
				}
			}
		}
	})
}

func (r authResp) cookies() []*http.Cookie { return (&http.Response{Header: r.header}).Cookies() }

func (r authResp) deviceCookie(user string) *http.Cookie {
	for _, c := range r.cookies() {
		if c.Name == auth.DeviceCookieName(user) {
			return c
		}
	}
	return nil
}

func TestAuthAPIDeviceCookieAttributes(t *testing.T) {
	for _, tc := range []struct {
		name       string
		opts       authEnvOpts
		wantSecure bool
	}{
		{"plain HTTP sets it without Secure", authEnvOpts{}, false},
		{"HTTPS sets it Secure", authEnvOpts{tls: true}, true},
		{"behind a TLS proxy (TRUST_PROXY_TLS) it is Secure", authEnvOpts{trustProxyTLS: true}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newAuthEnv(t, tc.opts)
			e.client = e.srv.Client()
			if r := e.do(t, "POST", "/login", map[string]string{"username": "alice", "password": "wrong password"}); r.status != 401 || len(r.cookies()) != 0 {
				t.Fatalf("a failed login: %d with cookies %v, want 401 and none", r.status, r.header.Values("Set-Cookie"))
			}
			r := e.do(t, "POST", "/login", map[string]string{"username": "Alice", "password": "alice password"})
			if r.status != 200 {
				t.Fatalf("login: %d %s", r.status, r.body)
			}
			c := r.deviceCookie("alice")
			if c == nil {
				t.Fatalf("no device cookie in %q", r.header.Values("Set-Cookie"))
			}
			if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/login" || c.Secure != tc.wantSecure {
				t.Errorf("cookie %q: HttpOnly=%v SameSite=%v Path=%q Secure=%v; want HttpOnly, Strict, /login, Secure=%v",
					r.header.Get("Set-Cookie"), c.HttpOnly, c.SameSite, c.Path, c.Secure, tc.wantSecure)
			}
			if want := int(auth.DeviceCookieMaxAge / time.Second); c.MaxAge != want {
				t.Errorf("Max-Age %d, want %d", c.MaxAge, want)
			}
			if strings.Contains(string(r.body), c.Value) || strings.Contains(string(r.body), "device_cookie") {
				t.Error("the device cookie leaked into the JSON answer")
			}
		})
	}
}

func TestAuthAPIDeviceCookieKeepsTheOwnerInDuringALockout(t *testing.T) {
	e := newAuthEnv(t, authEnvOpts{})
	jar, _ := cookiejar.New(nil)
	owner := &http.Client{Jar: jar}
	login := func(c *http.Client, pw string, hdr ...string) authResp {
		e.client = c
		defer func() { e.client = nil }()
		return e.do(t, "POST", "/login", map[string]string{"username": "alice", "password": pw}, hdr...)
	}
	if r := login(owner, "alice password"); r.status != 200 {
		t.Fatalf("the owner's first login: %d %s", r.status, r.body)
	}
	for i := range auth.MaxAccountFailures {
		if r := login(nil, "wrong password"); r.status != 401 {
			t.Fatalf("stranger's attempt %d: %d", i+1, r.status)
		}
	}
	if r := login(nil, "alice password"); r.status != 429 {
		t.Fatalf("an untrusted client on the locked account: %d, want 429", r.status)
	}
	forged := auth.DeviceCookieName("alice") + "=" + base64.RawURLEncoding.EncodeToString([]byte("alice|bm9uY2U|1767323045")) + "." + strings.Repeat("A", 43)
	if r := login(nil, "alice password", "Cookie", forged); r.status != 429 {
		t.Fatalf("a forged device cookie: %d, want 429", r.status)
	}
	r := login(owner, "alice password")
	if r.status != 200 {
		t.Fatalf("the owner with the device cookie was locked out: %d %s", r.status, r.body)
	}
	if r.deviceCookie("alice") == nil {
		t.Error("the trusted login did not renew the device cookie")
	}
}

func TestAuthAPICORSLetsTheLoginKeepItsDeviceCookie(t *testing.T) {
	e := newAuthEnv(t, authEnvOpts{origins: []string{"https://app.example.com"}})
	r := e.do(t, "OPTIONS", "/login", nil, "Origin", "https://app.example.com", "Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "content-type")
	if r.status != 204 || r.header.Get("Access-Control-Allow-Credentials") != "true" {
		t.Errorf("login preflight from an allowed origin: %d, Allow-Credentials %q, want 204 and true", r.status, r.header.Get("Access-Control-Allow-Credentials"))
	}
	if r := e.do(t, "GET", "/debug/password-params", nil, "Origin", "https://app.example.com"); r.header.Get("Access-Control-Allow-Credentials") != "" {
		t.Error("a route other than /login allows credentials")
	}
	if r := e.do(t, "OPTIONS", "/login", nil, "Origin", "https://evil.example.com", "Access-Control-Request-Method", "POST"); r.header.Get("Access-Control-Allow-Credentials") != "" {
		t.Error("a refused origin got Allow-Credentials")
	}
}

func TestAuthAPILogsNoSecrets(t *testing.T) {
	var logs syncBuffer
	e := newAuthEnv(t, authEnvOpts{log: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	pw := "tr0ub4dor-and-3-horses" // a password that is also a valid username
	jwtName := "eyJhbGciOi.eyJzdWIiOi.c2ln"
	if r := e.do(t, "POST", "/register", map[string]string{"username": "bob", "password": pw}); r.status != 201 {
		t.Fatalf("register: %d %s", r.status, r.body)
	}
	secrets := []string{pw, jwtName, strings.ToLower(jwtName), "unhidra_rt_bogusbogusbogusbogus", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJib2IifQ.c2lnbmF0dXJl"}
	steps := []struct {
		what         string
		method, path string
		body         any
		hdr          []string
		status       int
	}{
		{"the password typed as the username", "POST", "/login", map[string]string{"username": pw, "password": "bob"}, nil, 401},
		{"the password in both fields", "POST", "/login", map[string]string{"username": pw, "password": pw}, nil, 401},
		{"a JWT-shaped username", "POST", "/login", map[string]string{"username": jwtName, "password": pw}, nil, 401},
		{"a bogus refresh token", "POST", "/token/refresh", map[string]string{"refresh_token": secrets[3]}, nil, 401},
		{"a bogus access token", "GET", "/me", nil, []string{"Authorization", "Bearer " + secrets[4]}, 401},
		{"a refresh token in the URL", "GET", "/me?refresh_token=" + secrets[3], nil, nil, 400},
		{"a body that is not JSON around a password", "POST", "/login", `{"username":"bob","password":"` + pw + `"`, nil, 400},
	}
	for _, s := range steps {
		if r := e.do(t, s.method, s.path, s.body, s.hdr...); r.status != s.status {
			t.Errorf("%s: %d %s, want %d", s.what, r.status, r.body, s.status)
		}
	}
	out := logs.String()
	if !strings.Contains(out, `"http request"`) || !strings.Contains(out, "bad credentials") || !strings.Contains(out, "redacted:") {
		t.Fatalf("the requests were not logged (access log, audit with a redacted name):\n%s", out)
	}
	for _, s := range secrets {
		if strings.Contains(out, s) {
			t.Errorf("the log holds %q:\n%s", s, out)
		}
	}
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *syncBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }
