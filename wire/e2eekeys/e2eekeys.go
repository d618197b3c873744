// Package e2eekeys is the contract of Unhidra's E2EE key directory
// (/api/v1/keys/…), shared by the server (internal/keys) and the SDK
// (client/e2ee) so that both read and check keys alike: the JSON shapes, the
// messages each signature covers, and the checks — unpadded standard
// base64 with a single spelling per value, exact lengths, no low-order
// Curve25519 point, Ed25519 signatures. Standard library only.
package e2eekeys

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
)

// IdentityKeys are a device's long-term public keys, 32 bytes each.
type IdentityKeys struct {
	Curve25519 string `json:"curve25519"`
	Ed25519    string `json:"ed25519"`
}

// SignedKey is a one-time or fallback Curve25519 key with its Ed25519
// signature by the device's identity key (over KeyMessage).
type SignedKey struct {
	ID        string `json:"id"`
	Key       string `json:"key"`
	Signature string `json:"signature"`
}

// Upload is the body of PUT /api/v1/keys/devices/{device_id}.
type Upload struct {
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

// IdentityMessage is what a device's ed25519 key signs to bind its
// Curve25519 key to (user, device). Naming both means a signature made for
// one device cannot be replayed for another.
func IdentityMessage(user, deviceID, curve25519B64 string) []byte {
	return []byte("unhidra-e2ee-identity-v1\n" + user + "\n" + deviceID + "\n" + curve25519B64)
}

// KeyMessage is what a device's ed25519 key signs for each one-time or
// fallback key it publishes.
func KeyMessage(user, deviceID, keyID, keyB64 string) []byte {
	return []byte("unhidra-e2ee-key-v1\n" + user + "\n" + deviceID + "\n" + keyID + "\n" + keyB64)
}

// B64 is the wire encoding, strict: non-zero trailing bits are refused, so
// a value has exactly one spelling (a duplicate key cannot hide behind
// another, a flipped low bit of a ciphertext is not the same ciphertext).
var B64 = base64.RawStdEncoding.Strict()

var idPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidID reports whether s is a device or key id: 1 to 64 letters,
// digits, '_' or '-'.
func ValidID(s string) bool { return idPattern.MatchString(s) }

// The kinds of refusal, for errors.Is.
var (
	ErrBadKey       = errors.New("e2ee: bad key")
	ErrBadSignature = errors.New("e2ee: bad signature")
)

// Error is a refused field. Field names it as the JSON does
// ("identity.curve25519", "one_time_keys[2].signature"); it wraps
// ErrBadKey or ErrBadSignature.
type Error struct {
	Field, Reason string
	kind          error
}

func (e *Error) Error() string { return e.Field + " " + e.Reason }
func (e *Error) Unwrap() error { return e.kind }

func refuse(kind error, field, format string, args ...any) error {
	return &Error{Field: field, Reason: fmt.Sprintf(format, args...), kind: kind}
}

// Decode decodes field, which must hold n bytes of strict unpadded
// standard base64; refusals are of kind.
func Decode(kind error, field, s string, n int) ([]byte, error) {
	if s == "" {
		return nil, refuse(kind, field, "is required")
	}
	raw, err := B64.DecodeString(s)
	if err != nil {
		return nil, refuse(kind, field, "is not unpadded standard base64")
	}
	if len(raw) != n {
		return nil, refuse(kind, field, "must be %d bytes, not %d", n, len(raw))
	}
	return raw, nil
}

// probe is any fixed X25519 private key: the shared secret with a
// low-order point is all zeros whatever the private key, which
// crypto/ecdh refuses — exactly the points whose "shared" secret anyone
// knows.
var probe, _ = ecdh.X25519().NewPrivateKey(make([]byte, 32))

// CheckCurve25519 checks a Curve25519 public key (field): 32 bytes, not a
// low-order point.
func CheckCurve25519(field, s string) error {
	raw, err := Decode(ErrBadKey, field, s, 32)
	if err != nil {
		return err
	}
	pub, err := ecdh.X25519().NewPublicKey(raw)
	if err == nil {
		_, err = probe.ECDH(pub)
	}
	if err != nil {
		return refuse(ErrBadKey, field, "is a low-order Curve25519 point")
	}
	return nil
}

// VerifyIdentity checks (user, deviceID)'s identity: the device id, both
// keys, and the identity signature. It returns the ed25519 key, which signs
// the device's other keys.
func VerifyIdentity(user, deviceID string, ids IdentityKeys, signature string) (ed25519.PublicKey, error) {
	if !ValidID(deviceID) {
		return nil, refuse(ErrBadKey, "device_id", "must be 1 to 64 letters, digits, '_' or '-'")
	}
	if err := CheckCurve25519("identity.curve25519", ids.Curve25519); err != nil {
		return nil, err
	}
	raw, err := Decode(ErrBadKey, "identity.ed25519", ids.Ed25519, ed25519.PublicKeySize)
	if err != nil {
		return nil, err
	}
	pub := ed25519.PublicKey(raw)
	if err := verify("identity_signature", pub, IdentityMessage(user, deviceID, ids.Curve25519), signature); err != nil {
		return nil, err
	}
	return pub, nil
}

// VerifySignedKey checks a one-time or fallback key (field) of (user,
// deviceID) signed by pub: its id, the key, and the signature.
func VerifySignedKey(field, user, deviceID string, pub ed25519.PublicKey, k SignedKey) error {
	if !ValidID(k.ID) {
		return refuse(ErrBadKey, field+".id", "must be 1 to 64 letters, digits, '_' or '-'")
	}
	if err := CheckCurve25519(field+".key", k.Key); err != nil {
		return err
	}
	return verify(field+".signature", pub, KeyMessage(user, deviceID, k.ID, k.Key), k.Signature)
}

func verify(field string, pub ed25519.PublicKey, msg []byte, sig string) error {
	raw, err := Decode(ErrBadSignature, field, sig, ed25519.SignatureSize)
	if err != nil {
		return err
	}
	if !ed25519.Verify(pub, msg, raw) {
		return refuse(ErrBadSignature, field, "does not verify with the device's ed25519 identity key")
	}
	return nil
}
