package audit_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/unhidra/unhidra/internal/audit"
	"github.com/unhidra/unhidra/internal/audit/merkle"
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
