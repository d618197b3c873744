package audit_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/audit"
	"github.com/unhidra/unhidra/internal/audit/merkle"
	"github.com/unhidra/unhidra/internal/sqlite"
	"github.com/unhidra/unhidra/wire"
)

// tamperSize is the size of the log the tamper trials alter (AUD-2):
// 100,000 records in make check's volume step (UNHIDRA_VOLUME=1, without
// -race, which slows the embedded SQLite twentyfold), 4,000 otherwise.
func tamperSize() int {
	if os.Getenv("UNHIDRA_VOLUME") != "" {
		return 100_000
	}
	return 4_000
}

// copyDB writes a consistent copy of e's database (VACUUM INTO) and opens
// it, with the append-only triggers dropped: an attacker with the file.
func copyDB(t *testing.T, e *env, name string) (*sqlite.DB, *sqlite.AuditStore) {
	t.Helper()
	path := filepath.Join(t.TempDir(), name+".db")
	if _, err := e.db.Writer().Exec(`VACUUM INTO ?`, path); err != nil {
		t.Fatal(err)
	}
	db, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	for _, tr := range []string{"audit_records_no_update", "audit_records_no_delete", "audit_records_no_replace", "audit_nodes_no_update", "audit_nodes_no_delete", "audit_nodes_no_replace", "audit_heads_no_update", "audit_heads_no_delete", "audit_heads_no_replace"} {
		if _, err := db.Writer().Exec(`DROP TRIGGER ` + tr); err != nil {
			t.Fatal(err)
		}
	}
	return db, sqlite.NewAuditStore(db)
}

func execSQL(t *testing.T, db *sqlite.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Writer().Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func entryOf(t *testing.T, db *sqlite.DB, seq int) []byte {
	t.Helper()
	var b []byte
	if err := db.Writer().QueryRow(`SELECT entry FROM audit_records WHERE seq = ?`, seq).Scan(&b); err != nil {
		t.Fatal(err)
	}
	return b
}

func forgedEntry(t *testing.T, seq int) []byte {
	t.Helper()
	r := audit.NewRecord(audit.Event{Time: time.Unix(1_800_000_000, 0), Action: audit.ActionLogin, Actor: wire.Principal{Kind: wire.KindUser, ID: "mallory"}, Outcome: audit.Success})
	r.Seq = uint64(seq)
	b, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// flipInRequestID flips a bit of a byte of the entry's request id: a
// field no column copies.
func flipInRequestID(t *testing.T, b []byte) []byte {
	t.Helper()
	i := strings.Index(string(b), `"request_id":"req-`)
	if i < 0 {
		t.Fatalf("no request id in %s", b)
	}
	b[i+len(`"request_id":"req-`)] ^= 0x01
	return b
}

func leaf(b []byte) []byte { h := merkle.LeafHash(b); return h[:] }

// TestVolumeTamperingIsFoundAndLocated is AUD-2: on a log of 100,000 records,
// each kind of alteration someone holding the database file can make is
// found by Verify, which names the first bad record (exactly when the
// alteration left a record's own hash or columns wrong, otherwise the
// range of one group commit or tree node that contains it).
func TestVolumeTamperingIsFoundAndLocated(t *testing.T) {
	n := tamperSize()
	// at is the record at fraction f of the log.
	at := func(f float64) int { return int(float64(n) * f) }
	e := newEnv(t)
	l := e.open(t)
	appendN(l, n/2, 256)
	older := filepath.Join(t.TempDir(), "older.db")
	if _, err := e.db.Writer().Exec(`VACUUM INTO ?`, older); err != nil {
		t.Fatal(err)
	}
	appendN(l, n-n/2, 256)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	checkpoint, err := os.ReadFile(filepath.Join(e.dir, "audit", audit.CheckpointFile))
	if err != nil {
		t.Fatal(err)
	}
	if rep := e.verify(t, checkpoint); rep.Problem != nil || rep.Records != uint64(n) {
		t.Fatalf("the untouched log: %d records, problem %v", rep.Records, rep.Problem)
	}

	type want struct {
		kind      string
		seq       int  // the altered record
		exact     bool // located to exactly seq (else to a range holding it)
		withCheck bool // verified against the checkpoint file
	}
	trials := []struct {
		name   string
		tamper func(t *testing.T, db *sqlite.DB)
		want   want
	}{
		{"byte flip in an entry", func(t *testing.T, db *sqlite.DB) {
			b := flipInRequestID(t, entryOf(t, db, at(0.54321)))
			execSQL(t, db, `UPDATE audit_records SET entry = ? WHERE seq = ?`, b, at(0.54321))
		}, want{audit.ProblemRecord, at(0.54321), true, false}},
		{"byte flip with its leaf hash recomputed", func(t *testing.T, db *sqlite.DB) {
			b := flipInRequestID(t, entryOf(t, db, at(0.54321)))
			execSQL(t, db, `UPDATE audit_records SET entry = ?, leaf = ? WHERE seq = ?`, b, leaf(b), at(0.54321))
		}, want{audit.ProblemNodes, at(0.54321), false, false}},
		{"byte flip in a stored leaf hash", func(t *testing.T, db *sqlite.DB) {
			execSQL(t, db, `UPDATE audit_records SET leaf = ? WHERE seq = 12`, leaf([]byte("x")))
		}, want{audit.ProblemRecord, 12, true, false}},
		{"a searchable column changed", func(t *testing.T, db *sqlite.DB) {
			execSQL(t, db, `UPDATE audit_records SET action = 'logout' WHERE seq = 99`)
		}, want{audit.ProblemRecord, 99, true, false}},
		{"deletion", func(t *testing.T, db *sqlite.DB) {
			execSQL(t, db, `DELETE FROM audit_records WHERE seq = ?`, at(0.00777))
		}, want{audit.ProblemMissing, at(0.00777), true, false}},
		{"swap of two records", func(t *testing.T, db *sqlite.DB) {
			a, b := entryOf(t, db, at(0.01)), entryOf(t, db, at(0.02))
			execSQL(t, db, `UPDATE audit_records SET entry = ?, leaf = ? WHERE seq = ?`, b, leaf(b), at(0.01))
			execSQL(t, db, `UPDATE audit_records SET entry = ?, leaf = ? WHERE seq = ?`, a, leaf(a), at(0.02))
		}, want{audit.ProblemRecord, at(0.01), true, false}},
		{"forged record in place of one", func(t *testing.T, db *sqlite.DB) {
			f := forgedEntry(t, at(0.05))
			execSQL(t, db, `DELETE FROM audit_records WHERE seq = ?`, at(0.05))
			execSQL(t, db, `INSERT INTO audit_records (seq, ts, actor_kind, actor_id, action, target, outcome, entry, leaf) VALUES (?, ?, 'user', 'mallory', 'login', '', 'success', ?, ?)`,
				at(0.05), time.Unix(1_800_000_000, 0).UnixNano(), f, leaf(f))
		}, want{audit.ProblemNodes, at(0.05), false, false}},
		{"forged record appended", func(t *testing.T, db *sqlite.DB) {
			f := forgedEntry(t, n)
			execSQL(t, db, `INSERT INTO audit_records (seq, ts, actor_kind, actor_id, action, target, outcome, entry, leaf) VALUES (?, ?, 'user', 'mallory', 'login', '', 'success', ?, ?)`,
				n, time.Unix(1_800_000_000, 0).UnixNano(), f, leaf(f))
		}, want{audit.ProblemUnsigned, n, false, false}},
		{"truncation of the last records", func(t *testing.T, db *sqlite.DB) {
			execSQL(t, db, `DELETE FROM audit_records WHERE seq >= ?`, n-10)
		}, want{audit.ProblemTruncated, n - 10, false, false}},
		{"truncation with its heads and nodes, against the checkpoint", func(t *testing.T, db *sqlite.DB) {
			execSQL(t, db, `DELETE FROM audit_records WHERE seq >= ?`, at(0.9))
			execSQL(t, db, `DELETE FROM audit_nodes WHERE size > ?`, at(0.9))
			execSQL(t, db, `DELETE FROM audit_heads WHERE size > ?`, at(0.9))
			// The log must still end in a head: cut to the last one.
			var last int
			if err := db.Writer().QueryRow(`SELECT MAX(size) FROM audit_heads`).Scan(&last); err != nil {
				t.Fatal(err)
			}
			execSQL(t, db, `DELETE FROM audit_records WHERE seq >= ?`, last)
			execSQL(t, db, `DELETE FROM audit_nodes WHERE size > ?`, last)
		}, want{audit.ProblemRollback, at(0.9) - 1, false, true}},
		{"a signed head's root changed", func(t *testing.T, db *sqlite.DB) {
			execSQL(t, db, `UPDATE audit_heads SET root = ? WHERE size = (SELECT MIN(size) FROM audit_heads WHERE size > ?)`, leaf([]byte("y")), at(0.6))
		}, want{audit.ProblemHead, at(0.6), false, false}},
		{"the last head's signature forged", func(t *testing.T, db *sqlite.DB) {
			var size int
			var note string
			if err := db.Writer().QueryRow(`SELECT size, note FROM audit_heads ORDER BY size DESC LIMIT 1`).Scan(&size, &note); err != nil {
				t.Fatal(err)
			}
			i := strings.LastIndex(note, " ") + 5
			forged := note[:i] + string(rune('A'+(note[i]-'A'+1)%26)) + note[i+1:]
			execSQL(t, db, `UPDATE audit_heads SET note = ? WHERE size = ?`, forged, size)
		}, want{audit.ProblemHead, n - 1, false, false}},
	}
	for _, tr := range trials {
		t.Run(tr.name, func(t *testing.T) {
			db, st := copyDB(t, e, "trial")
			tr.tamper(t, db)
			var cp []byte
			if tr.want.withCheck {
				cp = checkpoint
			}
			rep, err := audit.Verify(context.Background(), st, audit.VerifyOptions{Verifiers: e.verifiers(t), Checkpoint: cp})
			if err != nil {
				t.Fatal(err)
			}
			p := rep.Problem
			if p == nil {
				t.Fatalf("not found (%d records verified)", rep.Records)
			}
			t.Logf("%s: %s (records %d..%d)", p.Kind, p.Msg, p.Seq, p.Last)
			if p.Kind != tr.want.kind {
				t.Fatalf("kind %q, want %q", p.Kind, tr.want.kind)
			}
			seq := int64(tr.want.seq)
			if tr.want.exact && (p.Seq != seq || p.Last != seq) {
				t.Fatalf("located at %d..%d, want exactly %d", p.Seq, p.Last, tr.want.seq)
			}
			if !tr.want.exact && (p.Seq > seq || p.Last < seq) {
				t.Fatalf("located at %d..%d, which does not hold %d", p.Seq, p.Last, tr.want.seq)
			}
		})
	}

	t.Run("restore of an older copy", func(t *testing.T) {
		db, err := sqlite.Open(context.Background(), older)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		st := sqlite.NewAuditStore(db)
		// On its own the older copy is a valid, shorter log …
		rep, err := audit.Verify(context.Background(), st, audit.VerifyOptions{Verifiers: e.verifiers(t)})
		if err != nil || rep.Problem != nil {
			t.Fatalf("older copy alone: %v %v", err, rep.Problem)
		}
		// … which the checkpoint kept outside it exposes.
		rep, err = audit.Verify(context.Background(), st, audit.VerifyOptions{Verifiers: e.verifiers(t), Checkpoint: checkpoint})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Problem == nil || rep.Problem.Kind != audit.ProblemRollback || rep.Problem.Seq != int64(rep.Records) {
			t.Fatalf("older copy against the checkpoint: %+v", rep.Problem)
		}
		t.Logf("%s: %s", rep.Problem.Kind, rep.Problem.Msg)
	})
}

// TestTheStoreRefusesUpdateAndDelete is AUD-3 for SQLite: no statement can
// change or remove a record, a node or a head.
func TestTheStoreRefusesUpdateAndDelete(t *testing.T) {
	e := newEnv(t)
	l := e.open(t)
	appendN(l, 10, 1)
	for _, q := range []string{
		`UPDATE audit_records SET action = 'x' WHERE seq = 3`,
		`UPDATE audit_records SET entry = entry`,
		`DELETE FROM audit_records WHERE seq = 9`,
		`DELETE FROM audit_records`,
		`UPDATE audit_nodes SET hash = hash`,
		`DELETE FROM audit_nodes`,
		`UPDATE audit_heads SET note = ''`,
		`DELETE FROM audit_heads`,
		`INSERT OR REPLACE INTO audit_records SELECT * FROM audit_records WHERE seq = 1`,
		`REPLACE INTO audit_heads SELECT * FROM audit_heads`,
	} {
		_, err := e.db.Writer().Exec(q)
		if err == nil {
			t.Errorf("%s: accepted", q)
			continue
		}
		if !strings.Contains(err.Error(), "append-only") && !strings.Contains(err.Error(), "constraint") {
			t.Errorf("%s: %v, want the append-only refusal", q, err)
		}
	}
	if rep := e.verify(t, nil); rep.Problem != nil || rep.Records != 10 {
		t.Fatalf("after the refused statements: %d records, %v", rep.Records, rep.Problem)
	}
	var n int
	if err := e.db.Reader().QueryRow(`SELECT COUNT(*) FROM audit_records WHERE action = 'login'`).Scan(&n); err != nil || n != 10 {
		t.Fatalf("records %d, %v", n, err)
	}
}
