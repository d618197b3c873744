package auth

// Device cookies: OWASP's "slow down online guessing attacks with device
// cookies". A client that logged in successfully as a user gets a signed
// cookie naming that user. A later login for the same user that presents a
// valid one is a trusted attempt: it is counted and limited on its own
// (DeviceCookieMaxFailures per DeviceCookieWindow for that one cookie) and
// is not refused because of failures from elsewhere. Every other attempt is
// untrusted and counts against the account's cap (MaxAccountFailures per
// hour from all untrusted clients together), so a stranger guessing from
// anywhere can lock out only the untrusted clients, never the owner's
// browser or script that logged in before.
//
// The cookie value is base64url(user "|" nonce "|" issued-at) "." base64url
// of its HMAC-SHA256 under a key derived from JWT_SECRET (JWT_SECRET_PREVIOUS
// is still accepted), verified in constant time. There is one cookie per
// user, named DeviceCookiePrefix and 16 hex digits of the SHA-256 of the
// username, so several accounts used on one browser each keep theirs. The
// lockouts of cookies live in memory (per process), like the account cap.

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strconv"
	"strings"
	"time"
)

// Device cookie parameters.
const (
	// DeviceCookiePrefix starts the name of every device cookie.
	DeviceCookiePrefix = "unhidra_device_"
	// DeviceCookiePath is the only path the cookie is sent to.
	DeviceCookiePath = "/login"
	// DeviceCookieMaxAge is how long a device cookie is valid after it was
	// issued (every successful login issues a fresh one).
	DeviceCookieMaxAge = 365 * 24 * time.Hour
	// DeviceCookieMaxFailures failed logins within DeviceCookieWindow lock
	// one device cookie for the rest of the window.
	DeviceCookieMaxFailures = 10
	DeviceCookieWindow      = time.Hour
	// MaxDeviceCookieLen bounds a presented cookie before any work.
	MaxDeviceCookieLen = 512

	deviceCookieNonceBytes = 16
	deviceCookieLabel      = "unhidra/device-cookie/v1"
)

// deviceCookies issues and verifies device cookies. It is immutable and
// safe for concurrent use.
type deviceCookies struct {
	keys [][]byte // the current key first
	now  func() time.Time
}

func newDeviceCookies(secret, previous string, now func() time.Time) *deviceCookies {
	d := &deviceCookies{keys: [][]byte{deriveCookieKey(secret)}, now: now}
	if previous != "" {
		d.keys = append(d.keys, deriveCookieKey(previous))
	}
	return d
}

func deriveCookieKey(secret string) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(deviceCookieLabel))
	return m.Sum(nil)
}

func cookieMAC(key []byte, payload string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(payload))
	return m.Sum(nil)
}

// DeviceCookieName is the name of the device cookie for username, or "" when
// the username is invalid (no cookie to look for).
func DeviceCookieName(username string) string {
	name, err := NormalizeUsername(username)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256([]byte(deviceCookieLabel + "|" + name))
	return DeviceCookiePrefix + hex.EncodeToString(sum[:8])
}

// issue returns a fresh cookie value for the (normalized) username.
func (d *deviceCookies) issue(username string) string {
	nonce := make([]byte, deviceCookieNonceBytes)
	_, _ = rand.Read(nonce)
	payload := username + "|" + base64.RawURLEncoding.EncodeToString(nonce) + "|" + strconv.FormatInt(d.now().Unix(), 10)
	p := base64.RawURLEncoding.EncodeToString([]byte(payload))
	return p + "." + base64.RawURLEncoding.EncodeToString(cookieMAC(d.keys[0], p))
}

// verify checks value as a device cookie for the (normalized) username and
// returns its nonce, the key its own failures are counted under. A value
// that is malformed, forged, expired or issued for another user is not
// valid.
func (d *deviceCookies) verify(value, username string) (nonce string, ok bool) {
	if value == "" || len(value) > MaxDeviceCookieLen {
		return "", false
	}
	p, sig, found := strings.Cut(value, ".")
	if !found {
		return "", false
	}
	mac, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || len(mac) != sha256.Size {
		return "", false
	}
	valid := false
	for _, k := range d.keys {
		// hmac.Equal is constant-time; every key is tried.
		valid = hmac.Equal(mac, cookieMAC(k, p)) || valid
	}
	if !valid {
		return "", false
	}
	raw, err := base64.RawURLEncoding.DecodeString(p)
	if err != nil {
		return "", false
	}
	parts := strings.Split(string(raw), "|")
	if len(parts) != 3 || parts[0] != username || parts[1] == "" {
		return "", false
	}
	iat, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil {
		return "", false
	}
	issued, now := time.Unix(iat, 0), d.now()
	if issued.After(now.Add(TokenLeeway)) || now.Sub(issued) > DeviceCookieMaxAge {
		return "", false
	}
	return parts[1], true
}
