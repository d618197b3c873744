package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/unhidra/unhidra/internal/audit"
	"github.com/unhidra/unhidra/internal/auth"
	"github.com/unhidra/unhidra/internal/config"
	"github.com/unhidra/unhidra/internal/device"
	"github.com/unhidra/unhidra/internal/platform"
)

var migrateCmd = &cmdSpec{
	name: "migrate",
	summary: `Applies the embedded schema migrations to the database and exits. "unhidra serve"
migrates at start-up too; this is for deployments that migrate before they roll out.`,
	more:     adminEnv,
	examples: []string{"unhidra migrate", "UNHIDRA_DATA_DIR=/var/lib/unhidra unhidra migrate"},
}

// runMigrate applies the schema to DATABASE_URL and exits.
func runMigrate(ctx context.Context, e env) error {
	if _, err := migrateCmd.parse(e, nil, e.args); err != nil {
		return err
	}
	cfg, err := config.Load(nil, e.getenv)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	b, err := platform.OpenBackend(ctx, cfg)
	if err != nil {
		return err
	}
	defer b.Close()
	n, err := b.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "schema is up to date at %s (%d migrations applied)\n", b.Location, n)
	return nil
}

// admin is what the administration commands (user, device) work with: the
// same services as the server, on the same database. SQLite in WAL mode lets
// them run beside a live server; their writes wait on busy_timeout.
type admin struct {
	cfg      *config.Config
	backend  *platform.Backend
	auditLog *audit.Log
	auth     *auth.Service
	devices  *device.Service
}

func openAdmin(ctx context.Context, e env) (*admin, error) {
	cfg, err := config.Load(nil, e.getenv)
	if err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	// Device keys are hashed with a key derived from JWT_SECRET, so the
	// commands need the server's secret (generated in dev, in the data dir).
	if _, err := cfg.EnsureDevSecret(rand.Read); err != nil {
		return nil, err
	}
	if cfg.JWTSecret == "" {
		return nil, errors.New("JWT_SECRET must be set (the same as the server's)")
	}
	b, err := platform.OpenBackend(ctx, cfg)
	if err != nil {
		return nil, err
	}
	// The same services as the server. Devices registered from the command
	// line get their channel too; a running server learns of revocations
	// from the store (its revocation feed), as no process listens to this
	// broker.
	// Their actions are audited in the same log as the server's: appends
	// from two processes are serialized by the store.
	al, _, err := platform.OpenAudit(ctx, cfg, b, slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelError})), nil)
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("audit log: %w", err)
	}
	svcs, err := platform.NewServices(ctx, cfg, b, platform.Options{Log: slog.New(slog.DiscardHandler), Audit: al})
	if err != nil {
		al.Close()
		b.Close()
		return nil, err
	}
	return &admin{cfg: cfg, backend: b, auditLog: al, auth: svcs.Auth, devices: svcs.Devices}, nil
}

func (a *admin) Close() error { return errors.Join(a.auditLog.Close(), a.backend.Close()) }

// readPasswordLine reads one line of stdin as a password, byte-exact but for
// the line ending.
func readPasswordLine(r io.Reader) (string, error) {
	if r == nil {
		return "", errors.New("no standard input")
	}
	b, err := io.ReadAll(io.LimitReader(r, auth.MaxPasswordLen+3))
	if err != nil {
		return "", err
	}
	s := string(b)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	s = strings.TrimSuffix(s, "\r")
	if s == "" {
		return "", errors.New("no password on standard input")
	}
	return s, nil
}
