package main

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/unhidra/unhidra/internal/audit"
	"github.com/unhidra/unhidra/internal/config"
	"github.com/unhidra/unhidra/internal/platform"
	"github.com/unhidra/unhidra/internal/sqlite"
)

// auditEnv is what the audit commands say about where they read.
const auditEnv = `Environment: the database is the server's, as for the other commands:
  UNHIDRA_DATA_DIR   data directory (default ./data), holding unhidra.db and audit/
  DATABASE_URL       sqlite://path or a bare path (default: unhidra.db in the data dir)
--db names another database, such as a copy. The commands only read: they
never migrate, need no running server, and are not themselves audited (they
read a file that whoever runs them can read anyway; there may be no server
to record them). To check a copy, take it with
  sqlite3 unhidra.db ".backup copy.db"      (while the server runs), or
  cp unhidra.db unhidra.db-wal DEST/        (both files, while it is stopped).`

var auditCmd = &cmdSpec{
	name:    "audit",
	args:    "COMMAND [flags]",
	summary: "Checks and exports the tamper-evident audit log, offline (docs/audit.md).",
	commands: [][2]string{
		{"verify", "recompute the whole log, check its signed heads and a checkpoint; exit 0 only when intact"},
		{"export", "write the records as JSON lines (their canonical entries), resumable with --from"},
		{"keygen", "generate an AUDIT_SIGNING_KEY and its verifier key, for production"},
	},
	more:     auditEnv,
	examples: []string{"unhidra audit verify", "unhidra audit export --from 0 > audit.jsonl", "unhidra audit keygen"},
}

var auditCmds = map[string]*cmdSpec{
	"verify": {
		name: "audit verify",
		args: "[--db PATH|URL] [--checkpoint FILE] [--key VKEY]... [--key-file FILE]",
		summary: `Recomputes the audit log from its records: every record's hash, place and
searchable columns, every stored tree node, every signed head's root and the
last head's signature, and that the log contains and extends the checkpoint.
Prints a one-line summary and exits 0 when the log is intact; otherwise
prints the first problem, located (the first bad record or range: altered,
deleted, swapped or forged records, a truncation, a rollback to an older
copy) and exits 1.`,
		more: `Keys: the heads and the checkpoint must be signed by a key given with --key
(repeatable) or --key-file (one verifier key a line); without them, the data
dir's audit/verify.key, else the key of AUDIT_SIGNING_KEY. The verifier key
is what "unhidra audit keygen" prints and GET /api/v1/audit/key serves.
Checkpoint: --checkpoint FILE, a checkpoint kept outside the database (saved
from GET /api/v1/audit/checkpoint, or the data dir's); default: the data
dir's audit/checkpoint when there is one; --checkpoint none for none.

` + auditEnv,
		examples: []string{
			"unhidra audit verify",
			"unhidra audit verify --db /backup/unhidra.db --checkpoint saved.checkpoint --key 'unhidra-audit+1a2b3c4d+AbC…'",
		},
	},
	"export": {
		name: "audit export",
		args: "[--from N] [--to N] [--db PATH|URL]",
		summary: `Writes records --from (default 0) up to, not including, --to (default: the
end) to standard output as JSON lines, each exactly the record's canonical
entry: the bytes the Merkle leaf hashes (SHA-256 of 0x00 and the line
without its newline), so a SIEM can check each against a proof. The last
line on standard error is "exported K records, next --from N": run again
with that --from to continue where this one stopped. Run "unhidra audit
verify" to know the records are intact.`,
		more: auditEnv,
		examples: []string{
			"unhidra audit export > audit.jsonl",
			"unhidra audit export --from 120000 >> audit.jsonl",
		},
	},
	"keygen": {
		name: "audit keygen",
		args: "[--name NAME]",
		summary: `Generates an Ed25519 note signing key for the audit log's checkpoints and
prints it as AUDIT_SIGNING_KEY=… (set it in the server's environment and keep
it secret, like JWT_SECRET) and its verifier key as AUDIT_VERIFIER_KEY=…
(give it to auditors: "unhidra audit verify --key VKEY"). Without
AUDIT_SIGNING_KEY the server generates a key into the data dir, for
development. Nothing is written.`,
		examples: []string{"unhidra audit keygen", "unhidra audit keygen --name acme-audit"},
	},
}

// keyList is a repeatable flag.
type keyList []string

func (k *keyList) String() string     { return strings.Join(*k, ",") }
func (k *keyList) Set(v string) error { *k = append(*k, v); return nil }

// runAudit is `unhidra audit verify|export|keygen`.
func runAudit(ctx context.Context, e env) error {
	sub, args, err := auditCmd.group(e)
	if err != nil {
		return err
	}
	spec := auditCmds[sub]
	fs := spec.flags()
	switch sub {
	case "verify":
		db := fs.String("db", "", "the database to verify: a file path or sqlite://path (default: the server's)")
		cpFile := fs.String("checkpoint", "", `a signed checkpoint the log must contain and extend (default: the data dir's audit/checkpoint if present; "none" for none)`)
		var keys keyList
		fs.Var(&keys, "key", "a note verifier key the heads may be signed with (repeatable)")
		keyFile := fs.String("key-file", "", "a file of note verifier keys, one a line")
		if _, err := spec.parse(e, fs, args); err != nil {
			return err
		}
		cpSet := false
		fs.Visit(func(f *flag.Flag) { cpSet = cpSet || f.Name == "checkpoint" })
		vs, err := parseKeys(spec, keys)
		if err != nil {
			return err
		}
		return auditVerify(ctx, e, *db, *cpFile, cpSet, vs, *keyFile)
	case "export":
		db := fs.String("db", "", "the database to export from: a file path or sqlite://path (default: the server's)")
		from := fs.Uint64("from", 0, "the first record (index) to export")
		to := fs.Uint64("to", 0, "stop before this record (default: the end)")
		if _, err := spec.parse(e, fs, args); err != nil {
			return err
		}
		toSet := false
		fs.Visit(func(f *flag.Flag) { toSet = toSet || f.Name == "to" })
		if toSet && *to <= *from {
			return spec.errorf("--to %d must be greater than --from %d", *to, *from)
		}
		if !toSet {
			*to = 0
		}
		return auditExport(ctx, e, *db, *from, *to)
	case "keygen":
		name := fs.String("name", platform.AuditKeyName, "the key's name (the first line of every checkpoint it signs)")
		if _, err := spec.parse(e, fs, args); err != nil {
			return err
		}
		skey, vkey, err := audit.GenerateKey(*name)
		if err == nil {
			// NewSigner checks the name that GenerateKey takes as it is.
			_, err = note.NewSigner(skey)
		}
		if err != nil {
			return spec.errorf("--name %q is not a key name (letters, digits and punctuation, without + or spaces)", *name)
		}
		fmt.Fprintf(e.stdout, "AUDIT_SIGNING_KEY=%s\nAUDIT_VERIFIER_KEY=%s\n", skey, vkey)
		return nil
	}
	return nil
}

// parseKeys parses the --key values.
func parseKeys(spec *cmdSpec, keys []string) ([]note.Verifier, error) {
	var vs []note.Verifier
	for _, k := range keys {
		v, err := note.NewVerifier(strings.TrimSpace(k))
		if err != nil {
			return nil, spec.errorf("--key %q is not a note verifier key (name+hash+key): %v", k, err)
		}
		vs = append(vs, v)
	}
	return vs, nil
}

func auditVerify(ctx context.Context, e env, dbFlag, cpFile string, cpSet bool, flagKeys []note.Verifier, keyFile string) error {
	cfg, err := config.Load(nil, e.getenv)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	db, err := platform.OpenAuditDB(ctx, cfg, dbFlag)
	if err != nil {
		return err
	}
	defer db.Close()
	vs, keysFrom, err := platform.AuditVerifiers(cfg, flagKeys, keyFile)
	if err != nil {
		return err
	}
	cp, cpFrom, err := platform.AuditCheckpoint(cfg, cpFile, cpSet)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "database:   %s\n", db.Path())
	fmt.Fprintf(e.stdout, "keys:       %s\n", keysFrom)
	fmt.Fprintf(e.stdout, "checkpoint: %s\n", cpFrom)
	rep, err := audit.Verify(ctx, sqlite.NewAuditStore(db), audit.VerifyOptions{Verifiers: note.VerifierList(vs...), Checkpoint: cp})
	if err != nil {
		return fmt.Errorf("reading the audit log: %w", err)
	}
	fmt.Fprintln(e.stdout, rep.Summary())
	if p := rep.Problem; p != nil {
		if p.Seq >= 0 {
			return fmt.Errorf("the audit log is not intact: %s at record %d", p.Kind, p.Seq)
		}
		return fmt.Errorf("the audit log is not intact: %s", p.Kind)
	}
	return nil
}

// auditExport writes records from..to (0: the end) as JSON lines.
func auditExport(ctx context.Context, e env, dbFlag string, from, to uint64) error {
	cfg, err := config.Load(nil, e.getenv)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	db, err := platform.OpenAuditDB(ctx, cfg, dbFlag)
	if err != nil {
		return err
	}
	defer db.Close()
	n, next, err := audit.Export(ctx, sqlite.NewAuditStore(db), e.stdout, from, to)
	fmt.Fprintf(e.stderr, "exported %d records, next --from %s\n", n, strconv.FormatUint(next, 10))
	return err
}
