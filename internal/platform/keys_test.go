package platform_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"testing"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/auth"
	"github.com/unhidra/unhidra/internal/keys"
	"github.com/unhidra/unhidra/internal/platform"
	"github.com/unhidra/unhidra/wire"
	"github.com/unhidra/unhidra/wire/e2eekeys"
)

// The services the administration commands use take a disabled user's
// devices out of the key directory in the disabling call; an
// administrator's password reset, which revokes the same sessions, leaves
// them.
func TestDisablingAUserEmptiesTheirKeysAndAPasswordResetDoesNot(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t, nil)
	b, err := platform.OpenBackend(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	s, err := platform.NewServices(ctx, cfg, b, platform.Options{Audit: &recorder{}, HashParams: auth.Params{MemoryKiB: 64, Iterations: 1, Parallelism: 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Chat.Wait()
	if _, err := s.Auth.CreateUser(ctx, auth.CreateUserInput{Username: "bob", Password: "bob password 123"}); err != nil {
		t.Fatal(err)
	}
	bob := unhidra.Identity{Principal: wire.Principal{Kind: wire.KindUser, ID: "bob"}}
	if _, err := s.Keys.Upload(ctx, bob, "phone", signedUpload(t, "bob", "phone")); err != nil {
		t.Fatal(err)
	}
	devices := func() int {
		t.Helper()
		devs, err := s.Keys.Devices(ctx, bob, "bob")
		if err != nil {
			t.Fatal(err)
		}
		return len(devs)
	}
	if err := s.Auth.SetPassword(ctx, auth.Operator, "bob", "another password 456"); err != nil {
		t.Fatal(err)
	}
	if n := devices(); n != 1 {
		t.Fatalf("bob's devices after a password reset = %d, want 1", n)
	}
	if _, err := s.Auth.DisableUser(ctx, auth.Operator, "bob"); err != nil {
		t.Fatal(err)
	}
	if n := devices(); n != 0 {
		t.Errorf("bob's devices after the disable = %d, want none", n)
	}
}

// signedUpload is a fresh identity for user's device dev, signed as the
// key directory requires.
func signedUpload(t *testing.T, user, dev string) keys.Upload {
	t.Helper()
	b64 := base64.RawStdEncoding
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c := make([]byte, 32)
	rand.Read(c)
	curve := b64.EncodeToString(c)
	return keys.Upload{
		Identity:          keys.IdentityKeys{Curve25519: curve, Ed25519: b64.EncodeToString(pub)},
		IdentitySignature: b64.EncodeToString(ed25519.Sign(priv, e2eekeys.IdentityMessage(user, dev, curve))),
	}
}
