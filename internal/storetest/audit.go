package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/audit"
	"github.com/unhidra/unhidra/internal/audit/merkle"
	"github.com/unhidra/unhidra/wire"
	"golang.org/x/mod/sumdb/note"
)

// AuditStores is an audit store under test and a way to run raw
// statements on its database (the append-only rule is the database's,
// not only the store's).
type AuditStores struct {
	Store audit.Store
	// Exec runs one statement of the store's SQL on its database.
	Exec func(stmt string) error
}

// Audit runs the audit.Store contract against fresh stores from open.
func Audit(t *testing.T, open func(t *testing.T) AuditStores) {
	for name, fn := range map[string]func(*testing.T, AuditStores){
		"AppendAndRead":      testAuditAppendAndRead,
		"RefusesGapsAndDups": testAuditRefusesGaps,
		"Query":              testAuditQuery,
		"Snapshot":           testAuditSnapshot,
		"AppendOnly":         testAuditAppendOnly,
	} {
		t.Run(name, func(t *testing.T) { fn(t, open(t)) })
	}
}

func auditSigner(t *testing.T) (note.Signer, note.Verifiers) {
	t.Helper()
	skey, vkey, err := audit.GenerateKey("storetest")
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return s, note.VerifierList(v)
}

// fillAudit appends n records through the log, as the server does.
func fillAudit(t *testing.T, st audit.Store, n int) *audit.Log {
	t.Helper()
	s, _ := auditSigner(t)
	base := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	l, err := audit.Open(context.Background(), st, audit.Options{Signer: s})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	for j := range n {
		outcome := audit.Success
		if j%3 == 0 {
			outcome = audit.Failure
		}
		if _, err := l.Append(context.Background(), audit.Event{Time: base.Add(time.Duration(j+1) * time.Second), Action: []string{audit.ActionLogin, audit.ActionLogout}[j%2], Actor: wire.Principal{Kind: wire.KindUser, ID: fmt.Sprintf("u%d", j%4)}, Target: fmt.Sprintf("t%d", j%5), Outcome: outcome}); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

func testAuditAppendAndRead(t *testing.T, s AuditStores) {
	ctx := context.Background()
	h, err := s.Store.AuditHead(ctx)
	if err != nil || h.Size != 0 {
		t.Fatalf("empty store head %+v, %v", h, err)
	}
	l := fillAudit(t, s.Store, 37)
	h, err = s.Store.AuditHead(ctx)
	if err != nil || h.Size != 37 || h.Root != l.Head().Root || string(h.Note) != string(l.Head().Note) {
		t.Fatalf("head %+v, %v; want the log's of 37", h, err)
	}
	// Every node a proof or a reopen asks for is there, leaves included.
	ids := append(merkle.Edge(37), merkle.NodeID{Level: 0, Index: 36}, merkle.NodeID{Level: 0, Index: 0}, merkle.NodeID{Level: 5, Index: 0})
	hs, err := s.Store.AuditNodes(ctx, ids)
	if err != nil || len(hs) != len(ids) {
		t.Fatalf("nodes: %d, %v", len(hs), err)
	}
	reader := func(ids []merkle.NodeID) ([]merkle.Hash, error) { return s.Store.AuditNodes(ctx, ids) }
	root, err := merkle.RootAt(reader, 37)
	if err != nil || root != h.Root {
		t.Fatalf("root from the stored nodes %v (%v), want the head's", root, err)
	}
	if _, err := s.Store.AuditNodes(ctx, []merkle.NodeID{{Level: 0, Index: 37}}); unhidra.ErrorCode(err) != unhidra.ENOTFOUND {
		t.Fatalf("a leaf beyond the log: %v, want not_found", err)
	}
	if _, err := s.Store.AuditNodes(ctx, []merkle.NodeID{{Level: 6, Index: 0}}); unhidra.ErrorCode(err) != unhidra.ENOTFOUND {
		t.Fatalf("a node not completed: %v, want not_found", err)
	}
}

func testAuditRefusesGaps(t *testing.T, s AuditStores) {
	ctx := context.Background()
	fillAudit(t, s.Store, 3)
	row := audit.Row{Seq: 5, Time: time.Now(), ActorKind: "user", ActorID: "x", Action: "login", Outcome: "success", Entry: []byte("{}"), Leaf: merkle.LeafHash([]byte("{}"))}
	err := s.Store.AppendAudit(ctx, &audit.Batch{Rows: []audit.Row{row}, Head: audit.Head{Size: 6, Time: time.Now(), Note: []byte("x")}})
	if unhidra.ErrorCode(err) != unhidra.ECONFLICT {
		t.Fatalf("a batch after a gap: %v, want conflict", err)
	}
	row.Seq = 2
	err = s.Store.AppendAudit(ctx, &audit.Batch{Rows: []audit.Row{row}, Head: audit.Head{Size: 3, Time: time.Now(), Note: []byte("x")}})
	if unhidra.ErrorCode(err) != unhidra.ECONFLICT {
		t.Fatalf("a batch over stored records: %v, want conflict", err)
	}
	if h, _ := s.Store.AuditHead(ctx); h.Size != 3 {
		t.Fatalf("head size %d after refused batches, want 3", h.Size)
	}
}

func testAuditQuery(t *testing.T, s AuditStores) {
	ctx := context.Background()
	fillAudit(t, s.Store, 60)
	count := func(q audit.Query) []audit.Row {
		t.Helper()
		if q.Before == 0 {
			q.Before = -1
		}
		rows, err := s.Store.AuditRows(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		return rows
	}
	all := count(audit.Query{After: -1})
	if len(all) != 60 || all[0].Seq != 0 || all[59].Seq != 59 {
		t.Fatalf("all: %d rows", len(all))
	}
	for _, r := range count(audit.Query{After: -1, Actor: "u1", Action: audit.ActionLogout, Outcome: audit.Failure}) {
		if r.ActorID != "u1" || r.Action != audit.ActionLogout || r.Outcome != audit.Failure {
			t.Fatalf("filter returned %+v", r)
		}
	}
	if n := len(count(audit.Query{After: -1, Target: "t3"})); n != 12 {
		t.Fatalf("target t3: %d rows, want 12", n)
	}
	base := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	if rows := count(audit.Query{After: -1, Since: base.Add(10 * time.Second), Until: base.Add(20 * time.Second)}); len(rows) != 10 {
		t.Fatalf("time range: %d rows, want 10", len(rows))
	}
	page := count(audit.Query{After: 49, Limit: 5})
	if len(page) != 5 || page[0].Seq != 50 {
		t.Fatalf("page after 49: %+v", page)
	}
	desc := count(audit.Query{After: -1, Before: 10, Desc: true, Limit: 3})
	if len(desc) != 3 || desc[0].Seq != 9 || desc[2].Seq != 7 {
		t.Fatalf("newest first before 10: %d rows", len(desc))
	}
	if string(all[7].Entry) == "" || merkle.LeafHash(all[7].Entry) != all[7].Leaf {
		t.Fatal("a row's leaf is not the hash of its entry")
	}
}

func testAuditSnapshot(t *testing.T, s AuditStores) {
	l := fillAudit(t, s.Store, 25)
	sc, ok := s.Store.(audit.Scanner)
	if !ok {
		t.Fatal("the store is not a Scanner")
	}
	_, vs := auditSigner(t) // another key: the log's heads must not verify with it
	rep, err := audit.Verify(context.Background(), sc, audit.VerifyOptions{Verifiers: vs})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Records != 25 || rep.Root != l.Head().Root {
		t.Fatalf("verify read %d records, root %v", rep.Records, rep.Root)
	}
	if rep.Problem == nil || rep.Problem.Kind != audit.ProblemHead {
		t.Fatalf("heads signed by another key: %v, want a head problem", rep.Problem)
	}
}

func testAuditAppendOnly(t *testing.T, s AuditStores) {
	fillAudit(t, s.Store, 5)
	for _, stmt := range []string{
		`UPDATE audit_records SET action = 'x'`,
		`DELETE FROM audit_records WHERE seq = 4`,
		`UPDATE audit_nodes SET hash = hash`,
		`DELETE FROM audit_nodes`,
		`UPDATE audit_heads SET note = ''`,
		`DELETE FROM audit_heads`,
	} {
		if err := s.Exec(stmt); err == nil {
			t.Errorf("%s: accepted", stmt)
		}
	}
	if h, _ := s.Store.AuditHead(context.Background()); h.Size != 5 {
		t.Fatalf("head size %d, want 5", h.Size)
	}
}
