package audit_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/unhidra/unhidra/internal/audit"
	"github.com/unhidra/unhidra/internal/audit/merkle"
	"github.com/unhidra/unhidra/internal/e2etest"
	"github.com/unhidra/unhidra/internal/sqlite"
	"github.com/unhidra/unhidra/wire"
	"golang.org/x/mod/sumdb/note"
)

// env is an audit log on a real, migrated SQLite database.
type env struct {
	db     *sqlite.DB
	st     *sqlite.AuditStore
	signer note.Signer
	vkey   string
	dir    string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	dir := t.TempDir()
	db, err := sqlite.Open(context.Background(), filepath.Join(dir, "unhidra.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	s, vkey, _, err := audit.LoadSigner("", filepath.Join(dir, "audit"), "unhidra-test")
	if err != nil {
		t.Fatal(err)
	}
	return &env{db: db, st: sqlite.NewAuditStore(db), signer: s, vkey: vkey, dir: dir}
}

func (e *env) open(t testing.TB) *audit.Log {
	t.Helper()
	l, err := audit.Open(context.Background(), e.st, audit.Options{Signer: e.signer, Dir: filepath.Join(e.dir, "audit")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func (e *env) verifiers(t testing.TB) note.Verifiers {
	v, err := note.NewVerifier(e.vkey)
	if err != nil {
		t.Fatal(err)
	}
	return note.VerifierList(v)
}

func (e *env) verify(t testing.TB, checkpoint []byte) *audit.Report {
	t.Helper()
	rep, err := audit.Verify(context.Background(), e.st, audit.VerifyOptions{Verifiers: e.verifiers(t), Checkpoint: checkpoint})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func event(i int) audit.Event {
	return audit.Event{Action: audit.ActionLogin, Actor: wire.Principal{Kind: wire.KindUser, ID: fmt.Sprintf("user%d", i%97)}, IP: "192.0.2.7", Outcome: audit.Success, Transport: audit.TransportHTTP, RequestID: fmt.Sprintf("req-%d", i)}
}

// appendN appends n events from conc goroutines through l.
func appendN(l *audit.Log, n, conc int) {
	var wg sync.WaitGroup
	ch := make(chan int)
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ch {
				l.Audit(context.Background(), event(i))
			}
		}()
	}
	for i := range n {
		ch <- i
	}
	close(ch)
	wg.Wait()
}

func TestLogAppendsDurablyAndVerifies(t *testing.T) {
	e := newEnv(t)
	l := e.open(t)
	appendN(l, 2000, 64)
	h := l.Head()
	if h.Size != 2000 {
		t.Fatalf("head size %d, want 2000", h.Size)
	}
	rep := e.verify(t, nil)
	if rep.Problem != nil {
		t.Fatalf("intact log reported: %v", rep.Problem)
	}
	if rep.Records != 2000 || rep.Root != h.Root || rep.Last == nil || rep.Last.Size != 2000 {
		t.Fatalf("report %+v, want 2000 records ending in head %x", rep, h.Root)
	}
	// Every record's inclusion proof verifies against the signed root.
	reader := func(ids []merkle.NodeID) ([]merkle.Hash, error) { return e.st.AuditNodes(context.Background(), ids) }
	for _, i := range []uint64{0, 1, 2, 1023, 1024, 1999} {
		p, err := merkle.InclusionProof(reader, i, h.Size)
		if err != nil {
			t.Fatal(err)
		}
		leaf, _ := e.st.AuditNodes(context.Background(), []merkle.NodeID{{Level: 0, Index: i}})
		if err := merkle.VerifyInclusion(leaf[0], i, h.Size, p, h.Root); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
}

// TestHostileInputIsStoredEscapedAndBounded: CR/LF, ANSI escapes, quotes
// and braces, invalid UTF-8, credential-shaped strings and 1 MiB values in
// every client-chosen field become one bounded record each, which decodes
// back, holds no raw control byte and no credential.
func TestHostileInputIsStoredEscapedAndBounded(t *testing.T) {
	e := newEnv(t)
	l := e.open(t)
	huge := strings.Repeat("A", 1<<20)
	nasty := "evil\r\n{\"action\":\"forged\"}\x1b[31mred\x1b[0m\"\\\x00\xff\u2028"
	details := map[string]string{"name": huge, "why": nasty, nasty: "key", "token": "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"}
	for i := range 40 {
		details[fmt.Sprintf("k%02d", i)] = "v"
	}
	events := []audit.Event{
		{Action: audit.ActionLogin, Actor: wire.Principal{Kind: wire.KindUser, ID: huge}, Outcome: audit.Failure, Reason: nasty},
		{Action: audit.ActionChannelCreate, Actor: wire.Principal{Kind: wire.KindUser, ID: nasty}, Target: huge, Details: details},
		{Action: audit.ActionDeviceRegister, Actor: wire.Principal{Kind: wire.KindUser, ID: "alice"}, Target: "unhidra_dk_0123456789abcdef", Reason: huge, RequestID: huge, IP: nasty},
	}
	for _, ev := range events {
		l.Audit(context.Background(), ev)
	}
	rows, err := e.st.AuditRows(context.Background(), audit.Query{After: -1, Before: -1})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(events) {
		t.Fatalf("%d records for %d events", len(rows), len(events))
	}
	for _, r := range rows {
		if len(r.Entry) > 16<<10 {
			t.Errorf("record %d is %d bytes", r.Seq, len(r.Entry))
		}
		for _, c := range r.Entry {
			if c < 0x20 {
				t.Errorf("record %d holds the raw control byte %#x: %q", r.Seq, c, r.Entry)
				break
			}
		}
		for _, secret := range []string{"unhidra_dk_0123456789abcdef", "eyJhbGciOiJIUzI1NiJ9"} {
			if strings.Contains(string(r.Entry), secret) {
				t.Errorf("record %d holds the credential %s", r.Seq, secret)
			}
		}
		rec, err := audit.DecodeRecord(r.Entry)
		if err != nil {
			t.Fatalf("record %d: %v", r.Seq, err)
		}
		if len(rec.Actor.ID) > audit.MaxActorID || len(rec.Target) > audit.MaxTarget || len(rec.Reason) > audit.MaxReason || len(rec.Details) > audit.MaxDetails {
			t.Errorf("record %d is not bounded: %+v", r.Seq, rec)
		}
		for k, v := range rec.Details {
			if len(k) > audit.MaxDetailKey || len(v) > audit.MaxDetailVal {
				t.Errorf("record %d detail %q is not bounded", r.Seq, k)
			}
		}
	}
	first, _ := audit.DecodeRecord(rows[0].Entry)
	if !strings.Contains(first.Actor.ID, "bytes]") || first.Reason != audit.NewRecord(events[0]).Reason {
		t.Errorf("the cut is not marked: %q", first.Actor.ID[len(first.Actor.ID)-20:])
	}
	if !strings.Contains(first.Reason, "\r\n{\"action\":\"forged\"}\x1b[31m") {
		t.Errorf("the reason was not kept as sent: %q", first.Reason)
	}
	second, _ := audit.DecodeRecord(rows[1].Entry)
	if second.Details["truncated"] == "" {
		t.Errorf("dropped details not counted: %v", second.Details)
	}
	if rep := e.verify(t, nil); rep.Problem != nil || rep.Records != 3 {
		t.Fatalf("verify: %d records, %v", rep.Records, rep.Problem)
	}
}

// TestAFailedAppendIsNeverSilent: with the database gone, an event is
// written to the process log at error level, counted, and reported by Err;
// the log appends again once the store answers.
func TestAFailedAppendIsNeverSilent(t *testing.T) {
	e := newEnv(t)
	var buf e2etest.SyncBuffer
	reg := prometheus.NewRegistry()
	l, err := audit.Open(context.Background(), e.st, audit.Options{Signer: e.signer, Log: slog.New(slog.NewTextHandler(&buf, nil)), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Audit(context.Background(), event(1))
	if l.Err() != nil {
		t.Fatal(l.Err())
	}
	e.db.Close()
	l.Audit(context.Background(), audit.Event{Action: audit.ActionDeviceRevoke, Actor: wire.Principal{Kind: wire.KindUser, ID: "alice"}, Target: "gh-7"})
	if l.Err() == nil {
		t.Fatal("Err is nil after a failed append")
	}
	out := buf.String()
	if !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "audit record NOT stored") || !strings.Contains(out, `gh-7`) {
		t.Fatalf("the lost record is not in the process log:\n%s", out)
	}
	if got := testutil.ToFloat64(counter(t, reg, "unhidra_audit_append_errors_total")); got != 1 {
		t.Fatalf("append errors %v, want 1", got)
	}
	if h := l.Head(); h.Size != 1 {
		t.Fatalf("head size %d after the failure, want 1", h.Size)
	}
}

// TestReopenedLogContinuesAndStaysConsistent: a log closed and opened
// again appends after its last record, and every earlier checkpoint is
// consistent with the later tree (a consistency proof verifies).
func TestReopenedLogContinuesAndStaysConsistent(t *testing.T) {
	e := newEnv(t)
	var heads []audit.Head
	for round := range 4 {
		l := e.open(t)
		appendN(l, 100+round*37, 8)
		heads = append(heads, l.Head())
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	last := heads[len(heads)-1]
	if rep := e.verify(t, nil); rep.Problem != nil || rep.Records != last.Size {
		t.Fatalf("verify: %d records, %v", rep.Records, rep.Problem)
	}
	reader := func(ids []merkle.NodeID) ([]merkle.Hash, error) { return e.st.AuditNodes(context.Background(), ids) }
	for _, h := range heads[:len(heads)-1] {
		cp, err := audit.OpenCheckpoint(h.Note, e.verifiers(t))
		if err != nil {
			t.Fatal(err)
		}
		proof, err := merkle.ConsistencyProof(reader, cp.Size, last.Size)
		if err != nil {
			t.Fatal(err)
		}
		if err := merkle.VerifyConsistency(cp.Size, last.Size, cp.Root, last.Root, proof); err != nil {
			t.Fatalf("checkpoint of %d: %v", cp.Size, err)
		}
	}
	// The checkpoint file is the last head.
	file, err := os.ReadFile(filepath.Join(e.dir, "audit", audit.CheckpointFile))
	if err != nil || string(file) != string(last.Note) {
		t.Fatalf("checkpoint file %q (%v), want the last head", file, err)
	}
}

// TestTwoProcessesAppendToOneLog: two logs on one database (the server
// and an administration command) interleave without losing a record.
func TestTwoProcessesAppendToOneLog(t *testing.T) {
	e := newEnv(t)
	db2, err := sqlite.Open(context.Background(), e.db.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	a := e.open(t)
	b, err := audit.Open(context.Background(), sqlite.NewAuditStore(db2), audit.Options{Signer: e.signer})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var wg sync.WaitGroup
	for _, l := range []*audit.Log{a, b} {
		wg.Add(1)
		go func() { defer wg.Done(); appendN(l, 300, 4) }()
	}
	wg.Wait()
	if rep := e.verify(t, nil); rep.Problem != nil || rep.Records != 600 {
		t.Fatalf("verify: %d records, %v", rep.Records, rep.Problem)
	}
}

func counter(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: "copy"})
			c.Add(mf.GetMetric()[0].GetCounter().GetValue())
			return c
		}
	}
	t.Fatalf("no metric %s", name)
	return nil
}
