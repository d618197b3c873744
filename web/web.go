// Package web serves the browser client embedded in the binary: plain ES
// modules (Preact and htm vendored in static/vendor, no build step), its
// styles, a web app manifest and a service worker. The page talks to the
// auth API, whose address it reads from /config.json, and to the gateway's
// REST API and /ws. Handler is safe for concurrent use.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

// Options are what the page is told about the server.
type Options struct {
	// AuthPort is the auth API's port: the page reaches it on the host it
	// was loaded from. AuthURL, when set (a proxy in front), replaces it.
	AuthPort int
	AuthURL  string
	// TLS tells whether the auth API speaks HTTPS (its own certificate or
	// a proxy's).
	TLS bool
	// Registration is the REGISTRATION mode (open, approval, closed).
	Registration string
	Version      string
}

// ClientConfig is /config.json.
type ClientConfig struct {
	AuthURL      string `json:"auth_url"`
	Registration string `json:"registration"`
	Version      string `json:"version,omitempty"`
}

// Handler serves the client's files with a strict Content-Security-Policy
// (scripts and styles from this origin only, no inline script, no
// eval; connections to this origin and the auth API only) and
// /config.json.
func Handler(o Options) http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.FileServerFS(sub)
	worker := serviceWorker(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cfg := o.clientConfig(r)
		h := w.Header()
		h.Set("Content-Security-Policy", o.csp(r, cfg.AuthURL))
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
		switch r.URL.Path {
		case "/config.json":
			h.Set("Content-Type", "application/json")
			h.Set("Cache-Control", "no-store")
			_ = json.NewEncoder(w).Encode(cfg)
			return
		case "/sw.js":
			// A new service worker is picked up at once.
			h.Set("Cache-Control", "no-cache")
			h.Set("Service-Worker-Allowed", "/")
			h.Set("Content-Type", "text/javascript; charset=utf-8")
			http.ServeContent(w, r, "sw.js", time.Time{}, bytes.NewReader(worker))
			return
		}
		files.ServeHTTP(w, r)
	})
}

// shellExt are the files the service worker keeps for an offline start.
var shellExt = map[string]bool{".html": true, ".css": true, ".js": true, ".mjs": true, ".svg": true, ".png": true, ".webmanifest": true}

// serviceWorker returns sw.js preceded by the shell's version (a digest of
// every embedded file, so each build has its own cache) and its files.
func serviceWorker(sub fs.FS) []byte {
	src, err := fs.ReadFile(sub, "sw.js")
	if err != nil {
		panic(err)
	}
	sum := sha256.New()
	files := []string{"/"}
	_ = fs.WalkDir(sub, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || p == "sw.js" {
			return err
		}
		b, err := fs.ReadFile(sub, p)
		if err != nil {
			return err
		}
		sum.Write([]byte(p + "\x00"))
		sum.Write(b)
		if shellExt[path.Ext(p)] {
			files = append(files, "/"+p)
		}
		return nil
	})
	sort.Strings(files[1:])
	list, _ := json.Marshal(files)
	var out bytes.Buffer
	out.WriteString("const SHELL_VERSION = \"" + hex.EncodeToString(sum.Sum(nil))[:16] + "\";\n")
	out.WriteString("const SHELL_FILES = " + strings.ReplaceAll(string(list), ",", ", ") + ";\n")
	out.Write(src)
	return out.Bytes()
}

func (o Options) clientConfig(r *http.Request) ClientConfig {
	c := ClientConfig{AuthURL: o.AuthURL, Registration: o.Registration, Version: o.Version}
	if c.AuthURL == "" {
		host := r.Host
		if h, _, err := net.SplitHostPort(r.Host); err == nil {
			host = h
		}
		scheme := "http"
		if o.TLS || r.TLS != nil {
			scheme = "https"
		}
		c.AuthURL = scheme + "://" + net.JoinHostPort(trimBrackets(host), strconv.Itoa(o.AuthPort))
	}
	return c
}

func trimBrackets(h string) string {
	if len(h) > 1 && h[0] == '[' && h[len(h)-1] == ']' {
		return h[1 : len(h)-1]
	}
	return h
}

// csp allows connections to this page's origin (HTTP and its WebSocket)
// and to the auth API's origin, nothing else. The page's scripts and
// styles come from this origin only: no inline script or style, no eval.
func (o Options) csp(r *http.Request, authURL string) string {
	connect := "'self'"
	if u, err := url.Parse(authURL); err == nil && u.Host != "" {
		connect += " " + u.Scheme + "://" + u.Host
	}
	ws := "ws://"
	if r.TLS != nil || o.TLS {
		ws = "wss://"
	}
	if r.Host != "" {
		connect += " " + ws + r.Host
	}
	return "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src " + connect +
		"; worker-src 'self'; manifest-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
}
