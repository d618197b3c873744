package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Params are Argon2id cost parameters.
type Params struct {
	MemoryKiB   uint32 `json:"memory_kib"`
	Iterations  uint32 `json:"iterations"`
	Parallelism uint8  `json:"parallelism"`
}

// DefaultParams are the production parameters (docs/protocol.md#auth-api): m=48 MiB, t=3, p=1.
var DefaultParams = Params{MemoryKiB: 49152, Iterations: 3, Parallelism: 1}

// Weaker reports whether p costs less than q in any dimension, which makes a
// hash made with p due for an upgrade to q.
func (p Params) Weaker(q Params) bool {
	return p.MemoryKiB < q.MemoryKiB || p.Iterations < q.Iterations
}

const (
	saltLen = 16
	keyLen  = 32
	// Bounds on parameters read back from storage, so a corrupted or hostile
	// row cannot make one verification allocate gigabytes or spin for minutes.
	maxMemoryKiB  = 1 << 20 // 1 GiB
	maxIterations = 64
)

// Password length bounds in bytes (docs/protocol.md#auth-api).
const (
	MinPasswordLen = 8
	MaxPasswordLen = 1024
)

// phc is a parsed Argon2id PHC string.
type phc struct {
	params Params
	salt   []byte
	key    []byte
}

// hashPassword returns the PHC string of password with a fresh 16-byte salt.
func hashPassword(password []byte, p Params) (string, error) {
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	return encodePHC(phc{params: p, salt: salt, key: argon2.IDKey(password, salt, p.Iterations, p.MemoryKiB, p.Parallelism, keyLen)}), nil
}

func encodePHC(h phc) string {
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version,
		h.params.MemoryKiB, h.params.Iterations, h.params.Parallelism,
		b64.EncodeToString(h.salt), b64.EncodeToString(h.key))
}

// parsePHC parses "$argon2id$v=19$m=…,t=…,p=…$salt$hash" strictly.
func parsePHC(s string) (phc, error) {
	var h phc
	if len(s) > 512 {
		return h, fmt.Errorf("phc: too long")
	}
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" {
		return h, fmt.Errorf("phc: want 5 fields")
	}
	if parts[1] != "argon2id" {
		return h, fmt.Errorf("phc: algorithm %q is not argon2id", parts[1])
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return h, fmt.Errorf("phc: unsupported version")
	}
	var m, t, p uint64
	seen := 0
	for _, kv := range strings.Split(parts[3], ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return h, fmt.Errorf("phc: bad parameter")
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || (len(v) > 1 && v[0] == '0') {
			return h, fmt.Errorf("phc: bad number")
		}
		switch k {
		case "m":
			m, seen = n, seen|1
		case "t":
			t, seen = n, seen|2
		case "p":
			p, seen = n, seen|4
		default:
			return h, fmt.Errorf("phc: unknown parameter")
		}
	}
	if seen != 7 || len(strings.Split(parts[3], ",")) != 3 {
		return h, fmt.Errorf("phc: want m, t and p once each")
	}
	if p < 1 || p > 255 || t < 1 || t > maxIterations || m < 8*p || m > maxMemoryKiB {
		return h, fmt.Errorf("phc: parameters out of range")
	}
	salt, err := base64.RawStdEncoding.Strict().DecodeString(parts[4])
	if err != nil || len(salt) < 8 || len(salt) > 64 {
		return h, fmt.Errorf("phc: bad salt")
	}
	key, err := base64.RawStdEncoding.Strict().DecodeString(parts[5])
	if err != nil || len(key) < 16 || len(key) > 64 {
		return h, fmt.Errorf("phc: bad hash")
	}
	h.params = Params{MemoryKiB: uint32(m), Iterations: uint32(t), Parallelism: uint8(p)}
	h.salt, h.key = salt, key
	return h, nil
}

// verifyPHC reports whether password matches the PHC string, comparing in
// constant time. A malformed string never matches.
func verifyPHC(encoded string, password []byte) (ok bool, params Params, err error) {
	h, err := parsePHC(encoded)
	if err != nil {
		return false, Params{}, err
	}
	got := argon2.IDKey(password, h.salt, h.params.Iterations, h.params.MemoryKiB, h.params.Parallelism, uint32(len(h.key)))
	return subtle.ConstantTimeCompare(got, h.key) == 1, h.params, nil
}
