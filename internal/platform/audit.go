package platform

import (
	"context"
	"log/slog"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/unhidra/unhidra/internal/audit"
	"github.com/unhidra/unhidra/internal/config"
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
