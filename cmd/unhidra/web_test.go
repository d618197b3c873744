package main

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/browsertest"
	"github.com/unhidra/unhidra/internal/e2etest"
)

// TestWebClientSignsInAndChatsInARealBrowser drives the embedded web client
// in headless Chromium against the real server: sign in through the auth API
// (a cross-origin call the auth API's CORS rule allows for the gateway's page
// on the same host), open the gateway WebSocket with the token in
// Sec-WebSocket-Protocol, subscribe, send, and see the message arrive; the
// message is in the REST history with the right sender.
func TestWebClientSignsInAndChatsInARealBrowser(t *testing.T) {
	browsertest.Require(t)
	s := startStack(t, nil)
	alice, pw := s.user(t, "alice")
	ch := s.channel(t, alice, "lobby", "public")

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b := browsertest.Open(t, s.gwURL+"/")
	b.WaitFor(t, ctx, "typeof window.unhidra", `"object"`)

	js := func(expr string) {
		t.Helper()
		if _, err := b.Eval(ctx, expr); err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
	}
	q := strconv.Quote
	js(`document.querySelector('#login [name=username]').value = ` + q("alice"))
	js(`document.querySelector('#login [name=password]').value = ` + q(pw))
	js(`document.getElementById('auth-url').value = ` + q(s.url))
	js(`document.getElementById('login').requestSubmit()`)
	b.WaitFor(t, ctx, `document.getElementById('status').textContent`, `"connected as alice"`)
	if v, _ := b.Eval(ctx, `document.getElementById('login-error').textContent`); string(v) != `""` {
		t.Fatalf("login error shown: %s", v)
	}

	// Posting in a public channel needs a join (as in Mattermost).
	e2etest.WantStatus(t, s.api(t, "POST", "/api/v1/channels/"+ch+"/join", alice, nil), 200, "join")
	js(`document.querySelector('#join [name=channel]').value = ` + q(ch))
	js(`document.getElementById('join').requestSubmit()`)
	// No wait needed: the gateway handles one connection's frames in order,
	// so the subscribe is in place before the publish that follows it.
	js(`document.querySelector('#send [name=text]').value = "hello from a real browser"`)
	js(`document.getElementById('send').requestSubmit()`)
	b.WaitFor(t, ctx, `[...document.querySelectorAll('#messages li')].map(li => li.textContent).join('|')`, `"alicehello from a real browser"`)

	msgs := e2etest.History(t, s.gwURL, ch, alice)
	if len(msgs) != 1 || msgs[0].Text == nil || *msgs[0].Text != "hello from a real browser" || msgs[0].Sender.ID != "alice" {
		t.Fatalf("history = %+v, want the one message from alice", msgs)
	}
	if v, _ := b.Eval(ctx, `location.href`); strings.Contains(string(v), "token") {
		t.Errorf("the page URL carries a credential: %s", v)
	}
}
