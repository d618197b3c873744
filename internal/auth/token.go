package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/wire"
)

// Token constants (docs/protocol.md#auth-api).
const (
	Issuer      = "unhidra"
	Audience    = "unhidra"
	TypeAccess  = "access"
	TokenLeeway = 60 * time.Second
	// MaxTokenLen bounds an access token before any parsing: ours are a few
	// hundred bytes, so anything longer is refused without work.
	MaxTokenLen = 4096
	// refreshTokenBytes is the randomness of a refresh token (256 bits).
	refreshTokenBytes = 32
)

// claims are the claims of an access token.
type claims struct {
	jwt.RegisteredClaims
	SessionID string   `json:"sid"`
	Type      string   `json:"typ"`
	Roles     []string `json:"roles"`
}

// tokens issues and verifies access tokens. It is immutable and safe for
// concurrent use.
type tokens struct {
	secret   []byte
	previous []byte
	ttl      time.Duration
	now      func() time.Time
	parser   *jwt.Parser
}

func newTokens(secret, previous string, ttl time.Duration, now func() time.Time) *tokens {
	t := &tokens{secret: []byte(secret), ttl: ttl, now: now}
	if previous != "" {
		t.previous = []byte(previous)
	}
	t.parser = jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithIssuer(Issuer),
		jwt.WithAudience(Audience),
		jwt.WithLeeway(TokenLeeway),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithTimeFunc(now),
		jwt.WithStrictDecoding(),
	)
	return t
}

// issue signs an access token for user in session sid.
func (t *tokens) issue(user, sid string, roles []string) (token string, exp time.Time, err error) {
	now := t.now().Truncate(time.Second)
	exp = now.Add(t.ttl)
	if roles == nil {
		roles = []string{}
	}
	c := claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    Issuer,
			Subject:   user,
			Audience:  jwt.ClaimStrings{Audience},
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(exp),
		},
		SessionID: sid,
		Type:      TypeAccess,
		Roles:     roles,
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(t.secret)
	return s, exp, err
}

var errInvalidToken = unhidra.Errorf(unhidra.EUNAUTHORIZED, "invalid token")

// verify checks signature (HS256 only, current or previous secret), issuer,
// audience, type and expiry with 60 s leeway, and returns the claims. It never
// says why a token was refused beyond "invalid token".
func (t *tokens) verify(token string) (*claims, error) {
	if len(token) == 0 || len(token) > MaxTokenLen || strings.Count(token, ".") != 2 {
		return nil, errInvalidToken
	}
	c, err := t.verifyWith(token, t.secret)
	if err != nil && t.previous != nil && errors.Is(err, jwt.ErrTokenSignatureInvalid) {
		c, err = t.verifyWith(token, t.previous)
	}
	if err != nil {
		return nil, unhidra.Wrap(unhidra.EUNAUTHORIZED, "invalid token", err)
	}
	if c.Type != TypeAccess || c.Subject == "" || c.SessionID == "" {
		return nil, errInvalidToken
	}
	return c, nil
}

func (t *tokens) verifyWith(token string, key []byte) (*claims, error) {
	c := &claims{}
	_, err := t.parser.ParseWithClaims(token, c, func(tok *jwt.Token) (any, error) {
		if tok.Method != jwt.SigningMethodHS256 {
			return nil, jwt.ErrTokenSignatureInvalid
		}
		return key, nil
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// newRefreshToken returns an opaque 256-bit refresh token and its storage hash.
func newRefreshToken() (token string, hash []byte, err error) {
	b := make([]byte, refreshTokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", nil, err
	}
	token = wire.RefreshTokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	return token, refreshHash(token), nil
}

// refreshHash is the stored form of a refresh token. The token has 256 bits
// of entropy, so an unkeyed SHA-256 cannot be reversed.
func refreshHash(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}
