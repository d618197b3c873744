// Package sqlitetest gives tests a real, migrated SQLite database in a
// temporary directory, closed when the test ends. Every function is safe to
// call from parallel tests; each call makes its own database.
package sqlitetest

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/sqlite"
)

// Open returns a migrated database in t's temporary directory.
func Open(t testing.TB) *sqlite.DB {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "unhidra.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return db
}

// AddUsers inserts bare user accounts (no usable password), for tests of
// stores and services that only need the users to exist.
func AddUsers(t testing.TB, db *sqlite.DB, names ...string) {
	t.Helper()
	now := sqlite.Time(time.Now())
	for _, u := range names {
		if _, err := db.Writer().ExecContext(context.Background(),
			`INSERT INTO users (username, display_name, password_hash, created_at, updated_at) VALUES (?, ?, 'x', ?, ?)`,
			u, u, now, now); err != nil {
			t.Fatal(err)
		}
	}
}
