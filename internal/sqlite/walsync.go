package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"sync"

	"github.com/unhidra/unhidra"
)

// Durability by an fsync of the WAL.
//
// With synchronous=FULL SQLite fsyncs the WAL inside COMMIT, so the writer
// can do nothing else while the disk flushes: a commit costs its SQL plus
// one fsync, back to back. Every connection runs synchronous=NORMAL
// instead (a COMMIT writes its frames to the WAL file, not yet to the
// disk), and the durability FULL gives comes from SyncWAL, an fsync of the
// WAL file: after it returns, every transaction committed before it was
// called is on disk. Tx calls it after its COMMIT, before it returns;
// TxDeferred leaves it to the caller, so that the chat service's commit
// loop can write its next batch while the delivery stage flushes the one
// before, and acknowledge a batch only after the SyncWAL that covers it.
//
// Why this is safe in WAL mode: NORMAL only drops the fsync at COMMIT;
// checkpoints still fsync the WAL before copying it into the database and
// the database before the WAL is reused, so the WAL on disk always holds
// every frame not yet safely in the database file. An fsync of the WAL
// file flushes all of its written pages (Linux syncs the file, whichever
// descriptor asks), headers included.
//
// The one difference: a transaction is visible to readers on this node
// from its COMMIT, a fraction of a millisecond before its flush. A reader
// may therefore see a message whose ack has not been sent; after a power
// loss (not a process crash, which keeps the page cache) in that window the
// message would be gone, as its sender, never acknowledged, expects. Live
// events are published only after the flush.

// walFile is the open -wal file that SyncWAL flushes.
type walFile struct {
	mu   sync.Mutex
	path string
	f    *os.File
	err  error // sticky: after a failed fsync nothing is reported durable again
}

// TxDeferred runs fn in a write transaction like Tx, but does not wait for
// the disk: the transaction is durable only once a later SyncWAL returns
// nil.
func (db *DB) TxDeferred(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return Err(err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return Err(err)
	}
	if err := tx.Commit(); err != nil {
		_ = tx.Rollback()
		return Err(err)
	}
	return nil
}

// SyncWAL makes every transaction committed so far durable (see
// TxDeferred). A failed fsync is final for this DB: the page cache may have
// dropped the pages it could not write, so every later SyncWAL fails too
// and nothing more is acknowledged (reopen the database after fixing the
// disk).
func (db *DB) SyncWAL() error {
	w := &db.wal
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	if err := w.open(); err != nil {
		return unhidra.Wrap(unhidra.EUNAVAILABLE, "storage is unavailable", err) // as Err maps SQLITE_IOERR
	}
	if err := w.f.Sync(); err != nil {
		w.err = unhidra.Wrap(unhidra.EUNAVAILABLE, "storage is unavailable", fmt.Errorf("sqlite: fsync %s: %w", w.path, err))
		return w.err
	}
	if fi, err := w.f.Stat(); err == nil && fi.Size() > checkpointBytes {
		db.ckpt.request()
	}
	return nil
}

// open (re)opens the -wal file when it is not open or is no longer the file
// at its path (SQLite removes it when the last connection closes).
func (w *walFile) open() error {
	if w.f != nil {
		a, err1 := os.Stat(w.path)
		b, err2 := w.f.Stat()
		if err1 == nil && err2 == nil && os.SameFile(a, b) {
			return nil
		}
		w.f.Close()
		w.f = nil
	}
	f, err := os.Open(w.path)
	if err != nil {
		return fmt.Errorf("sqlite: open %s: %w", w.path, err)
	}
	w.f = f
	return nil
}

func (w *walFile) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
}
