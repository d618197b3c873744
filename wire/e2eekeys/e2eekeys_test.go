package e2eekeys

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"testing"
)

// The Curve25519 points of small order and their non-canonical
// encodings (as listed by libsodium and Signal), each refused.
var lowOrder = []string{
	"0000000000000000000000000000000000000000000000000000000000000000",
	"0100000000000000000000000000000000000000000000000000000000000000",
	"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
	"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
	"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
}

func TestCheckCurve25519(t *testing.T) {
	for _, h := range lowOrder {
		raw, _ := hex.DecodeString(h)
		if err := CheckCurve25519("k", B64.EncodeToString(raw)); !errors.Is(err, ErrBadKey) {
			t.Errorf("low-order %s: %v", h[:8], err)
		}
	}
	for range 100 {
		k, _ := ecdh.X25519().GenerateKey(rand.Reader)
		if err := CheckCurve25519("k", B64.EncodeToString(k.PublicKey().Bytes())); err != nil {
			t.Fatalf("a real key refused: %v", err)
		}
	}
	for _, bad := range []string{"", "AAAA", B64.EncodeToString(make([]byte, 31)), B64.EncodeToString(make([]byte, 32)) + "="} {
		if err := CheckCurve25519("k", bad); !errors.Is(err, ErrBadKey) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestVerifyIdentityAndKeys(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	curve, _ := ecdh.X25519().GenerateKey(rand.Reader)
	ids := IdentityKeys{Curve25519: B64.EncodeToString(curve.PublicKey().Bytes()), Ed25519: B64.EncodeToString(pub)}
	sig := B64.EncodeToString(ed25519.Sign(priv, IdentityMessage("alice", "d1", ids.Curve25519)))
	got, err := VerifyIdentity("alice", "d1", ids, sig)
	if err != nil || !got.Equal(pub) {
		t.Fatalf("a good identity: %v", err)
	}
	for _, tc := range []struct{ user, dev string }{{"bob", "d1"}, {"alice", "d2"}} {
		if _, err := VerifyIdentity(tc.user, tc.dev, ids, sig); !errors.Is(err, ErrBadSignature) {
			t.Errorf("signed for alice/d1, checked as %s/%s: %v", tc.user, tc.dev, err)
		}
	}
	if _, err := VerifyIdentity("alice", "bad id!", ids, sig); !errors.Is(err, ErrBadKey) {
		t.Errorf("bad device id: %v", err)
	}
	k := SignedKey{ID: "AAAAAQ", Key: ids.Curve25519}
	k.Signature = B64.EncodeToString(ed25519.Sign(priv, KeyMessage("alice", "d1", k.ID, k.Key)))
	if err := VerifySignedKey("one_time_keys[0]", "alice", "d1", pub, k); err != nil {
		t.Fatalf("a good key: %v", err)
	}
	k.ID = "AAAAAg"
	var e *Error
	if err := VerifySignedKey("one_time_keys[0]", "alice", "d1", pub, k); !errors.As(err, &e) || e.Field != "one_time_keys[0].signature" || !errors.Is(err, ErrBadSignature) {
		t.Fatalf("a key under another id: %v", err)
	}
}
