package main

// The web client's outbox against a server that dies for real: `unhidra
// serve` as a child process (internal/e2etest's Child) killed with SIGKILL
// while the page is open, and started again on the same data dir and
// ports.

import (
	"encoding/json"
	"strconv"
	"syscall"
	"testing"

	"github.com/unhidra/unhidra/internal/browsertest"
	"github.com/unhidra/unhidra/internal/e2etest"
	"github.com/unhidra/unhidra/wire"
)

// outboxIDJS is the client_msg_id of the page's only outbox item (null
// unless there is exactly one).
const outboxIDJS = `(() => { const o = window.unhidra.conn.outbox; return o.length === 1 ? o[0].client_msg_id : null })()`

// TestWebOfflineMessageSurvivesKill9: the server is a child process.
// Killed with SIGKILL while the page is open, a message typed and sent
// while it is down waits in the outbox; after the restart it is stored
// exactly once, under the client_msg_id the page gave it, and shown once.
// Then the lost acks: a message sent on the open connection to a stopped
// (SIGSTOP) server that is then killed, and a message the server stored
// but whose ack the page never got before the kill; each is sent again
// after the restart with the same client_msg_id and stored once.
func TestWebOfflineMessageSurvivesKill9(t *testing.T) {
	browsertest.Require(t)
	c := e2etest.NewChild(t, map[string]string{"ACCESS_TOKEN_TTL": "24h"})
	c.Start()
	pw := e2etest.Secret("password", "pw-of-alice-"+e2etest.RandomHex(4))
	e2etest.WantStatus(t, e2etest.HTTPCall(t, c.AuthURL, "POST", "/register", "", map[string]string{"username": "alice", "password": pw}), 201, "register alice")
	alice := c.Login(t, "alice", pw)
	r := e2etest.HTTPCall(t, c.GWURL, "POST", "/api/v1/channels", alice, map[string]any{"name": "lobby", "kind": "public"})
	e2etest.WantStatus(t, r, 201, "create lobby")
	var ch struct {
		ID string `json:"id"`
	}
	e2etest.Decode(t, r, &ch)

	p := openWeb(t, c.GWURL)
	p.signIn("alice", pw)
	p.waitTrue(`navigator.serviceWorker.controller`)
	openChannel(p, "lobby")
	p.allowErrors(offlineErrors...)

	// storedOnce checks that text is in REST history once, by alice, with
	// the client_msg_id cmid, and shown once (not "sending…") in the log.
	storedOnce := func(text, cmid string) wire.Message {
		t.Helper()
		p.wait(statusText, `"Connected"`)
		p.wait(`window.unhidra.conn.outbox.length`, `0`)
		p.waitTrue(`(` + logTexts("lobby", text) + ` || []).length === 1 && !` + logTexts("lobby", text) + `[0].includes("sending…")`)
		var found []wire.Message
		for _, m := range e2etest.History(t, c.GWURL, ch.ID, alice) {
			if m.Text != nil && *m.Text == text {
				found = append(found, m)
			}
		}
		if len(found) != 1 {
			t.Fatalf("%q is stored %d times, want once: %+v", text, len(found), found)
		}
		if m := found[0]; m.Sender.ID != "alice" || m.ClientMsgID != cmid {
			t.Fatalf("%q is stored from %s with client_msg_id %q, want alice's with %q", text, m.Sender.ID, m.ClientMsgID, cmid)
		}
		return found[0]
	}
	clientID := func() string {
		t.Helper()
		p.waitTrue(outboxIDJS)
		var id string
		json.Unmarshal(p.js(outboxIDJS), &id)
		return id
	}
	signal := func(sig syscall.Signal) {
		t.Helper()
		if err := syscall.Kill(c.PID(), sig); err != nil {
			t.Fatalf("signal %v: %v", sig, err)
		}
	}

	// Killed while the page is open; typed and sent while it is down.
	c.Kill()
	p.waitTrue(`["reconnecting", "offline"].includes(document.querySelector("[data-state]").dataset.state)`)
	send(p, "kill-offline")
	p.waitTrue(statusText + `.endsWith(" · 1 to send")`)
	first := clientID()
	c.Start()
	storedOnce("kill-offline", first)

	// Sent on the open connection to a stopped server, killed before it
	// read the frame: no ack, so the page sends it again after the restart.
	signal(syscall.SIGSTOP)
	send(p, "kill-unread")
	second := clientID()
	p.waitTrue(`window.unhidra.conn.state === "online" && !!window.unhidra.conn.outbox[0].inflight`)
	c.Kill()
	p.waitTrue(`(` + logTexts("lobby", "kill-unread") + ` || []).some((x) => x.includes("sending…"))`)
	c.Start()
	storedOnce("kill-unread", second)

	// Stored, but the ack is lost (the page drops it, as a connection
	// dying at that moment would) and the server killed: the page sends it
	// again with the same client_msg_id, and the server, which has it
	// already, stores nothing new and acks it as the same message.
	p.js(`(() => { const conn = window.unhidra.conn, own = Object.getPrototypeOf(conn).onFrame;
  window.__dropped = null;
  conn.onFrame = function (f) { if (f.type === "ack" && !window.__dropped) { window.__dropped = f; return; } return own.call(this, f); };
  return 1 })()`)
	send(p, "kill-acklost")
	third := clientID()
	p.waitTrue(`window.__dropped`)
	var dropped wire.Ack
	json.Unmarshal(p.js(`window.__dropped`), &dropped)
	if n := string(p.js(`window.unhidra.conn.outbox.length`)); n != "1" {
		t.Fatalf("the outbox holds %s items once the ack is lost, want 1", n)
	}
	c.Kill()
	c.Start()
	m := storedOnce("kill-acklost", third)
	if m.ID != dropped.MessageID || m.Offset != dropped.Offset {
		t.Fatalf("stored as %s at %d, the lost ack said %s at %d", m.ID, m.Offset, dropped.MessageID, dropped.Offset)
	}
	if got := string(p.js(`window.__dropped.message_id`)); got != strconv.Quote(dropped.MessageID) {
		t.Fatalf("a second ack was dropped: %s", got)
	}
	// Nothing of the earlier ones came twice either.
	storedOnce("kill-offline", first)
	storedOnce("kill-unread", second)
}
