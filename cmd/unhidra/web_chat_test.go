package main

// Browser tests of the web client's chat: two users in two real Chromium
// pages against the real stack (history on open, live messages, a thread,
// an edit, a delete, presence, typing, search), user content rendered as
// text (XSS), scroll-back through a long history, unread counts and
// direct messages. Everything is found by role and accessible name.

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/unhidra/unhidra/internal/browsertest"
	"github.com/unhidra/unhidra/internal/e2etest"
)

// chatJS defines window.__c in the page: lookups of the chat's parts by
// role and name.
const chatJS = `window.__c || (window.__c = {
  nav() { return __t.one("navigation", "Channels"); },
  log(name) { return __t.one("log", "Messages in " + name); },
  thread() { return __t.one("aside", "Thread"); },
  // item is the list item of root whose text contains text (null if none).
  item(root, text) { return __t.all("listitem", undefined, root).find((li) => li.textContent.includes(text)) || null; },
  texts(root) { return __t.all("listitem", undefined, root).map((li) => li.textContent); },
  has(root, text) { return !!this.item(root, text); },
})`

// cjs is js with window.__c defined.
func cjs(p *webPage, expr string) string {
	p.t.Helper()
	return string(p.js(chatJS + ";\n" + expr))
}

func cwait(p *webPage, expr, want string) {
	p.t.Helper()
	p.wait(chatJS+";\n"+expr, want)
}

func cwaitTrue(p *webPage, expr string) {
	p.t.Helper()
	p.wait(chatJS+";\n!!("+expr+")", "true")
}

// clickIn clicks the button named name inside the element expr.
func clickIn(p *webPage, root, role, name string) {
	p.t.Helper()
	q := strconv.Quote
	cwaitTrue(p, `(() => { const r = `+root+`; return r && __t.all(`+q(role)+`, `+q(name)+`, r).length })()`)
	cjs(p, `(__t.one(`+q(role)+`, `+q(name)+`, `+root+`).click(), 1)`)
}

// fillIn types value into the textbox named label inside root.
func fillIn(p *webPage, root, label, value string) {
	p.t.Helper()
	q := strconv.Quote
	cwaitTrue(p, `(() => { const r = `+root+`; return r && __t.all("textbox", `+q(label)+`, r).length })()`)
	cjs(p, `(() => { const el = __t.one("textbox", `+q(label)+`, `+root+`); el.focus(); __t.fill(el, `+q(value)+`); return 1 })()`)
}

// openChannel clicks the channel named name in the sidebar and waits for
// its heading and log.
func openChannel(p *webPage, name string) {
	p.t.Helper()
	q := strconv.Quote
	clickIn(p, `__c.nav()`, "link", name)
	cwaitTrue(p, `__t.all("heading", `+q(name)+`).length && __t.all("log", "Messages in " + `+q(name)+`).length && __c.log(`+q(name)+`).getAttribute("aria-busy") === "false"`)
}

// send types text into the composer "Message" and clicks "Send".
func send(p *webPage, text string) {
	p.t.Helper()
	p.fill("Message", text)
	p.click("button", "Send")
}

// shot saves a screenshot when the page helpers can (web_helpers_test.go).
func shot(p *webPage, name string) {
	if s, ok := any(p).(interface{ shot(string) }); ok {
		s.shot(name)
	}
}

// post stores a message over REST and returns its id.
func post(t *testing.T, s *stack, token, channel, text string) string {
	t.Helper()
	r := s.api(t, "POST", "/api/v1/channels/"+channel+"/messages", token, map[string]any{"text": text})
	e2etest.WantStatus(t, r, 201, "post "+text)
	var m struct {
		ID string `json:"id"`
	}
	r.JSON(t, &m)
	return m.ID
}

type restMessage struct {
	ID       string `json:"id"`
	Offset   int64  `json:"offset"`
	Text     *string
	ThreadID string `json:"thread_id"`
	Deleted  bool   `json:"deleted"`
	Sender   struct {
		Kind string `json:"kind"`
		ID   string `json:"id"`
	} `json:"sender"`
}

// history returns the channel's newest messages over REST.
func history(t *testing.T, s *stack, token, channel string) []restMessage {
	t.Helper()
	r := s.api(t, "GET", "/api/v1/channels/"+channel+"/messages?limit=200", token, nil)
	e2etest.WantStatus(t, r, 200, "history")
	var h struct {
		Messages []restMessage `json:"messages"`
	}
	r.JSON(t, &h)
	return h.Messages
}

// TestWebTwoUsersChatInRealTime: alice and bob, each in a browser of their
// own: history posted before the pages opened is in the log with its
// authors; alice's message reaches bob live (its link a link) and is in
// REST history with alice as its sender; bob's typing shows on alice's
// page; bob replies in a thread and alice sees the reply in the thread
// panel (and "1 reply" on the root, not the reply in the main log); alice
// edits and deletes her messages and bob sees both live; search finds a
// message with the term highlighted; presence both ways on their direct
// channel: alice going away, coming back, signing out and in is seen by
// bob, then bob going away and signing out is seen by alice.
func TestWebTwoUsersChatInRealTime(t *testing.T) {
	browsertest.Require(t)
	s := startStack(t, nil)
	alice, alicePW := s.user(t, "alice")
	bob, bobPW := s.user(t, "bob")
	general := s.channel(t, alice, "general", "public", "bob")
	direct := s.channel(t, alice, "", "direct", "bob")
	e2etest.WantStatus(t, s.api(t, "POST", "/api/v1/channels/"+direct+"/accept", bob, nil), 200, "bob accepts the direct channel")
	post(t, s, alice, general, "hello from before the pages opened")
	post(t, s, bob, general, "bob was here earlier")

	a := openWeb(t, s.gwURL)
	a.signIn("alice", alicePW)
	b := openWeb(t, s.gwURL)
	b.signIn("bob", bobPW)
	openChannel(a, "general")
	openChannel(b, "general")

	// History on open, with authors.
	for _, p := range []*webPage{a, b} {
		cwaitTrue(p, `__c.has(__c.log("general"), "hello from before the pages opened")`)
		cwaitTrue(p, `__c.item(__c.log("general"), "hello from before the pages opened").textContent.includes("alice")`)
		cwaitTrue(p, `__c.item(__c.log("general"), "bob was here earlier").textContent.includes("bob")`)
	}

	// Live: alice sends, bob sees it, its address as a link.
	send(a, "hi bob, the notes are at https://example.com/notes.")
	cwaitTrue(b, `__c.has(__c.log("general"), "hi bob, the notes are at")`)
	cwait(b, `__t.all("link", "https://example.com/notes", __c.log("general")).map((a) => [a.href, a.rel, a.target])`,
		`[["https://example.com/notes","noopener noreferrer","_blank"]]`)
	cwait(a, `__t.one("textbox", "Message").value`, `""`)
	// On alice's page once, as sent (not "sending…").
	cwait(a, `__c.texts(__c.log("general")).filter((t) => t.includes("hi bob, the notes are at")).map((t) => t.includes("sending"))`, `[false]`)
	if v := cjs(a, `location.href`); strings.Contains(v, "token") || strings.Contains(v, "unhidra_rt_") {
		t.Errorf("the page URL carries a credential: %s", v)
	}
	var sent *restMessage
	for _, m := range history(t, s, bob, general) {
		if m.Text != nil && *m.Text == "hi bob, the notes are at https://example.com/notes." {
			sent = &m
		}
	}
	if sent == nil || sent.Sender.Kind != "user" || sent.Sender.ID != "alice" {
		t.Fatalf("the message sent from the page is not in REST history with alice as its sender: %+v", sent)
	}

	// Typing: bob types, alice sees it.
	b.fill("Message", "typing something")
	cwaitTrue(a, `__t.all("status").some((e) => e.textContent.trim() === "bob is typing\u2026")`)
	b.fill("Message", "")
	shot(a, "chat")

	// A thread: bob replies to alice's message; alice sees it in the panel.
	clickIn(b, `__c.item(__c.log("general"), "hi bob, the notes are at")`, "button", "Reply in thread")
	cwaitTrue(b, `__c.thread()`)
	fillIn(b, `__c.thread()`, "Reply", "a reply in the thread")
	clickIn(b, `__c.thread()`, "button", "Send reply")
	cwaitTrue(b, `__c.has(__t.one("log", "Replies", __c.thread()), "a reply in the thread")`)
	clickIn(a, `__c.item(__c.log("general"), "hi bob, the notes are at")`, "button", "1 reply")
	cwaitTrue(a, `__c.has(__t.one("log", "Replies", __c.thread()), "a reply in the thread")`)
	cwaitTrue(a, `__c.item(__t.one("log", "Replies", __c.thread()), "a reply in the thread").textContent.includes("bob")`)
	cwaitTrue(a, `location.hash.startsWith("#/channels/`+general+`/thread/")`)
	for _, p := range []*webPage{a, b} {
		if got := cjs(p, `__c.has(__c.log("general"), "a reply in the thread")`); got != "false" {
			t.Fatalf("the thread reply is in the main log: %s", got)
		}
	}
	shot(a, "chat-thread")
	clickIn(a, `__c.thread()`, "button", "Close thread")
	cwait(a, `__t.all("aside", "Thread").length`, `0`)

	// Edit: alice edits her message, bob sees the new text.
	clickIn(a, `__c.item(__c.log("general"), "hi bob, the notes are at")`, "button", "Edit")
	fillIn(a, `__c.log("general")`, "Edit message", "hi bob, the notes moved")
	clickIn(a, `__c.log("general")`, "button", "Save")
	cwaitTrue(b, `__c.has(__c.log("general"), "hi bob, the notes moved") && __c.item(__c.log("general"), "hi bob, the notes moved").textContent.includes("(edited)")`)
	cwait(b, `__c.has(__c.log("general"), "the notes are at")`, `false`)

	// Delete: alice deletes her first message, bob sees it deleted.
	clickIn(a, `__c.item(__c.log("general"), "hello from before the pages opened")`, "button", "Delete")
	clickIn(a, `__c.log("general")`, "button", "Yes, delete")
	cwait(b, `__c.has(__c.log("general"), "hello from before the pages opened")`, `false`)
	cwaitTrue(b, `__c.texts(__c.log("general")).some((t) => t.includes("alice") && t.includes("message deleted"))`)
	for _, m := range history(t, s, bob, general) {
		if m.Text != nil && strings.Contains(*m.Text, "hello from before") {
			t.Fatalf("the deleted message still has its text over REST: %+v", m)
		}
	}

	// Search: a term found and highlighted, linking to its channel.
	a.fill("Search messages", "earlier")
	clickIn(a, `__t.one("[role=search]", "Message search")`, "button", "Search")
	cwaitTrue(a, `__t.all("region", "Search results").length`)
	cwait(a, `[...__t.one("region", "Search results").querySelectorAll("mark")].map((m) => m.textContent)`, `["earlier"]`)
	cwaitTrue(a, `__c.item(__t.one("region", "Search results"), "bob was here earlier")`)
	cwait(a, `__t.all("link", "general", __t.one("region", "Search results")).map((l) => l.getAttribute("href"))`, `["#/channels/`+general+`"]`)
	shot(a, "chat-search")
	clickIn(a, `__t.one("region", "Search results")`, "button", "Close search results")

	// Presence the other way, as bob's page shows it on the direct
	// channel's link: alice online, away, back, signed out, signed in.
	alicePresence := `(() => { const l = __t.one("link", "alice", __c.nav()); return l.dataset.presence + "|" + document.getElementById(l.getAttribute("aria-describedby")).textContent })()`
	cwait(b, alicePresence, `"online|alice (online)"`)
	setVisibility(a, "hidden")
	cwait(b, alicePresence, `"away|alice (away)"`)
	setVisibility(a, "visible")
	cwait(b, alicePresence, `"online|alice (online)"`)
	a.click("button", "Sign out")
	cwait(b, alicePresence, `"offline|alice (offline)"`)
	a.signIn("alice", alicePW)
	cwait(b, alicePresence, `"online|alice (online)"`)

	// Presence on the direct channel: bob online, away, then signed out.
	openChannel(a, "bob")
	presence := `__c.nav().querySelector("[data-presence]").dataset.presence + "|" + __t.all("heading", "bob")[0].parentElement.textContent`
	cwaitTrue(a, `(`+presence+`).startsWith("online|")`)
	cwaitTrue(a, `document.getElementById(__t.one("link", "bob", __c.nav()).getAttribute("aria-describedby")).textContent === "bob (online)"`)
	setVisibility(b, "hidden")
	cwaitTrue(a, `(`+presence+`).startsWith("away|")`)
	b.click("button", "Sign out")
	cwaitTrue(a, `(`+presence+`).startsWith("offline|")`)
	cwaitTrue(a, `document.getElementById(__t.one("link", "bob", __c.nav()).getAttribute("aria-describedby")).textContent === "bob (offline)"`)
}

// setVisibility makes the page's document.visibilityState state ("hidden"
// or "visible") and fires visibilitychange, as switching tabs does.
func setVisibility(p *webPage, state string) {
	p.t.Helper()
	p.js(`(Object.defineProperty(document, "visibilityState", { configurable: true, get: () => ` + strconv.Quote(state) + ` }), document.dispatchEvent(new Event("visibilitychange")), 1)`)
}

// TestWebScrollBackLoadsOlderHistory: of 150 messages the log shows the
// newest page; scrolling to its top loads the older ones page by page,
// keeping the message that was at the top where it was, until the first
// message; the log then holds all 150 once each, in order.
func TestWebScrollBackLoadsOlderHistory(t *testing.T) {
	browsertest.Require(t)
	s := startStack(t, nil)
	alice, pw := s.user(t, "alice")
	ch := s.channel(t, alice, "long", "public")
	for i := 1; i <= 150; i++ {
		post(t, s, alice, ch, fmt.Sprintf("scroll message %03d", i))
	}
	p := openWeb(t, s.gwURL)
	p.signIn("alice", pw)
	openChannel(p, "long")
	numbers := `__c.texts(__c.log("long")).map((t) => (t.match(/scroll message (\d+)/) || [])[1]).filter(Boolean).map(Number)`
	cwaitTrue(p, `__c.has(__c.log("long"), "scroll message 150")`)
	cwait(p, `__c.log("long").dataset.hasMore`, `"true"`)
	if got := cjs(p, numbers+`.length`); got == "150" {
		t.Fatalf("the whole history was loaded at once")
	}
	cwait(p, numbers+`[0] > 1 && `+numbers+`.at(-1) === 150`, `true`)
	// The log is scrolled to the newest message.
	cwaitTrue(p, `(() => { const l = __c.log("long"); return l.scrollHeight - l.scrollTop - l.clientHeight < 40 })()`)

	for round := 0; round < 10; round++ {
		if cjs(p, `__c.log("long").dataset.hasMore`) == `"false"` {
			break
		}
		first := cjs(p, numbers+`[0]`)
		// Scroll to the top: an older page comes in above, and the message
		// that was first stays in view near the top.
		cjs(p, `(__c.log("long").scrollTop = 0, 1)`)
		cwaitTrue(p, numbers+`[0] < `+first)
		cwaitTrue(p, `(() => {
			const l = __c.log("long"), it = __c.item(l, "scroll message " + String(`+first+`).padStart(3, "0"));
			const top = it.getBoundingClientRect().top - l.getBoundingClientRect().top;
			return l.scrollTop > 0 && top > -60 && top < l.clientHeight / 2;
		})()`)
	}
	cwait(p, `__c.log("long").dataset.hasMore`, `"false"`)
	var want []string
	for i := 1; i <= 150; i++ {
		want = append(want, strconv.Itoa(i))
	}
	cwait(p, numbers, "["+strings.Join(want, ",")+"]")
	shot(p, "chat-scrollback")
}

// TestWebUnreadCountsAndDirectMessages: a message in a channel bob is not
// viewing raises its unread count in his sidebar; viewing the channel
// clears it; the counts survive a reload (kept per user by offset); a
// direct message alice starts from the "New direct message" dialog
// appears in bob's sidebar under alice's name with its unread count, and
// bob's answer reaches alice live.
func TestWebUnreadCountsAndDirectMessages(t *testing.T) {
	browsertest.Require(t)
	s := startStack(t, nil)
	alice, alicePW := s.user(t, "alice")
	_, bobPW := s.user(t, "bob")
	s.channel(t, alice, "general", "public", "bob")
	s.channel(t, alice, "random", "public", "bob")
	a := openWeb(t, s.gwURL)
	a.signIn("alice", alicePW)
	b := openWeb(t, s.gwURL)
	b.signIn("bob", bobPW)
	openChannel(b, "general")
	openChannel(a, "random")
	unread := func(name string) string {
		return `(() => { const li = __t.one("link", ` + strconv.Quote(name) + `, __c.nav()).closest("li"); const u = li.querySelector("[aria-label$=' unread']"); return u ? u.getAttribute("aria-label") : "" })()`
	}
	cwait(b, unread("random"), `""`)

	send(a, "ping in random")
	cwait(b, unread("random"), `"1 unread"`)
	send(a, "another one")
	cwait(b, unread("random"), `"2 unread"`)
	cwait(b, unread("general"), `""`)
	shot(b, "chat-unread")
	openChannel(b, "random")
	cwaitTrue(b, `__c.has(__c.log("random"), "another one")`)
	cwait(b, unread("random"), `""`)

	// While bob reads random, a message in general counts there.
	openChannel(a, "general")
	send(a, "news in general")
	cwait(b, unread("general"), `"1 unread"`)
	cwait(b, unread("random"), `""`)

	// The counts are kept across a reload.
	_, _ = b.try(`location.reload()`)
	b.wait(`(document.querySelector("[data-state]") || {}).dataset?.state || null`, `"online"`)
	cwaitTrue(b, `__t.all("link", "general", __c.nav()).length`)
	cwait(b, unread("general"), `"1 unread"`)
	cwait(b, unread("random"), `""`)

	// A direct message: alice starts it, bob finds it under her name.
	a.click("button", "New direct message")
	cwaitTrue(a, `__t.all("dialog", "New direct message").length`)
	fillIn(a, `__t.one("dialog", "New direct message")`, "Username", "bob")
	clickIn(a, `__t.one("dialog", "New direct message")`, "button", "Start conversation")
	cwaitTrue(a, `__t.all("heading", "bob").length && __t.all("log", "Messages in bob").length`)
	cwait(a, `__t.all("dialog").length`, `0`)
	send(a, "hello bob, privately")
	cwaitTrue(a, `__c.has(__c.log("bob"), "hello bob, privately")`)
	cwaitTrue(b, `__t.all("link", "alice", __c.nav()).length`)
	cwait(b, unread("alice"), `"1 unread"`)
	openChannel(b, "alice")
	cwaitTrue(b, `__c.has(__c.log("alice"), "hello bob, privately")`)
	cwait(b, unread("alice"), `""`)
	send(b, "hi alice")
	cwaitTrue(a, `__c.has(__c.log("bob"), "hi alice")`)
	cwaitTrue(a, `__c.item(__c.log("bob"), "hi alice").textContent.includes("bob")`)
	shot(a, "chat-direct")
}
