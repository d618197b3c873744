package e2ee

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/unhidra/unhidra/wire/e2eekeys"
)

// Errors callers can test for with errors.Is. Each names a refusal; the
// wrapped text says which check failed.
var (
	// ErrBadSignature: an identity or key signature did not verify.
	ErrBadSignature = e2eekeys.ErrBadSignature
	// ErrBadKey: a key has the wrong length, is not canonical base64, or
	// is a low-order Curve25519 point.
	ErrBadKey = e2eekeys.ErrBadKey
	// ErrNoKey: a claimed bundle carries neither a one-time nor a fallback key.
	ErrNoKey = errors.New("e2ee: bundle has no one-time or fallback key")
	// ErrDecrypt: a ciphertext failed authentication or could not be parsed.
	ErrDecrypt = errors.New("e2ee: decryption failed")
	// ErrReplay: a group message index was already decrypted in this session.
	ErrReplay = errors.New("e2ee: replayed message")
	// ErrTooFarAhead: a group message index lies more than MaxSkip past the
	// highest index seen.
	ErrTooFarAhead = errors.New("e2ee: message index too far ahead")
	// ErrEnvelope: an envelope is malformed or does not match the session
	// or channel it is opened with.
	ErrEnvelope = errors.New("e2ee: bad envelope")
)

// b64 is the wire encoding of every key, signature and ciphertext: unpadded
// standard base64, as libolm emits.
var b64 = base64.RawStdEncoding

// The key directory's shapes (wire/e2eekeys), shared with the server.
type (
	// IdentityKeys are a device's long-term public keys.
	IdentityKeys = e2eekeys.IdentityKeys
	// SignedKey is a one-time or fallback Curve25519 key with its signature.
	SignedKey = e2eekeys.SignedKey
	// UploadRequest is the body of PUT /api/v1/keys/devices/{device_id}.
	UploadRequest = e2eekeys.Upload
	// Bundle is the answer of POST /api/v1/keys/claim: what a sender needs
	// to start a 1:1 session with one device.
	Bundle = e2eekeys.Bundle
)

// VerifyIdentity checks that ids.Curve25519 is signed by ids.Ed25519 for
// (user, deviceID), with the server's own checks (wire/e2eekeys). A
// directory listing is only trusted after this check and after the ed25519
// key's fingerprint was compared out of band.
func VerifyIdentity(user, deviceID string, ids IdentityKeys, signature string) error {
	_, err := e2eekeys.VerifyIdentity(user, deviceID, ids, signature)
	return err
}

// VerifyBundle checks a claimed bundle: the identity signature, then the
// signature of the key a session would use (the one-time key, or the
// fallback key when none is left). It returns that key.
func VerifyBundle(b Bundle) (SignedKey, error) {
	pub, err := e2eekeys.VerifyIdentity(b.User, b.DeviceID, b.Identity, b.IdentitySignature)
	if err != nil {
		return SignedKey{}, err
	}
	field, k := "one_time_key", b.OneTimeKey
	if k == nil {
		field, k = "fallback_key", b.FallbackKey
	}
	if k == nil {
		return SignedKey{}, ErrNoKey
	}
	if err := e2eekeys.VerifySignedKey(field, b.User, b.DeviceID, pub, *k); err != nil {
		return SignedKey{}, err
	}
	return *k, nil
}

// canonical re-encodes a strictly decoded ciphertext, refusing any other
// spelling of the same bytes (see b64Strict).
func canonical(s string) (string, error) {
	raw, err := e2eekeys.B64.DecodeString(s)
	if err != nil || len(raw) == 0 {
		return "", fmt.Errorf("%w: ciphertext is not unpadded base64", ErrDecrypt)
	}
	if enc := b64.EncodeToString(raw); !bytes.Equal([]byte(enc), []byte(s)) {
		return "", fmt.Errorf("%w: ciphertext is not canonical base64", ErrDecrypt)
	}
	return s, nil
}

// checkSenderKey checks a sender's Curve25519 key: 32 bytes, not a
// low-order point (a session "with" such a key would be readable by anyone).
func checkSenderKey(s string) error { return e2eekeys.CheckCurve25519("sender key", s) }
