package e2ee

// Interoperability with libolm, the reference implementation of Olm and
// Megolm (npm @matrix-org/olm, libolm compiled to WebAssembly), run in a
// node child process by testdata/olm_peer.js. Each test drives both ends
// and compares what the other end really produced: signatures, session ids,
// message types and indexes, and plaintexts byte for byte.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/unhidra/unhidra/wire/e2eekeys"
)

// olmVersion is the libolm release the tests run against.
const olmVersion = "3.2.15"

// olmRequestTimeout bounds each request, so a hung node fails the test.
const olmRequestTimeout = 30 * time.Second

// olmPrefix is the npm prefix holding node_modules/@matrix-org/olm:
// UNHIDRA_OLM_DIR, else unhidra-olm under XDG_CACHE_HOME or ~/.cache, where
// scripts/test-deps.sh installs it.
func olmPrefix() string {
	if d := os.Getenv("UNHIDRA_OLM_DIR"); d != "" {
		return d
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "unhidra-olm")
}

// requireOlm returns node and the package directory of @matrix-org/olm. When
// either is missing it fails under UNHIDRA_CHECK (make check installs both)
// and skips otherwise, saying what is missing and how to install it.
func requireOlm(t *testing.T) (node, pkg string) {
	t.Helper()
	prefix := olmPrefix()
	missing := func(what, install string) {
		t.Helper()
		if os.Getenv("UNHIDRA_CHECK") != "" {
			t.Fatalf("%s (make check installs it with scripts/test-deps.sh; or: %s)", what, install)
		}
		t.Skipf("%s; install it with: %s", what, install)
	}
	npm := fmt.Sprintf("npm install --prefix %s @matrix-org/olm@%s", prefix, olmVersion)
	node, err := exec.LookPath("node")
	if err != nil {
		missing("node is not installed", "apt-get install nodejs npm && "+npm)
	}
	pkg = filepath.Join(prefix, "node_modules", "@matrix-org", "olm")
	raw, err := os.ReadFile(filepath.Join(pkg, "package.json"))
	if err != nil {
		missing(fmt.Sprintf("@matrix-org/olm@%s is not installed in %s", olmVersion, prefix), npm)
	}
	var meta struct{ Version string }
	if err := json.Unmarshal(raw, &meta); err != nil || meta.Version != olmVersion {
		missing(fmt.Sprintf("%s holds @matrix-org/olm %q, not %s", pkg, meta.Version, olmVersion), npm)
	}
	return node, pkg
}

// lockedBuffer collects node's stderr for failure messages.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// olmPeer is libolm in a node child process, one JSON line per request and
// per answer. Requests are made one at a time from the test goroutine.
type olmPeer struct {
	t      *testing.T
	stdin  io.WriteCloser
	lines  chan []byte
	stderr *lockedBuffer
	next   int
}

// startOlm starts the peer; t.Cleanup kills it.
func startOlm(t *testing.T) *olmPeer {
	t.Helper()
	node, pkg := requireOlm(t)
	cmd := exec.Command(node, filepath.Join("testdata", "olm_peer.js"), pkg)
	p := &olmPeer{t: t, lines: make(chan []byte, 1), stderr: &lockedBuffer{}}
	cmd.Stderr = p.stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting node: %v", err)
	}
	p.stdin = stdin
	done := make(chan struct{})
	go p.read(stdout, done)
	t.Cleanup(func() {
		close(done)
		_ = stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	var ready struct{ Ready bool }
	p.await(&ready)
	if !ready.Ready {
		t.Fatal("libolm peer did not say it was ready")
	}
	var v struct{ Version []int }
	p.call("version", nil, &v)
	if fmt.Sprint(v.Version) != "[3 2 15]" {
		t.Fatalf("libolm reports version %v, want %s", v.Version, olmVersion)
	}
	return p
}

func (p *olmPeer) read(stdout io.Reader, done <-chan struct{}) {
	defer close(p.lines)
	r := bufio.NewReader(stdout)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return
		}
		select {
		case p.lines <- line:
		case <-done:
			return
		}
	}
}

// await reads the next answer line into out, failing the test on a
// timeout, on node's exit or on an unreadable line.
func (p *olmPeer) await(out any) {
	p.t.Helper()
	select {
	case line, ok := <-p.lines:
		if !ok {
			p.t.Fatalf("libolm peer exited; stderr: %s", p.stderr.String())
		}
		if err := json.Unmarshal(line, out); err != nil {
			p.t.Fatalf("libolm peer answered %q: %v", line, err)
		}
	case <-time.After(olmRequestTimeout):
		p.t.Fatalf("libolm peer did not answer within %v; stderr: %s", olmRequestTimeout, p.stderr.String())
	}
}

// try sends one request and decodes the answer into out; libolm's own
// refusals come back as the error.
func (p *olmPeer) try(op string, args map[string]any, out any) error {
	p.t.Helper()
	p.next++
	req := map[string]any{"id": p.next, "op": op}
	for k, v := range args {
		req[k] = v
	}
	line, err := json.Marshal(req)
	if err != nil {
		p.t.Fatal(err)
	}
	if _, err := p.stdin.Write(append(line, '\n')); err != nil {
		p.t.Fatalf("writing to the libolm peer: %v; stderr: %s", err, p.stderr.String())
	}
	var raw json.RawMessage
	p.await(&raw)
	var head struct {
		ID    int
		Error string
	}
	if err := json.Unmarshal(raw, &head); err != nil || head.ID != p.next {
		p.t.Fatalf("libolm peer answered %s to request %d", raw, p.next)
	}
	if head.Error != "" {
		return errors.New(head.Error)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			p.t.Fatalf("libolm peer answered %s: %v", raw, err)
		}
	}
	return nil
}

// call is try for requests that must succeed.
func (p *olmPeer) call(op string, args map[string]any, out any) {
	p.t.Helper()
	if err := p.try(op, args, out); err != nil {
		p.t.Fatalf("libolm %s: %v", op, err)
	}
}

// olmAccount is an account inside the peer.
type olmAccount struct {
	Handle   string
	Identity IdentityKeys
}

func (p *olmPeer) newAccount(otks int) olmAccount {
	p.t.Helper()
	var a olmAccount
	p.call("account", nil, &a)
	p.call("generate_one_time_keys", map[string]any{"account": a.Handle, "n": otks}, nil)
	p.call("generate_fallback_key", map[string]any{"account": a.Handle}, nil)
	return a
}

func (p *olmPeer) sign(a olmAccount, msg []byte) string {
	p.t.Helper()
	var r struct{ Signature string }
	p.call("sign", map[string]any{"account": a.Handle, "message": msg}, &r)
	return r.Signature
}

func (p *olmPeer) keys(op string, a olmAccount) map[string]string {
	p.t.Helper()
	var r struct{ Keys map[string]string }
	p.call(op, map[string]any{"account": a.Handle}, &r)
	return r.Keys
}

// bundle is what the key directory would hand out for a libolm device
// (user, device): its identity and one one-time key and its fallback key,
// each signed by libolm over our contract's messages.
func (p *olmPeer) bundle(a olmAccount, user, device string) Bundle {
	p.t.Helper()
	b := Bundle{User: user, DeviceID: device, Identity: a.Identity,
		IdentitySignature: p.sign(a, e2eekeys.IdentityMessage(user, device, a.Identity.Curve25519))}
	signed := func(m map[string]string) *SignedKey {
		for _, keyID := range slices.Sorted(maps.Keys(m)) {
			return &SignedKey{ID: keyID, Key: m[keyID],
				Signature: p.sign(a, e2eekeys.KeyMessage(user, device, keyID, m[keyID]))}
		}
		p.t.Fatal("libolm account has no such key")
		return nil
	}
	b.OneTimeKey = signed(p.keys("one_time_keys", a))
	b.FallbackKey = signed(p.keys("unpublished_fallback_key", a))
	return b
}

// olmSession is a 1:1 session inside the peer.
type olmSession struct {
	Handle    string
	SessionID string `json:"session_id"`
}

func (p *olmPeer) encrypt(s olmSession, pt []byte) OlmMessage {
	p.t.Helper()
	var m OlmMessage
	p.call("encrypt", map[string]any{"session": s.Handle, "plaintext": pt}, &m)
	return m
}

func (p *olmPeer) decrypt(s olmSession, m OlmMessage) ([]byte, error) {
	p.t.Helper()
	var r struct{ Plaintext []byte }
	err := p.try("decrypt", map[string]any{"session": s.Handle, "type": m.Type, "body": m.Body}, &r)
	return r.Plaintext, err
}

// interopTexts are the plaintexts sent each way: ASCII, accented Latin,
// CJK, emoji (four-byte UTF-8, a ZWJ sequence) and 64 KiB. libolm's
// JavaScript API carries plaintexts as strings, so they are valid UTF-8.
func interopTexts() [][]byte {
	return [][]byte{
		[]byte("hello"),
		[]byte("héllo wörld — ünïcödé ✓ ñ"),
		[]byte("日本語のテキスト、中文，한국어"),
		[]byte("emoji 🔐🦀 👩‍👩‍👧 \u00a0tab\tnewline\n"),
		bigText(),
	}
}

// bigText is 64 KiB (65,536 bytes) of mixed one- to four-byte UTF-8.
func bigText() []byte {
	b := []byte(strings.Repeat("€🔐üabcdefg", 4096)) // 16 bytes a unit
	if len(b) != 64<<10 {
		panic(len(b))
	}
	return b
}

func sameBytes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: got %d bytes %.40q…, want %d bytes %.40q…", what, len(got), got, len(want), want)
	}
}

// flipMiddle flips one bit in the middle of the bytes a ciphertext encodes
// and re-encodes them canonically, so only the cryptography can refuse it.
func flipMiddle(ct string) string {
	raw, err := b64.DecodeString(ct)
	if err != nil {
		panic(err)
	}
	raw[len(raw)/2] ^= 0x10
	return b64.EncodeToString(raw)
}

func TestInteropLibolmKeysPassOurVerification(t *testing.T) {
	p := startOlm(t)
	a := p.newAccount(3)
	b := p.bundle(a, "carol", "libolm-1")

	if err := VerifyIdentity("carol", "libolm-1", b.Identity, b.IdentitySignature); err != nil {
		t.Fatalf("libolm's identity signature: %v", err)
	}
	k, err := VerifyBundle(b)
	if err != nil {
		t.Fatalf("libolm's bundle: %v", err)
	}
	if k != *b.OneTimeKey {
		t.Fatalf("VerifyBundle chose %+v, want the one-time key %+v", k, *b.OneTimeKey)
	}
	fb := b
	fb.OneTimeKey = nil
	if k, err := VerifyBundle(fb); err != nil || k != *b.FallbackKey {
		t.Fatalf("libolm's fallback key: got %+v, %v; want %+v", k, err, *b.FallbackKey)
	}

	// Signatures libolm made over other bytes than the contract's messages.
	otk, fbk := *b.OneTimeKey, *b.FallbackKey
	refused := map[string]Bundle{}
	other := b
	other.IdentitySignature = p.sign(a, e2eekeys.IdentityMessage("carol", "libolm-2", a.Identity.Curve25519))
	refused["identity signed for another device"] = other
	other = b
	other.IdentitySignature = p.sign(a, []byte(a.Identity.Curve25519))
	refused["identity key signed bare"] = other
	other = b
	otk.Signature = p.sign(a, e2eekeys.KeyMessage("carol", "libolm-1", "AAAAAA", otk.Key))
	other.OneTimeKey = &otk
	refused["one-time key signed under another id"] = other
	other = fb
	fbk.Signature = p.sign(a, e2eekeys.KeyMessage("mallory", "libolm-1", fbk.ID, fbk.Key))
	other.FallbackKey = &fbk
	refused["fallback key signed for another user"] = other
	for name, rb := range refused {
		if _, err := VerifyBundle(rb); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s: VerifyBundle = %v, want ErrBadSignature", name, err)
		}
	}

	// And libolm verifies what our account signs.
	ours := newDevice(t, "dave", "phone-1", 2)
	up, err := ours.Upload()
	if err != nil {
		t.Fatal(err)
	}
	verify := func(msg []byte, sig string) bool {
		var r struct{ OK bool }
		p.call("ed25519_verify", map[string]any{"key": up.Identity.Ed25519, "message": msg, "signature": sig}, &r)
		return r.OK
	}
	if !verify(e2eekeys.IdentityMessage("dave", "phone-1", up.Identity.Curve25519), up.IdentitySignature) {
		t.Error("libolm refuses our identity signature")
	}
	for _, k := range append(up.OneTimeKeys, *up.FallbackKey) {
		if !verify(e2eekeys.KeyMessage("dave", "phone-1", k.ID, k.Key), k.Signature) {
			t.Errorf("libolm refuses our signature of key %s", k.ID)
		}
	}
	if verify(e2eekeys.IdentityMessage("dave", "phone-2", up.Identity.Curve25519), up.IdentitySignature) {
		t.Error("libolm accepts our identity signature for another device")
	}
}

func TestInteropOurOutboundSessionToLibolm(t *testing.T) {
	p := startOlm(t)
	la := p.newAccount(2)
	ours := newDevice(t, "alice", "phone-1", 1)
	s, err := ours.NewOutboundSession(p.bundle(la, "carol", "libolm-1"))
	if err != nil {
		t.Fatal(err)
	}
	texts := interopTexts()

	// Our prekey message opens libolm's inbound session.
	m := mustEncrypt(t, s, texts[1])
	if m.Type != MsgPreKey {
		t.Fatalf("first message has type %d, want %d", m.Type, MsgPreKey)
	}
	var in struct {
		olmSession
		Plaintext []byte
	}
	p.call("inbound_session", map[string]any{"account": la.Handle, "sender_key": ours.Identity().Curve25519, "body": m.Body}, &in)
	sameBytes(t, "libolm's first plaintext", in.Plaintext, texts[1])
	if in.SessionID != s.ID() {
		t.Fatalf("libolm's session id %s, ours %s", in.SessionID, s.ID())
	}
	if n := len(p.keys("one_time_keys", la)); n != 1 {
		t.Fatalf("libolm has %d one-time keys after the handshake, want 1 (the used one removed)", n)
	}
	ls := in.olmSession
	if _, err := p.decrypt(ls, m); err == nil {
		t.Fatal("libolm decrypted our prekey message a second time")
	}

	// Until libolm answers we keep sending prekey messages.
	m = mustEncrypt(t, s, texts[2])
	if m.Type != MsgPreKey {
		t.Fatalf("second message before a reply has type %d, want %d", m.Type, MsgPreKey)
	}
	pt, err := p.decrypt(ls, m)
	if err != nil {
		t.Fatalf("libolm: %v", err)
	}
	sameBytes(t, "libolm's second plaintext", pt, texts[2])

	roundTrips(t, p, s, ls, texts)
	outOfOrder(t, p, s, ls)
}

func TestInteropLibolmOutboundSessionToOurs(t *testing.T) {
	p := startOlm(t)
	ours := newDevice(t, "bob", "laptop-1", 3)
	up, err := ours.Upload()
	if err != nil {
		t.Fatal(err)
	}
	texts := interopTexts()
	for _, tc := range []struct {
		name string
		key  SignedKey
		otks int // our unpublished one-time keys after the handshake
	}{
		{"one-time key", up.OneTimeKeys[0], 2},
		{"fallback key", *up.FallbackKey, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			la := p.newAccount(1)
			var ls olmSession
			p.call("outbound_session", map[string]any{"account": la.Handle,
				"identity_key": up.Identity.Curve25519, "one_time_key": tc.key.Key}, &ls)
			m := p.encrypt(ls, texts[3])
			if m.Type != MsgPreKey {
				t.Fatalf("libolm's first message has type %d, want %d", m.Type, MsgPreKey)
			}
			s, pt, err := ours.NewInboundSession(la.Identity.Curve25519, m)
			if err != nil {
				t.Fatalf("our inbound session from libolm's prekey message: %v", err)
			}
			sameBytes(t, "our first plaintext", pt, texts[3])
			if s.ID() != ls.SessionID {
				t.Fatalf("our session id %s, libolm's %s", s.ID(), ls.SessionID)
			}
			if n := ours.UnpublishedCount(); n != tc.otks {
				t.Fatalf("%d one-time keys left, want %d", n, tc.otks)
			}
			if _, _, err := ours.NewInboundSession(la.Identity.Curve25519, m); tc.name == "one-time key" && err == nil {
				t.Fatal("libolm's prekey message opened a second session on a used one-time key")
			}
			roundTrips(t, p, s, ls, texts)
			outOfOrder(t, p, s, ls)
		})
	}
}

func mustEncrypt(t *testing.T, s *Session, pt []byte) OlmMessage {
	t.Helper()
	m, err := s.Encrypt(pt)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// roundTrips sends every text each way over an established pair: ours
// first when ours has not yet heard from libolm, else libolm first.
func roundTrips(t *testing.T, p *olmPeer, s *Session, ls olmSession, texts [][]byte) {
	t.Helper()
	for i := range 3 {
		for _, text := range texts {
			lm := p.encrypt(ls, text)
			got, err := s.Decrypt(lm)
			if err != nil {
				t.Fatalf("round %d: our decrypt of libolm's type %d message: %v", i, lm.Type, err)
			}
			sameBytes(t, "ours from libolm", got, text)
			m := mustEncrypt(t, s, text)
			if m.Type != MsgNormal {
				t.Fatalf("round %d: our message after libolm's reply has type %d, want %d", i, m.Type, MsgNormal)
			}
			got, err = p.decrypt(ls, m)
			if err != nil {
				t.Fatalf("round %d: libolm's decrypt of ours: %v", i, err)
			}
			sameBytes(t, "libolm's from ours", got, text)
		}
	}
	// A bit flipped in a ciphertext is refused on both sides, and the
	// genuine message still opens afterwards.
	lm := p.encrypt(ls, []byte("genuine from libolm"))
	if _, err := s.Decrypt(OlmMessage{Type: lm.Type, Body: flipMiddle(lm.Body)}); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("our decrypt of libolm's flipped message: %v, want ErrDecrypt", err)
	}
	if got, err := s.Decrypt(lm); err != nil || string(got) != "genuine from libolm" {
		t.Fatalf("libolm's genuine message after the flipped one: %q, %v", got, err)
	}
	if _, err := s.Decrypt(lm); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("our decrypt of libolm's replayed message: %v, want ErrDecrypt", err)
	}
	m := mustEncrypt(t, s, []byte("genuine from ours"))
	if _, err := p.decrypt(ls, OlmMessage{Type: m.Type, Body: flipMiddle(m.Body)}); err == nil {
		t.Fatal("libolm decrypted our flipped message")
	}
	if got, err := p.decrypt(ls, m); err != nil || string(got) != "genuine from ours" {
		t.Fatalf("libolm on our genuine message after the flipped one: %q, %v", got, err)
	}
}

// outOfOrder sends three messages each way and opens them 3, 1, 2.
func outOfOrder(t *testing.T, p *olmPeer, s *Session, ls olmSession) {
	t.Helper()
	texts := [][]byte{[]byte("eins ①"), []byte("zwei ②"), []byte("drei ③")}
	var ours, theirs []OlmMessage
	for _, text := range texts {
		ours = append(ours, mustEncrypt(t, s, text))
		theirs = append(theirs, p.encrypt(ls, text))
	}
	for _, i := range []int{2, 0, 1} {
		got, err := p.decrypt(ls, ours[i])
		if err != nil {
			t.Fatalf("libolm, our message %d out of order: %v", i, err)
		}
		sameBytes(t, "libolm out of order", got, texts[i])
		got, err = s.Decrypt(theirs[i])
		if err != nil {
			t.Fatalf("ours, libolm's message %d out of order: %v", i, err)
		}
		sameBytes(t, "ours out of order", got, texts[i])
	}
}

func TestInteropMegolmOursToLibolm(t *testing.T) {
	p := startOlm(t)
	g, err := NewOutboundGroup("general")
	if err != nil {
		t.Fatal(err)
	}
	rk := g.RoomKey("alice", "phone-1")
	var lg struct {
		Handle          string
		SessionID       string `json:"session_id"`
		FirstKnownIndex uint32 `json:"first_known_index"`
	}
	p.call("inbound_group", map[string]any{"session_key": rk.SessionKey}, &lg)
	if lg.SessionID != g.SessionID() || lg.FirstKnownIndex != 0 {
		t.Fatalf("libolm imported session %s at index %d, want %s at 0", lg.SessionID, lg.FirstKnownIndex, g.SessionID())
	}
	texts := interopTexts()
	var cts []string
	for _, text := range texts {
		ct, err := g.Encrypt(text)
		if err != nil {
			t.Fatal(err)
		}
		cts = append(cts, ct)
	}
	decrypt := func(handle, ct string) ([]byte, uint32, error) {
		var r struct {
			Plaintext []byte
			Index     uint32
		}
		err := p.try("group_decrypt", map[string]any{"group": handle, "ciphertext": ct}, &r)
		return r.Plaintext, r.Index, err
	}
	for _, i := range []int{4, 0, 3, 1, 2} { // out of order
		pt, idx, err := decrypt(lg.Handle, cts[i])
		if err != nil {
			t.Fatalf("libolm, our group message %d: %v", i, err)
		}
		if idx != uint32(i) {
			t.Fatalf("libolm read index %d, want %d", idx, i)
		}
		sameBytes(t, "libolm's group plaintext", pt, texts[i])
	}
	ct, err := g.Encrypt([]byte("tampered"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := decrypt(lg.Handle, flipMiddle(ct)); err == nil {
		t.Fatal("libolm decrypted our flipped group message")
	}
	if pt, idx, err := decrypt(lg.Handle, ct); err != nil || idx != 5 || string(pt) != "tampered" {
		t.Fatalf("libolm on our genuine message 5: %q, %d, %v", pt, idx, err)
	}

	// A key shared at index 6 reads from 6 on, in libolm too.
	late := g.RoomKey("alice", "phone-1")
	p.call("inbound_group", map[string]any{"session_key": late.SessionKey}, &lg)
	if lg.FirstKnownIndex != 6 {
		t.Fatalf("libolm imported the later key at index %d, want 6", lg.FirstKnownIndex)
	}
	ct, err = g.Encrypt([]byte("for the late joiner"))
	if err != nil {
		t.Fatal(err)
	}
	if pt, idx, err := decrypt(lg.Handle, ct); err != nil || idx != 6 || string(pt) != "for the late joiner" {
		t.Fatalf("libolm, late key on message 6: %q, %d, %v", pt, idx, err)
	}
	if _, _, err := decrypt(lg.Handle, cts[0]); err == nil {
		t.Fatal("libolm read message 0 with a key shared at index 6")
	}
}

func TestInteropMegolmLibolmToOurs(t *testing.T) {
	p := startOlm(t)
	sender := p.newAccount(0)
	var lg struct {
		Handle     string
		SessionID  string `json:"session_id"`
		SessionKey string `json:"session_key"`
	}
	p.call("outbound_group", nil, &lg)
	rk := RoomKey{Type: "room_key", Channel: "general", SessionID: lg.SessionID, SessionKey: lg.SessionKey,
		SenderUser: "carol", SenderDevice: "libolm-1"}
	g, err := NewInboundGroup(rk, sender.Identity.Curve25519)
	if err != nil {
		t.Fatalf("our inbound group from libolm's session key: %v", err)
	}
	if g.SessionID() != lg.SessionID || g.FirstKnownIndex() != 0 {
		t.Fatalf("our session %s at %d, libolm's %s at 0", g.SessionID(), g.FirstKnownIndex(), lg.SessionID)
	}
	encrypt := func(pt []byte) (string, uint32) {
		var r struct {
			Ciphertext string
			Index      uint32
		}
		p.call("group_encrypt", map[string]any{"group": lg.Handle, "plaintext": pt}, &r)
		return r.Ciphertext, r.Index
	}
	texts := interopTexts()
	var cts []string
	for i, text := range texts {
		ct, idx := encrypt(text)
		if idx != uint32(i) {
			t.Fatalf("libolm encrypted message %d at index %d", i, idx)
		}
		cts = append(cts, ct)
	}
	for _, i := range []int{1, 0, 4, 2, 3} { // out of order
		pt, idx, err := g.Decrypt(cts[i])
		if err != nil {
			t.Fatalf("ours, libolm's group message %d: %v", i, err)
		}
		if idx != uint32(i) {
			t.Fatalf("we read index %d, want %d", idx, i)
		}
		sameBytes(t, "our group plaintext", pt, texts[i])
	}
	if _, _, err := g.Decrypt(cts[2]); !errors.Is(err, ErrReplay) {
		t.Fatalf("libolm's message replayed: %v, want ErrReplay", err)
	}

	ct, _ := encrypt([]byte("tampered"))
	if _, _, err := g.Decrypt(flipMiddle(ct)); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("our decrypt of libolm's flipped group message: %v, want ErrDecrypt", err)
	}
	// Through the envelope, as a channel message carries it.
	env := GroupEnvelope{V: 1, Alg: AlgMegolm, SenderKey: sender.Identity.Curve25519, DeviceID: "libolm-1",
		SessionID: lg.SessionID, Ciphertext: ct}
	if pt, idx, err := OpenGroupMessage(env, g); err != nil || idx != 5 || string(pt) != "tampered" {
		t.Fatalf("libolm's genuine message 5 after the flipped one: %q, %d, %v", pt, idx, err)
	}
}
