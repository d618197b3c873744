package main

import (
	"testing"

	"github.com/unhidra/unhidra/internal/browsertest"
)

// TestWebClientSignsInAndOut: the sign-in form (inputs "Username" and
// "Password", a button "Sign in") signs in through the auth API found
// through /config.json; after it there is a "Sign out" button, no password
// field, and a navigation landmark "Channels" naming the user's channels.
func TestWebClientSignsInAndOut(t *testing.T) {
	browsertest.Require(t)
	s := startStack(t, nil)
	alice, pw := s.user(t, "alice")
	s.channel(t, alice, "lobby", "public")
	p := openWeb(t, s.gwURL)
	p.signIn("alice", pw)
	p.waitTrue(`__t.all("button", "Sign out").length === 1`)
	p.wait(`document.querySelectorAll("input[type=password]").length`, `0`)
	p.waitTrue(`__t.all("link", "lobby", __t.one("navigation", "Channels")).length === 1`)
	p.click("button", "Sign out")
	p.waitTrue(`__t.all("button", "Sign in").length === 1`)
	p.wait(`localStorage.getItem("unhidra.session")`, `null`)
}
