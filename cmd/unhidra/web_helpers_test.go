package main

// Helpers of the web client's browser tests: a page of the real client in
// headless Chromium, driven the way a user (or a screen reader) finds
// things: by role and accessible name, never by CSS class.

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/browsertest"
	"github.com/unhidra/unhidra/internal/e2etest"
)

// webPage is the web client open in one headless Chromium (its own
// profile: two pages are two users).
type webPage struct {
	t   *testing.T
	b   *browsertest.Browser
	ctx context.Context

	mu      sync.Mutex
	allowed []string // allowErrors' patterns ("" allows every error)
}

// a11yJS defines window.__t in the page: accessible-name lookups.
const a11yJS = `window.__t || (window.__t = (() => {
  const norm = (s) => (s || "").replace(/\s+/g, " ").trim();
  const visible = (el) => !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length) && getComputedStyle(el).visibility !== "hidden";
  function name(el) {
    if (el.getAttribute("aria-label")) return norm(el.getAttribute("aria-label"));
    const lb = el.getAttribute("aria-labelledby");
    if (lb) return norm(lb.split(/\s+/).map((id) => (document.getElementById(id) || {}).textContent).join(" "));
    if (el.id) { const l = document.querySelector("label[for='" + CSS.escape(el.id) + "']"); if (l) return norm(l.textContent); }
    const wrap = el.closest("label");
    if (wrap) { const c = wrap.cloneNode(true); c.querySelectorAll("input,select,textarea").forEach((x) => x.remove()); return norm(c.textContent); }
    if (el.matches("input,textarea") && el.placeholder) return norm(el.placeholder);
    if (el.getAttribute("title")) return norm(el.getAttribute("title"));
    return norm(el.textContent);
  }
  const roles = {
    button: "button, [role=button], input[type=submit], input[type=button]",
    link: "a[href], [role=link]",
    textbox: "input:not([type]), input[type=text], input[type=search], input[type=email], input[type=url], input[type=password], textarea, [role=textbox]",
    searchbox: "input[type=search], [role=searchbox]",
    checkbox: "input[type=checkbox], [role=checkbox]",
    combobox: "select, [role=combobox]",
    heading: "h1, h2, h3, h4, h5, h6, [role=heading]",
    navigation: "nav, [role=navigation]",
    log: "[role=log]",
    dialog: "dialog, [role=dialog]",
    listitem: "li, [role=listitem]",
    status: "[role=status]",
    alert: "[role=alert]",
    region: "section[aria-label], section[aria-labelledby], [role=region]",
    row: "tr, [role=row]",
  };
  function all(role, n, root) {
    return [...(root || document).querySelectorAll(roles[role] || role)].filter((el) => visible(el) && (n === undefined || name(el) === n));
  }
  function one(role, n, root) {
    const els = all(role, n, root);
    if (els.length === 0) throw new Error("no " + role + " named " + JSON.stringify(n));
    return els[0];
  }
  function fill(el, v) {
    const proto = el.tagName === "TEXTAREA" ? HTMLTextAreaElement.prototype : el.tagName === "SELECT" ? HTMLSelectElement.prototype : HTMLInputElement.prototype;
    Object.getOwnPropertyDescriptor(proto, "value").set.call(el, v);
    el.dispatchEvent(new Event("input", { bubbles: true }));
    el.dispatchEvent(new Event("change", { bubbles: true }));
  }
  return { name, all, one, fill, norm, visible };
})())`

// openWeb opens the client of the gateway at gwURL.
func openWeb(t *testing.T, gwURL string) *webPage {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	t.Cleanup(cancel)
	p := &webPage{t: t, b: browsertest.Open(t, gwURL+"/"), ctx: ctx}
	// Runs before the browser closes (cleanups run last-registered first).
	t.Cleanup(p.checkErrors)
	p.wait("typeof window.unhidra", `"object"`)
	return p
}

// allowErrors lets the page report errors without failing the test: those
// containing one of patterns, or any when none is given (a test that stops
// the server on purpose, say, provokes failed loads and WebSocket errors).
func (p *webPage) allowErrors(patterns ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(patterns) == 0 {
		patterns = []string{""}
	}
	p.allowed = append(p.allowed, patterns...)
}

// checkErrors fails the test for every uncaught exception, CSP violation,
// console error or failed load the page reported that allowErrors does not
// allow.
func (p *webPage) checkErrors() {
	p.mu.Lock()
	allowed := p.allowed
	p.mu.Unlock()
	for _, e := range p.b.Errors() {
		ok := false
		for _, a := range allowed {
			ok = ok || strings.Contains(e.Text, a)
		}
		if !ok {
			p.t.Errorf("the page reported %s", e)
		}
	}
}

// shotDir is where p.shot writes, by UNHIDRA_SCREENSHOTS: docs/screenshots
// when it is 1 (the README shows them), the directory it names otherwise
// (a relative one from cmd/unhidra; make check keeps them in
// build/screenshots), else a temporary directory of the test.
func shotDir(t *testing.T) string {
	switch v := os.Getenv("UNHIDRA_SCREENSHOTS"); v {
	case "":
		return t.TempDir()
	case "1":
		return filepath.Join("..", "..", "docs", "screenshots")
	default:
		return v
	}
}

// shot saves a PNG screenshot of the page's viewport as <name>.png (see
// shotDir). It waits a moment for transitions and fonts, so the picture
// shows a settled screen; it asserts nothing.
func (p *webPage) shot(name string) {
	p.t.Helper()
	_, _ = p.try(`new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(r, 150))))`)
	png, err := p.b.Screenshot(p.ctx)
	if err != nil {
		p.t.Fatalf("screenshot %s: %v", name, err)
	}
	dir := shotDir(p.t)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		p.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		p.t.Fatal(err)
	}
}

// viewport resizes the page to w×h CSS pixels (360×740 is a phone).
func (p *webPage) viewport(w, h int) {
	p.t.Helper()
	if err := p.b.SetViewport(p.ctx, w, h); err != nil {
		p.t.Fatalf("viewport %dx%d: %v", w, h, err)
	}
	p.wait(`innerWidth + "x" + innerHeight`, strconv.Quote(strconv.Itoa(w)+"x"+strconv.Itoa(h)))
}

// js evaluates expr (with window.__t defined) and returns its JSON value.
func (p *webPage) js(expr string) json.RawMessage {
	p.t.Helper()
	v, err := p.b.Eval(p.ctx, a11yJS+";\n"+expr)
	if err != nil {
		p.t.Fatalf("%s: %v", expr, err)
	}
	return v
}

// try is js that returns the error instead of failing.
func (p *webPage) try(expr string) (json.RawMessage, error) {
	return p.b.Eval(p.ctx, a11yJS+";\n"+expr)
}

// wait evaluates expr until its JSON value is want (within the page's
// deadline).
func (p *webPage) wait(expr, want string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, waitLimit)
	defer cancel()
	var last json.RawMessage
	var err error
	for {
		var v json.RawMessage
		v, err = p.b.Eval(ctx, a11yJS+";\n"+expr)
		if err == nil {
			last = v
			if string(v) == want {
				return
			}
		}
		select {
		case <-ctx.Done():
			p.t.Fatalf("waiting for %s == %s: last value %s, err %v", expr, want, last, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitLimit bounds one wait: a condition that does not come true within it
// fails the test.
const waitLimit = 30 * time.Second

// waitTrue waits until expr is truthy (a promise: its value).
func (p *webPage) waitTrue(expr string) {
	p.t.Helper()
	p.wait("Promise.resolve("+expr+").then((v) => !!v)", "true")
}

// fill types value into the textbox (or combobox) named label.
func (p *webPage) fill(label, value string) {
	p.t.Helper()
	q := strconv.Quote
	p.waitTrue(`__t.all("textbox", ` + q(label) + `).length || __t.all("combobox", ` + q(label) + `).length`)
	p.js(`(() => { const el = __t.all("textbox", ` + q(label) + `)[0] || __t.all("combobox", ` + q(label) + `)[0]; el.focus(); __t.fill(el, ` + q(value) + `); return 1 })()`)
}

// click clicks the element of role named name (waiting for it).
func (p *webPage) click(role, name string) {
	p.t.Helper()
	q := strconv.Quote
	p.waitTrue(`__t.all(` + q(role) + `, ` + q(name) + `).length`)
	p.js(`(__t.one(` + q(role) + `, ` + q(name) + `).click(), 1)`)
}

// text returns the visible text of the first element of role named name
// ("" for any name when name is empty).
func (p *webPage) names(role string) []string {
	p.t.Helper()
	var out []string
	if err := json.Unmarshal(p.js(`__t.all(`+strconv.Quote(role)+`).map(__t.name)`), &out); err != nil {
		p.t.Fatal(err)
	}
	return out
}

// signIn signs in through the form and waits for the connection.
func (p *webPage) signIn(user, pw string) {
	p.t.Helper()
	p.fill("Username", user)
	p.fill("Password", pw)
	p.click("button", "Sign in")
	p.wait(`(document.querySelector("[data-state]") || {}).dataset?.state || null`, `"online"`)
}

// tab opens the client in another tab of p's browser (the same profile:
// localStorage, the service worker and storage events are shared).
func (p *webPage) tab() *webPage {
	p.t.Helper()
	url := p.js(`location.origin + "/"`)
	var u string
	_ = json.Unmarshal(url, &u)
	q := &webPage{t: p.t, b: p.b.NewTab(p.t, u), ctx: p.ctx}
	p.t.Cleanup(q.checkErrors)
	q.wait("typeof window.unhidra", `"object"`)
	return q
}

// press sends a real key press to the focused element ("Tab", "Enter",
// "Escape", …; shift for Shift+Tab).
func (p *webPage) press(key string, shift bool) {
	p.t.Helper()
	if err := p.b.Press(p.ctx, key, shift); err != nil {
		p.t.Fatalf("press %s: %v", key, err)
	}
}

// reload reloads the page and waits for the client to start again.
func (p *webPage) reload() {
	p.t.Helper()
	p.js(`(setTimeout(() => location.reload(), 0), 1)`)
	p.wait(`document.readyState === "complete" && typeof window.unhidra`, `"object"`)
}

// state is the connection state the header shows (data-state).
func (p *webPage) state() string {
	p.t.Helper()
	var s string
	_ = json.Unmarshal(p.js(`(document.querySelector("[data-state]") || {}).dataset?.state || ""`), &s)
	return s
}

// startRestartableStack is startStack on fixed free ports and a data dir of
// its own, so restart can stop the whole server and start it again where
// its clients (a browser page, say) expect it.
func startRestartableStack(t *testing.T, extra map[string]string) *stack {
	t.Helper()
	e := map[string]string{"UNHIDRA_DATA_DIR": t.TempDir()}
	for _, k := range []string{"AUTH_PORT", "GATEWAY_PORT", "MQTT_PORT"} {
		port, err := e2etest.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		e[k] = strconv.Itoa(port)
	}
	for k, v := range extra {
		e[k] = v
	}
	return startStack(t, e)
}

// down stops the whole server (auth API, gateway, MQTT); up starts it again
// on the same ports and data.
func (s *stack) down(t *testing.T) {
	t.Helper()
	s.testServer.stop(t)
}

func (s *stack) up(t *testing.T) {
	t.Helper()
	s.testServer = startServer(t, s.testServer.env, cheapHash)
	e2etest.WaitHTTP(t, s.gwURL+"/ready", 10*time.Second)
}
