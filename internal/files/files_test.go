package files_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/files"
	"github.com/unhidra/unhidra/internal/sqlite"
	"github.com/unhidra/unhidra/internal/sqlitetest"
	"github.com/unhidra/unhidra/wire"
)

// members lets its users post and read every channel.
type members map[string]bool

func (m members) check(who unhidra.Identity) error {
	if !m[who.Principal.ID] {
		return unhidra.Errorf(unhidra.EFORBIDDEN, "not allowed on this channel")
	}
	return nil
}
func (m members) CheckPost(_ context.Context, who unhidra.Identity, _ string) error {
	return m.check(who)
}
func (m members) CheckRead(_ context.Context, who unhidra.Identity, _ string) error {
	return m.check(who)
}

func user(id string) unhidra.Identity {
	return unhidra.Identity{Principal: wire.Principal{Kind: wire.KindUser, ID: id}}
}

func newService(t *testing.T, dir string, now func() time.Time) *files.Service {
	t.Helper()
	db := sqlitetest.Open(t)
	t.Cleanup(func() { db.Close() })
	s, err := files.NewService(files.Deps{Store: sqlite.NewFileStore(db), Access: members{"alice": true}, Dir: dir, MaxBytes: 1 << 20, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConcurrentUploadsOfTheSameBytesShareOneBlob(t *testing.T) {
	dir := t.TempDir()
	s := newService(t, dir, nil)
	body := bytes.Repeat([]byte("same ciphertext "), 4096)
	var wg sync.WaitGroup
	ids := make([]string, 16)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := s.Upload(context.Background(), user("alice"), "ch", bytes.NewReader(body))
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = f.ID
		}()
	}
	wg.Wait()
	ents, _ := filepath.Glob(filepath.Join(dir, "*", "*"))
	if len(ents) != 1 {
		t.Errorf("blobs %v, want one", ents)
	}
	for _, id := range ids {
		f, blob, err := s.Open(context.Background(), user("alice"), id)
		if err != nil {
			t.Fatalf("open %s: %v", id, err)
		}
		blob.Close()
		if f.Size != int64(len(body)) {
			t.Errorf("size %d, want %d", f.Size, len(body))
		}
	}
}

func TestOutsidersWriteNothing(t *testing.T) {
	dir := t.TempDir()
	s := newService(t, dir, nil)
	_, err := s.Upload(context.Background(), user("mallory"), "ch", strings.NewReader("x"))
	if unhidra.ErrorCode(err) != unhidra.EFORBIDDEN {
		t.Errorf("got %v, want forbidden", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("the refused upload left %d entries", len(ents))
	}
}

func TestStaleTempFilesAreRemovedAtStart(t *testing.T) {
	dir := t.TempDir()
	old, fresh := filepath.Join(dir, ".upload-old"), filepath.Join(dir, ".upload-fresh")
	for _, p := range []string{old, fresh} {
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	later := time.Now().Add(48 * time.Hour)
	if err := os.Chtimes(fresh, later, later); err != nil {
		t.Fatal(err)
	}
	newService(t, dir, func() time.Time { return later })
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Errorf("a crash's leftover from 48 h ago is still there (%v)", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("an upload in progress was removed: %v", err)
	}
}
