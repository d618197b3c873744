package sqlite_test

import (
	"context"
	"testing"

	"github.com/unhidra/unhidra/internal/auth"
	"github.com/unhidra/unhidra/internal/presence"
	"github.com/unhidra/unhidra/internal/sqlite"
	"github.com/unhidra/unhidra/internal/sqlitetest"
	"github.com/unhidra/unhidra/internal/storetest"
)

// The conformance suites of internal/storetest, run against the SQLite
// stores (the chat suite runs in chat_test.go). Each subtest gets a fresh
// migrated database.

func TestAuthStoreConformance(t *testing.T) {
	storetest.Auth(t, func(t *testing.T) auth.Store {
		return sqlite.NewAuthStore(sqlitetest.Open(t))
	})
}

func deviceStores(t *testing.T) storetest.DeviceStores {
	db := sqlitetest.Open(t)
	return storetest.DeviceStores{Users: sqlite.NewAuthStore(db), Registry: sqlite.NewDeviceStore(db), Fleet: sqlite.NewFleetStore(db)}
}

func TestDeviceStoreConformance(t *testing.T) { storetest.Device(t, deviceStores) }

func TestFleetStoreConformance(t *testing.T) { storetest.Fleet(t, deviceStores) }

func TestFleetStoreTelemetryConformance(t *testing.T) { storetest.Telemetry(t, deviceStores) }

// The presence store is the chat store's last_seen table.
func TestPresenceStoreConformance(t *testing.T) {
	storetest.Presence(t, func(t *testing.T) presence.Store {
		st, err := sqlite.NewChatStore(context.Background(), sqlitetest.Open(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	})
}

func TestAuditStoreConformance(t *testing.T) {
	storetest.Audit(t, func(t *testing.T) storetest.AuditStores {
		db := sqlitetest.Open(t)
		return storetest.AuditStores{Store: sqlite.NewAuditStore(db), Exec: func(stmt string) error {
			_, err := db.Writer().Exec(stmt)
			return err
		}}
	})
}
