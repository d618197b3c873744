// Package sqlite is Unhidra's embedded storage: one SQLite file in WAL mode,
// opened through the pure-Go modernc.org/sqlite driver.
//
// Concurrency contract: all writes go through one connection (SQLite allows
// one writer at a time; serialising them in-process avoids SQLITE_BUSY storms)
// and begin with BEGIN IMMEDIATE, so a second process (the CLI) waits on
// busy_timeout instead of failing. Reads use a separate pool of read-only
// connections and never block the writer. Each domain store in this package
// is safe for concurrent use.
//
// PRAGMAs on every connection: journal_mode=WAL, synchronous=NORMAL,
// foreign_keys=ON, busy_timeout=5000 ms. Durability does not rest on the
// pragma: Tx fsyncs the WAL after its COMMIT, before it returns (what
// synchronous=FULL does inside COMMIT), so a write survives power loss, not
// only a process crash, once it is reported; TxDeferred leaves that fsync
// to a later SyncWAL, which the group commit overlaps with its next batch
// (walsync.go).
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/unhidra/unhidra"
)

//go:embed migrations/*.sql
var migrations embed.FS

// DB is an open Unhidra database.
type DB struct {
	path  string
	write *sql.DB
	read  *sql.DB
	// Now is the clock used by the stores; tests may replace it before use.
	Now func() time.Time

	wal  walFile       // SyncWAL's (walsync.go)
	ckpt *checkpointer // checkpoint.go
	fold *folder       // fold.go
}

// Pragmas applied to every connection, in order.
var Pragmas = []string{
	"journal_mode(WAL)",
	"synchronous(NORMAL)",
	"foreign_keys(1)",
	"busy_timeout(5000)",
}

func dsn(path string, readOnly bool) string {
	q := url.Values{}
	for _, p := range Pragmas {
		q.Add("_pragma", p)
	}
	if readOnly {
		q.Add("_pragma", "query_only(1)")
	} else {
		q.Set("_txlock", "immediate")
		// The writer's page cache holds the hot upper levels and leaves of
		// every B-tree a group commit touches (messages, telemetry, their
		// indexes, channels, devices); the default 2 MiB makes a commit
		// across many channels re-read pages from the OS and spill dirty
		// pages to the WAL before COMMIT.
		q.Add("_pragma", "cache_size(-65536)")
		// Checkpoints run on the checkpointer's connection (checkpoint.go).
		q.Add("_pragma", "wal_autocheckpoint(0)")
		q.Add("_pragma", "journal_size_limit(67108864)")
	}
	return "file:" + path + "?" + q.Encode()
}

// Open opens (creating if needed) the database at path. It does not migrate.
func Open(ctx context.Context, path string) (*DB, error) {
	if path == "" {
		return nil, errors.New("sqlite: empty path")
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("sqlite: create data dir: %w", err)
		}
	}
	w, err := sql.Open("sqlite", dsn(path, false))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	// Make sure the file is in WAL mode before readers open it.
	var mode string
	if err := w.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil || !strings.EqualFold(mode, "wal") {
		w.Close()
		return nil, fmt.Errorf("sqlite: journal_mode is %q, want wal: %v", mode, err)
	}
	r, err := sql.Open("sqlite", dsn(path, true))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: open readers: %w", err)
	}
	n := max(4, runtime.GOMAXPROCS(0)*2)
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	_ = os.Chmod(path, 0o600)
	cp, err := startCheckpointer(path)
	if err != nil {
		w.Close()
		r.Close()
		return nil, fmt.Errorf("sqlite: open checkpointer: %w", err)
	}
	db := &DB{path: path, write: w, read: r, Now: func() time.Time { return time.Now().UTC() }, wal: walFile{path: path + "-wal"}, ckpt: cp}
	db.fold = newFolder(db)
	return db, nil
}

// Path returns the database file path.
func (db *DB) Path() string { return db.path }

// Close closes both pools.
func (db *DB) Close() error {
	db.fold.close()
	err := errors.Join(db.ckpt.close(), db.read.Close(), db.write.Close())
	db.wal.close()
	return err
}

// Reader returns the read-only pool.
func (db *DB) Reader() *sql.DB { return db.read }

// Writer returns the single-connection write pool. Prefer Tx.
func (db *DB) Writer() *sql.DB { return db.write }

// Ping checks that the database answers a query.
func (db *DB) Ping(ctx context.Context) error {
	var one int
	if err := db.read.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return Err(err)
	}
	return nil
}

// Tx runs fn in a write transaction (BEGIN IMMEDIATE) and commits it when fn
// returns nil. Errors are mapped with Err.
func (db *DB) Tx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	if err := db.TxDeferred(ctx, fn); err != nil {
		return err
	}
	return db.SyncWAL()
}

// Err maps driver errors onto the error vocabulary: a full disk, a locked or
// busy database and I/O errors become "unavailable" (the caller may retry and
// nothing was acknowledged); constraint violations stay as they are for the
// stores to translate. *unhidra.Error values and nil pass through.
func Err(err error) error {
	if err == nil {
		return nil
	}
	var ue *unhidra.Error
	if errors.As(err, &ue) {
		return err
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_FULL:
			return unhidra.Wrap(unhidra.EUNAVAILABLE, "storage is full", err)
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
			return unhidra.Wrap(unhidra.EUNAVAILABLE, "storage is busy, try again", err)
		case sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB:
			return unhidra.Wrap(unhidra.EUNAVAILABLE, "storage is unavailable", err)
		}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return unhidra.Wrap(unhidra.EUNAVAILABLE, "request cancelled", err)
	}
	return err
}

// IsConstraint reports whether err is a UNIQUE or PRIMARY KEY violation.
func IsConstraint(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	return false
}

// Migrate applies every embedded migration not yet applied, each in its own
// transaction, in file-name order (NNNN_name.sql).
func (db *DB) Migrate(ctx context.Context) error {
	if _, err := db.write.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY,
		name TEXT NOT NULL,
		applied_at TEXT NOT NULL)`); err != nil {
		return fmt.Errorf("sqlite: migrations table: %w", err)
	}
	if err := db.SyncWAL(); err != nil {
		return err
	}
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, name := range names {
		base := filepath.Base(name)
		num, _, ok := strings.Cut(base, "_")
		if !ok {
			return fmt.Errorf("sqlite: migration %s: name must be NNNN_name.sql", base)
		}
		version, err := strconv.Atoi(num)
		if err != nil {
			return fmt.Errorf("sqlite: migration %s: %w", base, err)
		}
		body, err := migrations.ReadFile(name)
		if err != nil {
			return err
		}
		err = db.Tx(ctx, func(tx *sql.Tx) error {
			var n int
			if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM schema_migrations WHERE version = ?", version).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			if _, err := tx.ExecContext(ctx, string(body)); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
				version, base, db.Now().Format(time.RFC3339Nano))
			return err
		})
		if err != nil {
			return fmt.Errorf("sqlite: migration %s: %w", base, err)
		}
	}
	return nil
}

// Time formats t for storage: RFC 3339 with nanoseconds in UTC, which sorts
// as text.
func Time(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000000Z07:00") }

// ParseTime parses a time written by Time.
func ParseTime(s string) (time.Time, error) { return time.Parse(time.RFC3339Nano, s) }
