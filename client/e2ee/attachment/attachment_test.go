package attachment_test

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/unhidra/unhidra/client/e2ee/attachment"
)

func TestRoundTripAndJSON(t *testing.T) {
	plain := []byte(strings.Repeat("attachment plaintext ", 1000))
	var ct bytes.Buffer
	info, err := attachment.Encrypt(&ct, bytes.NewReader(plain))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(ct.Bytes(), []byte("attachment plaintext")) || ct.Len() != len(plain) {
		t.Fatalf("ciphertext of %d bytes holds plaintext or has the wrong size", ct.Len())
	}
	if !bytes.Equal(info.IV[8:], make([]byte, 8)) {
		t.Errorf("IV %x: the counter half must start at zero", info.IV)
	}
	info.ID = "01JFILE"
	raw, err := json.Marshal(info)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]string
	if err := json.Unmarshal(raw, &m); err != nil || m["alg"] != "A256CTR" || len(m["key"]) != 43 || len(m["iv"]) != 22 || len(m["sha256"]) != 43 || m["id"] != "01JFILE" {
		t.Fatalf("JSON %s is not the contract's file object", raw)
	}
	var back attachment.Info
	if err := json.Unmarshal(raw, &back); err != nil || back != info {
		t.Fatalf("unmarshal: %v, %+v, want %+v", err, back, info)
	}
	got, err := attachment.DecryptBytes(ct.Bytes(), back)
	if err != nil || !bytes.Equal(got, plain) {
		t.Errorf("decrypt: %v, equal %v", err, bytes.Equal(got, plain))
	}
}

// A plain AES-256-CTR decryption (what any Matrix client does) agrees
// with ours: the scheme is the standard one, not a variant.
func TestMatchesPlainCTR(t *testing.T) {
	plain := []byte("interop with a standard CTR decryptor")
	var ct bytes.Buffer
	info, err := attachment.Encrypt(&ct, bytes.NewReader(plain))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := aes.NewCipher(info.Key[:])
	out := make([]byte, ct.Len())
	cipher.NewCTR(block, info.IV[:]).XORKeyStream(out, ct.Bytes())
	if !bytes.Equal(out, plain) {
		t.Errorf("got %q", out)
	}
}

func TestChangedCiphertextIsRefusedWithoutPlaintext(t *testing.T) {
	var ct bytes.Buffer
	info, err := attachment.Encrypt(&ct, strings.NewReader("secret contents of a file"))
	if err != nil {
		t.Fatal(err)
	}
	for name, change := range map[string]func([]byte) []byte{
		"a flipped bit": func(b []byte) []byte { b[3] ^= 0x10; return b },
		"truncated":     func(b []byte) []byte { return b[:len(b)-1] },
		"extended":      func(b []byte) []byte { return append(b, 0) },
	} {
		t.Run(name, func(t *testing.T) {
			bad := change(bytes.Clone(ct.Bytes()))
			var out bytes.Buffer
			err := attachment.Decrypt(&out, bytes.NewReader(bad), info)
			if !errors.Is(err, attachment.ErrHashMismatch) || out.Len() != 0 {
				t.Errorf("got %v and %d bytes, want ErrHashMismatch and none", err, out.Len())
			}
		})
	}
}

func TestInfoJSONRefusesBadFields(t *testing.T) {
	good := `{"id":"x","key":"` + strings.Repeat("A", 43) + `","iv":"` + strings.Repeat("A", 22) + `","sha256":"` + strings.Repeat("A", 43) + `","alg":"A256CTR"}`
	var i attachment.Info
	if err := json.Unmarshal([]byte(good), &i); err != nil {
		t.Fatalf("good: %v", err)
	}
	for name, s := range map[string]string{
		"another alg":   strings.Replace(good, "A256CTR", "A128CTR", 1),
		"a short key":   strings.Replace(good, strings.Repeat("A", 43), strings.Repeat("A", 42), 1),
		"padded base64": strings.Replace(good, strings.Repeat("A", 22), strings.Repeat("A", 22)+"==", 1),
	} {
		if err := json.Unmarshal([]byte(s), &i); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
