// Package redact keeps credentials out of logs. Identity strings a client
// typed (a login name, an MQTT username, a client id) pass through Name
// before they are logged; whatever reaches the process logger passes through
// Scrub as a second line of defence.
//
// A credential-shaped value is a device API key (unhidra_dk_…), a refresh
// token (unhidra_rt_…) or a JWT (eyJ….…). Such a value is never logged;
// its place is taken by "redacted:" and the first 8 hex digits of its
// SHA-256, enough to correlate two log lines, useless to an attacker.
package redact

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/unhidra/unhidra/wire"
)

// Prefixes of Unhidra's own secrets.
const (
	DeviceKeyPrefix    = wire.DeviceKeyPrefix
	RefreshTokenPrefix = wire.RefreshTokenPrefix
)

// MaxName is the longest identity string logged as is; longer ones are cut.
const MaxName = 64

// credential matches a credential-shaped substring anywhere in a string.
var credential = regexp.MustCompile(`unhidra_(?:dk|rt)_[A-Za-z0-9_\-]*|eyJ[A-Za-z0-9_\-]*(?:\.[A-Za-z0-9_\-]*)*`)

// LooksSecret reports whether s contains a credential-shaped value.
func LooksSecret(s string) bool {
	return strings.Contains(s, DeviceKeyPrefix) || strings.Contains(s, RefreshTokenPrefix) || strings.Contains(s, "eyJ")
}

// Hash is the short, stable stand-in for a secret: "redacted:" and 8 hex
// digits of its SHA-256.
func Hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "redacted:" + hex.EncodeToString(sum[:4])
}

// Secret is what a password field becomes in a log: always its Hash, or
// "" for an empty one.
func Secret(s string) string {
	if s == "" {
		return ""
	}
	return Hash(s)
}

// Name is a client-typed identity made safe to log: a credential-shaped one
// becomes its Hash, invalid UTF-8 is replaced, and long ones are cut to
// MaxName bytes.
func Name(s string) string {
	if LooksSecret(s) {
		return Hash(s)
	}
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if len(s) > MaxName {
		cut := MaxName
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// Scrub replaces every credential-shaped substring of s by its Hash.
func Scrub(s string) string {
	if !LooksSecret(s) {
		return s
	}
	return credential.ReplaceAllStringFunc(s, Hash)
}
