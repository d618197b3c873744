// Package attachment encrypts files for end-to-end encrypted channels as
// Matrix does (its "encrypted attachments"): AES-256 in CTR mode with a
// fresh random 32-byte key and a 16-byte IV whose last 8 bytes (the block
// counter) are zero, and a SHA-256 over the ciphertext. The server stores
// only the ciphertext; the key, IV and hash travel inside the e2ee message
// (Info, the contract's `file` object), whose Megolm encryption and
// signature authenticate them. Because CTR alone is malleable, the hash is
// what makes a changed byte detectable: Decrypt checks it over the whole
// ciphertext before it writes one byte of plaintext.
//
// Encrypt and Decrypt stream (constant memory); they are safe for
// concurrent use on different values.
package attachment

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Alg names the scheme in Info.
const Alg = "A256CTR"

// Sizes of the key and IV.
const (
	KeySize = 32
	IVSize  = aes.BlockSize
)

// ErrHashMismatch means the ciphertext is not the one the sender hashed:
// it was changed or truncated. Nothing was decrypted.
var ErrHashMismatch = errors.New("attachment: the ciphertext's SHA-256 does not match: refusing to decrypt")

// Info is what a recipient needs to fetch and decrypt a file: the
// contract's `file` JSON, {"id","key","iv","sha256","alg"}, every byte
// string unpadded standard base64.
type Info struct {
	// ID is the server's file id (/api/v1/files), set after the upload.
	ID     string
	Key    [KeySize]byte
	IV     [IVSize]byte
	SHA256 [sha256.Size]byte // of the ciphertext
}

type infoJSON struct {
	ID     string `json:"id"`
	Key    string `json:"key"`
	IV     string `json:"iv"`
	SHA256 string `json:"sha256"`
	Alg    string `json:"alg"`
}

var b64 = base64.RawStdEncoding

// MarshalJSON implements json.Marshaler.
func (i Info) MarshalJSON() ([]byte, error) {
	return json.Marshal(infoJSON{
		ID: i.ID, Key: b64.EncodeToString(i.Key[:]), IV: b64.EncodeToString(i.IV[:]),
		SHA256: b64.EncodeToString(i.SHA256[:]), Alg: Alg,
	})
}

// UnmarshalJSON implements json.Unmarshaler; it refuses another alg and
// wrong lengths.
func (i *Info) UnmarshalJSON(b []byte) error {
	var j infoJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	if j.Alg != Alg {
		return fmt.Errorf("attachment: alg %q is not %s", j.Alg, Alg)
	}
	var out Info
	out.ID = j.ID
	for _, f := range []struct {
		name string
		s    string
		dst  []byte
	}{{"key", j.Key, out.Key[:]}, {"iv", j.IV, out.IV[:]}, {"sha256", j.SHA256, out.SHA256[:]}} {
		raw, err := b64.DecodeString(f.s)
		if err != nil || len(raw) != len(f.dst) {
			return fmt.Errorf("attachment: %s must be %d bytes of unpadded base64", f.name, len(f.dst))
		}
		copy(f.dst, raw)
	}
	*i = out
	return nil
}

// Encrypt reads src to its end and writes its encryption to dst under a
// fresh random key and IV; the returned Info (without ID) decrypts it.
func Encrypt(dst io.Writer, src io.Reader) (Info, error) {
	var info Info
	if _, err := rand.Read(info.Key[:]); err != nil {
		return Info{}, err
	}
	// A random 64-bit nonce and a zero 64-bit counter, as Matrix clients
	// make them: the counter cannot wrap within any file's size, which some
	// implementations do not handle.
	if _, err := rand.Read(info.IV[:8]); err != nil {
		return Info{}, err
	}
	stream, err := newStream(info)
	if err != nil {
		return Info{}, err
	}
	h := sha256.New()
	w := cipher.StreamWriter{S: stream, W: io.MultiWriter(dst, h)}
	if _, err := io.Copy(w, src); err != nil {
		return Info{}, fmt.Errorf("attachment: encrypt: %w", err)
	}
	copy(info.SHA256[:], h.Sum(nil))
	return info, nil
}

func newStream(info Info) (cipher.Stream, error) {
	block, err := aes.NewCipher(info.Key[:])
	if err != nil {
		return nil, err
	}
	return cipher.NewCTR(block, info.IV[:]), nil
}

// Verify reads src to its end and reports ErrHashMismatch unless its
// SHA-256 is info's.
func Verify(src io.Reader, info Info) error {
	h := sha256.New()
	if _, err := io.Copy(h, src); err != nil {
		return fmt.Errorf("attachment: read: %w", err)
	}
	if subtle.ConstantTimeCompare(h.Sum(nil), info.SHA256[:]) != 1 {
		return ErrHashMismatch
	}
	return nil
}

// Decrypt verifies the ciphertext in src against info's hash first (one
// pass), and only when it matches seeks back and writes the plaintext to
// dst (a second pass): a changed ciphertext yields ErrHashMismatch and no
// plaintext at all. src is usually the downloaded file on disk.
func Decrypt(dst io.Writer, src io.ReadSeeker, info Info) error {
	start, err := src.Seek(0, io.SeekCurrent)
	if err != nil {
		return fmt.Errorf("attachment: %w", err)
	}
	if err := Verify(src, info); err != nil {
		return err
	}
	if _, err := src.Seek(start, io.SeekStart); err != nil {
		return fmt.Errorf("attachment: %w", err)
	}
	stream, err := newStream(info)
	if err != nil {
		return err
	}
	// A source that changes between the passes is caught by hashing again
	// while decrypting; dst has then received plaintext of bytes that did
	// not match, which the error says.
	h := sha256.New()
	r := cipher.StreamReader{S: stream, R: io.TeeReader(src, h)}
	if _, err := io.Copy(dst, r); err != nil {
		return fmt.Errorf("attachment: decrypt: %w", err)
	}
	if subtle.ConstantTimeCompare(h.Sum(nil), info.SHA256[:]) != 1 {
		return fmt.Errorf("%w (the source changed while decrypting: discard what was written)", ErrHashMismatch)
	}
	return nil
}

// DecryptBytes is Decrypt for a ciphertext held in memory.
func DecryptBytes(ciphertext []byte, info Info) ([]byte, error) {
	var out bytes.Buffer
	out.Grow(len(ciphertext))
	if err := Decrypt(&out, bytes.NewReader(ciphertext), info); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}
