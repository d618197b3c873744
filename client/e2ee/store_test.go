package e2ee

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestSealedStateRoundTripsAndRefusesTampering(t *testing.T) {
	alice, bob := newDevice(t, "alice", "a1", 3), newDevice(t, "bob", "b1", 3)
	as, bs := pair(t, alice, bob)
	out, _ := NewOutboundGroup("ch1")
	share, err := alice.ShareRoomKey(out, []*Session{as})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(share)
	if alg, err := EnvelopeAlg(raw); err != nil || alg != AlgOlm {
		t.Fatalf("EnvelopeAlg: got %q, %v", alg, err)
	}
	in, _, err := bob.OpenRoomKeyShare(share, "ch1", bs)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := bob.OpenRoomKeyShare(share, "ch2", bs); !errors.Is(err, ErrEnvelope) && !errors.Is(err, ErrDecrypt) {
		t.Fatalf("share opened in another channel: got %v", err)
	}
	env, _ := alice.SealGroupMessage(out, []byte(`{"type":"text","text":"hi"}`))
	if pt, _, err := OpenGroupMessage(env, in); err != nil || string(pt) != `{"type":"text","text":"hi"}` {
		t.Fatalf("got %q, %v", pt, err)
	}

	pass := []byte("correct horse battery staple")
	sealed, err := SealState(pass, &State{Account: bob, Sessions: []*Session{bs}, Inbound: []*InboundGroup{in}}, testKDF)
	if err != nil {
		t.Fatal(err)
	}
	st, err := OpenState(pass, sealed)
	if err != nil {
		t.Fatal(err)
	}
	if st.Account.Identity() != bob.Identity() || st.Account.DeviceID() != "b1" {
		t.Fatal("restored account has other keys")
	}
	// The restored group session remembers what it decrypted...
	if _, _, err := OpenGroupMessage(env, st.Inbound[0]); !errors.Is(err, ErrReplay) {
		t.Fatalf("replay after restore: got %v, want ErrReplay", err)
	}
	// ...and the restored 1:1 session still talks to alice.
	m, _ := st.Sessions[0].Encrypt([]byte("restored"))
	if pt, err := as.Decrypt(m); err != nil || string(pt) != "restored" {
		t.Fatalf("got %q, %v", pt, err)
	}

	if _, err := OpenState([]byte("wrong"), sealed); !errors.Is(err, ErrSealed) {
		t.Fatalf("wrong passphrase: got %v, want ErrSealed", err)
	}
	for i := range sealed {
		for bit := range 8 {
			b := append([]byte(nil), sealed...)
			b[i] ^= 1 << bit
			if _, err := Open(pass, b); !errors.Is(err, ErrSealed) {
				t.Fatalf("byte %d bit %d flipped: got %v, want ErrSealed", i, bit, err)
			}
		}
	}
}

func TestSealWithDefaultKDF(t *testing.T) {
	sealed, err := Seal([]byte("pw"), []byte("secret"), DefaultKDF)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := Open([]byte("pw"), sealed); err != nil || string(pt) != "secret" {
		t.Fatalf("got %q, %v", pt, err)
	}
}
