package auth

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/unhidra/unhidra"
)

// Username bounds (docs/protocol.md#identifiers).
const (
	MinUsernameLen    = 3
	MaxUsernameLen    = 32
	MaxDisplayNameLen = 64 // runes
)

// NormalizeUsername lower-cases an ASCII username and checks it: 3–32 of
// [a-z0-9._-]. Usernames are unique case-insensitively, so "Alice" and
// "alice" are one account.
func NormalizeUsername(s string) (string, error) {
	if len(s) < MinUsernameLen || len(s) > MaxUsernameLen {
		return "", unhidra.Errorf(unhidra.EINVALID, "username must be %d to %d characters", MinUsernameLen, MaxUsernameLen)
	}
	b := []byte(s)
	for i, c := range b {
		switch {
		case c >= 'A' && c <= 'Z':
			b[i] = c + ('a' - 'A')
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return "", unhidra.Errorf(unhidra.EINVALID, "username may contain only a-z, 0-9, '.', '_' and '-'")
		}
	}
	return string(b), nil
}

// CheckPassword enforces the byte-length bounds; any Unicode is accepted and
// kept byte-exact. It runs before any hashing.
func CheckPassword(p string) error {
	if len(p) < MinPasswordLen {
		return unhidra.Errorf(unhidra.EINVALID, "password must be at least %d bytes", MinPasswordLen)
	}
	if len(p) > MaxPasswordLen {
		return unhidra.Errorf(unhidra.EINVALID, "password must be at most %d bytes", MaxPasswordLen)
	}
	return nil
}

// checkDisplayName trims and checks a display name: valid UTF-8, at most 64
// characters, no control characters.
func checkDisplayName(s string) (string, error) {
	if len(s) > MaxDisplayNameLen*4 || !utf8.ValidString(s) {
		return "", unhidra.Errorf(unhidra.EINVALID, "display name must be valid UTF-8 of at most %d characters", MaxDisplayNameLen)
	}
	s = strings.TrimSpace(s)
	if utf8.RuneCountInString(s) > MaxDisplayNameLen {
		return "", unhidra.Errorf(unhidra.EINVALID, "display name must be at most %d characters", MaxDisplayNameLen)
	}
	for _, r := range s {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return "", unhidra.Errorf(unhidra.EINVALID, "display name must not contain control characters")
		}
	}
	return s, nil
}
