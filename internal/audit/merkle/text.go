package merkle

import (
	"encoding/base64"
	"fmt"
)

// MarshalText encodes h in standard base64, as checkpoints and the
// proofs of the audit API carry hashes.
func (h Hash) MarshalText() ([]byte, error) {
	return []byte(base64.StdEncoding.EncodeToString(h[:])), nil
}

// UnmarshalText decodes a standard base64 hash of HashSize bytes.
func (h *Hash) UnmarshalText(b []byte) error {
	raw, err := base64.StdEncoding.DecodeString(string(b))
	if err != nil || len(raw) != HashSize {
		return fmt.Errorf("merkle: %q is not a base64 hash of %d bytes", b, HashSize)
	}
	copy(h[:], raw)
	return nil
}
