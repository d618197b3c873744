package main

// Browser tests of the web client's admin pages against the real stack:
// verifying and disabling users, registering a device whose key is shown
// once (and works), rotating its key (the new one shown once and working,
// the old refused), revoking it, the live connections, and the audit log by
// filter and page, verified in the browser against the signed checkpoint;
// a non-admin sees none of it.

import (
	"encoding/json"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/browsertest"
	"github.com/unhidra/unhidra/internal/e2etest"
)

// adminTab clicks the tab named name in the admin sections and waits for
// it to be the current one.
func adminTab(p *webPage, name string) {
	p.t.Helper()
	q := strconv.Quote
	clickWithin(p, `__t.one("navigation", "Admin sections")`, "link", name)
	p.waitTrue(`__t.one("link", ` + q(name) + `, __t.one("navigation", "Admin sections")).getAttribute("aria-current") === "page"`)
}

// userRow is the text of the users table's row of name.
const userRowJS = `((name) => { const tr = document.querySelector("tr[data-user='" + CSS.escape(name) + "']"); return tr ? __t.norm(tr.textContent) : null; })`

// auditJS reads the audit table: every row's action, outcome and
// verification.
const auditRunJS = `Number((document.querySelector(".verify-state") || {dataset: {run: 0}}).dataset.run)`

const auditJS = `(() => [...document.querySelectorAll("tr[data-seq]")].map((tr) => ({
  seq: Number(tr.dataset.seq),
  action: tr.querySelector("[data-label=Action]").firstChild.textContent,
  outcome: tr.querySelector("[data-label=Outcome]").textContent,
  verified: tr.querySelector("[data-label=Verified]").textContent.trim(),
})))()`

type auditRow struct {
	Seq      int    `json:"seq"`
	Action   string `json:"action"`
	Outcome  string `json:"outcome"`
	Verified string `json:"verified"`
}

var verifiedRE = regexp.MustCompile(`^Verified: (\d+) records? against checkpoint of size (\d+) signed `)

// waitVerified waits for the audit page's verification and checks that it
// covers every row shown; it returns the rows.
func waitVerified(t *testing.T, p *webPage, after int) []auditRow {
	t.Helper()
	p.waitTrue(`(() => { const s = document.querySelector(".verify-state"); return s && Number(s.dataset.run) > ` + strconv.Itoa(after) + ` && s.dataset.state !== "checking" })()`)
	var state string
	json.Unmarshal(p.js(`document.querySelector(".verify-state").textContent`), &state)
	var rows []auditRow
	json.Unmarshal(p.js(auditJS), &rows)
	m := verifiedRE.FindStringSubmatch(state)
	if m == nil {
		t.Fatalf("the audit page says %q, want Verified: …", state)
	}
	n, _ := strconv.Atoi(m[1])
	size, _ := strconv.Atoi(m[2])
	if n != len(rows) || n == 0 {
		t.Fatalf("%q for %d rows", state, len(rows))
	}
	for _, r := range rows {
		if r.Verified != "✓ verified" || r.Seq >= size {
			t.Fatalf("record %d: %q (checkpoint of size %d)", r.Seq, r.Verified, size)
		}
	}
	return rows
}

// keyGoneJS is true in a page that holds key nowhere: not in its text,
// its fields or its storage.
func keyGoneJS(key string) string {
	q := strconv.Quote(key)
	return `!document.body.innerText.includes(` + q + `) && ![...document.querySelectorAll("input, textarea")].some((i) => i.value.includes(` + q + `)) && !JSON.stringify(localStorage).includes(` + q + `) && !JSON.stringify(sessionStorage).includes(` + q + `)`
}

func TestWebAdminPages(t *testing.T) {
	browsertest.Require(t)
	s := startStack(t, map[string]string{"REGISTRATION": "approval"})
	admin := s.admin(t)
	pws := map[string]string{}
	for _, u := range []string{"carol", "dave"} {
		pws[u] = e2etest.Secret("password", "pw-of-"+u+"-"+e2etest.RandomHex(4))
		r := s.authAPI(t, "POST", "/register", "", map[string]string{"username": u, "password": pws[u]})
		e2etest.WantStatus(t, r, 201, "register "+u)
		if !strings.Contains(string(r.Body), `"verified":false`) {
			t.Fatalf("under approval, %s is registered %s", u, r.Body)
		}
	}
	e2etest.WantStatus(t, s.authAPI(t, "POST", "/admin/users/dave/verify", admin, nil), 200, "verify dave")
	loginStatus := func(u string) int {
		return s.authAPI(t, "POST", "/login", "", map[string]string{"username": u, "password": pws[u]}).Status
	}
	if st := loginStatus("carol"); st == 200 {
		t.Fatal("an unverified user signed in")
	}

	p := openWeb(t, s.gwURL)
	p.signIn("admin", s.adminPW)
	p.click("link", "Admin")
	p.waitTrue(`__t.all("heading", "Admin").length`)
	p.waitTrue(`__t.one("link", "Users", __t.one("navigation", "Admin sections")).getAttribute("aria-current") === "page"`)

	t.Run("users: verify one awaiting approval, disable one", func(t *testing.T) {
		p.wait(userRowJS+`("carol").includes("awaiting verification")`, "true")
		p.click("button", "Verify carol")
		p.waitTrue(userRowJS + `("carol").includes("verified") && !` + userRowJS + `("carol").includes("awaiting")`)
		if st := loginStatus("carol"); st != 200 {
			t.Fatalf("carol, verified in the page, signs in with %d", st)
		}
		if st := loginStatus("dave"); st != 200 {
			t.Fatalf("dave signs in with %d before being disabled", st)
		}
		p.click("button", "Disable dave")
		clickWithin(p, `__t.one("dialog", "Disable dave?")`, "button", "Disable")
		p.waitTrue(userRowJS + `("dave").includes("disabled")`)
		if st := loginStatus("dave"); st == 200 {
			t.Fatal("dave, disabled in the page, still signs in")
		}
		if n := string(p.js(`__t.all("button", "Disable admin").length`)); n != "0" {
			t.Errorf("the admin is offered to disable their own account")
		}
	})

	var key, devID string
	var dev *e2etest.WSConn
	parent := t
	t.Run("devices: register one with its key shown once", func(t *testing.T) {
		adminTab(p, "Devices")
		p.click("button", "Register device")
		p.fill("Name", "Pump 7")
		p.fill("Owner", "carol")
		clickWithin(p, `__t.one("dialog", "Register device")`, "button", "Register")
		p.waitTrue(`__t.all("dialog", "API key of Pump 7").length`)
		json.Unmarshal(p.js(`__t.one("textbox", "API key").value`), &key)
		if key == "" {
			t.Fatal("no API key shown")
		}
		e2etest.Secret("device API key", key)
		if txt := string(p.js(`__t.one("dialog", "API key of Pump 7").textContent`)); !strings.Contains(txt, "it will not be shown again") {
			t.Errorf("the key's dialog says %s, want a warning that it is shown once", txt)
		}
		if ro := string(p.js(`__t.one("textbox", "API key").readOnly`)); ro != "true" {
			t.Errorf("the key's field is not read-only")
		}
		p.click("button", "Copy")
		// Copied, or (a browser that refuses the clipboard) selected for Ctrl+C.
		p.waitTrue(`(() => { const d = __t.one("dialog", "API key of Pump 7"); const s = d.querySelector("[role=status]").textContent; const i = __t.one("textbox", "API key", d); return s.startsWith("Copied") || (s.includes("Ctrl+C") && i.selectionEnd - i.selectionStart === i.value.length) })()`)
		// The key shown is the device's: it connects.
		dev = e2etest.DialWS(parent, s.wsURL, "unhidra.v1, apikey."+key)
		devID = dev.Welcome.Principal.ID
		if dev.Welcome.Principal.Kind != "device" || devID == "" {
			t.Fatalf("the shown key connects as %+v", dev.Welcome.Principal)
		}
		clickWithin(p, `__t.one("dialog", "API key of Pump 7")`, "button", "Done")
		p.waitTrue(`!__t.all("dialog", "API key of Pump 7").length`)
		dwaitTrue(p, `__d.row("Pump 7") && __d.row("Pump 7").textContent.includes("carol")`)
		gone := keyGoneJS(key)
		if v := string(p.js(gone)); v != "true" {
			t.Fatal("the key is still in the page once its dialog closed")
		}
		p.js(`(location.reload(), 1)`)
		p.wait("typeof window.unhidra", `"object"`)
		p.waitTrue(`__t.all("heading", "All devices").length`)
		dwaitTrue(p, `__d.row("Pump 7")`)
		if v := string(p.js(gone)); v != "true" {
			t.Fatal("the key is shown again after a reload")
		}
	})

	t.Run("devices: rotate a key, the new one shown once and working, the old refused", func(t *testing.T) {
		if dev == nil {
			t.Fatal("the register subtest left no connected device")
		}
		old := key
		p.click("button", "Rotate key of Pump 7")
		clickWithin(p, `__t.one("dialog", "Rotate the key of Pump 7?")`, "button", "Rotate")
		p.waitTrue(`__t.all("dialog", "API key of Pump 7").length`)
		json.Unmarshal(p.js(`__t.one("textbox", "API key", __t.one("dialog", "API key of Pump 7")).value`), &key)
		if key == "" || key == old {
			t.Fatalf("after Rotate the dialog shows no new key (same as the old: %v)", key == old)
		}
		e2etest.Secret("device API key", key)
		if txt := string(p.js(`__t.one("dialog", "API key of Pump 7").textContent`)); !strings.Contains(txt, "it will not be shown again") {
			t.Errorf("the rotated key's dialog says %s, want a warning that it is shown once", txt)
		}
		// The connection on the old key is closed, and the old key refused.
		if code, err := dev.CloseCode(5 * time.Second); code != 4003 {
			t.Errorf("the connection on the old key closed with %d (%v), want 4003", code, err)
		}
		if c, err := e2etest.TryWS(s.wsURL, "unhidra.v1, apikey."+old); err == nil {
			c.Close()
			t.Fatal("the old key still connects after Rotate")
		}
		// The new key is the device's: it connects as the same device.
		var err error
		if dev, err = e2etest.TryWS(s.wsURL, "unhidra.v1, apikey."+key); err != nil {
			t.Fatalf("the rotated key does not connect: %v", err)
		}
		parent.Cleanup(func() { dev.Close() })
		if pr := dev.Welcome.Principal; pr.Kind != "device" || pr.ID != devID {
			t.Fatalf("the rotated key connects as %+v, want device %s", pr, devID)
		}
		clickWithin(p, `__t.one("dialog", "API key of Pump 7")`, "button", "Done")
		p.waitTrue(`!__t.all("dialog", "API key of Pump 7").length`)
		if v := string(p.js(keyGoneJS(key))); v != "true" {
			t.Fatal("the rotated key is still in the page once its dialog closed")
		}
		dwait(p, `__d.state("Pump 7") !== "revoked"`, `true`)
	})

	t.Run("devices: revoke one", func(t *testing.T) {
		if dev == nil {
			t.Fatal("the register subtest left no connected device to revoke")
		}
		p.click("button", "Revoke Pump 7")
		clickWithin(p, `__t.one("dialog", "Revoke Pump 7?")`, "button", "Revoke")
		dwait(p, `__d.state("Pump 7")`, `"revoked"`)
		if code, err := dev.CloseCode(5 * time.Second); code != 4003 {
			t.Errorf("the revoked device's connection closed with %d (%v), want 4003", code, err)
		}
		r := s.authAPI(t, "GET", "/devices/"+devID, admin, nil)
		if !strings.Contains(string(r.Body), `"revoked":true`) {
			t.Errorf("the device after Revoke: %s", r.Body)
		}
	})

	t.Run("connections: the admin's own is listed", func(t *testing.T) {
		adminTab(p, "Connections")
		p.waitTrue(`document.querySelectorAll("tr[data-session]").length`)
		p.waitTrue(`[...document.querySelectorAll("tr[data-session]")].some((tr) => tr.textContent.includes("user admin") && tr.textContent.includes("this tab") && tr.querySelector("[data-label=Transport]").textContent === "ws")`)
		p.click("button", "Refresh")
		p.waitTrue(`[...document.querySelectorAll("tr[data-session]")].some((tr) => tr.textContent.includes("this tab"))`)
	})

	t.Run("audit: records by filter and page, verified against the checkpoint", func(t *testing.T) {
		run := func() int {
			var n int
			json.Unmarshal(p.js(auditRunJS), &n)
			return n
		}
		adminTab(p, "Audit log")
		all := waitVerified(t, p, 0)
		seen := map[string]bool{}
		for _, r := range all {
			seen[r.Action] = true
		}
		for _, a := range []string{"user_verify", "user_disable", "device_register", "device_revoke"} {
			if !seen[a] {
				t.Errorf("the audit page lacks a %s record: %v", a, seen)
			}
		}
		n := run()
		p.fill("Action", "login")
		p.click("button", "Apply")
		logins := waitVerified(t, p, n)
		failed := 0
		for _, r := range logins {
			if r.Action != "login" {
				t.Errorf("the login filter lists %+v", r)
			}
			if r.Outcome == "failure" {
				failed++
			}
		}
		if failed < 2 {
			t.Errorf("%d failed logins listed, want carol's (unverified) and dave's (disabled): %+v", failed, logins)
		}
		p.shot("admin-audit")

		// More than a page of records, so it pages: failed logins, and a
		// read whose query (kept in the record's details) holds what the
		// canonical entry must escape exactly as the server does.
		for i := range 50 {
			s.authAPI(t, "POST", "/login", "", map[string]string{"username": "nobody-" + strconv.Itoa(i), "password": "wrong-password"})
		}
		odd := url.Values{"target": {"odd<&>\"\\\u2028\u2029\u00e9\U0001F600\t\x01\x7f"}, "actor": {"zz"}, "outcome": {"failure"}}
		e2etest.WantStatus(t, s.api(t, "GET", "/api/v1/audit?"+odd.Encode(), admin, nil), 200, "read the audit log")
		n = run()
		p.click("button", "Clear")
		first := waitVerified(t, p, n)
		if len(first) != 50 {
			t.Fatalf("the first page holds %d records, want 50", len(first))
		}
		if v := string(p.js(`[...document.querySelectorAll("tr[data-seq] [data-label=Action] .details")].some((d) => d.textContent.includes("odd<&>\"\\\u2028\u2029\u00e9\u{1F600}\t\u0001\u007f"))`)); v != "true" {
			t.Errorf("no verified record with the odd query (JSON escapes, U+2028, controls, non-ASCII)")
		}
		n = run()
		p.click("button", "Older")
		older := waitVerified(t, p, n)
		if want := first[len(first)-1].Seq - 1; older[0].Seq != want {
			t.Errorf("the older page starts at record %d, want %d", older[0].Seq, want)
		}
		n = run()
		p.click("button", "Newer")
		if newest := waitVerified(t, p, n); newest[0].Seq < first[0].Seq {
			t.Errorf("Newer shows record %d first, want the newest (at least %d)", newest[0].Seq, first[0].Seq)
		}
	})

	t.Run("a non-admin sees no Admin link and gets no audit data", func(t *testing.T) {
		c := openWeb(t, s.gwURL)
		c.allowErrors("403")
		c.signIn("carol", pws["carol"])
		c.waitTrue(`__t.all("link", "Devices").length`)
		for _, n := range c.names("link") {
			if n == "Admin" {
				t.Fatal("carol is shown the Admin link")
			}
		}
		c.js(`location.hash = "#/admin/audit"`)
		c.waitTrue(`document.querySelector("main").textContent.includes("Admins only.")`)
		if n := string(c.js(`document.querySelectorAll("tr[data-seq], .verify-state").length`)); n != "0" {
			t.Errorf("carol's page shows %s audit elements", n)
		}
		if st := string(c.js(`unhidra.api.rest("GET", "/audit").then(() => 200, (e) => e.status)`)); st != "403" {
			t.Errorf("carol's REST read of the audit log: %s, want 403", st)
		}
	})
}
