package main

// `unhidra audit verify|export|keygen` end to end: the real commands on a
// data dir whose audit log the platform wrote (platform.OpenAudit, as the
// server and the administration commands do), on copies tampered with
// through plain SQL, with no server running.

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	_ "modernc.org/sqlite"

	"github.com/unhidra/unhidra/internal/audit"
	"github.com/unhidra/unhidra/internal/audit/merkle"
	"github.com/unhidra/unhidra/internal/config"
	"github.com/unhidra/unhidra/internal/platform"
	"github.com/unhidra/unhidra/internal/sqlite"
	"github.com/unhidra/unhidra/wire"
)

// auditData is a data dir holding a database with an audit log.
type auditData struct {
	dir  string
	vars map[string]string
}

func newAuditData(t *testing.T, extra map[string]string) *auditData {
	t.Helper()
	d := &auditData{dir: filepath.Join(t.TempDir(), "data"), vars: map[string]string{}}
	d.vars["UNHIDRA_DATA_DIR"] = d.dir
	for k, v := range extra {
		d.vars[k] = v
	}
	return d
}

func (d *auditData) getenv(k string) string { return d.vars[k] }

func (d *auditData) db() string { return filepath.Join(d.dir, "unhidra.db") }

// append opens the backend and the audit log as the server does, appends
// n events (one commit each, so one signed head each) and closes both,
// which writes the data dir's checkpoint.
func (d *auditData) append(t *testing.T, n int) {
	t.Helper()
	ctx := context.Background()
	cfg, err := config.Load(nil, d.getenv)
	if err != nil {
		t.Fatal(err)
	}
	b, err := platform.OpenBackend(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	l, _, err := platform.OpenAudit(ctx, cfg, b, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		e := audit.Event{Action: audit.ActionLogin, Actor: wire.Principal{Kind: wire.KindUser, ID: fmt.Sprintf("user-%d", i%7)}, Target: fmt.Sprintf("user-%d", i%7), IP: "203.0.113.7", Transport: audit.TransportHTTP}
		if i%5 == 0 {
			e.Outcome, e.Reason = audit.Failure, "bad password"
		}
		l.Audit(ctx, e)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// auditRun runs the command line in-process and returns what it printed
// and its exit status.
func auditRun(t *testing.T, getenv func(string) string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), env{args: args, getenv: getenv, stdin: strings.NewReader(""), stdout: &out, stderr: &errOut})
	code = exitCode(err, &errOut)
	return out.String(), errOut.String(), code
}

// copyDB copies a stopped database (and its WAL, if any) into a new
// directory and returns the copy's path.
func copyDB(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "copy.db")
	for _, suffix := range []string{"", "-wal"} {
		b, err := os.ReadFile(src + suffix)
		if os.IsNotExist(err) && suffix != "" {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst+suffix, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// rawDB opens a database with plain database/sql, as someone with the file
// would.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// entries returns every stored entry and leaf, in seq order.
func entries(t *testing.T, path string) (es [][]byte, leaves [][]byte) {
	t.Helper()
	rows, err := rawDB(t, path).Query(`SELECT entry, leaf FROM audit_records ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var e, l []byte
		if err := rows.Scan(&e, &l); err != nil {
			t.Fatal(err)
		}
		es, leaves = append(es, e), append(leaves, l)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return es, leaves
}

func TestAuditVerifyOfAnIntactLog(t *testing.T) {
	d := newAuditData(t, nil)
	d.append(t, 250)
	vkey, err := os.ReadFile(filepath.Join(d.dir, "audit", audit.VerifierKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	t.Run("with the data dir's key and checkpoint it exits 0, counting the records", func(t *testing.T) {
		out, errOut, code := auditRun(t, d.getenv, "audit", "verify")
		if code != 0 {
			t.Fatalf("exit %d\n%s%s", code, out, errOut)
		}
		for _, w := range []string{"intact: 250 records, 250 signed heads", "last head 250 records signed", "contains the checkpoint of 250 records", "records/s",
			"checkpoint: " + filepath.Join(d.dir, "audit", "checkpoint"), "keys:       " + filepath.Join(d.dir, "audit", "verify.key"), "database:   " + d.db()} {
			if !strings.Contains(out, w) {
				t.Errorf("stdout lacks %q:\n%s", w, out)
			}
		}
		if strings.Count(out, "intact") != 1 || strings.Contains(out, "NOT INTACT") {
			t.Errorf("stdout:\n%s", out)
		}
	})
	t.Run("it works on a copy named with --db, sqlite:// or a path", func(t *testing.T) {
		cp := copyDB(t, d.db())
		for _, db := range []string{cp, "sqlite://" + cp} {
			if out, errOut, code := auditRun(t, d.getenv, "audit", "verify", "--db", db, "--checkpoint", "none", "--key", strings.TrimSpace(string(vkey))); code != 0 || !strings.Contains(out, "intact: 250 records") || !strings.Contains(out, "checkpoint: none\n") || !strings.Contains(out, "keys:       --key") {
				t.Errorf("--db %s: exit %d\n%s%s", db, code, out, errOut)
			}
		}
	})
	t.Run("a key the heads were not signed with is refused, exit 1", func(t *testing.T) {
		_, other, _ := audit.GenerateKey("unhidra-audit")
		out, errOut, code := auditRun(t, d.getenv, "audit", "verify", "--key", other)
		if code != 1 || !strings.Contains(out, "NOT INTACT") || !strings.Contains(errOut, "not intact") {
			t.Errorf("exit %d\n%s%s", code, out, errOut)
		}
	})
	t.Run("a --key-file of keys is read", func(t *testing.T) {
		_, other, _ := audit.GenerateKey("old-audit")
		f := filepath.Join(t.TempDir(), "keys")
		os.WriteFile(f, []byte("# the audit keys\n"+other+"\n"+string(vkey)), 0o644)
		out, errOut, code := auditRun(t, d.getenv, "audit", "verify", "--key-file", f)
		if code != 0 || !strings.Contains(out, "keys:       "+f+" (old-audit+") {
			t.Errorf("exit %d\n%s%s", code, out, errOut)
		}
	})
	t.Run("without a data dir key it takes AUDIT_SIGNING_KEY's", func(t *testing.T) {
		skey, _, _ := audit.GenerateKey("prod-audit")
		p := newAuditData(t, map[string]string{"AUDIT_SIGNING_KEY": skey})
		p.append(t, 3)
		if _, err := os.Stat(filepath.Join(p.dir, "audit", audit.VerifierKeyFile)); !os.IsNotExist(err) {
			t.Fatalf("a verify.key beside AUDIT_SIGNING_KEY (stat: %v)", err)
		}
		out, errOut, code := auditRun(t, p.getenv, "audit", "verify")
		if code != 0 || !strings.Contains(out, "keys:       AUDIT_SIGNING_KEY (prod-audit+") || !strings.Contains(out, "intact: 3 records") {
			t.Errorf("exit %d\n%s%s", code, out, errOut)
		}
		delete(p.vars, "AUDIT_SIGNING_KEY")
		if out, errOut, code := auditRun(t, p.getenv, "audit", "verify"); code != 1 || !strings.Contains(errOut, "no verifier key") {
			t.Errorf("no key anywhere: exit %d\n%s%s", code, out, errOut)
		}
	})
}

func TestAuditVerifyNamesTheAlteredRecordOfATamperedCopy(t *testing.T) {
	d := newAuditData(t, nil)
	d.append(t, 60)
	for _, seq := range []int{0, 17, 59} {
		t.Run(fmt.Sprintf("a byte flipped in record %d", seq), func(t *testing.T) {
			cp := copyDB(t, d.db())
			db := rawDB(t, cp)
			if _, err := db.Exec(`DROP TRIGGER audit_records_no_update`); err != nil {
				t.Fatal(err)
			}
			var entry []byte
			if err := db.QueryRow(`SELECT entry FROM audit_records WHERE seq = ?`, seq).Scan(&entry); err != nil {
				t.Fatal(err)
			}
			i := bytes.Index(entry, []byte("user-"))
			entry[i] ^= 0x01 // "user-" → "tser-": still valid JSON
			if _, err := db.Exec(`UPDATE audit_records SET entry = ? WHERE seq = ?`, entry, seq); err != nil {
				t.Fatal(err)
			}
			db.Close()
			out, errOut, code := auditRun(t, d.getenv, "audit", "verify", "--db", cp)
			if code != 1 {
				t.Fatalf("exit %d, want 1\n%s%s", code, out, errOut)
			}
			if want := fmt.Sprintf("first bad:  record %d\n", seq); !strings.Contains(out, "NOT INTACT (record)") || !strings.Contains(out, want) {
				t.Errorf("stdout lacks the record problem and %q:\n%s", want, out)
			}
			if want := fmt.Sprintf("unhidra: the audit log is not intact: record at record %d\n", seq); errOut != want {
				t.Errorf("stderr = %q, want %q", errOut, want)
			}
		})
	}
	t.Run("the original still verifies", func(t *testing.T) {
		if out, errOut, code := auditRun(t, d.getenv, "audit", "verify"); code != 0 {
			t.Errorf("exit %d\n%s%s", code, out, errOut)
		}
	})
}

func TestAuditVerifyReportsARollbackToAnOlderCopy(t *testing.T) {
	d := newAuditData(t, nil)
	d.append(t, 40)
	older := copyDB(t, d.db())
	d.append(t, 25)
	cpFile := filepath.Join(t.TempDir(), "saved.checkpoint")
	b, err := os.ReadFile(filepath.Join(d.dir, "audit", audit.CheckpointFile))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(cpFile, b, 0o644)

	t.Run("the older copy against the later checkpoint", func(t *testing.T) {
		out, errOut, code := auditRun(t, d.getenv, "audit", "verify", "--db", older, "--checkpoint", cpFile)
		if code != 1 || !strings.Contains(out, "NOT INTACT (rollback)") || !strings.Contains(out, "records 40..64") || !strings.Contains(out, "checkpoint: "+cpFile) {
			t.Errorf("exit %d\n%s%s", code, out, errOut)
		}
	})
	t.Run("the older copy against the data dir's checkpoint, by default", func(t *testing.T) {
		if out, errOut, code := auditRun(t, d.getenv, "audit", "verify", "--db", older); code != 1 || !strings.Contains(out, "rollback") {
			t.Errorf("exit %d\n%s%s", code, out, errOut)
		}
	})
	t.Run("the older copy alone is intact", func(t *testing.T) {
		if out, errOut, code := auditRun(t, d.getenv, "audit", "verify", "--db", older, "--checkpoint", "none"); code != 0 || !strings.Contains(out, "intact: 40 records") {
			t.Errorf("exit %d\n%s%s", code, out, errOut)
		}
	})
	t.Run("the current database contains the checkpoint", func(t *testing.T) {
		if out, errOut, code := auditRun(t, d.getenv, "audit", "verify", "--checkpoint", cpFile); code != 0 || !strings.Contains(out, "intact: 65 records") {
			t.Errorf("exit %d\n%s%s", code, out, errOut)
		}
	})
	t.Run("a checkpoint that is not validly signed is a problem of no record", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "bad.checkpoint")
		os.WriteFile(bad, bytes.Replace(b, []byte("\n65\n"), []byte("\n66\n"), 1), 0o644)
		out, errOut, code := auditRun(t, d.getenv, "audit", "verify", "--checkpoint", bad)
		if code != 1 || !strings.Contains(out, "NOT INTACT (checkpoint)") || !strings.Contains(out, "no record at fault") {
			t.Errorf("exit %d\n%s%s", code, out, errOut)
		}
	})
}

func TestAuditCommandsRefuseWhatIsNotAnAuditLog(t *testing.T) {
	d := newAuditData(t, nil)
	t.Run("no database: nothing is created", func(t *testing.T) {
		for _, sub := range []string{"verify", "export"} {
			out, errOut, code := auditRun(t, d.getenv, "audit", sub)
			if code != 1 || !strings.Contains(errOut, "no database at "+d.db()) {
				t.Errorf("%s: exit %d\n%s%s", sub, code, out, errOut)
			}
		}
		if _, err := os.Stat(d.dir); !os.IsNotExist(err) {
			t.Errorf("the data dir was created (stat: %v)", err)
		}
	})
	t.Run("a database without the audit tables is not migrated", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "old.db")
		db := rawDB(t, path)
		if _, err := db.Exec(`CREATE TABLE users (username TEXT)`); err != nil {
			t.Fatal(err)
		}
		db.Close()
		for _, sub := range []string{"verify", "export"} {
			out, errOut, code := auditRun(t, d.getenv, "audit", sub, "--db", path)
			if code != 1 || !strings.Contains(errOut, "has no audit log") {
				t.Errorf("%s: exit %d\n%s%s", sub, code, out, errOut)
			}
		}
		var n int
		if err := rawDB(t, path).QueryRow(`SELECT COUNT(*) FROM sqlite_master WHERE name LIKE 'audit%' OR name = 'schema_migrations'`).Scan(&n); err != nil || n != 0 {
			t.Errorf("the database was migrated: %d audit tables (%v)", n, err)
		}
	})
	t.Run("a PostgreSQL URL is refused", func(t *testing.T) {
		if out, errOut, code := auditRun(t, d.getenv, "audit", "verify", "--db", "postgres://db/unhidra"); code != 1 || !strings.Contains(errOut, "SQLite") {
			t.Errorf("exit %d\n%s%s", code, out, errOut)
		}
	})
}

func TestAuditExportWritesTheEntriesAndResumes(t *testing.T) {
	d := newAuditData(t, nil)
	d.append(t, 300)
	want, leaves := entries(t, d.db())
	lines := func(out string) []string {
		return strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	}
	t.Run("everything: each line is the stored entry, and hashes to its leaf", func(t *testing.T) {
		out, errOut, code := auditRun(t, d.getenv, "audit", "export")
		if code != 0 || errOut != "exported 300 records, next --from 300\n" {
			t.Fatalf("exit %d, stderr %q", code, errOut)
		}
		got := lines(out)
		if len(got) != len(want) {
			t.Fatalf("%d lines, want %d", len(got), len(want))
		}
		for i, l := range got {
			if l != string(want[i]) {
				t.Fatalf("line %d = %s\nwant %s", i, l, want[i])
			}
			if h := merkle.LeafHash([]byte(l)); !bytes.Equal(h[:], leaves[i]) {
				t.Errorf("line %d does not hash to its leaf", i)
			}
			if r, err := audit.DecodeRecord([]byte(l)); err != nil || r.Seq != uint64(i) {
				t.Errorf("line %d: %+v %v", i, r, err)
			}
		}
	})
	t.Run("in pieces: --from the next of the last run gives the same lines", func(t *testing.T) {
		var all []string
		from := "0"
		for _, to := range []string{"1", "120", "299", ""} {
			args := []string{"audit", "export", "--from", from}
			if to != "" {
				args = append(args, "--to", to)
			}
			out, errOut, code := auditRun(t, d.getenv, args...)
			if code != 0 {
				t.Fatalf("%v: exit %d %s", args, code, errOut)
			}
			m := regexp.MustCompile(`^exported (\d+) records, next --from (\d+)\n$`).FindStringSubmatch(errOut)
			if m == nil {
				t.Fatalf("stderr %q", errOut)
			}
			got := lines(out)
			if n, _ := strconv.Atoi(m[1]); n != len(got) {
				t.Errorf("%v: says %s records, wrote %d", args, m[1], len(got))
			}
			if to != "" && m[2] != to {
				t.Errorf("%v: next --from %s, want %s", args, m[2], to)
			}
			all = append(all, got...)
			from = m[2]
		}
		if from != "300" || len(all) != 300 {
			t.Fatalf("ended at --from %s with %d lines", from, len(all))
		}
		for i := range all {
			if all[i] != string(want[i]) {
				t.Fatalf("line %d differs from the entry", i)
			}
		}
		out, errOut, code := auditRun(t, d.getenv, "audit", "export", "--from", "300")
		if code != 0 || out != "" || errOut != "exported 0 records, next --from 300\n" {
			t.Errorf("past the end: exit %d %q %q", code, out, errOut)
		}
	})
}

func TestAuditKeygenPrintsAKeyTheServerLoads(t *testing.T) {
	out, errOut, code := auditRun(t, func(string) string { return "" }, "audit", "keygen", "--name", "acme-audit")
	if code != 0 {
		t.Fatalf("exit %d %s", code, errOut)
	}
	m := regexp.MustCompile(`^AUDIT_SIGNING_KEY=(PRIVATE\+KEY\+acme-audit\+\S+)\nAUDIT_VERIFIER_KEY=(acme-audit\+\S+)\n$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("stdout %q", out)
	}
	skey, vkey := m[1], m[2]
	signer, got, generated, err := audit.LoadSigner(skey, t.TempDir(), "ignored")
	if err != nil || generated || got != vkey || signer.Name() != "acme-audit" {
		t.Fatalf("LoadSigner: %v generated=%v vkey %q, want %q", err, generated, got, vkey)
	}
	if derived, err := audit.VerifierKey(skey); err != nil || derived != vkey {
		t.Errorf("VerifierKey = %q %v, want %q", derived, err, vkey)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := audit.SignCheckpoint(audit.Checkpoint{Origin: "acme-audit", Size: 1, Time: time.Now()}, signer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := audit.OpenCheckpoint(msg, note.VerifierList(v)); err != nil {
		t.Errorf("a checkpoint signed with the key does not open with the verifier key: %v", err)
	}
	again, _, _ := auditRun(t, func(string) string { return "" }, "audit", "keygen")
	if again == out || !strings.HasPrefix(again, "AUDIT_SIGNING_KEY=PRIVATE+KEY+"+platform.AuditKeyName+"+") {
		t.Errorf("a second key: %q", again)
	}
	if _, _, code := auditRun(t, func(string) string { return "" }, "audit", "keygen", "--name", "has space"); code != 2 {
		t.Errorf("a bad name: exit %d, want 2", code)
	}
}

func TestAuditHelpAndUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		name string
		want []string
	}{
		{[]string{"audit", "-h"}, "audit", []string{"verify", "export", "keygen", "UNHIDRA_DATA_DIR", "not themselves audited"}},
		{[]string{"audit", "help"}, "audit", nil},
		{[]string{"audit", "verify", "-h"}, "audit verify", []string{"-checkpoint", "-key", "-key-file", "-db", "exits 1", "not themselves audited", ".backup", "unhidra.db-wal"}},
		{[]string{"audit", "export", "--help"}, "audit export", []string{"-from", "-to", "next --from"}},
		{[]string{"audit", "keygen", "-h"}, "audit keygen", []string{"-name", "AUDIT_SIGNING_KEY"}},
		{[]string{"help", "audit", "verify"}, "audit verify", nil},
	} {
		t.Run(strings.Join(tc.args, " ")+" prints the usage of "+tc.name, func(t *testing.T) {
			out, errOut, err, dataDir := cliRun(t, tc.args...)
			if err != nil || errOut != "" {
				t.Fatalf("err = %v, stderr %q", err, errOut)
			}
			for _, w := range append([]string{"Usage: unhidra " + tc.name, "\nExamples:\n  unhidra " + tc.name}, tc.want...) {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
				t.Errorf("-h touched the data dir (stat: %v)", err)
			}
		})
	}
	for _, tc := range []struct {
		args []string
		cmd  string
	}{
		{[]string{"audit"}, "audit"},
		{[]string{"audit", "frobnicate"}, "audit"},
		{[]string{"audit", "verify", "extra"}, "audit verify"},
		{[]string{"audit", "verify", "--bogus"}, "audit verify"},
		{[]string{"audit", "verify", "--key", "not-a-key"}, "audit verify"},
		{[]string{"audit", "export", "--from", "x"}, "audit export"},
		{[]string{"audit", "export", "--from", "-1"}, "audit export"},
		{[]string{"audit", "export", "--from", "5", "--to", "5"}, "audit export"},
		{[]string{"audit", "keygen", "--name"}, "audit keygen"},
	} {
		t.Run(strings.Join(tc.args, " ")+" is a one-line mistake of "+tc.cmd, func(t *testing.T) {
			out, _, err, dataDir := cliRun(t, tc.args...)
			var printed bytes.Buffer
			if got := exitCode(err, &printed); got != 2 {
				t.Fatalf("exit %d, want 2 (err %v)", got, err)
			}
			hint := `run "unhidra ` + tc.cmd + ` -h" for usage`
			lines := strings.Split(strings.TrimSuffix(printed.String(), "\n"), "\n")
			if len(lines) != 2 || !strings.HasPrefix(lines[0], "unhidra "+tc.cmd+": ") || lines[1] != hint {
				t.Errorf("printed %q, want one line and %q", printed.String(), hint)
			}
			if out != "" {
				t.Errorf("stdout %q", out)
			}
			if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
				t.Errorf("a usage mistake touched the data dir (stat: %v)", err)
			}
		})
	}
}

// buildAuditDB writes n records to a new database at path the fast way:
// the store's AppendAudit in batches of 10,000, each with its tree nodes
// and a signed head, as the log's group commit would.
func buildAuditDB(t testing.TB, path string, n int, signer note.Signer) {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	st := sqlite.NewAuditStore(db)
	var tree merkle.Tree
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	const batch = 10000
	for start := 0; start < n; start += batch {
		b := &audit.Batch{}
		for i := start; i < min(start+batch, n); i++ {
			user := fmt.Sprintf("user-%d", i%5000)
			r := audit.NewRecord(audit.Complete(context.Background(), audit.Event{
				Time: t0.Add(time.Duration(i) * time.Millisecond), Action: audit.ActionLogin,
				Actor: wire.Principal{Kind: wire.KindUser, ID: user}, Target: user, IP: "203.0.113.7",
				Transport: audit.TransportHTTP, RequestID: fmt.Sprintf("%016x", i*2654435761),
			}, t0))
			if i%10 == 0 {
				r.Outcome, r.Reason = audit.Failure, "bad password"
			}
			r.Seq = uint64(i)
			entry, err := r.Encode()
			if err != nil {
				t.Fatal(err)
			}
			leaf := merkle.LeafHash(entry)
			tree.Append(leaf, func(id merkle.NodeID, h merkle.Hash) { b.Nodes = append(b.Nodes, audit.Node{ID: id, Hash: h}) })
			b.Rows = append(b.Rows, audit.Row{Seq: r.Seq, Time: r.Time, ActorKind: r.Actor.Kind, ActorID: r.Actor.ID, Action: r.Action, Target: r.Target, Outcome: r.Outcome, Entry: entry, Leaf: leaf})
		}
		cp := audit.Checkpoint{Origin: signer.Name(), Size: tree.Size(), Root: tree.Root(), Time: t0.Add(time.Duration(tree.Size()) * time.Millisecond)}
		msg, err := audit.SignCheckpoint(cp, signer)
		if err != nil {
			t.Fatal(err)
		}
		b.Head = audit.Head{Size: cp.Size, Root: cp.Root, Time: cp.Time, Note: msg}
		if err := st.AppendAudit(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
}

// TestVolumeAuditVerifySpeed measures `unhidra audit verify` on one core
// (GOMAXPROCS=1): over 100,000 and 1,000,000 records in make check's
// volume step (UNHIDRA_VOLUME=1, without -race, which slows the embedded
// SQLite twentyfold), over 5,000 otherwise. It prints the figures
// (t.Logf); it asserts only that the log verifies.
func TestVolumeAuditVerifySpeed(t *testing.T) {
	sizes := []int{5_000}
	if os.Getenv("UNHIDRA_VOLUME") != "" {
		sizes = []int{100_000, 1_000_000}
	}
	skey, vkey, err := audit.GenerateKey("bench-audit")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range sizes {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "unhidra.db")
			start := time.Now()
			buildAuditDB(t, path, n, signer)
			built := time.Since(start)
			getenv := func(k string) string {
				if k == "UNHIDRA_DATA_DIR" {
					return filepath.Dir(path)
				}
				return ""
			}
			prev := runtime.GOMAXPROCS(1)
			var ru0, ru1 syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
			out, errOut, code := auditRun(t, getenv, "audit", "verify", "--db", path, "--key", vkey, "--checkpoint", "none")
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
			runtime.GOMAXPROCS(prev)
			cpu := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
			if code != 0 || !strings.Contains(out, fmt.Sprintf("intact: %d records", n)) {
				t.Fatalf("exit %d\n%s%s", code, out, errOut)
			}
			sc := bufio.NewScanner(strings.NewReader(out))
			for sc.Scan() {
				if strings.HasPrefix(sc.Text(), "intact:") {
					t.Logf("built %d records in %s; GOMAXPROCS=1 %s; process CPU time %s: %.0f records per CPU second", n, built.Round(time.Millisecond), sc.Text(), cpu.Round(time.Millisecond), float64(n)/cpu.Seconds())
				}
			}
		})
	}
}
