package e2ee

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"

	"golang.org/x/crypto/curve25519"
)

// Errors callers can test for with errors.Is. Each names a refusal; the
// wrapped text says which check failed.
var (
	// ErrBadSignature: an identity or key signature did not verify.
	ErrBadSignature = errors.New("e2ee: bad signature")
	// ErrBadKey: a key has the wrong length, is not canonical base64, or
	// is a low-order Curve25519 point.
	ErrBadKey = errors.New("e2ee: bad key")
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

// b64Strict refuses encodings with non-zero trailing bits, so exactly one
// string stands for a given byte string. Without it a flipped low bit in the
// last character of a ciphertext would decode to the same bytes and be
// accepted.
var b64Strict = base64.RawStdEncoding.Strict()

var idPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// IdentityKeys are a device's long-term public keys.
type IdentityKeys struct {
	Curve25519 string `json:"curve25519"`
	Ed25519    string `json:"ed25519"`
}

// SignedKey is a one-time or fallback Curve25519 key with its signature.
type SignedKey struct {
	ID        string `json:"id"`
	Key       string `json:"key"`
	Signature string `json:"signature"`
}

// UploadRequest is the body of PUT /api/v1/keys/devices/{device_id}.
type UploadRequest struct {
	Identity          IdentityKeys `json:"identity"`
	IdentitySignature string       `json:"identity_signature"`
	OneTimeKeys       []SignedKey  `json:"one_time_keys"`
	FallbackKey       *SignedKey   `json:"fallback_key,omitempty"`
}

// Bundle is the answer of POST /api/v1/keys/claim: what a sender needs to
// start a 1:1 session with one device.
type Bundle struct {
	User              string       `json:"user"`
	DeviceID          string       `json:"device_id"`
	Identity          IdentityKeys `json:"identity"`
	IdentitySignature string       `json:"identity_signature"`
	OneTimeKey        *SignedKey   `json:"one_time_key"`
	FallbackKey       *SignedKey   `json:"fallback_key"`
}

// IdentityMessage is the byte string a device's ed25519 key signs to bind
// its Curve25519 key to (user, device).
func IdentityMessage(user, deviceID, curve25519B64 string) []byte {
	return []byte("unhidra-e2ee-identity-v1\n" + user + "\n" + deviceID + "\n" + curve25519B64)
}

// KeyMessage is the byte string a device's ed25519 key signs for each
// one-time or fallback key it publishes.
func KeyMessage(user, deviceID, keyID, keyB64 string) []byte {
	return []byte("unhidra-e2ee-key-v1\n" + user + "\n" + deviceID + "\n" + keyID + "\n" + keyB64)
}

// VerifyIdentity checks that ids.Curve25519 is signed by ids.Ed25519 for
// (user, deviceID). A directory listing is only trusted after this check
// and after the ed25519 key's fingerprint was compared out of band.
func VerifyIdentity(user, deviceID string, ids IdentityKeys, signature string) error {
	if !idPattern.MatchString(deviceID) {
		return fmt.Errorf("%w: device id %q", ErrBadKey, deviceID)
	}
	edPub, err := decodeKey(ids.Ed25519, ed25519.PublicKeySize, "ed25519 identity")
	if err != nil {
		return err
	}
	if _, err := decodeCurveKey(ids.Curve25519, "curve25519 identity"); err != nil {
		return err
	}
	return verify(edPub, IdentityMessage(user, deviceID, ids.Curve25519), signature, "identity")
}

// VerifyBundle checks a claimed bundle: the identity signature, then the
// signature of the key a session would use (the one-time key, or the
// fallback key when none is left). It returns that key.
func VerifyBundle(b Bundle) (SignedKey, error) {
	if err := VerifyIdentity(b.User, b.DeviceID, b.Identity, b.IdentitySignature); err != nil {
		return SignedKey{}, err
	}
	k := b.OneTimeKey
	if k == nil {
		k = b.FallbackKey
	}
	if k == nil {
		return SignedKey{}, ErrNoKey
	}
	if err := verifySignedKey(b.User, b.DeviceID, b.Identity.Ed25519, *k); err != nil {
		return SignedKey{}, err
	}
	return *k, nil
}

func verifySignedKey(user, deviceID, ed25519B64 string, k SignedKey) error {
	if !idPattern.MatchString(k.ID) {
		return fmt.Errorf("%w: key id %q", ErrBadKey, k.ID)
	}
	edPub, err := decodeKey(ed25519B64, ed25519.PublicKeySize, "ed25519 identity")
	if err != nil {
		return err
	}
	if _, err := decodeCurveKey(k.Key, "one-time key "+k.ID); err != nil {
		return err
	}
	return verify(edPub, KeyMessage(user, deviceID, k.ID, k.Key), k.Signature, "key "+k.ID)
}

func verify(pub ed25519.PublicKey, msg []byte, sigB64, what string) error {
	sig, err := b64Strict.DecodeString(sigB64)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return fmt.Errorf("%w: %s signature is not %d bytes of base64", ErrBadSignature, what, ed25519.SignatureSize)
	}
	if !ed25519.Verify(pub, msg, sig) {
		return fmt.Errorf("%w: %s", ErrBadSignature, what)
	}
	return nil
}

func decodeKey(s string, n int, what string) ([]byte, error) {
	k, err := b64Strict.DecodeString(s)
	if err != nil || len(k) != n {
		return nil, fmt.Errorf("%w: %s is not %d bytes of unpadded base64", ErrBadKey, what, n)
	}
	return k, nil
}

// decodeCurveKey also refuses low-order points: a Diffie-Hellman with one
// gives an all-zero secret whatever our private key, so a session "with"
// such a key would be readable by anyone.
func decodeCurveKey(s, what string) ([]byte, error) {
	k, err := decodeKey(s, curve25519.PointSize, what)
	if err != nil {
		return nil, err
	}
	var scalar [curve25519.ScalarSize]byte
	if _, err := rand.Read(scalar[:]); err != nil {
		return nil, err
	}
	if _, err := curve25519.X25519(scalar[:], k); err != nil {
		return nil, fmt.Errorf("%w: %s is a low-order point", ErrBadKey, what)
	}
	return k, nil
}

// canonical re-encodes a strictly decoded ciphertext, refusing any other
// spelling of the same bytes (see b64Strict).
func canonical(s string) (string, error) {
	raw, err := b64Strict.DecodeString(s)
	if err != nil || len(raw) == 0 {
		return "", fmt.Errorf("%w: ciphertext is not unpadded base64", ErrDecrypt)
	}
	if enc := b64.EncodeToString(raw); !bytes.Equal([]byte(enc), []byte(s)) {
		return "", fmt.Errorf("%w: ciphertext is not canonical base64", ErrDecrypt)
	}
	return s, nil
}
