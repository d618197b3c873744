package e2ee

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// testKDF keeps Argon2id cheap under -race; DefaultKDF is exercised once.
var testKDF = KDFParams{Time: 1, MemoryKiB: 64, Threads: 1}

func newDevice(t *testing.T, user, device string, otks int) *Account {
	t.Helper()
	a, err := NewAccount(user, device)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.GenerateOneTimeKeys(otks); err != nil {
		t.Fatal(err)
	}
	if err := a.GenerateFallbackKey(); err != nil {
		t.Fatal(err)
	}
	return a
}

// claim plays the key directory: it hands out the first one-time key of an
// upload, as POST /api/v1/keys/claim would.
func claim(t *testing.T, a *Account) Bundle {
	t.Helper()
	up, err := a.Upload()
	if err != nil {
		t.Fatal(err)
	}
	b := Bundle{User: a.User(), DeviceID: a.DeviceID(), Identity: up.Identity,
		IdentitySignature: up.IdentitySignature, FallbackKey: up.FallbackKey}
	if len(up.OneTimeKeys) > 0 {
		b.OneTimeKey = &up.OneTimeKeys[0]
	}
	return b
}

// pair returns alice's outbound and bob's inbound session, established by
// one prekey message.
func pair(t *testing.T, alice, bob *Account) (*Session, *Session) {
	t.Helper()
	as, err := alice.NewOutboundSession(claim(t, bob))
	if err != nil {
		t.Fatal(err)
	}
	m, err := as.Encrypt([]byte("hello bob"))
	if err != nil {
		t.Fatal(err)
	}
	bs, pt, err := bob.NewInboundSession(alice.Identity().Curve25519, m)
	if err != nil {
		t.Fatal(err)
	}
	if string(pt) != "hello bob" {
		t.Fatalf("got %q, want %q", pt, "hello bob")
	}
	return as, bs
}

func TestUploadIsSignedInTheContractFormat(t *testing.T) {
	a := newDevice(t, "alice", "phone-1", 5)
	up, err := a.Upload()
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyIdentity("alice", "phone-1", up.Identity, up.IdentitySignature); err != nil {
		t.Fatalf("identity: %v", err)
	}
	if len(up.OneTimeKeys) != 5 || up.FallbackKey == nil {
		t.Fatalf("got %d one-time keys and fallback %v, want 5 and one", len(up.OneTimeKeys), up.FallbackKey)
	}
	for _, k := range append(up.OneTimeKeys, *up.FallbackKey) {
		b := Bundle{User: "alice", DeviceID: "phone-1", Identity: up.Identity, IdentitySignature: up.IdentitySignature, OneTimeKey: &k}
		if _, err := VerifyBundle(b); err != nil {
			t.Errorf("key %s: %v", k.ID, err)
		}
	}
	if err := VerifyIdentity("mallory", "phone-1", up.Identity, up.IdentitySignature); !errors.Is(err, ErrBadSignature) {
		t.Errorf("identity under another user: got %v, want ErrBadSignature", err)
	}
	body, _ := json.Marshal(up)
	for _, field := range []string{`"identity":{"curve25519":`, `"identity_signature":`, `"one_time_keys":[{"id":"AAAAAQ"`, `"fallback_key":{"id":`} {
		if !strings.Contains(string(body), field) {
			t.Errorf("upload body %s lacks %s", body, field)
		}
	}
	a.MarkPublished()
	up, _ = a.Upload()
	if len(up.OneTimeKeys) != 0 || up.FallbackKey != nil {
		t.Errorf("after MarkPublished: got %d keys and fallback %v, want none", len(up.OneTimeKeys), up.FallbackKey)
	}
}

func TestBundleRefusals(t *testing.T) {
	alice := newDevice(t, "alice", "a1", 1)
	bob := newDevice(t, "bob", "b1", 1)
	eve := newDevice(t, "eve", "e1", 1)
	lowOrder := b64.EncodeToString(make([]byte, 32)) // the point 0
	cases := []struct {
		name   string
		mutate func(*Bundle)
		want   error
	}{
		{"an identity signature by another key is refused", func(b *Bundle) { b.IdentitySignature = claim(t, eve).IdentitySignature }, ErrBadSignature},
		{"an identity claimed for another device is refused", func(b *Bundle) { b.DeviceID = "b2" }, ErrBadSignature},
		{"a one-time key swapped for another is refused", func(b *Bundle) { b.OneTimeKey.Key = claim(t, eve).OneTimeKey.Key }, ErrBadSignature},
		{"a one-time key under another id is refused", func(b *Bundle) { b.OneTimeKey.ID = "AAAAAg" }, ErrBadSignature},
		{"a truncated signature is refused", func(b *Bundle) { b.OneTimeKey.Signature = b.OneTimeKey.Signature[:40] }, ErrBadSignature},
		{"a short identity key is refused", func(b *Bundle) { b.Identity.Curve25519 = b.Identity.Curve25519[:20] }, ErrBadKey},
		{"a low-order one-time key is refused", func(b *Bundle) { b.OneTimeKey.Key = lowOrder }, ErrBadKey},
		{"a bundle without keys is refused", func(b *Bundle) { b.OneTimeKey, b.FallbackKey = nil, nil }, ErrNoKey},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := claim(t, bob)
			c.mutate(&b)
			if _, err := alice.NewOutboundSession(b); !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
	t.Run("a bundle with only the fallback key is accepted", func(t *testing.T) {
		b := claim(t, bob)
		b.OneTimeKey = nil
		if _, err := alice.NewOutboundSession(b); err != nil {
			t.Fatal(err)
		}
	})
}

func TestSessionRoundTripBothWays(t *testing.T) {
	alice, bob := newDevice(t, "alice", "a1", 2), newDevice(t, "bob", "b1", 2)
	as, bs := pair(t, alice, bob)
	if as.ID() != bs.ID() {
		t.Fatalf("session ids differ: %s vs %s", as.ID(), bs.ID())
	}
	for i := range 5 {
		m, err := bs.Encrypt(fmt.Appendf(nil, "reply %d", i))
		if err != nil {
			t.Fatal(err)
		}
		if m.Type != MsgNormal {
			t.Fatalf("bob's reply has type %d, want %d", m.Type, MsgNormal)
		}
		pt, err := as.Decrypt(m)
		if err != nil || string(pt) != fmt.Sprintf("reply %d", i) {
			t.Fatalf("got %q, %v", pt, err)
		}
		m, _ = as.Encrypt(fmt.Appendf(nil, "again %d", i))
		if pt, err := bs.Decrypt(m); err != nil || string(pt) != fmt.Sprintf("again %d", i) {
			t.Fatalf("got %q, %v", pt, err)
		}
	}
}

func TestPrekeyReplayDoesNotOpenASecondSession(t *testing.T) {
	alice, bob := newDevice(t, "alice", "a1", 1), newDevice(t, "bob", "b1", 1)
	b := claim(t, bob)
	b.FallbackKey = nil
	as, err := alice.NewOutboundSession(b)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := as.Encrypt([]byte("once"))
	if _, _, err := bob.NewInboundSession(alice.Identity().Curve25519, m); err != nil {
		t.Fatal(err)
	}
	if _, _, err := bob.NewInboundSession(alice.Identity().Curve25519, m); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("replayed prekey message: got %v, want ErrDecrypt", err)
	}
	if _, _, err := bob.NewInboundSession(bob.Identity().Curve25519, m); err == nil {
		t.Fatal("prekey message under another sender key was accepted")
	}
}

func TestSessionOutOfOrderReplayAndGap(t *testing.T) {
	alice, bob := newDevice(t, "alice", "a1", 1), newDevice(t, "bob", "b1", 1)
	as, bs := pair(t, alice, bob)
	reply, _ := bs.Encrypt([]byte("ack")) // makes alice's messages normal ones
	if _, err := as.Decrypt(reply); err != nil {
		t.Fatal(err)
	}
	var msgs []OlmMessage
	for i := range OlmSkippedKeys {
		m, _ := as.Encrypt(fmt.Appendf(nil, "m%d", i))
		msgs = append(msgs, m)
	}
	for i := len(msgs) - 1; i >= 0; i-- { // all of them, in reverse
		pt, err := bs.Decrypt(msgs[i])
		if err != nil || string(pt) != fmt.Sprintf("m%d", i) {
			t.Fatalf("message %d out of order: got %q, %v", i, pt, err)
		}
	}
	if _, err := bs.Decrypt(msgs[3]); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("replay: got %v, want ErrDecrypt", err)
	}

	// A message more than MaxOlmGap ahead is refused and changes nothing:
	// the next in-order message still decrypts.
	before := bs.pickle()
	for range MaxOlmGap + 1 {
		if _, err := as.Encrypt([]byte("skipped")); err != nil {
			t.Fatal(err)
		}
	}
	far, _ := as.Encrypt([]byte("far"))
	if _, err := bs.Decrypt(far); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("gap beyond MaxOlmGap: got %v, want ErrDecrypt", err)
	}
	if !bytes.Equal(before, bs.pickle()) {
		t.Fatal("a refused message changed the session")
	}
	m, _ := bs.Encrypt([]byte("still here"))
	if pt, err := as.Decrypt(m); err != nil || string(pt) != "still here" {
		t.Fatalf("after the refusal: got %q, %v", pt, err)
	}
}

// flips yields every single-bit flip of a base64 ciphertext, both of the
// text and of the bytes it encodes.
func flips(ct string) []string {
	var out []string
	for i := range len(ct) {
		for bit := range 8 {
			b := []byte(ct)
			b[i] ^= 1 << bit
			out = append(out, string(b))
		}
	}
	raw, _ := b64.DecodeString(ct)
	for i := range raw {
		for bit := range 8 {
			b := bytes.Clone(raw)
			b[i] ^= 1 << bit
			out = append(out, b64.EncodeToString(b))
		}
	}
	return out
}

func TestSessionRefusesEveryBitFlip(t *testing.T) {
	alice, bob := newDevice(t, "alice", "a1", 1), newDevice(t, "bob", "b1", 1)
	as, bs := pair(t, alice, bob)
	for _, typ := range []int{MsgPreKey, MsgNormal} {
		var m OlmMessage
		if typ == MsgPreKey {
			m, _ = as.Encrypt([]byte("prekey again")) // alice has not heard back yet
		} else {
			m, _ = bs.Encrypt([]byte("normal"))
		}
		recv := bs
		if typ == MsgNormal {
			recv = as
		}
		if m.Type != typ {
			t.Fatalf("got type %d, want %d", m.Type, typ)
		}
		before := recv.pickle()
		for _, f := range flips(m.Body) {
			if pt, err := recv.Decrypt(OlmMessage{Type: typ, Body: f}); err == nil {
				t.Fatalf("type %d: a flipped ciphertext decrypted to %q", typ, pt)
			}
		}
		if !bytes.Equal(before, recv.pickle()) {
			t.Fatalf("type %d: refused messages changed the session", typ)
		}
		if _, err := recv.Decrypt(m); err != nil {
			t.Fatalf("type %d: the genuine message after the flips: %v", typ, err)
		}
	}
}

func groupPair(t *testing.T) (*OutboundGroup, *InboundGroup) {
	t.Helper()
	sender := newDevice(t, "alice", "a1", 0)
	out, err := NewOutboundGroup("ch1")
	if err != nil {
		t.Fatal(err)
	}
	in, err := NewInboundGroup(out.RoomKey("alice", "a1"), sender.Identity().Curve25519)
	if err != nil {
		t.Fatal(err)
	}
	return out, in
}

func TestGroupRoundTripOutOfOrderAndReplay(t *testing.T) {
	out, in := groupPair(t)
	var cts []string
	for i := range 10 {
		ct, err := out.Encrypt(fmt.Appendf(nil, "g%d", i))
		if err != nil {
			t.Fatal(err)
		}
		cts = append(cts, ct)
	}
	for _, i := range []int{9, 0, 5, 1, 2, 8, 3, 4, 7, 6} {
		pt, idx, err := in.Decrypt(cts[i])
		if err != nil || string(pt) != fmt.Sprintf("g%d", i) || idx != uint32(i) {
			t.Fatalf("message %d: got %q at %d, %v", i, pt, idx, err)
		}
	}
	for i := range cts {
		if _, _, err := in.Decrypt(cts[i]); !errors.Is(err, ErrReplay) {
			t.Fatalf("replay of %d: got %v, want ErrReplay", i, err)
		}
	}
}

func TestGroupGapBeyondMaxSkipIsRefusedAndChangesNothing(t *testing.T) {
	out, in := groupPair(t)
	first, _ := out.Encrypt([]byte("first"))
	var within, beyond string
	for i := 1; i <= MaxSkip+1; i++ {
		ct, _ := out.Encrypt([]byte("later"))
		switch i {
		case MaxSkip:
			within = ct
		case MaxSkip + 1:
			beyond = ct
		}
	}
	if _, _, err := in.Decrypt(beyond); !errors.Is(err, ErrTooFarAhead) {
		t.Fatalf("index %d from the start: got %v, want ErrTooFarAhead", MaxSkip+1, err)
	}
	if _, _, err := in.Decrypt(first); err != nil {
		t.Fatalf("first after the refusal: %v", err)
	}
	// Once index 0 was seen, index MaxSkip+1 skips exactly MaxSkip messages.
	if _, _, err := in.Decrypt(beyond); err != nil {
		t.Fatalf("index %d once index 0 was seen: %v", MaxSkip+1, err)
	}
	if _, _, err := in.Decrypt(within); err != nil {
		t.Fatalf("an earlier index within the window: %v", err)
	}
}

func TestGroupRefusesEveryBitFlipAndStaysUsable(t *testing.T) {
	out, in := groupPair(t)
	ct, _ := out.Encrypt([]byte("do not touch"))
	before := in.s.PickleLibOlm()
	for _, f := range flips(ct) {
		if pt, _, err := in.Decrypt(f); err == nil {
			t.Fatalf("a flipped group message decrypted to %q", pt)
		}
	}
	if !bytes.Equal(before, in.s.PickleLibOlm()) || len(in.seen) != 0 {
		t.Fatal("refused messages changed the group session")
	}
	if pt, _, err := in.Decrypt(ct); err != nil || string(pt) != "do not touch" {
		t.Fatalf("the genuine message after the flips: got %q, %v", pt, err)
	}
}

func TestGroupKeyFromLaterIndexCannotReadEarlier(t *testing.T) {
	sender := newDevice(t, "alice", "a1", 0)
	out, _ := NewOutboundGroup("ch1")
	early, _ := out.Encrypt([]byte("before you joined"))
	in, err := NewInboundGroup(out.RoomKey("alice", "a1"), sender.Identity().Curve25519)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := in.Decrypt(early); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("got %v, want ErrDecrypt", err)
	}
	late, _ := out.Encrypt([]byte("after"))
	if pt, _, err := in.Decrypt(late); err != nil || string(pt) != "after" {
		t.Fatalf("got %q, %v", pt, err)
	}
}
