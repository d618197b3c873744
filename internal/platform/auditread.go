package platform

// Reading an audit log offline: the database of `unhidra audit verify` and
// `export`, and the keys to verify it with.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/unhidra/unhidra/internal/audit"
	"github.com/unhidra/unhidra/internal/config"
	"github.com/unhidra/unhidra/internal/sqlite"
)

// OpenAuditDB opens the database at dbURL (a path or sqlite:// URL; empty:
// the configured one) without migrating or creating it, for `unhidra audit
// verify` and `export`, and checks that it holds an audit log.
func OpenAuditDB(ctx context.Context, cfg *config.Config, dbFlag string) (*sqlite.DB, error) {
	url := cfg.DatabaseURL
	if dbFlag != "" {
		url = dbFlag
	}
	path := (&config.Config{DatabaseURL: url}).SQLitePath()
	if path == "" {
		return nil, fmt.Errorf("%s: the audit commands read SQLite databases (a file path or sqlite://path)", url)
	}
	if st, err := os.Stat(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no database at %s", path)
		}
		return nil, err
	} else if st.IsDir() {
		return nil, fmt.Errorf("%s is a directory, not a database", path)
	}
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		return nil, err
	}
	var n int
	err = db.Reader().QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN ('audit_records', 'audit_nodes', 'audit_heads')`).Scan(&n)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if n != 3 {
		db.Close()
		return nil, fmt.Errorf("%s has no audit log (its schema predates the audit tables: a server of this version migrates it at start, or run \"unhidra migrate\" on the server's database, not on a copy to verify)", path)
	}
	return db, nil
}

// AuditVerifiers returns the keys to verify with and where they came from:
// the flags', else the data dir's verify.key, else AUDIT_SIGNING_KEY's.
func AuditVerifiers(cfg *config.Config, flagKeys []note.Verifier, keyFile string) ([]note.Verifier, string, error) {
	vs := flagKeys
	var from []string
	if len(flagKeys) > 0 {
		from = append(from, "--key")
	}
	readFile := func(path string) error {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		n := 0
		for i, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			v, err := note.NewVerifier(line)
			if err != nil {
				return fmt.Errorf("%s:%d: not a note verifier key: %v", path, i+1, err)
			}
			vs = append(vs, v)
			n++
		}
		if n == 0 {
			return fmt.Errorf("%s holds no verifier key", path)
		}
		from = append(from, path)
		return nil
	}
	if keyFile != "" {
		if err := readFile(keyFile); err != nil {
			return nil, "", err
		}
	}
	if len(vs) == 0 {
		path := filepath.Join(AuditDir(cfg), audit.VerifierKeyFile)
		if err := readFile(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, "", err
		}
	}
	if len(vs) == 0 && cfg.AuditSigningKey != "" {
		vkey, err := audit.VerifierKey(cfg.AuditSigningKey)
		if err != nil {
			return nil, "", fmt.Errorf("AUDIT_SIGNING_KEY: %w", err)
		}
		v, err := note.NewVerifier(vkey)
		if err != nil {
			return nil, "", err
		}
		vs = append(vs, v)
		from = append(from, "AUDIT_SIGNING_KEY")
	}
	if len(vs) == 0 {
		return nil, "", fmt.Errorf("no verifier key: give --key VKEY or --key-file FILE (the key \"unhidra audit keygen\" printed, or GET /api/v1/audit/key), or run with the server's UNHIDRA_DATA_DIR (audit/%s) or AUDIT_SIGNING_KEY", audit.VerifierKeyFile)
	}
	names := make([]string, len(vs))
	for i, v := range vs {
		names[i] = v.Name() + "+" + fmt.Sprintf("%08x", v.KeyHash())
	}
	return vs, strings.Join(from, ", ") + " (" + strings.Join(names, ", ") + ")", nil
}

// AuditCheckpoint reads the checkpoint to verify against: file when set
// ("none" or empty for none), else the data dir's when there is one. It
// returns it and where it came from.
func AuditCheckpoint(cfg *config.Config, file string, set bool) ([]byte, string, error) {
	switch {
	case set && (file == "none" || file == ""):
		return nil, "none", nil
	case set:
		cp, err := os.ReadFile(file)
		if err != nil {
			return nil, "", fmt.Errorf("--checkpoint: %w", err)
		}
		return cp, file, nil
	}
	path := filepath.Join(AuditDir(cfg), audit.CheckpointFile)
	cp, err := os.ReadFile(path)
	switch {
	case err == nil:
		return cp, path, nil
	case errors.Is(err, os.ErrNotExist):
		return nil, "none (no " + path + ")", nil
	}
	return nil, "", fmt.Errorf("checkpoint: %w", err)
}
