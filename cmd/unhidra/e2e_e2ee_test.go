package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/unhidra/unhidra/client"
	"github.com/unhidra/unhidra/client/e2ee"
	"github.com/unhidra/unhidra/client/e2ee/attachment"
	"github.com/unhidra/unhidra/internal/e2etest"
)

// e2eeMember is one user with one client device, doing what a client does
// in an e2ee channel with the SDK's crypto and the REST API.
type e2eeMember struct {
	name, tok string
	acct      *e2ee.Account
	// sessions with each other device (by its curve25519 key), newest
	// last: two devices that start sessions with each other at once have
	// two, and a message may come on either, as in every Olm client.
	sessions map[string][]*e2ee.Session
	inbound  map[string]*e2ee.InboundGroup // by Megolm session id
	out      *e2ee.OutboundGroup
	seen     map[int64]bool // offsets processed, as a client keeps
}

func newE2EEMember(t *testing.T, s *stack, name string) *e2eeMember {
	t.Helper()
	tok, _ := s.user(t, name)
	acct, err := e2ee.NewAccount(name, "laptop")
	if err != nil {
		t.Fatal(err)
	}
	if err := acct.GenerateOneTimeKeys(5); err != nil {
		t.Fatal(err)
	}
	if err := acct.GenerateFallbackKey(); err != nil {
		t.Fatal(err)
	}
	up, err := acct.Upload()
	if err != nil {
		t.Fatal(err)
	}
	e2etest.WantStatus(t, s.api(t, "PUT", "/api/v1/keys/devices/laptop", tok, up), 200, name+" uploads keys")
	acct.MarkPublished()
	return &e2eeMember{name: name, tok: tok, acct: acct, sessions: map[string][]*e2ee.Session{}, inbound: map[string]*e2ee.InboundGroup{}, seen: map[int64]bool{}}
}

// session returns a 1:1 session to other's device, claiming its keys the
// first time.
func (m *e2eeMember) session(t *testing.T, s *stack, other *e2eeMember) *e2ee.Session {
	t.Helper()
	if ss := m.sessions[other.acct.Identity().Curve25519]; len(ss) > 0 {
		return ss[len(ss)-1]
	}
	r := s.api(t, "POST", "/api/v1/keys/claim", m.tok, map[string]string{"user": other.name, "device_id": "laptop"})
	e2etest.WantStatus(t, r, 200, m.name+" claims "+other.name+"'s keys")
	var b e2ee.Bundle
	r.JSON(t, &b)
	ss, err := m.acct.NewOutboundSession(b)
	if err != nil {
		t.Fatalf("%s → %s: %v", m.name, other.name, err)
	}
	m.sessions[other.acct.Identity().Curve25519] = append(m.sessions[other.acct.Identity().Curve25519], ss)
	return ss
}

// startGroup starts a new Megolm session for ch and shares it with to.
func (m *e2eeMember) startGroup(t *testing.T, s *stack, ch string, to ...*e2eeMember) {
	t.Helper()
	g, err := e2ee.NewOutboundGroup(ch)
	if err != nil {
		t.Fatal(err)
	}
	m.out = g
	var sessions []*e2ee.Session
	for _, o := range to {
		sessions = append(sessions, m.session(t, s, o))
	}
	env, err := m.acct.ShareRoomKey(g, sessions)
	if err != nil {
		t.Fatal(err)
	}
	m.post(t, s, ch, env)
}

func (m *e2eeMember) say(t *testing.T, s *stack, ch string, body map[string]any) {
	t.Helper()
	pt, _ := json.Marshal(body)
	env, err := m.acct.SealGroupMessage(m.out, pt)
	if err != nil {
		t.Fatal(err)
	}
	m.post(t, s, ch, env)
}

func (m *e2eeMember) post(t *testing.T, s *stack, ch string, env any) {
	t.Helper()
	e2etest.WantStatus(t, s.api(t, "POST", "/api/v1/channels/"+ch+"/messages", m.tok, map[string]any{"e2ee": env}), 201, m.name+" posts")
}

type e2eeMessage struct {
	Offset int64           `json:"offset"`
	E2EE   json.RawMessage `json:"e2ee"`
}

func e2eeHistory(t *testing.T, s *stack, tok, ch string) []e2eeMessage {
	t.Helper()
	r := s.api(t, "GET", "/api/v1/channels/"+ch+"/messages?limit=200", tok, nil)
	e2etest.WantStatus(t, r, 200, "history")
	var h struct{ Messages []e2eeMessage }
	r.JSON(t, &h)
	slices.SortFunc(h.Messages, func(a, b e2eeMessage) int { return cmp.Compare(a.Offset, b.Offset) })
	return h.Messages
}

// read opens what msgs hold for m: room keys addressed to its device, then
// the group messages it has keys for. It returns the plaintexts it could
// read and how many group messages it could not.
func (m *e2eeMember) read(t *testing.T, ch string, msgs []e2eeMessage) (texts []map[string]any, unreadable int) {
	t.Helper()
	for _, msg := range msgs {
		if m.seen[msg.Offset] {
			continue
		}
		m.seen[msg.Offset] = true
		alg, err := e2ee.EnvelopeAlg(msg.E2EE)
		if err != nil {
			t.Fatalf("envelope at %d: %v", msg.Offset, err)
		}
		switch alg {
		case e2ee.AlgOlm:
			var env e2ee.KeyShareEnvelope
			json.Unmarshal(msg.E2EE, &env)
			if _, mine := env.Ciphertext[m.acct.Identity().Curve25519]; !mine || env.SenderKey == m.acct.Identity().Curve25519 {
				continue
			}
			var g *e2ee.InboundGroup
			var ss *e2ee.Session
			err = e2ee.ErrDecrypt
			if env.Ciphertext[m.acct.Identity().Curve25519].Type == e2ee.MsgPreKey {
				g, ss, err = m.acct.OpenRoomKeyShare(env, ch, nil)
				if err == nil {
					m.sessions[env.SenderKey] = append(m.sessions[env.SenderKey], ss)
				}
			} else {
				// A failed attempt leaves a session as it was: try each.
				for _, have := range m.sessions[env.SenderKey] {
					if g, _, err = m.acct.OpenRoomKeyShare(env, ch, have); err == nil {
						break
					}
				}
			}
			if err != nil {
				t.Fatalf("%s opens a room key at %d: %v", m.name, msg.Offset, err)
			}
			m.inbound[g.SessionID()] = g
		case e2ee.AlgMegolm:
			var env e2ee.GroupEnvelope
			json.Unmarshal(msg.E2EE, &env)
			g := m.inbound[env.SessionID]
			if env.SenderKey == m.acct.Identity().Curve25519 {
				continue // our own
			}
			if g == nil {
				unreadable++
				continue
			}
			pt, _, err := e2ee.OpenGroupMessage(env, g)
			if err != nil {
				if errors.Is(err, e2ee.ErrReplay) {
					continue // read already
				}
				t.Fatalf("%s decrypts %d: %v", m.name, msg.Offset, err)
			}
			var body map[string]any
			json.Unmarshal(pt, &body)
			texts = append(texts, body)
		}
	}
	return texts, unreadable
}

func hasText(texts []map[string]any, want string) bool {
	for _, b := range texts {
		if b["text"] == want {
			return true
		}
	}
	return false
}

// TestE2EEChannelOfThreeEndToEnd: alice, bob and carol in an e2ee channel,
// each with keys in the directory. Each sender's Megolm key reaches the
// others over 1:1 Olm sessions set up from claimed prekeys, in the channel
// itself; everyone reads everyone. An encrypted file shared in a message is
// downloaded and decrypted by a member. Carol is removed and alice rotates
// her session: carol, even handed the ciphertext, cannot read what follows.
// The server's data directory holds none of the plaintexts.
func TestE2EEChannelOfThreeEndToEnd(t *testing.T) {
	s := startStack(t, nil)
	alice, bob, carol := newE2EEMember(t, s, "alice"), newE2EEMember(t, s, "bob"), newE2EEMember(t, s, "carol")
	r := s.api(t, "POST", "/api/v1/channels", alice.tok, map[string]any{"name": "secret", "kind": "private", "e2ee": true, "members": []string{"bob", "carol"}})
	e2etest.WantStatus(t, r, 201, "create the e2ee channel")
	var created struct{ ID string }
	r.JSON(t, &created)
	ch := created.ID
	for _, m := range []*e2eeMember{bob, carol} {
		s.api(t, "POST", "/api/v1/channels/"+ch+"/join", m.tok, nil)
	}
	// The server refuses plaintext in the channel.
	e2etest.WantStatus(t, s.api(t, "POST", "/api/v1/channels/"+ch+"/messages", alice.tok, map[string]any{"text": "in clear"}), 400, "plaintext refused")

	plaintexts := []string{"alpha: the launch code is 0451", "bravo: meet at the north gate", "charlie: bring the blue folder"}
	alice.startGroup(t, s, ch, bob, carol)
	alice.say(t, s, ch, map[string]any{"type": "text", "text": plaintexts[0]})
	bob.startGroup(t, s, ch, alice, carol)
	bob.say(t, s, ch, map[string]any{"type": "text", "text": plaintexts[1]})
	carol.startGroup(t, s, ch, alice, bob)
	carol.say(t, s, ch, map[string]any{"type": "text", "text": plaintexts[2]})

	// An encrypted file, its key inside a message.
	filePlain := bytes.Repeat([]byte("delta: the floor plan of building 7. "), 500)
	sdk, err := client.New(client.Options{URL: s.wsURL, Token: alice.tok})
	if err != nil {
		t.Fatal(err)
	}
	info, err := sdk.UploadEncrypted(context.Background(), ch, bytes.NewReader(filePlain))
	if err != nil {
		t.Fatal(err)
	}
	alice.say(t, s, ch, map[string]any{"type": "file", "name": "plan.txt", "size": len(filePlain), "file": info})

	msgs := e2eeHistory(t, s, alice.tok, ch)
	var bobTexts []map[string]any
	for _, m := range []*e2eeMember{alice, bob, carol} {
		texts, unreadable := m.read(t, ch, msgs)
		if m == bob {
			bobTexts = texts
		}
		for i, p := range plaintexts {
			if !hasText(texts, p) && m != []*e2eeMember{alice, bob, carol}[i] {
				t.Errorf("%s could not read %q", m.name, p)
			}
		}
		if unreadable != 0 {
			t.Errorf("%s could not read %d messages", m.name, unreadable)
		}
	}
	// Bob takes the file from the message he decrypted.
	var got attachment.Info
	for _, b := range bobTexts {
		if b["type"] == "file" {
			j, _ := json.Marshal(b["file"])
			if err := json.Unmarshal(j, &got); err != nil {
				t.Fatal(err)
			}
		}
	}
	bobSDK, _ := client.New(client.Options{URL: s.wsURL, Token: bob.tok})
	var out bytes.Buffer
	if err := bobSDK.DownloadDecrypted(context.Background(), got, &out); err != nil || !bytes.Equal(out.Bytes(), filePlain) {
		t.Fatalf("bob's download of the shared file: %d bytes, %v", out.Len(), err)
	}

	// Carol is removed; alice rotates and shares with bob only.
	e2etest.WantStatus(t, s.api(t, "DELETE", "/api/v1/channels/"+ch+"/members/carol", alice.tok, nil), 204, "remove carol")
	after := "echo: carol must not read this"
	alice.startGroup(t, s, ch, bob)
	alice.say(t, s, ch, map[string]any{"type": "text", "text": after})
	e2etest.WantStatus(t, s.api(t, "GET", "/api/v1/channels/"+ch+"/messages", carol.tok, nil), 403, "carol reads the channel")
	all := e2eeHistory(t, s, alice.tok, ch)
	last := all[len(all)-1:]
	if texts, unreadable := carol.read(t, ch, all[len(msgs):]); unreadable != 1 || hasText(texts, after) {
		t.Fatalf("carol, handed the ciphertext after her removal, read %v (%d unreadable)", texts, unreadable)
	}
	if texts, _ := bob.read(t, ch, all[len(msgs):]); !hasText(texts, after) {
		t.Fatalf("bob cannot read the message after the rotation: %v (%s)", texts, last[0].E2EE)
	}

	// The relay is byte-exact and the disk holds no plaintext.
	for _, p := range append(plaintexts, after, "floor plan of building 7") {
		filepath.WalkDir(s.dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			b, _ := os.ReadFile(path)
			if bytes.Contains(b, []byte(p)) {
				t.Errorf("%q is in %s", p, filepath.Base(path))
			}
			return nil
		})
	}
}
