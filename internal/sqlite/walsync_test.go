package sqlite

// An internal test: the fsync failure is injected into the DB's walFile.

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/chat"
	"github.com/unhidra/unhidra/wire"
)

func openWalTestDB(t *testing.T, path string) *DB {
	t.Helper()
	ctx := context.Background()
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Writer().ExecContext(ctx, `CREATE TABLE IF NOT EXISTS walsync_probe (k INTEGER PRIMARY KEY, v TEXT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	return db
}

func insertProbe(k int, v string) func(*sql.Tx) error {
	return func(tx *sql.Tx) error {
		_, err := tx.Exec(`INSERT INTO walsync_probe (k, v) VALUES (?, ?)`, k, v)
		return err
	}
}

func probe(t *testing.T, db *DB, k int) (string, bool) {
	t.Helper()
	var v string
	err := db.Reader().QueryRow(`SELECT v FROM walsync_probe WHERE k = ?`, k).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false
	}
	if err != nil {
		t.Fatal(err)
	}
	return v, true
}

// writerSynchronous reads PRAGMA synchronous on the writer (the pool's one
// connection): 2 is FULL, 1 NORMAL.
func writerSynchronous(t *testing.T, db *DB) int {
	t.Helper()
	var n int
	if err := db.Writer().QueryRow(`PRAGMA synchronous`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// configuredSynchronous is the synchronous level Pragmas gives every
// connection.
func configuredSynchronous(t *testing.T) int {
	t.Helper()
	for _, p := range Pragmas {
		switch p {
		case "synchronous(FULL)":
			return 2
		case "synchronous(NORMAL)":
			return 1
		}
	}
	t.Fatalf("Pragmas %v set no synchronous level", Pragmas)
	return 0
}

// TestTxDeferredCommitsAreReadableAndLeaveTheWriterAsItWas: a TxDeferred
// commit is visible to readers at once; a TxDeferred whose fn fails stores
// nothing; either way the writer connection is left at the synchronous
// level every other write relies on (the one Pragmas sets), and the writer
// still works.
func TestTxDeferredCommitsAreReadableAndLeaveTheWriterAsItWas(t *testing.T) {
	ctx := context.Background()
	db := openWalTestDB(t, filepath.Join(t.TempDir(), "u.db"))
	want := configuredSynchronous(t)
	if got := writerSynchronous(t, db); got != want {
		t.Fatalf("writer synchronous = %d before any TxDeferred, want %d", got, want)
	}
	if err := db.TxDeferred(ctx, insertProbe(1, "one")); err != nil {
		t.Fatal(err)
	}
	if v, ok := probe(t, db, 1); !ok || v != "one" {
		t.Fatalf("TxDeferred's row read back as %q (found %v)", v, ok)
	}
	if got := writerSynchronous(t, db); got != want {
		t.Errorf("writer synchronous = %d after a TxDeferred, want %d", got, want)
	}

	boom := errors.New("boom")
	err := db.TxDeferred(ctx, func(tx *sql.Tx) error {
		if err := insertProbe(2, "two")(tx); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("TxDeferred with a failing fn: %v, want its error", err)
	}
	if _, ok := probe(t, db, 2); ok {
		t.Error("a TxDeferred whose fn failed stored its row")
	}
	if got := writerSynchronous(t, db); got != want {
		t.Errorf("writer synchronous = %d after a failed TxDeferred, want %d", got, want)
	}
	// A constraint violation inside fn: same.
	if err := db.TxDeferred(ctx, insertProbe(1, "again")); err == nil {
		t.Error("a duplicate key was committed")
	}
	if got := writerSynchronous(t, db); got != want {
		t.Errorf("writer synchronous = %d after a TxDeferred that hit a constraint, want %d", got, want)
	}
	// The writer goes on: Tx, then TxDeferred + SyncWAL.
	if err := db.Tx(ctx, insertProbe(3, "three")); err != nil {
		t.Fatal(err)
	}
	if err := db.TxDeferred(ctx, insertProbe(4, "four")); err != nil {
		t.Fatal(err)
	}
	if err := db.SyncWAL(); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[int]string{1: "one", 3: "three", 4: "four"} {
		if got, ok := probe(t, db, k); !ok || got != v {
			t.Errorf("row %d = %q (found %v), want %q", k, got, ok, v)
		}
	}
	if v, _ := probe(t, db, 1); v != "one" {
		t.Errorf("row 1 = %q after the refused duplicate, want one", v)
	}
}

// TestDeferredWritesSurviveAReopenAndACrashCopy: rows written with
// TxDeferred and made durable with SyncWAL are in the -wal file itself (a
// copy of the database and its WAL taken while the DB is still open, as a
// crash would leave them, opens with every row) and are there after the
// DB is closed and opened again; SyncWAL keeps working across the WAL's
// restarts.
func TestDeferredWritesSurviveAReopenAndACrashCopy(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "u.db")
	db := openWalTestDB(t, path)
	if err := db.SyncWAL(); err != nil {
		t.Fatalf("SyncWAL on a freshly opened DB: %v", err)
	}
	const n = 50
	for k := 1; k <= n; k++ {
		if err := db.TxDeferred(ctx, insertProbe(k, "v"+strconv.Itoa(k))); err != nil {
			t.Fatal(err)
		}
		if k%10 == 0 {
			if err := db.SyncWAL(); err != nil {
				t.Fatalf("SyncWAL after row %d: %v", k, err)
			}
		}
	}
	// A complete checkpoint lets the next writer restart the WAL from its
	// beginning; SyncWAL still flushes the file SQLite writes.
	if _, err := db.Writer().ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		t.Fatal(err)
	}
	for k := n + 1; k <= 2*n; k++ {
		if err := db.TxDeferred(ctx, insertProbe(k, "v"+strconv.Itoa(k))); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.SyncWAL(); err != nil {
		t.Fatalf("SyncWAL after a WAL restart: %v", err)
	}

	// What a crash now would leave: the database file and its WAL.
	crash := filepath.Join(t.TempDir(), "crash.db")
	for _, suffix := range []string{"", "-wal"} {
		copyFile(t, path+suffix, crash+suffix)
	}
	cdb := openWalTestDB(t, crash)
	if got := countProbes(t, cdb); got != 2*n {
		t.Errorf("a copy of the files as a crash leaves them holds %d rows, want %d", got, 2*n)
	}

	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openWalTestDB(t, path)
	if got := countProbes(t, db); got != 2*n {
		t.Errorf("after a reopen %d rows, want %d", got, 2*n)
	}
	// The reopened DB syncs its own WAL.
	if err := db.TxDeferred(ctx, insertProbe(2*n+1, "after")); err != nil {
		t.Fatal(err)
	}
	if err := db.SyncWAL(); err != nil {
		t.Fatalf("SyncWAL after a reopen: %v", err)
	}
}

func countProbes(t *testing.T, db *DB) int {
	t.Helper()
	var n int
	if err := db.Reader().QueryRow(`SELECT COUNT(*) FROM walsync_probe`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

// failNextFsync makes the DB's next WAL fsync fail: SyncWAL flushes a
// pipe instead of the -wal file (fsync of a pipe is EINVAL on Linux; the
// pipe is reached through /proc/self/fd, so it is "the file at the path").
// restore puts the real -wal file back.
func failNextFsync(t *testing.T, db *DB) (restore func()) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("the fsync failure is injected through /proc/self/fd")
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	wal := &db.wal
	wal.mu.Lock()
	realPath := wal.path
	if wal.f != nil {
		wal.f.Close()
	}
	wal.f = r
	wal.path = "/proc/self/fd/" + strconv.Itoa(int(r.Fd()))
	wal.mu.Unlock()
	restored := false
	restore = func() {
		if restored {
			return
		}
		restored = true
		wal.mu.Lock()
		defer wal.mu.Unlock()
		if wal.f == r {
			wal.f = nil
		}
		r.Close()
		w.Close()
		wal.path = realPath
	}
	t.Cleanup(restore)
	return restore
}

// TestAFailedWALFsyncIsFinal: once an fsync of the WAL fails, SyncWAL
// fails from then on, with unavailable, even when the disk would take the
// next fsync: the pages that could not be written may be gone from the
// page cache, so nothing written before or after is reported durable by
// this DB again — nor by ChatStore.Sync, the chat service's durability
// step, whose appends still commit but are never confirmed. A write
// through Tx is reported only when it is durable: when the connection does
// not fsync inside COMMIT (synchronous below FULL), it fails too, with
// unavailable, as SQLite's own I/O errors do (Err).
func TestAFailedWALFsyncIsFinal(t *testing.T) {
	ctx := context.Background()
	db := openWalTestDB(t, filepath.Join(t.TempDir(), "u.db"))
	cs, err := NewChatStore(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	if err := cs.CreateChannel(ctx, chat.Channel{ID: "c1", Name: "c1", Kind: chat.KindPublic, CreatedBy: "alice", CreatedAt: time.Now().UTC()}, "", nil); err != nil {
		t.Fatal(err)
	}
	if err := db.TxDeferred(ctx, insertProbe(1, "before")); err != nil {
		t.Fatal(err)
	}
	if err := db.SyncWAL(); err != nil {
		t.Fatalf("a healthy SyncWAL: %v", err)
	}

	restore := failNextFsync(t, db)
	if err := db.TxDeferred(ctx, insertProbe(2, "lost")); err != nil {
		t.Fatal(err)
	}
	first := db.SyncWAL()
	if first == nil {
		t.Fatal("SyncWAL succeeded although its fsync failed")
	}
	if unhidra.ErrorCode(first) != unhidra.EUNAVAILABLE {
		t.Errorf("the failed SyncWAL: code %q (%v), want unavailable", unhidra.ErrorCode(first), first)
	}
	// The disk is back: the real -wal file, whose fsync would succeed.
	restore()
	for i := range 3 {
		if err := db.SyncWAL(); err == nil || unhidra.ErrorCode(err) != unhidra.EUNAVAILABLE {
			t.Fatalf("SyncWAL %d after the failed fsync: %v, want it to fail with unavailable", i+1, err)
		}
	}
	text := "after the failure"
	res, err := cs.AppendMessagesDeferred(ctx, []chat.Append{{Msg: wire.Message{
		ID: "01ARZ3NDEKTSV4RRFFQ69G5FAV", Channel: "c1", Sender: wire.Principal{Kind: wire.KindUser, ID: "alice"}, CreatedAt: time.Now().UTC(), Text: &text,
	}}})
	if err != nil || len(res) != 1 || res[0].Err != nil {
		t.Fatalf("AppendMessagesDeferred after the failure: %v %+v", err, res)
	}
	if err := cs.Sync(ctx); err == nil {
		t.Fatal("ChatStore.Sync reported the append durable after a failed fsync")
	}
	if writerSynchronous(t, db) < 2 {
		if err := db.Tx(ctx, insertProbe(3, "tx")); unhidra.ErrorCode(err) != unhidra.EUNAVAILABLE {
			t.Errorf("Tx after a failed fsync, on a connection that does not fsync at COMMIT: %v, want unavailable", err)
		}
	}
	// A fresh DB on the same file starts healthy.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	again := openWalTestDB(t, db.Path())
	if err := again.SyncWAL(); err != nil {
		t.Fatalf("SyncWAL of the reopened DB: %v", err)
	}
}
