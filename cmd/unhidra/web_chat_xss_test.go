package main

import (
	"strconv"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/browsertest"
	"github.com/unhidra/unhidra/internal/e2etest"
)

// TestWebChatRendersUserContentAsText: script payloads in a display name,
// channel names, a topic, messages and a thread reply are shown as their
// literal text (to their author and to an admin, who knows display
// names), a javascript: address is never a link while an https one is,
// search results highlight without interpreting, and nothing runs: no
// img, script, svg or iframe element appears in the document and
// window.__xss stays undefined.
func TestWebChatRendersUserContentAsText(t *testing.T) {
	browsertest.Require(t)
	s := startStack(t, nil)
	img := `<img src=x onerror="window.__xss=1">`
	script := `<script>window.__xss=1</script>`
	svg := `"><svg onload=window.__xss=1>`
	jsLink := `javascript:window.__xss=1`
	mdLink := `[click me](javascript:window.__xss=1) and https://example.com/ok?a=<b>`
	pw := e2etest.Secret("password", "pw-of-mallory-"+e2etest.RandomHex(4))
	e2etest.WantStatus(t, s.authAPI(t, "POST", "/register", "", map[string]string{"username": "mallory", "password": pw, "display_name": img}), 201, "register mallory")
	mallory := s.login(t, "mallory", pw).AccessToken
	ch := s.channel(t, mallory, svg, "public")
	r := s.api(t, "PATCH", "/api/v1/channels/"+ch, mallory, map[string]string{"topic": script})
	e2etest.WantStatus(t, r, 200, "set the topic")
	s.channel(t, mallory, script, "public")
	root := post(t, s, mallory, ch, img)
	post(t, s, mallory, ch, script)
	post(t, s, mallory, ch, jsLink)
	post(t, s, mallory, ch, mdLink)
	r = s.api(t, "POST", "/api/v1/channels/"+ch+"/messages", mallory, map[string]any{"text": svg, "thread_id": root})
	e2etest.WantStatus(t, r, 201, "thread reply")

	q := strconv.Quote
	// textIs: some element inside root has exactly text as its text.
	textIs := func(root, text string) string {
		return `[...(` + root + `).querySelectorAll("*")].some((e) => e.textContent === ` + q(text) + `)`
	}
	noExecution := func(p *webPage) {
		t.Helper()
		time.Sleep(300 * time.Millisecond) // proving that nothing runs: a moment for an onerror or onload
		p.wait(`typeof window.__xss`, `"undefined"`)
		p.wait(`document.body.querySelectorAll("img, script, svg, iframe, object, embed, style").length`, `0`)
		p.wait(`[...document.querySelectorAll("a[href]")].map((a) => a.getAttribute("href")).filter((h) => !/^(https?:|mailto:|#)/i.test(h))`, `[]`)
		p.wait(`[...document.querySelectorAll("*")].flatMap((e) => [...e.attributes].map((a) => a.name)).filter((n) => n.startsWith("on"))`, `[]`)
	}

	p := openWeb(t, s.gwURL)
	p.signIn("mallory", pw)
	// The display name in the header, the channel names in the sidebar.
	cwaitTrue(p, textIs(`document.querySelector("header")`, img))
	cwaitTrue(p, `__t.all("link", `+q(svg)+`, __c.nav()).length === 1 && __t.all("link", `+q(script)+`, __c.nav()).length === 1`)
	openChannel(p, svg)
	cwaitTrue(p, `__t.one("heading", `+q(svg)+`).textContent === `+q(svg))
	cwaitTrue(p, textIs(`__t.one("heading", `+q(svg)+`).parentElement`, script))
	log := `__c.log(` + q(svg) + `)`
	for _, text := range []string{img, script, jsLink, mdLink} {
		cwaitTrue(p, textIs(log, text))
	}
	// The author of each is mallory's display name, as text.
	cwaitTrue(p, `__c.texts(`+log+`).filter((t) => t.includes(`+q(img)+`)).length >= 4`)
	cwait(p, `[...`+log+`.querySelectorAll("a[href]")].map((a) => a.href)`, `["https://example.com/ok?a="]`)
	cwait(p, `__t.all("link", undefined, `+log+`).map((a) => a.textContent)`, `["https://example.com/ok?a="]`)

	// The thread reply.
	clickIn(p, `__c.item(`+log+`, `+q(img)+`)`, "button", "1 reply")
	cwaitTrue(p, `__c.thread() && `+textIs(`__t.one("log", "Replies", __c.thread())`, svg))
	noExecution(p)

	// Search: a highlighted result is still text.
	p.fill("Search messages", "xss")
	clickIn(p, `__t.one("[role=search]", "Message search")`, "button", "Search")
	cwaitTrue(p, `__t.all("region", "Search results").length && __t.one("region", "Search results").querySelectorAll("mark").length > 0`)
	cwaitTrue(p, `[...__t.one("region", "Search results").querySelectorAll("p")].some((e) => e.textContent === `+q(script)+`)`)
	shot(p, "chat-xss")
	noExecution(p)

	// A channel renamed to a payload from the settings dialog.
	p.click("button", "Close search results")
	p.click("button", "Channel settings")
	dlg := `__t.one("dialog", "Channel settings")`
	fillIn(p, dlg, "Name", img)
	clickIn(p, dlg, "button", "Save")
	cwaitTrue(p, `__t.all("heading", `+q(img)+`).length && __t.all("link", `+q(img)+`, __c.nav()).length === 1`)
	noExecution(p)

	// An admin, who knows display names, sees mallory's as text.
	admin := openWeb(t, s.gwURL)
	admin.signIn("admin", s.adminPW)
	admin.js(`(location.hash = "#/channels/` + ch + `", 1)`)
	cwaitTrue(admin, `__t.all("log", "Messages in " + `+q(img)+`).length`)
	cwaitTrue(admin, `__c.texts(__c.log(`+q(img)+`)).filter((t) => t.includes(`+q(img)+`)).length >= 4`)
	cwaitTrue(admin, `[...__c.log(`+q(img)+`).querySelectorAll("*")].filter((e) => e.textContent === `+q(img)+`).length >= 5`)
	noExecution(admin)
}
