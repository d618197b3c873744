package main

import (
	"testing"

	"github.com/unhidra/unhidra/internal/browsertest"
	"github.com/unhidra/unhidra/internal/e2etest"
)

// TestWebChannelManagement: alice creates a private channel with a topic
// from the "New channel" dialog, adds bob from "Members" and makes him an
// admin (as stored over REST); bob finds it in his sidebar, accepts it,
// and loses it live when alice removes him; alice joins a public channel
// from "Browse channels" and leaves it; she renames her channel and
// deletes it from "Channel settings".
func TestWebChannelManagement(t *testing.T) {
	browsertest.Require(t)
	s := startStack(t, nil)
	alice, alicePW := s.user(t, "alice")
	_, bobPW := s.user(t, "bob")
	carol, _ := s.user(t, "carol")
	s.channel(t, carol, "carols-corner", "public")

	a := openWeb(t, s.gwURL)
	a.signIn("alice", alicePW)
	b := openWeb(t, s.gwURL)
	b.signIn("bob", bobPW)

	// Create.
	clickIn(a, `__c.nav()`, "button", "New channel")
	dlg := `__t.one("dialog", "New channel")`
	fillIn(a, dlg, "Name", "project-x")
	a.fill("Visibility", "private")
	fillIn(a, dlg, "Topic", "all about x")
	clickIn(a, dlg, "button", "Create")
	cwaitTrue(a, `__t.all("heading", "project-x").length && __t.one("heading", "project-x").parentElement.textContent.includes("all about x")`)
	cwaitTrue(a, `__t.all("link", "project-x", __c.nav()).length === 1`)
	id := cjs(a, `location.hash.split("/")[2]`)
	id = id[1 : len(id)-1]

	// Members: add bob, make him an admin.
	a.click("button", "Members")
	members := `__t.one("dialog", "Members of project-x")`
	fillIn(a, members, "Add member", "bob")
	clickIn(a, members, "button", "Add")
	cwaitTrue(a, `__t.all("combobox", "Role of bob", `+members+`).length`)
	a.fill("Role of bob", "admin")
	cwaitTrue(a, `__t.one("combobox", "Role of bob").value === "admin"`)
	// Stored: the role as the server has it, read with alice's session.
	a.wait(`unhidra.api.rest("GET", "/channels/`+id+`/members").then((ms) => ms.find((m) => m.user === "bob").role)`, `"admin"`)
	var list []struct{ User, Role string }
	e2etest.Decode(t, s.api(t, "GET", "/api/v1/channels/"+id+"/members", alice, nil), &list)
	roles := map[string]string{}
	for _, m := range list {
		roles[m.User] = m.Role
	}
	if roles["alice"] != "owner" || roles["bob"] != "admin" {
		t.Fatalf("members over REST: %+v", list)
	}
	shot(a, "chat-members")

	// bob finds the channel, accepts it, then loses it when removed.
	cwaitTrue(b, `__t.all("link", "project-x", __c.nav()).length`)
	openChannel(b, "project-x")
	clickIn(b, `document`, "button", "Accept")
	cwait(b, `__t.all("button", "Accept").length`, `0`)
	cwaitTrue(b, `__t.all("button", "Channel settings").length`)
	clickIn(a, members, "button", "Remove bob")
	cwait(a, `__t.all("combobox", "Role of bob").length`, `0`)
	cwait(b, `__t.all("link", "project-x", __c.nav()).length`, `0`)
	clickIn(a, members, "button", "Close")
	cwait(a, `__t.all("dialog").length`, `0`)

	// Browse and join a public channel, then leave it.
	a.click("button", "Browse channels")
	browse := `__t.one("dialog", "Browse channels")`
	cwaitTrue(a, `__c.item(`+browse+`, "carols-corner")`)
	clickIn(a, `__c.item(`+browse+`, "carols-corner")`, "button", "Join")
	cwaitTrue(a, `__t.all("heading", "carols-corner").length && __t.all("link", "carols-corner", __c.nav()).length === 1`)
	send(a, "hello carol")
	cwaitTrue(a, `__c.has(__c.log("carols-corner"), "hello carol")`)
	a.click("button", "Members")
	clickIn(a, `__t.one("dialog", "Members of carols-corner")`, "button", "Leave channel")
	cwait(a, `__t.all("link", "carols-corner", __c.nav()).length`, `0`)

	// Rename, then delete.
	openChannel(a, "project-x")
	a.click("button", "Channel settings")
	settings := `__t.one("dialog", "Channel settings")`
	fillIn(a, settings, "Name", "project-y")
	clickIn(a, settings, "button", "Save")
	cwaitTrue(a, `__t.all("heading", "project-y").length && __t.all("link", "project-y", __c.nav()).length === 1`)
	a.click("button", "Channel settings")
	clickIn(a, settings, "button", "Delete channel")
	clickIn(a, settings, "button", "Yes, delete channel")
	cwait(a, `__t.all("link", "project-y", __c.nav()).length`, `0`)
	e2etest.WantStatus(t, s.api(t, "GET", "/api/v1/channels/"+id, alice, nil), 403, "the deleted channel")
}
