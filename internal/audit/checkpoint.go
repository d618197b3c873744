package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/unhidra/unhidra/internal/audit/merkle"
)

// A checkpoint is a signed tree head in the signed-note format of
// golang.org/x/mod/sumdb/note, with the body of a C2SP tlog-checkpoint:
//
//	<origin>
//	<tree size>
//	<root hash, base64>
//	time <RFC 3339 time it was signed>
//
// followed by a blank line and one Ed25519 signature line per signer. Any
// note verifier (the Go checksum database's tools, a few lines of Go with
// x/mod) checks it; `unhidra audit verify --checkpoint FILE` checks a log
// against it.

// Checkpoint is a parsed checkpoint body.
type Checkpoint struct {
	Origin string
	Size   uint64
	Root   merkle.Hash
	Time   time.Time
}

// Body returns the checkpoint's note text.
func (c Checkpoint) Body() string {
	return fmt.Sprintf("%s\n%d\n%s\ntime %s\n", c.Origin, c.Size, base64.StdEncoding.EncodeToString(c.Root[:]), c.Time.UTC().Format(time.RFC3339Nano))
}

// ParseCheckpoint parses a checkpoint's note text (already verified).
func ParseCheckpoint(text string) (Checkpoint, error) {
	var c Checkpoint
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) < 3 {
		return c, errors.New("checkpoint: fewer than three lines")
	}
	c.Origin = lines[0]
	if c.Origin == "" {
		return c, errors.New("checkpoint: empty origin")
	}
	n, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil || strconv.FormatUint(n, 10) != lines[1] {
		return c, fmt.Errorf("checkpoint: bad tree size %q", lines[1])
	}
	c.Size = n
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != merkle.HashSize {
		return c, fmt.Errorf("checkpoint: bad root hash %q", lines[2])
	}
	copy(c.Root[:], root)
	for _, l := range lines[3:] {
		if t, ok := strings.CutPrefix(l, "time "); ok {
			if c.Time, err = time.Parse(time.RFC3339Nano, t); err != nil {
				return c, fmt.Errorf("checkpoint: bad time %q", t)
			}
		}
	}
	return c, nil
}

// SignCheckpoint returns the signed note of c.
func SignCheckpoint(c Checkpoint, s note.Signer) ([]byte, error) {
	return note.Sign(&note.Note{Text: c.Body()}, s)
}

// OpenCheckpoint verifies a signed checkpoint against the known keys and
// parses it.
func OpenCheckpoint(msg []byte, known note.Verifiers) (Checkpoint, error) {
	n, err := note.Open(msg, known)
	if err != nil {
		var unk *note.UnknownVerifierError
		if errors.As(err, &unk) {
			return Checkpoint{}, fmt.Errorf("checkpoint signed by an unknown key %s (give its verifier key with --key)", unk.Name)
		}
		return Checkpoint{}, fmt.Errorf("checkpoint signature: %w", err)
	}
	return ParseCheckpoint(n.Text)
}

// Key files kept in the audit directory of the data dir.
const (
	SigningKeyFile  = "signing.key" // the note signer key, mode 0600
	VerifierKeyFile = "verify.key"  // its verifier key, for verifiers
	CheckpointFile  = "checkpoint"  // the latest signed checkpoint
)

// LoadSigner returns the signer for checkpoints and its verifier key:
// from skey (AUDIT_SIGNING_KEY) when set, else from dir/signing.key, else
// a key generated into dir (with its verifier key beside it), reporting
// generated.
func LoadSigner(skey, dir, name string) (s note.Signer, vkey string, generated bool, err error) {
	if skey == "" && dir != "" {
		if b, err := os.ReadFile(filepath.Join(dir, SigningKeyFile)); err == nil {
			skey = strings.TrimSpace(string(b))
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, "", false, err
		}
		if skey == "" {
			if skey, vkey, err = note.GenerateKey(rand.Reader, name); err != nil {
				return nil, "", false, err
			}
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return nil, "", false, err
			}
			if err := writeFileSync(filepath.Join(dir, SigningKeyFile), []byte(skey+"\n"), 0o600); err != nil {
				return nil, "", false, err
			}
			if err := writeFileSync(filepath.Join(dir, VerifierKeyFile), []byte(vkey+"\n"), 0o644); err != nil {
				return nil, "", false, err
			}
			generated = true
		}
	}
	if skey == "" {
		return nil, "", false, errors.New("no audit signing key")
	}
	s, err = note.NewSigner(skey)
	if err != nil {
		return nil, "", false, errors.New("AUDIT_SIGNING_KEY is not a note signer key (PRIVATE+KEY+name+hash+key, from `unhidra audit keygen`)")
	}
	if vkey, err = VerifierKey(skey); err != nil {
		return nil, "", false, err
	}
	return s, vkey, generated, nil
}

// VerifierKey derives the verifier key of a note signer key.
func VerifierKey(skey string) (string, error) {
	parts := strings.SplitN(skey, "+", 5)
	if len(parts) != 5 || parts[0] != "PRIVATE" || parts[1] != "KEY" {
		return "", errors.New("not a note signer key")
	}
	raw, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 1 {
		return "", errors.New("not an Ed25519 note signer key")
	}
	pub := ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey)
	return note.NewEd25519VerifierKey(parts[2], pub)
}

// GenerateKey returns a new signer key and its verifier key named name.
func GenerateKey(name string) (skey, vkey string, err error) {
	return note.GenerateKey(rand.Reader, name)
}

// WriteCheckpointFile replaces dir/checkpoint by msg, atomically and
// durably (a reader sees the old or the new checkpoint, never a part).
func WriteCheckpointFile(dir string, msg []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return writeFileSync(filepath.Join(dir, CheckpointFile), msg, 0o644)
}

func writeFileSync(path string, b []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// noteText returns the text of a signed note without checking its
// signatures (the stored heads, whose roots Verify compares before it
// checks any signature).
func noteText(msg []byte) (string, bool) {
	i := bytes.Index(msg, []byte("\n\n"))
	if i < 0 {
		return "", false
	}
	return string(msg[:i+1]), true
}
