package sqlite_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/chat"
	"github.com/unhidra/unhidra/internal/inmem"
	"github.com/unhidra/unhidra/internal/sqlite"
	"github.com/unhidra/unhidra/internal/sqlitetest"
	"github.com/unhidra/unhidra/internal/storetest"
	"github.com/unhidra/unhidra/wire"
)

func chatTestDB(t testing.TB) (*sqlite.DB, *sqlite.ChatStore) {
	t.Helper()
	ctx := context.Background()
	db := sqlitetest.Open(t)
	st, err := sqlite.NewChatStore(ctx, db)
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		st.Close()
		db.Close()
	})
	return db, st
}

func TestChatStoreConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) chat.Store {
		_, st := chatTestDB(t)
		return st
	})
}

func TestChatStoreLastSeenSurvivesReopenAndNeverGoesBack(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "unhidra.db")
	open := func() (*sqlite.DB, *sqlite.ChatStore) {
		db, err := sqlite.Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		st, err := sqlite.NewChatStore(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		return db, st
	}
	db, st := open()
	t1 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	if err := st.SetLastSeen(ctx, wire.KindUser, "alice", t1); err != nil {
		t.Fatal(err)
	}
	if err := st.SetLastSeen(ctx, wire.KindUser, "alice", t1.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	st.Close()
	db.Close()
	db, st = open()
	defer db.Close()
	defer st.Close()
	got, err := st.LastSeen(ctx, wire.KindUser, []string{"alice", "bob"})
	if err != nil {
		t.Fatal(err)
	}
	if !got["alice"].Equal(t1) {
		t.Errorf("last_seen(alice) = %v, want %v (kept across reopen, not moved back)", got["alice"], t1)
	}
	if _, ok := got["bob"]; ok {
		t.Errorf("last_seen(bob) is set, want none")
	}
}

// newChatService returns a chat service over st with one public channel
// that alice has joined.
func newChatService(t *testing.T, st chat.Store) (*chat.Service, string) {
	t.Helper()
	svc := chat.NewService(st, inmem.NewBroker(), chat.Options{})
	t.Cleanup(svc.Wait)
	alice := unhidra.Identity{Principal: wire.Principal{Kind: wire.KindUser, ID: "alice"}}
	ch, _, err := svc.CreateChannel(context.Background(), alice, chat.CreateChannel{Name: "general", Kind: chat.KindPublic})
	if err != nil {
		t.Fatal(err)
	}
	return svc, ch.ID
}

var aliceID = unhidra.Identity{Principal: wire.Principal{Kind: wire.KindUser, ID: "alice"}}

func textPtr(s string) *string { return &s }

// MSG-6, locked database: another connection holds the write lock longer
// than busy_timeout. The publish fails with unavailable (no ack), the process
// keeps working, and once the lock is gone the database is intact and a
// retry with the same client_msg_id stores the message exactly once.
func TestPublishOnALockedDatabaseIsUnavailableAndRecovers(t *testing.T) {
	ctx := context.Background()
	db, st := chatTestDB(t)
	svc, ch := newChatService(t, st)
	if _, err := svc.Publish(ctx, aliceID, wire.Publish{Channel: ch, Text: textPtr("before")}); err != nil {
		t.Fatal(err)
	}
	// A short busy_timeout on the single writer connection keeps the test fast.
	if _, err := db.Writer().ExecContext(ctx, "PRAGMA busy_timeout = 100"); err != nil {
		t.Fatal(err)
	}
	other, err := sql.Open("sqlite", "file:"+db.Path()+"?_pragma=busy_timeout(100)")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	other.SetMaxOpenConns(1)
	conn, err := other.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	in := wire.Publish{Channel: ch, ClientMsgID: "during-lock", Text: textPtr("during lock")}
	ack, err := svc.Publish(ctx, aliceID, in)
	if code := unhidra.ErrorCode(err); code != unhidra.EUNAVAILABLE {
		t.Fatalf("publish under a held write lock: ack %+v, error %v; want unavailable", ack, err)
	}
	if ack != (wire.Ack{}) {
		t.Errorf("got an ack %+v with the error", ack)
	}
	// Reads still work while the writer is locked out.
	if _, _, err := svc.History(ctx, aliceID, ch, chat.Page{Limit: 10}); err != nil {
		t.Errorf("history during the lock: %v", err)
	}
	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	conn.Close()

	ack, err = svc.Publish(ctx, aliceID, in)
	if err != nil || ack.Offset != 2 {
		t.Fatalf("retry after the lock: %+v, %v; want offset 2", ack, err)
	}
	assertIntact(t, db, st, ch, 2)
}

// MSG-6, full disk: PRAGMA max_page_count caps the database file, which
// makes SQLite report SQLITE_FULL exactly as a full disk does.
func TestPublishOnAFullDatabaseIsUnavailableAndRecovers(t *testing.T) {
	ctx := context.Background()
	db, st := chatTestDB(t)
	svc, ch := newChatService(t, st)
	var pages int64
	if err := db.Writer().QueryRowContext(ctx, "PRAGMA page_count").Scan(&pages); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Writer().ExecContext(ctx, "PRAGMA max_page_count = "+itoa(pages+2)); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 15000)
	for i := range big {
		big[i] = 'a' + byte(i%26)
	}
	var acked int64
	var full error
	for i := 0; i < 200 && full == nil; i++ {
		ack, err := svc.Publish(ctx, aliceID, wire.Publish{Channel: ch, Text: textPtr(string(big) + itoa(int64(i)))})
		if err != nil {
			full = err
			break
		}
		if ack.Offset != acked+1 {
			t.Fatalf("ack offset %d after %d acks", ack.Offset, acked)
		}
		acked = ack.Offset
	}
	if unhidra.ErrorCode(full) != unhidra.EUNAVAILABLE {
		t.Fatalf("publishing into a full database: %v, want unavailable", full)
	}
	assertIntact(t, db, st, ch, acked)
	if _, err := db.Writer().ExecContext(ctx, "PRAGMA max_page_count = 1073741823"); err != nil {
		t.Fatal(err)
	}
	ack, err := svc.Publish(ctx, aliceID, wire.Publish{Channel: ch, Text: textPtr("space again")})
	if err != nil || ack.Offset != acked+1 {
		t.Fatalf("publish after space is back: %+v, %v; want offset %d", ack, err, acked+1)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// assertIntact checks PRAGMA integrity_check and that the channel holds
// exactly offsets 1..n.
func assertIntact(t *testing.T, db *sqlite.DB, st *sqlite.ChatStore, ch string, n int64) {
	t.Helper()
	ctx := context.Background()
	var res string
	if err := db.Writer().QueryRowContext(ctx, "PRAGMA integrity_check").Scan(&res); err != nil || res != "ok" {
		t.Fatalf("integrity_check = %q, %v", res, err)
	}
	msgs, err := st.MessagesAfter(ctx, ch, 0, int(n)+10)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(msgs)) != n {
		t.Fatalf("%d messages stored, want %d", len(msgs), n)
	}
	for i, m := range msgs {
		if m.Offset != int64(i+1) {
			t.Fatalf("offset %d at position %d", m.Offset, i)
		}
	}
	c, err := st.GetChannel(ctx, ch)
	if err != nil || c.LastOffset != n {
		t.Fatalf("last_offset = %d, %v; want %d", c.LastOffset, err, n)
	}
}

// FuzzSanitizedQueryRunsInFTS5 runs every sanitized query against a real
// FTS5 table: whatever a user types, search never fails with a syntax
// error (which would surface as a 500).
func FuzzSanitizedQueryRunsInFTS5(f *testing.F) {
	for _, s := range []string{"hello", `"`, "*", "NEAR(a b)", `a"b*`, "x OR y", "col:x", "^a", "-b", "é*", "a AND", "{a b}:c"} {
		f.Add(s)
	}
	_, st := chatTestDB(f)
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, in string) {
		q, err := chat.SanitizeQuery(in)
		if err != nil {
			return
		}
		if _, err := st.Search(ctx, chat.SearchQuery{Match: q, Reader: chat.Reader{User: "alice"}, Limit: 5}); err != nil {
			t.Fatalf("Search(%q → %q): %v", in, q, err)
		}
	})
}
