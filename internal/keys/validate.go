package keys

import (
	"errors"
	"fmt"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/wire/e2eekeys"
)

// ValidDeviceID reports whether id is a client device id.
func ValidDeviceID(id string) bool { return e2eekeys.ValidID(id) }

func invalid(format string, args ...any) error {
	return unhidra.Errorf(unhidra.EINVALID, format, args...)
}

// asInvalid turns a refusal of the shared checks (which names the field)
// into the API's invalid.
func asInvalid(err error) error {
	var e *e2eekeys.Error
	if errors.As(err, &e) {
		return invalid("%s", e.Error())
	}
	return err
}

// Validate checks an upload of user's device with the contract's checks
// (wire/e2eekeys: the ids, every key's length and encoding, no low-order
// Curve25519 point, every signature), plus at most MaxOneTimeKeys one-time
// keys and no id twice. Errors are invalid and name the field.
func Validate(user, deviceID string, up Upload) error {
	pub, err := e2eekeys.VerifyIdentity(user, deviceID, up.Identity, up.IdentitySignature)
	if err != nil {
		return asInvalid(err)
	}
	if len(up.OneTimeKeys) > MaxOneTimeKeys {
		return invalid("too many one-time keys: %d in one upload, at most %d", len(up.OneTimeKeys), MaxOneTimeKeys)
	}
	seen := make(map[string]bool, len(up.OneTimeKeys))
	for i, k := range up.OneTimeKeys {
		if err := e2eekeys.VerifySignedKey(fmt.Sprintf("one_time_keys[%d]", i), user, deviceID, pub, k); err != nil {
			return asInvalid(err)
		}
		if seen[k.ID] {
			return invalid("one_time_keys[%d].id %q appears twice", i, k.ID)
		}
		seen[k.ID] = true
	}
	if up.FallbackKey != nil {
		if err := e2eekeys.VerifySignedKey("fallback_key", user, deviceID, pub, *up.FallbackKey); err != nil {
			return asInvalid(err)
		}
	}
	return nil
}
