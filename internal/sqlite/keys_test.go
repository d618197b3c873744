package sqlite_test

import (
	"testing"

	"github.com/unhidra/unhidra/internal/keys"
	"github.com/unhidra/unhidra/internal/sqlite"
	"github.com/unhidra/unhidra/internal/sqlitetest"
	"github.com/unhidra/unhidra/internal/storetest"
)

func TestKeyStoreConformance(t *testing.T) {
	storetest.Keys(t, func(t *testing.T) keys.Store { return sqlite.NewKeyStore(sqlitetest.Open(t)) })
}
