// Package platform is Unhidra's composition root: it chooses the backend
// (store and broker) from the configuration once, and builds the domain
// services on it with one function shared by `serve` and the administration
// commands. Everything after it sees the domain's interfaces, never an
// adapter: adding PostgreSQL or Redis Streams is one adapter package plus
// one case in OpenBackend.
package platform

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/unhidra/unhidra/internal/audit"
	"github.com/unhidra/unhidra/internal/auth"
	"github.com/unhidra/unhidra/internal/broker"
	"github.com/unhidra/unhidra/internal/chat"
	"github.com/unhidra/unhidra/internal/config"
	"github.com/unhidra/unhidra/internal/device"
	"github.com/unhidra/unhidra/internal/files"
	"github.com/unhidra/unhidra/internal/inmem"
	"github.com/unhidra/unhidra/internal/keys"
	"github.com/unhidra/unhidra/internal/presence"
	"github.com/unhidra/unhidra/internal/sqlite"
)

// Stores are the store contracts of the domain, as one backend implements
// them (each is run against internal/storetest).
type Stores struct {
	Auth    auth.Store
	Devices device.Store
	Fleet   device.FleetStore
	Chat    chat.Store
	// Presence and its channel and peer queries.
	Presence         presence.Store
	PresenceChannels presence.Channels
	Peers            presence.Peers
	// Revocations lists the sessions and devices revoked since a time, so
	// that a revocation made outside the process (an administration
	// command) reaches the live sessions.
	Revocations func(ctx context.Context, since time.Time) ([]broker.Revocation, error)
	// Audit keeps the tamper-evident audit log.
	Audit audit.Store
	// Keys is the E2EE key directory.
	Keys keys.Store
	// Files records the encrypted files' uploads.
	Files files.Store
}

// Backend is what a node stores in and publishes on.
type Backend struct {
	// Name names the store for logs and the ready line ("sqlite").
	Name string
	// Location is where it stores (a file path, or a URL without its
	// password).
	Location string
	Stores
	Broker broker.Broker
	// Ping answers whether the store is reachable (health checks).
	Ping func(ctx context.Context) error
	// SchemaVersion returns the number of migrations applied.
	SchemaVersion func(ctx context.Context) (int, error)
	closers       []func() error
}

// Close releases the backend's connections.
func (b *Backend) Close() error {
	var errs []error
	for i := len(b.closers) - 1; i >= 0; i-- {
		errs = append(errs, b.closers[i]())
	}
	b.closers = nil
	return errors.Join(errs...)
}

// Check refuses a configuration whose store or broker this build cannot
// open, before anything is written.
func Check(cfg *config.Config) error {
	if cfg.RedisURL != "" {
		return errors.New("REDIS_URL: the Redis Streams broker is not supported yet; leave it empty for the in-process broker (one node)")
	}
	_, err := databaseKind(cfg)
	return err
}

func databaseKind(cfg *config.Config) (string, error) {
	u := cfg.DatabaseURL
	if strings.HasPrefix(u, "postgres://") || strings.HasPrefix(u, "postgresql://") {
		return "", errors.New("DATABASE_URL: PostgreSQL is not supported yet; use sqlite://path or a file path")
	}
	if cfg.SQLitePath() == "" {
		return "", fmt.Errorf("DATABASE_URL: unsupported scheme")
	}
	return "sqlite", nil
}

// OpenBackend opens the store DATABASE_URL names (migrated to the current
// schema) and the broker REDIS_URL names (the in-process broker when
// empty).
func OpenBackend(ctx context.Context, cfg *config.Config) (_ *Backend, err error) {
	if err := Check(cfg); err != nil {
		return nil, err
	}
	kind, err := databaseKind(cfg)
	if err != nil {
		return nil, err
	}
	b := &Backend{Name: kind}
	defer func() {
		if err != nil {
			b.Close()
		}
	}()
	switch kind {
	case "sqlite":
		err = openSQLite(ctx, cfg, b)
	default:
		err = fmt.Errorf("DATABASE_URL: no store %q", kind)
	}
	if err != nil {
		return nil, err
	}
	switch {
	case cfg.RedisURL == "":
		b.Broker = inmem.NewBroker()
	}
	return b, nil
}

func openSQLite(ctx context.Context, cfg *config.Config, b *Backend) error {
	db, err := sqlite.Open(ctx, cfg.SQLitePath())
	if err != nil {
		return err
	}
	b.closers = append(b.closers, db.Close)
	if err := db.Migrate(ctx); err != nil {
		return err
	}
	chatStore, err := sqlite.NewChatStore(ctx, db)
	if err != nil {
		return err
	}
	b.Location = db.Path()
	b.Stores = Stores{
		Auth:             sqlite.NewAuthStore(db),
		Devices:          sqlite.NewDeviceStore(db),
		Fleet:            sqlite.NewFleetStore(db),
		Chat:             chatStore,
		Presence:         chatStore,
		PresenceChannels: chatStore,
		Peers:            chatStore,
		Revocations:      sqlite.NewRevocationFeed(db).Recent,
		Audit:            sqlite.NewAuditStore(db),
		Keys:             sqlite.NewKeyStore(db),
		Files:            sqlite.NewFileStore(db),
	}
	b.Ping = db.Ping
	b.SchemaVersion = func(ctx context.Context) (int, error) {
		var n int
		err := db.Reader().QueryRowContext(ctx, "SELECT COUNT(*) FROM schema_migrations").Scan(&n)
		return n, err
	}
	return nil
}
