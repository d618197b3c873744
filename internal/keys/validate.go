package keys

import (
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"regexp"

	"golang.org/x/crypto/curve25519"

	"github.com/unhidra/unhidra"
)

// The messages each signature covers (the E2EE contract). They name the
// user and device, so a signature made for one device cannot be replayed
// for another.
const (
	identityContext = "unhidra-e2ee-identity-v1"
	keyContext      = "unhidra-e2ee-key-v1"
)

// IdentityMessage is the message the identity signature covers.
func IdentityMessage(user, deviceID, curve25519B64 string) []byte {
	return []byte(identityContext + "\n" + user + "\n" + deviceID + "\n" + curve25519B64)
}

// KeyMessage is the message a one-time or fallback key's signature covers.
func KeyMessage(user, deviceID, keyID, keyB64 string) []byte {
	return []byte(keyContext + "\n" + user + "\n" + deviceID + "\n" + keyID + "\n" + keyB64)
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidDeviceID reports whether id is a client device id.
func ValidDeviceID(id string) bool { return idPattern.MatchString(id) }

// b64 is the wire encoding. Strict refuses non-zero padding bits, so each
// key has exactly one encoding and a duplicate cannot hide behind another.
var b64 = base64.RawStdEncoding.Strict()

func invalid(format string, args ...any) error {
	return unhidra.Errorf(unhidra.EINVALID, format, args...)
}

// decode decodes field, which must hold n bytes.
func decode(field, s string, n int) ([]byte, error) {
	if s == "" {
		return nil, invalid("%s is required", field)
	}
	raw, err := b64.DecodeString(s)
	if err != nil {
		return nil, invalid("%s is not unpadded standard base64", field)
	}
	if len(raw) != n {
		return nil, invalid("%s must be %d bytes, not %d", field, n, len(raw))
	}
	return raw, nil
}

// lowOrderScalar is any fixed scalar: X25519 with it returns all zeros,
// which curve25519.X25519 reports as an error, exactly for the low-order
// points (and their non-canonical encodings), whose shared secret an
// attacker would know.
var lowOrderScalar = [32]byte{1: 0x42, 31: 0x40}

// curveKey checks a Curve25519 public key: 32 bytes, not a low-order point.
func curveKey(field, s string) error {
	raw, err := decode(field, s, curve25519.PointSize)
	if err != nil {
		return err
	}
	if _, err := curve25519.X25519(lowOrderScalar[:], raw); err != nil {
		return invalid("%s is a low-order Curve25519 point", field)
	}
	return nil
}

// verify checks sig (field) over msg by pub.
func verify(field string, pub ed25519.PublicKey, msg []byte, sig string) error {
	raw, err := decode(field, sig, ed25519.SignatureSize)
	if err != nil {
		return err
	}
	if !ed25519.Verify(pub, msg, raw) {
		return invalid("%s does not verify with the device's ed25519 identity key", field)
	}
	return nil
}

// Validate checks an upload of user's device: the ids, every key's length
// and encoding, no low-order Curve25519 point, every signature, at most
// MaxOneTimeKeys one-time keys and no id twice. Errors are invalid and
// name the field.
func Validate(user, deviceID string, up Upload) error {
	if !ValidDeviceID(deviceID) {
		return invalid("device_id must be 1 to 64 letters, digits, '_' or '-'")
	}
	if err := curveKey("identity.curve25519", up.Identity.Curve25519); err != nil {
		return err
	}
	edRaw, err := decode("identity.ed25519", up.Identity.Ed25519, ed25519.PublicKeySize)
	if err != nil {
		return err
	}
	pub := ed25519.PublicKey(edRaw)
	if err := verify("identity_signature", pub, IdentityMessage(user, deviceID, up.Identity.Curve25519), up.IdentitySignature); err != nil {
		return err
	}
	if len(up.OneTimeKeys) > MaxOneTimeKeys {
		return invalid("too many one-time keys: %d in one upload, at most %d", len(up.OneTimeKeys), MaxOneTimeKeys)
	}
	seen := make(map[string]bool, len(up.OneTimeKeys))
	for i, k := range up.OneTimeKeys {
		if err := signedKey(fmt.Sprintf("one_time_keys[%d]", i), user, deviceID, pub, k); err != nil {
			return err
		}
		if seen[k.ID] {
			return invalid("one_time_keys[%d].id %q appears twice", i, k.ID)
		}
		seen[k.ID] = true
	}
	if up.FallbackKey != nil {
		if err := signedKey("fallback_key", user, deviceID, pub, *up.FallbackKey); err != nil {
			return err
		}
	}
	return nil
}

func signedKey(field, user, deviceID string, pub ed25519.PublicKey, k SignedKey) error {
	if !idPattern.MatchString(k.ID) {
		return invalid("%s.id must be 1 to 64 letters, digits, '_' or '-'", field)
	}
	if err := curveKey(field+".key", k.Key); err != nil {
		return err
	}
	return verify(field+".signature", pub, KeyMessage(user, deviceID, k.ID, k.Key), k.Signature)
}
