package main

// Browser tests of the web client's foundation: the session (sign in and
// out, registration, silent token refresh, tabs sharing a session), the
// connection (its visible state, reconnecting with `since` after the
// server was away, a message typed offline sent once), WS-5 (another
// origin's page cannot open the WebSocket), the installable shell whose
// service worker never caches an API answer, keyboard use and a phone's
// screen.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/browsertest"
	"github.com/unhidra/unhidra/internal/e2etest"
)

// offlineErrors are what a page reports while its server is away: failed
// loads and WebSocket handshakes.
var offlineErrors = []string{"Failed to load resource", "net::ERR_CONNECTION_REFUSED", "WebSocket connection to", "Failed to fetch"}

// messageTexts returns the texts of channel id's messages (REST history,
// oldest first) with their senders.
func messageTexts(t *testing.T, s *stack, token, id string) []string {
	t.Helper()
	r := s.api(t, "GET", "/api/v1/channels/"+id+"/messages?limit=200", token, nil)
	e2etest.WantStatus(t, r, 200, "history")
	var page struct {
		Messages []struct {
			Offset int64  `json:"offset"`
			Text   string `json:"text"`
			Sender struct {
				ID string `json:"id"`
			} `json:"sender"`
		} `json:"messages"`
	}
	r.JSON(t, &page)
	var out []string
	for i := len(page.Messages) - 1; i >= 0; i-- { // newest first
		m := page.Messages[i]
		out = append(out, m.Sender.ID+": "+m.Text)
	}
	return out
}

// logTexts is the page's JS for the texts of the messages in the log named
// "Messages in <name>" that contain marker, in the order shown.
func logTexts(name, marker string) string {
	return `(() => { const log = __t.all("log", ` + strconv.Quote("Messages in "+name) + `)[0]; if (!log) return null;
  return __t.all("listitem", undefined, log).map((li) => __t.norm(li.textContent)).filter((x) => x.includes(` + strconv.Quote(marker) + `)) })()`
}

// getFile GETs one of the client's files (not an API route) and fails the
// test unless it is there.
func getFile(t *testing.T, url string) e2etest.Reply {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, res.Status)
	}
	return e2etest.Reply{Status: res.StatusCode, Header: res.Header, Body: b}
}

// statusText is the header's connection state as the user reads it.
const statusText = `__t.norm((document.querySelector("[data-state]") || {}).textContent)`

// TestWebClientSignsInAndOut: the sign-in form (inputs "Username" and
// "Password", a button "Sign in") signs in through the auth API found
// through /config.json; after it there is a "Sign out" button, no password
// field, a navigation landmark "Channels" naming the user's channels, and
// the focus is on the main content. Sign out ends the session on the
// server (the old access token is refused), forgets the outbox and the
// session here, and puts the focus back on "Username".
func TestWebClientSignsInAndOut(t *testing.T) {
	browsertest.Require(t)
	s := startStack(t, nil)
	alice, pw := s.user(t, "alice")
	s.channel(t, alice, "lobby", "public")
	p := openWeb(t, s.gwURL)
	p.waitTrue(`document.activeElement === __t.one("textbox", "Username")`)
	p.shot("sign-in")

	// A wrong password is said in the alert, and nothing signs in.
	p.fill("Username", "alice")
	p.fill("Password", "not-the-password")
	p.click("button", "Sign in")
	p.wait(`__t.norm(__t.one("alert").textContent)`, `"Wrong username or password."`)
	p.allowErrors("status of 401") // the refused login's answer

	p.signIn("alice", pw)
	p.waitTrue(`__t.all("button", "Sign out").length === 1`)
	p.wait(`document.querySelectorAll("input[type=password]").length`, `0`)
	p.waitTrue(`__t.all("link", "lobby", __t.one("navigation", "Channels")).length === 1`)
	p.wait(`document.activeElement && document.activeElement.id`, `"main"`)
	p.wait(statusText, `"Connected"`)

	// Something waits in the outbox (the connection held back), then Sign out.
	var token string
	json.Unmarshal(p.js(`window.unhidra.api.access.token`), &token)
	e2etest.Secret("access token", token)
	e2etest.WantStatus(t, s.api(t, "GET", "/api/v1/channels", token, nil), 200, "the page's token before sign-out")
	p.js(`(window.unhidra.conn.stop(), window.unhidra.conn.publish("x", {text: "never sent"}).catch(() => {}), 1)`)
	p.wait(`JSON.parse(localStorage.getItem("unhidra.outbox")).length`, `1`)
	p.click("button", "Sign out")
	p.waitTrue(`__t.all("button", "Sign in").length === 1`)
	p.wait(`localStorage.getItem("unhidra.session")`, `null`)
	p.wait(`localStorage.getItem("unhidra.outbox")`, `null`)
	p.wait(`window.unhidra.conn.outbox.length + window.unhidra.conn.subs.size`, `0`)
	p.wait(`Object.keys(localStorage).filter((k) => k.startsWith("unhidra.") && k !== "unhidra.config")`, `[]`)
	p.waitTrue(`document.activeElement === __t.one("textbox", "Username")`)
	deadline := time.Now().Add(10 * time.Second)
	for s.api(t, "GET", "/api/v1/channels", token, nil).Status != 401 {
		if time.Now().After(deadline) {
			t.Fatal("the access token of the signed-out page still works")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestWebRegistration: with REGISTRATION=open "Create an account" signs the
// new user in; with approval the form says an admin must verify it, and a
// sign-in before that is refused with the reason in the alert; closed shows
// no way to register.
func TestWebRegistration(t *testing.T) {
	browsertest.Require(t)
	t.Run("open registration signs the new user in", func(t *testing.T) {
		s := startStack(t, map[string]string{"REGISTRATION": "open"})
		p := openWeb(t, s.gwURL)
		p.click("button", "Create an account")
		p.fill("Username", "newcomer")
		p.fill("Display name", "New Comer")
		p.fill("Password", "a-long-password-1")
		p.click("button", "Create account")
		p.waitTrue(`__t.all("button", "Sign out").length === 1`)
		p.waitTrue(`document.querySelector(".top .me").textContent === "New Comer"`)
	})
	t.Run("approval says an admin must verify the account", func(t *testing.T) {
		s := startStack(t, map[string]string{"REGISTRATION": "approval"})
		p := openWeb(t, s.gwURL)
		p.click("button", "Create an account")
		p.waitTrue(`document.body.textContent.includes("verified by an admin")`)
		p.fill("Username", "waiting")
		p.fill("Password", "a-long-password-1")
		p.click("button", "Create account")
		p.waitTrue(`__t.norm(__t.one("status").textContent).includes("An admin must verify it")`)
		p.waitTrue(`__t.all("button", "Sign in").length === 1`)
		p.allowErrors("status of 403")
		p.fill("Password", "a-long-password-1")
		p.click("button", "Sign in")
		p.waitTrue(`__t.norm(__t.one("alert").textContent) !== ""`)
		p.wait(`__t.all("button", "Sign out").length`, `0`)
	})
	t.Run("closed registration offers none", func(t *testing.T) {
		s := startStack(t, map[string]string{"REGISTRATION": "closed"})
		p := openWeb(t, s.gwURL)
		p.waitTrue(`__t.all("button", "Sign in").length === 1`)
		p.wait(`__t.all("button", "Create an account").length`, `0`)
	})
}

// TestWebRefreshesTokensSilently: with one-minute access tokens, a token
// the page holds as expired is refreshed before a REST call, without a new
// sign-in and with the connection online throughout; and the connection is
// handed a new token with a `refresh` frame before its own ends.
func TestWebRefreshesTokensSilently(t *testing.T) {
	browsertest.Require(t)
	s := startStack(t, map[string]string{"ACCESS_TOKEN_TTL": "1m"})
	alice, pw := s.user(t, "alice")
	bob, _ := s.user(t, "bob")
	id := s.channel(t, alice, "lobby", "public")
	s.api(t, "POST", "/api/v1/channels/"+id+"/join", bob, nil)
	p := openWeb(t, s.gwURL)
	p.signIn("alice", pw)
	p.js(`(window.__states = [], window.unhidra.conn.addEventListener("state", (e) => window.__states.push(e.detail)), 1)`)
	p.js(`(window.__oldRefresh = JSON.parse(localStorage.getItem("unhidra.session")).refresh, window.__ws = window.unhidra.conn.ws, 1)`)

	// REST: the page takes its token for expired and refreshes it first.
	p.js(`(window.unhidra.api.access.expiresAt = Date.now() - 1000, 1)`)
	var rest []string
	json.Unmarshal(p.js(`window.unhidra.api.rest("GET", "/channels").then((l) => l.map((c) => c.name))`), &rest)
	if !slices.Contains(rest, "lobby") {
		t.Errorf("REST after the refresh: %v", rest)
	}
	// A new pair: the access token good for a minute again (it may read
	// the same as the old one within the same second), the refresh token
	// rotated.
	p.waitTrue(`window.unhidra.api.access.expiresAt > Date.now() + 30000`)
	p.waitTrue(`JSON.parse(localStorage.getItem("unhidra.session")).refresh !== window.__oldRefresh`)
	openChannel(p, "lobby")
	e2etest.WantStatus(t, s.api(t, "POST", "/api/v1/channels/"+id+"/messages", bob, map[string]string{"text": "after-refresh"}), 201, "post")
	p.waitTrue(`(` + logTexts("lobby", "after-refresh") + ` || []).length === 1`)

	// The connection: scheduleRefresh sends the new token in a `refresh`
	// frame, answered `refreshed`, on the same socket.
	p.js(`(window.__refreshed = null, window.unhidra.conn.addEventListener("refreshed", (e) => window.__refreshed = e.detail), window.__before = JSON.parse(localStorage.getItem("unhidra.session")).refresh, 1)`)
	p.js(`(window.unhidra.api.access.expiresAt = Date.now() + 2000, window.unhidra.conn.scheduleRefresh(), 1)`)
	p.waitTrue(`window.__refreshed && Date.parse(window.__refreshed.expires_at) > Date.now() + 30000`)
	p.waitTrue(`JSON.parse(localStorage.getItem("unhidra.session")).refresh !== window.__before`)
	p.wait(`window.unhidra.conn.ws === window.__ws && window.unhidra.conn.state`, `"online"`)
	p.wait(`window.__states`, `[]`) // never left "online"
	p.wait(`__t.all("button", "Sign in").length + __t.all("button", "Sign out").length * 10`, `10`)
}

// TestWebTabsShareTheSession: a second tab of the same browser is signed in
// without the form, and signing out in one signs the other out too.
func TestWebTabsShareTheSession(t *testing.T) {
	browsertest.Require(t)
	s := startStack(t, nil)
	alice, pw := s.user(t, "alice")
	s.channel(t, alice, "lobby", "public")
	p := openWeb(t, s.gwURL)
	p.signIn("alice", pw)
	q := p.tab()
	q.wait(`(document.querySelector("[data-state]") || {}).dataset?.state || null`, `"online"`)
	q.waitTrue(`__t.all("link", "lobby", __t.one("navigation", "Channels")).length === 1`)
	// Both refresh from here on with the rotated token.
	p.js(`(window.unhidra.api.access.expiresAt = 0, 1)`)
	p.waitTrue(`window.unhidra.api.rest("GET", "/channels").then((l) => l.length > 0)`)
	q.js(`(window.unhidra.api.access.expiresAt = 0, 1)`)
	q.waitTrue(`window.unhidra.api.rest("GET", "/channels").then((l) => l.length > 0)`)

	q.click("button", "Sign out")
	q.waitTrue(`__t.all("button", "Sign in").length === 1`)
	p.waitTrue(`__t.all("button", "Sign in").length === 1`)
	p.wait(`document.querySelectorAll("[data-state]").length + window.unhidra.conn.subs.size`, `0`)
	p.wait(`window.unhidra.conn.ws`, `null`)
}

// TestWebReconnectRecoversMissedMessages: the whole server stops while a
// page shows a channel; the header says so; another user posts after the
// restart while the page is still reconnecting; once back online the page
// shows every missed message, in order, once, and live ones after them.
func TestWebReconnectRecoversMissedMessages(t *testing.T) {
	browsertest.Require(t)
	s := startRestartableStack(t, nil)
	alice, pw := s.user(t, "alice")
	bob, _ := s.user(t, "bob")
	id := s.channel(t, alice, "lobby", "public")
	e2etest.WantStatus(t, s.api(t, "POST", "/api/v1/channels/"+id+"/join", bob, nil), 200, "bob joins")
	e2etest.WantStatus(t, s.api(t, "POST", "/api/v1/channels/"+id+"/messages", bob, map[string]string{"text": "missed-0 before"}), 201, "post")
	p := openWeb(t, s.gwURL)
	p.signIn("alice", pw)
	openChannel(p, "lobby")
	p.waitTrue(`(` + logTexts("lobby", "missed-") + ` || []).length === 1`)
	p.allowErrors(offlineErrors...)

	s.down(t)
	p.waitTrue(`["reconnecting", "offline"].includes(document.querySelector("[data-state]").dataset.state)`)
	p.waitTrue(`["Reconnecting…", "Offline"].includes(` + statusText + `)`)
	p.shot("reconnecting")
	s.up(t)
	for i := 1; i <= 5; i++ {
		e2etest.WantStatus(t, s.api(t, "POST", "/api/v1/channels/"+id+"/messages", bob, map[string]string{"text": fmt.Sprintf("missed-%d while away", i)}), 201, "post")
	}
	p.wait(statusText, `"Connected"`)
	e2etest.WantStatus(t, s.api(t, "POST", "/api/v1/channels/"+id+"/messages", bob, map[string]string{"text": "missed-6 live"}), 201, "post")
	want := []string{"missed-0 before", "missed-1 while away", "missed-2 while away", "missed-3 while away", "missed-4 while away", "missed-5 while away", "missed-6 live"}
	p.waitTrue(`(` + logTexts("lobby", "missed-") + ` || []).length === 7`)
	var got []string
	json.Unmarshal(p.js(logTexts("lobby", "missed-")), &got)
	if len(got) != len(want) {
		t.Fatalf("the log shows %q, want %d messages", got, len(want))
	}
	for i, w := range want {
		if !strings.Contains(got[i], w) || strings.Count(strings.Join(got, "\n"), w) != 1 {
			t.Errorf("message %d: got %q, want %q once, in order (all: %q)", i, got[i], w, got)
		}
	}
	// Nothing more arrives late (a duplicate from a second recovery).
	time.Sleep(500 * time.Millisecond)
	p.wait(`(`+logTexts("lobby", "missed-")+` || []).length`, `7`)
}

// TestWebOfflineMessageIsSentOnce: the server is stopped; a message typed
// into "Message" and sent with "Send" waits (the header says "· 1 to
// send"); after the restart it is stored exactly once, by its author, and
// the page shows it once. A reload while offline keeps the queued message
// (the service worker serves the shell, the outbox is in localStorage) and
// it too is sent once after the restart.
func TestWebOfflineMessageIsSentOnce(t *testing.T) {
	browsertest.Require(t)
	s := startRestartableStack(t, nil)
	alice, pw := s.user(t, "alice")
	id := s.channel(t, alice, "lobby", "public")
	p := openWeb(t, s.gwURL)
	p.signIn("alice", pw)
	p.waitTrue(`navigator.serviceWorker.controller`) // the shell is in its cache
	openChannel(p, "lobby")
	p.allowErrors(offlineErrors...)

	stored := func(text string) int {
		t.Helper()
		n := 0
		for _, m := range messageTexts(t, s, alice, id) {
			if m == "alice: "+text {
				n++
			}
		}
		return n
	}

	// Typed offline, sent once after the restart.
	{
		s.down(t)
		p.waitTrue(`["reconnecting", "offline"].includes(document.querySelector("[data-state]").dataset.state)`)
		send(p, "offline-one")
		p.waitTrue(statusText + `.endsWith(" · 1 to send")`)
		p.waitTrue(`(` + logTexts("lobby", "offline-one") + ` || []).some((x) => x.includes("sending…"))`)
		p.shot("offline-queued")
		s.up(t)
		p.wait(statusText, `"Connected"`)
		p.wait(`window.unhidra.conn.outbox.length`, `0`)
		if n := stored("offline-one"); n != 1 {
			t.Fatalf("stored %d times, want once", n)
		}
		p.waitTrue(`(` + logTexts("lobby", "offline-one") + ` || []).length === 1 && !` + logTexts("lobby", "offline-one") + `[0].includes("sending…")`)
	}

	// A reload while offline keeps it; sent once after the restart.
	{
		s.down(t)
		p.waitTrue(`["reconnecting", "offline"].includes(document.querySelector("[data-state]").dataset.state)`)
		send(p, "offline-two")
		p.waitTrue(statusText + `.endsWith(" · 1 to send")`)
		p.reload()
		p.waitTrue(`__t.all("button", "Sign out").length === 1`) // the shell, from the service worker
		p.shot("offline-reloaded")
		p.waitTrue(statusText + `.endsWith(" · 1 to send")`)
		p.wait(`JSON.parse(localStorage.getItem("unhidra.outbox")).map((x) => x.body.text)`, `["offline-two"]`)
		s.up(t)
		p.wait(statusText, `"Connected"`)
		p.wait(`window.unhidra.conn.outbox.length`, `0`)
		p.waitTrue(`(` + logTexts("lobby", "offline-two") + ` || []).length === 1`)
		if n := stored("offline-two"); n != 1 {
			t.Fatalf("stored %d times, want once", n)
		}
		if n := stored("offline-one"); n != 1 {
			t.Fatalf("the first message is now stored %d times", n)
		}
	}
}

// TestWebOtherOriginCannotOpenTheWebSocket (WS-5): a page of another
// origin holding a valid access token cannot open the gateway's WebSocket
// (refused at the handshake: no welcome, closed), while the same token
// works from the client's own page.
func TestWebOtherOriginCannotOpenTheWebSocket(t *testing.T) {
	browsertest.Require(t)
	s := startStack(t, nil)
	alice, _ := s.user(t, "alice")
	probe := `(() => { window.__frames = []; window.__closed = null;
  const ws = new WebSocket(` + strconv.Quote(s.wsURL) + `, ["unhidra.v1", "bearer." + ` + strconv.Quote(alice) + `]);
  ws.onmessage = (e) => window.__frames.push(JSON.parse(e.data).type);
  ws.onclose = (e) => { window.__closed = e.code };
  return 1 })()`
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, `<!doctype html><title>elsewhere</title><p>another site</p>`)
	}))
	defer other.Close()

	b := browsertest.Open(t, other.URL)
	ctx := t.Context()
	b.WaitFor(t, ctx, `document.title`, `"elsewhere"`)
	if _, err := b.Eval(ctx, probe); err != nil {
		t.Fatal(err)
	}
	b.WaitFor(t, ctx, `window.__closed !== null`, `true`)
	if v, _ := b.Eval(ctx, `window.__frames`); string(v) != `[]` {
		t.Errorf("another origin's socket got frames %s", v)
	}
	if v, _ := b.Eval(ctx, `window.__closed`); string(v) != `1006` {
		t.Errorf("another origin's socket closed with %s, want 1006 (refused handshake)", v)
	}

	p := openWeb(t, s.gwURL)
	p.js(probe)
	p.wait(`window.__frames[0] || null`, `"welcome"`)
	p.wait(`window.__closed`, `null`)
}

// TestWebIsInstallableAndCachesNoAPIAnswer: the manifest is served and
// valid (Chromium finds the page installable), the service worker controls
// the page, and after signing in and using the app its caches hold the
// shell but no REST or auth API answer and no /config.json; with the server
// stopped a reload still shows the client, from the cache.
func TestWebIsInstallableAndCachesNoAPIAnswer(t *testing.T) {
	browsertest.Require(t)
	s := startRestartableStack(t, nil)
	alice, pw := s.user(t, "alice")
	id := s.channel(t, alice, "lobby", "public")
	e2etest.WantStatus(t, s.api(t, "POST", "/api/v1/channels/"+id+"/messages", alice, map[string]string{"text": "hello"}), 201, "post")

	r := getFile(t, s.gwURL+"/manifest.webmanifest")
	var m struct {
		Name     string `json:"name"`
		StartURL string `json:"start_url"`
		Display  string `json:"display"`
		Icons    []struct {
			Src   string `json:"src"`
			Sizes string `json:"sizes"`
			Type  string `json:"type"`
		} `json:"icons"`
	}
	r.JSON(t, &m)
	if m.Name != "Unhidra" || m.StartURL != "/" || m.Display != "standalone" || len(m.Icons) == 0 {
		t.Fatalf("manifest: %+v", m)
	}
	for _, ic := range m.Icons {
		getFile(t, s.gwURL+ic.Src)
	}

	p := openWeb(t, s.gwURL)
	p.waitTrue(`navigator.serviceWorker.ready.then((r) => !!r.active)`)
	p.reload()
	p.waitTrue(`navigator.serviceWorker.controller && navigator.serviceWorker.controller.scriptURL.endsWith("/sw.js")`)
	// Chromium's own verdict (asked again while it is still reading the
	// manifest of the reloaded page).
	var inst struct {
		InstallabilityErrors []struct {
			ErrorID string `json:"errorId"`
		} `json:"installabilityErrors"`
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		res, err := p.b.Call(p.ctx, "Page.getInstallabilityErrors", nil)
		if err != nil {
			t.Fatal(err)
		}
		inst.InstallabilityErrors = nil
		json.Unmarshal(res, &inst)
		if len(inst.InstallabilityErrors) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Chromium finds the client not installable: %+v", inst.InstallabilityErrors)
		}
		time.Sleep(200 * time.Millisecond)
	}

	p.signIn("alice", pw)
	openChannel(p, "lobby")
	p.waitTrue(`(` + logTexts("lobby", "hello") + ` || []).length === 1`)
	p.waitTrue(`window.unhidra.api.rest("GET", "/channels").then(() => fetch("/config.json")).then((r) => r.ok)`)
	p.waitTrue(`window.unhidra.api.auth("GET", "/me").then(() => true)`)
	const cached = `(async () => { const out = []; for (const k of await caches.keys()) { const c = await caches.open(k); for (const r of await c.keys()) out.push(r.url) } return out })()`
	// The shell, whole (the chat's modules included), is in the cache.
	p.waitTrue(`(` + cached + `).then((l) => ["/", "/js/main.js", "/js/app.js", "/js/chat/index.js", "/app.css", "/vendor/preact.mjs"].every((f) => l.includes(location.origin + f)))`)
	var urls []string
	json.Unmarshal(p.js(cached), &urls)
	var authURL string
	json.Unmarshal(p.js(`window.unhidra.api.authURL`), &authURL)
	for _, u := range urls {
		if strings.Contains(u, "/api/") || strings.Contains(u, "/config.json") || strings.HasPrefix(u, authURL) || strings.HasSuffix(u, "/ws") {
			t.Errorf("the service worker cached %s", u)
		}
	}

	// Offline, the shell still loads.
	p.allowErrors(offlineErrors...)
	s.down(t)
	p.reload()
	p.waitTrue(`__t.all("button", "Sign out").length === 1 && __t.all("navigation", "Channels").length === 1`)
	p.waitTrue(`["reconnecting", "offline"].includes(document.querySelector("[data-state]").dataset.state)`)
	// A new tab of that browser too: the form or the shell, never a browser error.
	q := p.tab()
	q.waitTrue(`__t.all("button", "Sign out").length === 1 || __t.all("button", "Sign in").length === 1`)
	q.allowErrors(offlineErrors...)
}

// focusName is the accessible name (and role-ish tag) of the focused
// element.
const focusName = `(() => { const el = document.activeElement; if (!el || el === document.body) return ""; return el.tagName.toLowerCase() + ":" + __t.name(el) })()`

// fromTop puts the keyboard's starting point at the top of the page (as on
// load): the next Tab goes to the first focusable element.
const fromTop = `(() => { const b = document.body; b.tabIndex = -1; b.focus(); b.removeAttribute("tabindex"); return 1 })()`

// tabThrough presses Tab n times and returns the names focused in turn.
func tabThrough(p *webPage, n int) []string {
	p.t.Helper()
	var out []string
	for range n {
		p.press("Tab", false)
		var name string
		json.Unmarshal(p.js(focusName), &name)
		out = append(out, name)
	}
	return out
}

// TestWebKeyboardAndPhone: the keyboard reaches everything in order: the
// sign-in form's fields and button; after sign-in the "Skip to content"
// link first (it moves the focus to the main content), the channel links,
// the composer. On a 360×740 phone the sidebar is behind "Menu", which
// opens it; choosing a channel (or Escape) closes it. Screenshots of both
// sizes.
func TestWebKeyboardAndPhone(t *testing.T) {
	browsertest.Require(t)
	s := startStack(t, nil)
	alice, pw := s.user(t, "alice")
	bob, _ := s.user(t, "bob")
	id := s.channel(t, alice, "lobby", "public")
	s.channel(t, alice, "random", "public")
	s.api(t, "POST", "/api/v1/channels/"+id+"/join", bob, nil)
	for _, m := range []struct{ who, text string }{{bob, "Morning! The sensor in hall B reads 21.5 °C again."}, {alice, "Great, see https://example.com/status for the dashboard."}, {bob, "Thanks, looks good."}} {
		e2etest.WantStatus(t, s.api(t, "POST", "/api/v1/channels/"+id+"/messages", m.who, map[string]string{"text": m.text}), 201, "post")
	}
	p := openWeb(t, s.gwURL)

	p.waitTrue(`document.activeElement === __t.one("textbox", "Username")`)
	p.js(fromTop)
	got := tabThrough(p, 3)
	if want := []string{"input:Username", "input:Password", "button:Sign in"}; !slices.Equal(got, want) {
		t.Errorf("Tab through the sign-in form: %q, want %q", got, want)
	}
	p.signIn("alice", pw)
	p.wait(`document.activeElement.id`, `"main"`)

	// From the top of the page: the skip link first, then the header, the
	// channels, …, the composer.
	p.js(fromTop)
	got = tabThrough(p, 1)
	if got[0] != "a:Skip to content" {
		t.Errorf("first Tab stop %q, want the skip link", got[0])
	}
	p.press("Enter", false)
	p.wait(`document.activeElement.id`, `"main"`)
	p.wait(`location.hash`, `""`) // the skip link is no route

	p.js(fromTop)
	stops := tabThrough(p, 40)
	idx := func(name string) int { return slices.Index(stops, name) }
	if idx("a:lobby") < 0 || idx("a:random") < 0 || idx("button:Sign out") < 0 || idx("button:Sign out") > idx("a:lobby") {
		t.Errorf("Tab stops after sign-in: %q", stops)
	}
	// Enter on the focused channel link opens it; the composer is reachable.
	p.js(`(__t.one("link", "lobby", __t.one("navigation", "Channels")).focus(), 1)`)
	p.press("Enter", false)
	p.waitTrue(`__t.all("heading", "lobby").length`)
	p.waitTrue(`(` + logTexts("lobby", "Thanks") + ` || []).length === 1`)
	p.js(fromTop)
	stops = tabThrough(p, 60)
	if !slices.Contains(stops, "textarea:Message") && !slices.Contains(stops, "input:Message") {
		t.Errorf("Tab never reaches the composer: %q", stops)
	}
	p.js(fromTop)
	p.shot("channel-desktop")

	// A phone.
	p.viewport(360, 740)
	p.wait(`__t.all("navigation", "Channels").length`, `0`) // behind the menu
	p.click("button", "Menu")
	p.wait(`__t.one("button", "Menu").getAttribute("aria-expanded")`, `"true"`)
	p.waitTrue(`__t.all("link", "random", __t.one("navigation", "Channels")).length`)
	p.shot("phone-menu")
	p.js(`(__t.one("link", "random", __t.one("navigation", "Channels")).click(), 1)`)
	p.waitTrue(`__t.all("heading", "random").length`)
	p.wait(`__t.all("navigation", "Channels").length`, `0`) // closed on navigation
	p.wait(`__t.one("button", "Menu").getAttribute("aria-expanded")`, `"false"`)
	p.js(`(location.hash = "#/channels/` + id + `", 1)`)
	p.waitTrue(`(` + logTexts("lobby", "Thanks") + ` || []).length === 1`)
	p.shot("phone-channel")
	p.click("button", "Menu")
	p.waitTrue(`__t.all("navigation", "Channels").length`)
	p.press("Escape", false)
	p.wait(`__t.all("navigation", "Channels").length`, `0`)
	p.wait(`__t.name(document.activeElement)`, `"Menu"`)
	p.viewport(1280, 800)
}
