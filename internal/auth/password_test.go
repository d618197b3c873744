package auth

import (
	"encoding/base64"
	"strings"
	"testing"
)

// Reference vectors from the Argon2 reference implementation's test suite
// (phc-winner-argon2 src/test.c and its PHC test strings), argon2id v=19.
var phcVectors = []struct{ password, encoded string }{
	{"password", "$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4"},
	{"password", "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc"},
}

func TestArgon2idKnownAnswers(t *testing.T) {
	for _, v := range phcVectors {
		t.Run("the reference hash "+v.encoded[:31]+" verifies", func(t *testing.T) {
			ok, _, err := verifyPHC(v.encoded, []byte(v.password))
			if err != nil || !ok {
				t.Fatalf("verify(%q) = %v, %v; want true", v.password, ok, err)
			}
			h, _ := parsePHC(v.encoded)
			if got := encodePHC(h); got != v.encoded {
				t.Errorf("re-encoded = %q, want %q", got, v.encoded)
			}
			if ok, _, _ := verifyPHC(v.encoded, []byte("passwore")); ok {
				t.Error("a wrong password verified")
			}
		})
	}
}

func TestNewHashesUseTheProductionParameters(t *testing.T) {
	enc, err := hashPassword([]byte("correct horse battery staple"), DefaultParams)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(enc, "$argon2id$v=19$m=49152,t=3,p=1$") {
		t.Fatalf("hash %q does not start with the argon2id v=19 m=49152,t=3,p=1 prefix", enc)
	}
	h, err := parsePHC(enc)
	if err != nil {
		t.Fatal(err)
	}
	if len(h.salt) != 16 {
		t.Errorf("salt is %d bytes, want 16", len(h.salt))
	}
	if len(h.key) != 32 {
		t.Errorf("hash is %d bytes, want 32", len(h.key))
	}
	if h.params != DefaultParams {
		t.Errorf("params = %+v, want %+v", h.params, DefaultParams)
	}
	enc2, _ := hashPassword([]byte("correct horse battery staple"), Params{MemoryKiB: 64, Iterations: 1, Parallelism: 1})
	h2, _ := parsePHC(enc2)
	if string(h2.salt) == string(h.salt) {
		t.Error("two hashes share a salt")
	}
}

func TestWeakerParametersAreDueForUpgrade(t *testing.T) {
	tests := []struct {
		name string
		p    Params
		want bool
	}{
		{"less memory is weaker", Params{32768, 3, 1}, true},
		{"fewer iterations is weaker", Params{49152, 2, 1}, true},
		{"the same parameters are not weaker", DefaultParams, false},
		{"more memory is not weaker", Params{65536, 3, 1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.Weaker(DefaultParams); got != tt.want {
				t.Errorf("Weaker = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestMalformedPHCStringsAreRefused(t *testing.T) {
	salt := base64.RawStdEncoding.EncodeToString([]byte("somesaltsomesalt"))
	key := base64.RawStdEncoding.EncodeToString(make([]byte, 32))
	tests := map[string]string{
		"another algorithm":        "$argon2i$v=19$m=256,t=2,p=1$" + salt + "$" + key,
		"another version":          "$argon2id$v=16$m=256,t=2,p=1$" + salt + "$" + key,
		"a missing field":          "$argon2id$v=19$m=256,t=2,p=1$" + salt,
		"a missing parameter":      "$argon2id$v=19$m=256,t=2$" + salt + "$" + key,
		"a repeated parameter":     "$argon2id$v=19$m=256,m=256,t=2,p=1$" + salt + "$" + key,
		"an unknown parameter":     "$argon2id$v=19$m=256,t=2,x=1$" + salt + "$" + key,
		"absurd memory":            "$argon2id$v=19$m=4294967295,t=2,p=1$" + salt + "$" + key,
		"absurd iterations":        "$argon2id$v=19$m=256,t=100000,p=1$" + salt + "$" + key,
		"zero parallelism":         "$argon2id$v=19$m=256,t=2,p=0$" + salt + "$" + key,
		"a short salt":             "$argon2id$v=19$m=256,t=2,p=1$c2FsdA$" + key,
		"padding in the hash":      "$argon2id$v=19$m=256,t=2,p=1$" + salt + "$" + key + "=",
		"a leading zero":           "$argon2id$v=19$m=0256,t=2,p=1$" + salt + "$" + key,
		"an empty string":          "",
		"a bcrypt hash":            "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy",
		"trailing data":            "$argon2id$v=19$m=256,t=2,p=1$" + salt + "$" + key + "$x",
		"a negative number":        "$argon2id$v=19$m=-256,t=2,p=1$" + salt + "$" + key,
		"memory below 8 × lanes":   "$argon2id$v=19$m=8,t=2,p=4$" + salt + "$" + key,
		"a non-base64 salt":        "$argon2id$v=19$m=256,t=2,p=1$!!!!!!!!!!!!$" + key,
		"whitespace in parameters": "$argon2id$v=19$m=256, t=2,p=1$" + salt + "$" + key,
	}
	for name, s := range tests {
		t.Run(name+" is refused", func(t *testing.T) {
			if _, err := parsePHC(s); err == nil {
				t.Fatalf("parsePHC(%q) succeeded", s)
			}
			if ok, _, _ := verifyPHC(s, []byte("password")); ok {
				t.Fatal("a malformed hash verified")
			}
		})
	}
}

func FuzzParsePHC(f *testing.F) {
	for _, v := range phcVectors {
		f.Add(v.encoded)
	}
	f.Add("$argon2id$v=19$m=64,t=1,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4")
	f.Add("$$$$$")
	f.Fuzz(func(t *testing.T, s string) {
		h, err := parsePHC(s)
		if err != nil {
			return
		}
		if h.params.MemoryKiB > maxMemoryKiB || h.params.Iterations > maxIterations || h.params.Parallelism == 0 {
			t.Fatalf("parsePHC accepted out-of-range parameters %+v", h.params)
		}
		// What parses re-encodes to the same string (no ambiguity).
		if got := encodePHC(h); got != s {
			t.Fatalf("encodePHC(parsePHC(%q)) = %q", s, got)
		}
	})
}
