// Package files keeps the opaque, client-encrypted blobs shared in channels
// (/api/v1/files): the server never sees a key, only ciphertext. Blobs are
// content-addressed under the data dir (files/<hex[:2]>/<hex> of their
// SHA-256), so the same bytes uploaded twice are one blob; each upload is
// a row (its id, channel, uploader, hash, size) in the Store. Authorization
// is the channel's: whoever may post in it may upload, whoever may read it
// may download.
//
// A Service is safe for concurrent use: uploads stream to their own temp
// files and meet only in an atomic rename of identical bytes.
package files

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/wire"
)

// DefaultMaxBytes is FILE_MAX_BYTES's default (100 MiB).
const DefaultMaxBytes = 100 << 20

// File is one upload.
type File struct {
	ID        string         `json:"id"`
	Channel   string         `json:"channel"`
	Uploader  wire.Principal `json:"-"`
	SHA256    string         `json:"sha256"` // hex of the stored bytes
	Size      int64          `json:"size"`
	CreatedAt time.Time      `json:"created_at"`
}

// Store keeps the upload rows.
type Store interface {
	PutFile(ctx context.Context, f File) error
	// GetFile returns the upload id, or a not_found error.
	GetFile(ctx context.Context, id string) (File, error)
}

// Access answers whether who may post in or read a channel (*chat.Service):
// nil, or the chat service's own forbidden error.
type Access interface {
	CheckPost(ctx context.Context, who unhidra.Identity, channel string) error
	CheckRead(ctx context.Context, who unhidra.Identity, channel string) error
}

// Deps configure a Service.
type Deps struct {
	Store  Store
	Access Access
	// Dir holds the blobs (<UNHIDRA_DATA_DIR>/files); created when missing.
	Dir string
	// MaxBytes caps one upload (DefaultMaxBytes when 0).
	MaxBytes int64
	Log      *slog.Logger
	Now      func() time.Time
}

// Service stores and serves blobs.
type Service struct {
	d Deps
}

// tempPrefix starts the name of an upload in progress in Dir.
const tempPrefix = ".upload-"

// staleTemp is the age past which a temp file is a crash's leftover.
const staleTemp = 24 * time.Hour

// NewService creates Dir and removes uploads a crash left half-written.
func NewService(d Deps) (*Service, error) {
	if d.Store == nil || d.Access == nil || d.Dir == "" {
		return nil, errors.New("files: Store, Access and Dir are required")
	}
	if d.MaxBytes <= 0 {
		d.MaxBytes = DefaultMaxBytes
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if err := os.MkdirAll(d.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("files: %w", err)
	}
	s := &Service{d: d}
	s.removeStale()
	return s, nil
}

// MaxBytes is the cap on one upload.
func (s *Service) MaxBytes() int64 { return s.d.MaxBytes }

func (s *Service) removeStale() {
	ents, err := os.ReadDir(s.d.Dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), tempPrefix) {
			continue
		}
		if fi, err := e.Info(); err == nil && s.d.Now().Sub(fi.ModTime()) > staleTemp {
			_ = os.Remove(filepath.Join(s.d.Dir, e.Name()))
		}
	}
}

// errTooLarge refuses an upload over MaxBytes.
func (s *Service) errTooLarge() error {
	return unhidra.Errorf(unhidra.ETOOLARGE, "file is larger than %d bytes (FILE_MAX_BYTES)", s.d.MaxBytes)
}

// Upload checks that who may post in channel, then streams body to disk
// while hashing it (never holding it in memory), and records the upload.
// A body over MaxBytes is refused with too_large and leaves nothing behind.
func (s *Service) Upload(ctx context.Context, who unhidra.Identity, channel string, body io.Reader) (File, error) {
	if err := s.d.Access.CheckPost(ctx, who, channel); err != nil {
		return File{}, err
	}
	sum, size, err := s.store(body)
	if err != nil {
		return File{}, err
	}
	f := File{
		ID:        ulid.Make().String(),
		Channel:   channel,
		Uploader:  who.Principal,
		SHA256:    sum,
		Size:      size,
		CreatedAt: s.d.Now().UTC(),
	}
	// A failure here leaves an unreferenced blob: harmless, as the next
	// upload of the same bytes reuses it.
	if err := s.d.Store.PutFile(ctx, f); err != nil {
		return File{}, err
	}
	return f, nil
}

// store writes body to a temp file, fsyncs it and renames it to its
// content address; it returns the hex SHA-256 and the size.
func (s *Service) store(body io.Reader) (sum string, size int64, err error) {
	tmp, err := os.CreateTemp(s.d.Dir, tempPrefix+"*")
	if err != nil {
		return "", 0, fmt.Errorf("files: %w", err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	// One byte past the cap tells an oversized body from one exactly at it.
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(body, s.d.MaxBytes+1))
	if err != nil {
		var te interface{ Timeout() bool }
		if errors.As(err, &te) && te.Timeout() {
			return "", 0, unhidra.Errorf(unhidra.EINVALID, "the upload was too slow")
		}
		if c := unhidra.ErrorCode(err); c == unhidra.ETOOLARGE {
			return "", 0, err
		}
		return "", 0, unhidra.Errorf(unhidra.EINVALID, "the upload could not be read: %v", err)
	}
	if n > s.d.MaxBytes {
		return "", 0, s.errTooLarge()
	}
	if err := tmp.Sync(); err != nil {
		return "", 0, fmt.Errorf("files: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", 0, fmt.Errorf("files: %w", err)
	}
	sum = hex.EncodeToString(h.Sum(nil))
	dir := filepath.Join(s.d.Dir, sum[:2])
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", 0, fmt.Errorf("files: %w", err)
	}
	// Renaming over an existing blob replaces it with identical bytes.
	if err := os.Rename(tmp.Name(), filepath.Join(dir, sum)); err != nil {
		return "", 0, fmt.Errorf("files: %w", err)
	}
	done = true
	syncDir(dir)
	return sum, n, nil
}

// syncDir makes a rename durable; a file system that cannot sync a
// directory has nothing more to give.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

var errNoFile = unhidra.Errorf(unhidra.EFORBIDDEN, "no such file, or not allowed to read it")

// Open returns upload id and its blob, open for reading, when who may read
// the channel it was shared in. An unknown id and a forbidden one give the
// same forbidden error, so ids cannot be probed. The caller closes the file.
func (s *Service) Open(ctx context.Context, who unhidra.Identity, id string) (File, *os.File, error) {
	if _, err := ulid.ParseStrict(id); err != nil {
		return File{}, nil, errNoFile
	}
	f, err := s.d.Store.GetFile(ctx, id)
	if err != nil {
		if unhidra.ErrorCode(err) == unhidra.ENOTFOUND {
			return File{}, nil, errNoFile
		}
		return File{}, nil, err
	}
	if err := s.d.Access.CheckRead(ctx, who, f.Channel); err != nil {
		if unhidra.ErrorCode(err) == unhidra.EFORBIDDEN {
			return File{}, nil, errNoFile
		}
		return File{}, nil, err
	}
	if len(f.SHA256) != sha256.Size*2 {
		return File{}, nil, fmt.Errorf("files: row %s has a bad hash %q", id, f.SHA256)
	}
	blob, err := os.Open(s.BlobPath(f.SHA256))
	if err != nil {
		return File{}, nil, fmt.Errorf("files: blob of %s: %w", id, err)
	}
	return f, blob, nil
}

// BlobPath is where the blob with hex SHA-256 sum is kept.
func (s *Service) BlobPath(sum string) string { return filepath.Join(s.d.Dir, sum[:2], sum) }
