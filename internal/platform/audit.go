package platform

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/unhidra/unhidra/internal/audit"
	"github.com/unhidra/unhidra/internal/config"
	"github.com/unhidra/unhidra/wire"
)

// AuditDir is where the audit log's keys and checkpoints are kept: the
// audit directory of the data dir.
func AuditDir(cfg *config.Config) string { return filepath.Join(cfg.DataDir, "audit") }

// AuditKeyName names a signing key generated in development.
const AuditKeyName = "unhidra-audit"

// OpenAudit opens the audit log in b with the configured signer
// (AUDIT_SIGNING_KEY, or in development a key generated into the data
// dir), for the server and the administration commands alike. It returns
// the log and its verifier key.
func OpenAudit(ctx context.Context, cfg *config.Config, b *Backend, log *slog.Logger, reg prometheus.Registerer) (*audit.Log, string, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir := AuditDir(cfg)
	signer, vkey, generated, err := audit.LoadSigner(cfg.AuditSigningKey, dir, AuditKeyName)
	if err != nil {
		return nil, "", err
	}
	if generated {
		log.Warn("no AUDIT_SIGNING_KEY set: generated an audit signing key in the data dir; set AUDIT_SIGNING_KEY for production", "dir", dir, "verifier_key", vkey)
	}
	l, err := audit.Open(ctx, b.Audit, audit.Options{
		Signer:          signer,
		Dir:             dir,
		CheckpointEvery: cfg.AuditCheckpointEvery,
		Log:             log.With("component", "audit"),
		Registerer:      reg,
	})
	if err != nil {
		return nil, "", err
	}
	return l, vkey, nil
}

// RecordRefusal appends a config_refused record for a start refused for
// problems, when there is a log to append to: the database already exists
// and a signing key is at hand (AUDIT_SIGNING_KEY, or one kept in the data
// dir). It creates nothing: a refused first start leaves no database
// behind. It reports whether the refusal was recorded.
func RecordRefusal(ctx context.Context, cfg *config.Config, problems []string) (bool, error) {
	path := cfg.SQLitePath()
	if path == "" {
		return false, nil
	}
	if _, err := os.Stat(path); err != nil {
		return false, nil
	}
	if cfg.AuditSigningKey == "" {
		if _, err := os.Stat(filepath.Join(AuditDir(cfg), audit.SigningKeyFile)); err != nil {
			return false, nil
		}
	} else if _, err := audit.VerifierKey(cfg.AuditSigningKey); err != nil {
		return false, nil
	}
	if _, err := databaseKind(cfg); err != nil {
		return false, nil
	}
	b, err := OpenBackend(ctx, cfg)
	if err != nil {
		return false, err
	}
	defer b.Close()
	l, _, err := OpenAudit(ctx, cfg, b, nil, nil)
	if err != nil {
		return false, err
	}
	defer l.Close()
	_, err = l.Append(ctx, audit.Event{
		Action:    audit.ActionConfigRefused,
		Actor:     wire.Principal{Kind: "system", ID: "serve"},
		Outcome:   audit.Failure,
		Reason:    strings.Join(problems, "; "),
		Transport: audit.TransportSystem,
		Details:   map[string]string{"problems": strconv.Itoa(len(problems)), "env": cfg.Env},
	})
	return err == nil, err
}
