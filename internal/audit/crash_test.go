package audit_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/audit"
	"github.com/unhidra/unhidra/internal/sqlite"
	"github.com/unhidra/unhidra/wire"
)

// The child process of TestCrashKeepsEveryAcknowledgedRecord: it appends
// from several goroutines and prints "ack <request id> <seq>" for each
// record Append acknowledged, until it is killed.
func init() {
	dir := os.Getenv("UNHIDRA_AUDIT_CRASH_CHILD")
	if dir == "" {
		return
	}
	os.Exit(crashChild(dir, os.Getenv("UNHIDRA_AUDIT_CRASH_ROUND")))
}

func crashChild(dir, round string) int {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(dir, "unhidra.db"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := db.Migrate(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	s, _, _, err := audit.LoadSigner("", filepath.Join(dir, "audit"), "unhidra-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	l, err := audit.Open(ctx, sqlite.NewAuditStore(db), audit.Options{Signer: s, Dir: filepath.Join(dir, "audit"), CheckpointEvery: 50 * time.Millisecond})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				id := fmt.Sprintf("r%s-g%d-%d", round, g, i)
				seq, err := l.Append(ctx, audit.Event{Action: audit.ActionLogin, Actor: wire.Principal{Kind: wire.KindUser, ID: "alice"}, RequestID: id, Transport: audit.TransportHTTP})
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
				mu.Lock()
				fmt.Fprintf(out, "ack %s %d\n", id, seq)
				out.Flush()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return 0
}

// TestCrashKeepsEveryAcknowledgedRecord: a process appending from 16
// goroutines is killed with SIGKILL at a random moment, five times. After
// each crash the log verifies, every record the process had acknowledged
// is in it (with the seq it was given), and the checkpoint written before
// the crash is still consistent with the log after it.
func TestCrashKeepsEveryAcknowledgedRecord(t *testing.T) {
	dir := t.TempDir()
	var before []byte
	total := 0
	for round := range 5 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "UNHIDRA_AUDIT_CRASH_CHILD="+dir, "UNHIDRA_AUDIT_CRASH_ROUND="+strconv.Itoa(round))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		acked := map[string]uint64{}
		lines := make(chan string)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		// Kill once it has acknowledged a few hundred records and a bit
		// more (a different moment each round).
		want := 200 + round*150
		for l := range lines {
			f := strings.Fields(l)
			if len(f) == 3 && f[0] == "ack" {
				seq, _ := strconv.ParseUint(f[2], 10, 64)
				acked[f[1]] = seq
			}
			if len(acked) == want {
				break
			}
		}
		if len(acked) < want {
			cmd.Wait()
			t.Fatalf("round %d: the child stopped after %d acks: %s", round, len(acked), stderr.String())
		}
		// A checkpoint the running process wrote, read just before it dies.
		if b, err := os.ReadFile(filepath.Join(dir, "audit", audit.CheckpointFile)); err == nil {
			before = b
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		for l := range lines { // what it printed before it died
			f := strings.Fields(l)
			if len(f) == 3 && f[0] == "ack" {
				seq, _ := strconv.ParseUint(f[2], 10, 64)
				acked[f[1]] = seq
			}
		}
		cmd.Wait()

		db, err := sqlite.Open(context.Background(), filepath.Join(dir, "unhidra.db"))
		if err != nil {
			t.Fatal(err)
		}
		st := sqlite.NewAuditStore(db)
		vkey, err := os.ReadFile(filepath.Join(dir, "audit", audit.VerifierKeyFile))
		if err != nil {
			t.Fatal(err)
		}
		e := &env{db: db, st: st, vkey: strings.TrimSpace(string(vkey))}
		rep := e.verify(t, before)
		if rep.Problem != nil {
			t.Fatalf("round %d: after the crash: %v", round, rep.Problem)
		}
		if int(rep.Records) < total+len(acked) {
			t.Fatalf("round %d: %d records, but %d were acknowledged before", round, rep.Records, total+len(acked))
		}
		stored := map[string]uint64{}
		for after := int64(total) - 1; ; {
			rows, err := st.AuditRows(context.Background(), audit.Query{After: after, Before: -1, Limit: sqlite.MaxAuditRows})
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) == 0 {
				break
			}
			for _, r := range rows {
				rec, err := audit.DecodeRecord(r.Entry)
				if err != nil {
					t.Fatal(err)
				}
				stored[rec.RequestID] = rec.Seq
			}
			after = int64(rows[len(rows)-1].Seq)
		}
		for id, seq := range acked {
			if got, ok := stored[id]; !ok || got != seq {
				t.Fatalf("round %d: acknowledged record %s (seq %d) after the crash: %d, %v", round, id, seq, got, ok)
			}
		}
		cp, _ := audit.ParseCheckpoint(string(before))
		t.Logf("round %d: killed after %d acknowledged; %d stored in all; the checkpoint of %d records read before the kill is consistent", round, len(acked), rep.Records, cp.Size)
		total = int(rep.Records)
		db.Close()
	}
	if before == nil {
		t.Fatal("no checkpoint was ever written")
	}
}
