package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const (
	testSecret  = "test-secret-0123456789abcdefghijklmnop"
	otherSecret = "other-secret-0123456789abcdefghijklmno"
)

func b64(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

func hs(alg string, key []byte, msg string) string {
	var m = hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func validClaims(now time.Time) map[string]any {
	return map[string]any{"iss": Issuer, "aud": Audience, "sub": "alice", "sid": "s1", "typ": TypeAccess,
		"iat": now.Unix(), "exp": now.Add(15 * time.Minute).Unix(), "roles": []string{}}
}

// forge builds a token with any header and claims, signed (or not) with
// HMAC-SHA256 under key.
func forge(header, claims map[string]any, key []byte) string {
	in := b64(header) + "." + b64(claims)
	if key == nil {
		return in + "."
	}
	return in + "." + hs("HS256", key, in)
}

func TestTokensUseOnlyHS256WithOurSecret(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	tk := newTokens(testSecret, "", 15*time.Minute, func() time.Time { return now })
	good, _, err := tk.issue("alice", "s1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tk.verify(good); err != nil {
		t.Fatalf("our own token was refused: %v", err)
	}
	c := validClaims(now)
	hs384 := func() string {
		in := b64(map[string]any{"alg": "HS384", "typ": "JWT"}) + "." + b64(c)
		tok, _ := jwt.SigningMethodHS384.Sign(in, []byte(testSecret))
		return in + "." + base64.RawURLEncoding.EncodeToString(tok)
	}()
	parts := strings.Split(good, ".")
	tests := map[string]string{
		"alg none, unsigned":                forge(map[string]any{"alg": "none", "typ": "JWT"}, c, nil),
		"alg None, unsigned":                forge(map[string]any{"alg": "None", "typ": "JWT"}, c, nil),
		"alg none with our signature":       forge(map[string]any{"alg": "none", "typ": "JWT"}, c, []byte(testSecret)),
		"alg HS384 with our secret":         hs384,
		"alg RS256 with an HMAC of secret":  forge(map[string]any{"alg": "RS256", "typ": "JWT"}, c, []byte(testSecret)),
		"HS256 signed with another secret":  forge(map[string]any{"alg": "HS256", "typ": "JWT"}, c, []byte(otherSecret)),
		"two segments":                      parts[0] + "." + parts[1],
		"four segments":                     good + "." + parts[2],
		"five segments":                     good + "." + parts[2] + "." + parts[2],
		"one MiB of dots":                   strings.Repeat(".", 1<<20),
		"an empty string":                   "",
		"a tampered payload":                parts[0] + "." + b64(map[string]any{"sub": "admin"}) + "." + parts[2],
		"the signature of another token":    parts[0] + "." + b64(c) + "." + parts[2],
		"whitespace around a valid token":   " " + good,
		"padding added to the signature":    good + "=",
		"a valid token with a flipped bit":  good[:len(good)-2] + string(good[len(good)-2]^1) + good[len(good)-1:],
		"a very long but well-formed token": parts[0] + "." + strings.Repeat("A", 8000) + "." + parts[2],
	}
	for name, tok := range tests {
		t.Run(name+" is refused", func(t *testing.T) {
			if _, err := tk.verify(tok); err == nil {
				t.Fatal("verify accepted it")
			}
		})
	}
}

func TestTokenClaimsAreChecked(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clock := now
	tk := newTokens(testSecret, otherSecret, 15*time.Minute, func() time.Time { return clock })
	hdr := map[string]any{"alg": "HS256", "typ": "JWT"}
	with := func(k string, v any) map[string]any {
		c := validClaims(now)
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	tests := []struct {
		name   string
		token  string
		at     time.Time
		accept bool
	}{
		{"a token 59 s past exp is accepted (60 s leeway)", forge(hdr, with("exp", now.Unix()), []byte(testSecret)), now.Add(59 * time.Second), true},
		{"a token 61 s past exp is refused", forge(hdr, with("exp", now.Unix()), []byte(testSecret)), now.Add(61 * time.Second), false},
		{"a token without exp is refused", forge(hdr, with("exp", nil), []byte(testSecret)), now, false},
		{"a token issued in the future is refused", forge(hdr, with("iat", now.Add(time.Hour).Unix()), []byte(testSecret)), now, false},
		{"a wrong issuer is refused", forge(hdr, with("iss", "someone"), []byte(testSecret)), now, false},
		{"a wrong audience is refused", forge(hdr, with("aud", "other"), []byte(testSecret)), now, false},
		{"a refresh-typed token is refused", forge(hdr, with("typ", "refresh"), []byte(testSecret)), now, false},
		{"a token without typ is refused", forge(hdr, with("typ", nil), []byte(testSecret)), now, false},
		{"a token without sid is refused", forge(hdr, with("sid", nil), []byte(testSecret)), now, false},
		{"a token without sub is refused", forge(hdr, with("sub", nil), []byte(testSecret)), now, false},
		{"a token signed with JWT_SECRET_PREVIOUS is accepted", forge(hdr, validClaims(now), []byte(otherSecret)), now, true},
		{"a refresh token presented as an access token is refused", "unhidra_rt_" + strings.Repeat("A", 43), now, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock = tt.at
			_, err := tk.verify(tt.token)
			if (err == nil) != tt.accept {
				t.Fatalf("verify error = %v, want accept=%v", err, tt.accept)
			}
		})
	}
}

func FuzzVerifyToken(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	tk := newTokens(testSecret, "", 15*time.Minute, func() time.Time { return now })
	good, _, _ := tk.issue("alice", "s1", []string{"admin"})
	f.Add(good)
	f.Add(forge(map[string]any{"alg": "none"}, validClaims(now), nil))
	f.Add("a.b.c")
	f.Add("..")
	f.Fuzz(func(t *testing.T, token string) {
		if _, err := tk.verify(token); err != nil {
			return
		}
		// Accepted: it must carry our HMAC over exactly its first two segments.
		parts := strings.Split(token, ".")
		if len(parts) != 3 || hs("HS256", []byte(testSecret), parts[0]+"."+parts[1]) != parts[2] {
			t.Fatalf("accepted a token we did not sign: %q", token)
		}
	})
}

func BenchmarkVerifyAccessToken(b *testing.B) {
	tk := newTokens(testSecret, "", 15*time.Minute, func() time.Time { return time.Now() })
	tok, _, _ := tk.issue("alice", "01JABCDEFGHJKMNPQRSTVWXYZ0", []string{"admin"})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tk.verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}
