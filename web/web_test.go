package web

import (
	"crypto/tls"
	"encoding/json"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, target, host string, tlsOn bool) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest("GET", target, nil)
	r.Host = host
	if tlsOn {
		r.TLS = &tls.ConnectionState{}
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestContentSecurityPolicy(t *testing.T) {
	const rest = "; worker-src 'self'; manifest-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
	const head = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src "
	for _, tc := range []struct {
		name  string
		o     Options
		host  string
		tls   bool
		want  string
		files []string
	}{
		{"connections go to this origin, its WebSocket and the auth API on this host", Options{AuthPort: 9200}, "chat.example:9000", false,
			head + "'self' http://chat.example:9200 ws://chat.example:9000" + rest, nil},
		{"over TLS the auth API is https and the WebSocket wss", Options{AuthPort: 9200, TLS: true}, "chat.example:9000", true,
			head + "'self' https://chat.example:9200 wss://chat.example:9000" + rest, nil},
		{"behind a TLS proxy (TLS set, a plain request) too", Options{AuthPort: 443, TLS: true}, "chat.example", false,
			head + "'self' https://chat.example:443 wss://chat.example" + rest, nil},
		{"PUBLIC_AUTH_URL names the auth API's origin", Options{AuthPort: 9200, AuthURL: "https://auth.example/base"}, "chat.example:9000", false,
			head + "'self' https://auth.example ws://chat.example:9000" + rest, nil},
		{"an IPv6 host", Options{AuthPort: 9200}, "[::1]:9000", false,
			head + "'self' http://[::1]:9200 ws://[::1]:9000" + rest, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := Handler(tc.o)
			for _, f := range []string{"/", "/index.html", "/js/app.js", "/config.json", "/sw.js", "/manifest.webmanifest", "/no-such-file"} {
				w := get(t, h, f, tc.host, tc.tls)
				got := w.Header().Get("Content-Security-Policy")
				if got != tc.want {
					t.Errorf("%s: CSP\n got %s\nwant %s", f, got, tc.want)
				}
				if strings.Contains(got, "unsafe-") {
					t.Errorf("%s: CSP allows %s", f, got)
				}
				if w.Header().Get("X-Content-Type-Options") != "nosniff" || w.Header().Get("Referrer-Policy") != "no-referrer" {
					t.Errorf("%s: headers %v", f, w.Header())
				}
			}
		})
	}
}

func TestConfigJSON(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		host string
		tls  bool
		want ClientConfig
	}{
		{"the auth API on the page's host and AUTH_PORT", Options{AuthPort: 9200, Registration: "open"}, "127.0.0.1:9000", false,
			ClientConfig{AuthURL: "http://127.0.0.1:9200", Registration: "open"}},
		{"a host without a port", Options{AuthPort: 9200, Registration: "approval"}, "chat.example", false,
			ClientConfig{AuthURL: "http://chat.example:9200", Registration: "approval"}},
		{"https when the page came over TLS", Options{AuthPort: 9200, Registration: "closed"}, "chat.example:9000", true,
			ClientConfig{AuthURL: "https://chat.example:9200", Registration: "closed"}},
		{"https when the server has TLS (behind a proxy)", Options{AuthPort: 9200, TLS: true}, "chat.example", false,
			ClientConfig{AuthURL: "https://chat.example:9200"}},
		{"PUBLIC_AUTH_URL as it is", Options{AuthPort: 9200, AuthURL: "https://auth.example"}, "chat.example:9000", true,
			ClientConfig{AuthURL: "https://auth.example"}},
		{"IPv6", Options{AuthPort: 9200}, "[::1]:9000", false, ClientConfig{AuthURL: "http://[::1]:9200"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := get(t, Handler(tc.o), "/config.json", tc.host, tc.tls)
			if w.Code != 200 || w.Header().Get("Content-Type") != "application/json" || w.Header().Get("Cache-Control") != "no-store" {
				t.Fatalf("got %d %v", w.Code, w.Header())
			}
			var got ClientConfig
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// staticFiles returns every embedded file (path → content).
func staticFiles(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(static, p)
		out[strings.TrimPrefix(p, "static/")] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// No script of the client turns a string into HTML or code. Vendored
// Preact names innerHTML and dangerouslySetInnerHTML (the feature the
// client never uses); nothing else may.
func TestScriptsNeverParseStringsAsHTMLOrCode(t *testing.T) {
	forbidden := []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "dangerouslySetInnerHTML", "document.write", "eval(", "new Function", "javascript:"}
	allowed := map[string][]string{"vendor/preact.mjs": {"innerHTML", "dangerouslySetInnerHTML"}}
	// In our own scripts: no style or event-handler attribute in markup
	// (CSP refuses both), no string timers.
	markup := regexp.MustCompile(`\sstyle=["']|\son[a-z]+=["']|setTimeout\(\s*["'\x60]|setInterval\(\s*["'\x60]`)
	comment := regexp.MustCompile(`(?m)^\s*//.*$`)
	n := 0
	for p, src := range staticFiles(t) {
		if ext := path.Ext(p); ext != ".js" && ext != ".mjs" {
			continue
		}
		n++
		code := src
		if !strings.HasPrefix(p, "vendor/") {
			code = comment.ReplaceAllString(src, "") // a comment may name what is never done
		}
		for _, f := range forbidden {
			if strings.Contains(code, f) && !slices.Contains(allowed[p], f) {
				t.Errorf("%s uses %s", p, f)
			}
		}
		if !strings.HasPrefix(p, "vendor/") {
			if m := markup.FindString(code); m != "" {
				t.Errorf("%s: %q in a script", p, m)
			}
		}
	}
	if n < 10 {
		t.Fatalf("only %d scripts embedded", n)
	}
	for p, words := range allowed {
		for _, w := range words {
			if !strings.Contains(staticFiles(t)[p], w) {
				t.Errorf("%s no longer contains %s: drop it from the allowed list", p, w)
			}
		}
	}
}

func TestIndexHasNoInlineScriptOrStyle(t *testing.T) {
	src := staticFiles(t)["index.html"]
	scripts := regexp.MustCompile(`(?is)<script\b([^>]*)>(.*?)</script>`).FindAllStringSubmatch(src, -1)
	if len(scripts) == 0 {
		t.Fatal("index.html loads no script")
	}
	for _, s := range scripts {
		if !strings.Contains(s[1], "src=") || strings.TrimSpace(s[2]) != "" {
			t.Errorf("inline script: %s", s[0])
		}
	}
	for _, re := range []string{`(?i)<style`, `(?i)\sstyle=`, `(?i)\son[a-z]+=`, `(?i)javascript:`} {
		if m := regexp.MustCompile(re).FindString(src); m != "" {
			t.Errorf("index.html has %q", m)
		}
	}
}

// /sw.js is the worker with the shell's version and files before it: every
// page, script and style embedded, no API route, not itself.
func TestServiceWorkerListsTheShell(t *testing.T) {
	w := get(t, Handler(Options{AuthPort: 9200}), "/sw.js", "127.0.0.1:9000", false)
	body := w.Body.String()
	if w.Code != 200 || w.Header().Get("Cache-Control") != "no-cache" || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/javascript") {
		t.Fatalf("got %d %v", w.Code, w.Header())
	}
	m := regexp.MustCompile(`(?m)^const SHELL_VERSION = "([0-9a-f]{16})";\nconst SHELL_FILES = (\[.*\]);\n`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no shell lines in %.300s", body)
	}
	var files []string
	if err := json.Unmarshal([]byte(m[2]), &files); err != nil {
		t.Fatal(err)
	}
	for p := range staticFiles(t) {
		ext := path.Ext(p)
		want := p != "sw.js" && (ext == ".js" || ext == ".mjs" || ext == ".css" || ext == ".html" || ext == ".svg" || ext == ".png" || ext == ".webmanifest")
		if got := slices.Contains(files, "/"+p); got != want {
			t.Errorf("%s in SHELL_FILES: %v, want %v", p, got, want)
		}
	}
	if !slices.Contains(files, "/") {
		t.Error("the page itself (/) is not in the shell")
	}
	for _, f := range files {
		if strings.HasPrefix(f, "/api/") || f == "/config.json" || f == "/ws" {
			t.Errorf("the shell lists %s", f)
		}
	}
	if !strings.Contains(body, `p.startsWith("/api/")`) {
		t.Error("the worker's fetch handler no longer leaves /api/ alone")
	}
}
