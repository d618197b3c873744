package main

import (
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/browsertest"
	"github.com/unhidra/unhidra/internal/e2etest"
)

// TestWebChatKeyboardAndBodies: in the composer Shift+Enter starts a new
// line and Enter sends (the two lines stored as one message), Escape
// closes the thread panel; a device-data message shows as compact JSON
// text and an end-to-end encrypted one as "Encrypted message"; the chat
// fits a 360 px phone.
func TestWebChatKeyboardAndBodies(t *testing.T) {
	browsertest.Require(t)
	s := startStack(t, nil)
	alice, pw := s.user(t, "alice")
	ch := s.channel(t, alice, "general", "public")
	r := s.api(t, "POST", "/api/v1/channels/"+ch+"/messages", alice, map[string]any{"data": map[string]any{"temp": 21.5, "unit": "C"}})
	e2etest.WantStatus(t, r, 201, "post data")
	r = s.api(t, "POST", "/api/v1/channels", alice, map[string]any{"name": "secret", "kind": "private", "e2ee": true})
	e2etest.WantStatus(t, r, 201, "create an e2ee channel")
	var sec struct{ ID string }
	r.JSON(t, &sec)
	r = s.api(t, "POST", "/api/v1/channels/"+sec.ID+"/messages", alice, map[string]any{"e2ee": map[string]any{"v": 1, "ct": "b3BhcXVl"}})
	e2etest.WantStatus(t, r, 201, "post e2ee")

	p := openWeb(t, s.gwURL)
	p.signIn("alice", pw)
	openChannel(p, "general")
	cwaitTrue(p, `[...__c.log("general").querySelectorAll("code")].some((c) => c.textContent === '{"temp":21.5,"unit":"C"}')`)

	press, ok := any(p).(interface{ press(string, bool) })
	if ok {
		p.fill("Message", "line one")
		press.press("Enter", true)
		cwait(p, `__t.one("textbox", "Message").value`, `"line one\n"`)
		cwait(p, `__c.has(__c.log("general"), "line one")`, `false`)
		cjs(p, `(() => { const el = __t.one("textbox", "Message"); __t.fill(el, el.value + "line two"); el.focus(); return 1 })()`)
		press.press("Enter", false)
		cwaitTrue(p, `__c.has(__c.log("general"), "line one\nline two")`)
		cwait(p, `__t.one("textbox", "Message").value`, `""`)
		// The log shows the message as soon as it is sent; the server's
		// commit follows, so history is asked until it has it.
		found := false
		for deadline := time.Now().Add(10 * time.Second); !found && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			for _, m := range history(t, s, alice, ch) {
				found = found || (m.Text != nil && *m.Text == "line one\nline two")
			}
		}
		if !found {
			t.Fatal("the two-line message is not stored as one message with its line break")
		}
		clickIn(p, `__c.item(__c.log("general"), "line one")`, "button", "Reply in thread")
		cwaitTrue(p, `__c.thread()`)
		// The panel has taken the focus (its reply box): it is ready for keys.
		cwaitTrue(p, `__c.thread() && __c.thread().contains(document.activeElement)`)
		press.press("Escape", false)
		cwait(p, `__t.all("aside", "Thread").length`, `0`)
		cwaitTrue(p, `!location.hash.includes("/thread/")`)
	} else {
		t.Log("no p.press in the page helpers: the keyboard part is not run")
	}

	openChannel(p, "secret")
	cwaitTrue(p, `__c.texts(__c.log("secret")).some((t) => t.includes("alice") && t.includes("Encrypted message"))`)

	if vp, ok := any(p).(interface{ viewport(int, int) }); ok {
		vp.viewport(360, 740)
		cwaitTrue(p, `__t.all("button", "Menu").length && __t.all("textbox", "Message").length && __t.all("button", "Send").length`)
		cwait(p, `document.documentElement.scrollWidth <= innerWidth`, `true`)
		shot(p, "chat-phone")
		p.click("button", "Menu")
		cwaitTrue(p, `__t.all("link", "general", __c.nav()).length`)
		shot(p, "chat-phone-menu")
	}
}
