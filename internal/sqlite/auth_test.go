package sqlite_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/auth"
	"github.com/unhidra/unhidra/internal/sqlite"
	"github.com/unhidra/unhidra/internal/sqlitetest"
)

func authTestDB(t *testing.T) *sqlite.DB {
	t.Helper()
	db := sqlitetest.Open(t)
	return db
}

var authT0 = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

func authUser(name string) auth.User {
	return auth.User{Username: name, DisplayName: name, PasswordHash: "$argon2id$hash-" + name, Roles: []string{}, Verified: true, CreatedAt: authT0}
}

func TestAuthStoreUsernamesAreUniqueInAnyCase(t *testing.T) {
	s := sqlite.NewAuthStore(authTestDB(t))
	ctx := context.Background()
	if err := s.CreateUser(ctx, authUser("alice")); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateUser(ctx, authUser("ALICE")); unhidra.ErrorCode(err) != unhidra.ECONFLICT {
		t.Fatalf("ALICE after alice: %v, want conflict", err)
	}
	u, err := s.User(ctx, "Alice")
	if err != nil || u.Username != "alice" || !u.Verified || u.CreatedAt != authT0 {
		t.Fatalf("lookup in another case: %+v %v", u, err)
	}
	if _, err := s.User(ctx, "bob"); unhidra.ErrorCode(err) != unhidra.ENOTFOUND {
		t.Fatalf("unknown user: %v", err)
	}
	if err := s.SetVerified(ctx, "bob", authT0); unhidra.ErrorCode(err) != unhidra.ENOTFOUND {
		t.Fatalf("verify unknown user: %v", err)
	}
}

func TestAuthStoreRotatesRefreshTokensOnceAndDetectsReuse(t *testing.T) {
	s := sqlite.NewAuthStore(authTestDB(t))
	ctx := context.Background()
	s.CreateUser(ctx, authUser("alice"))
	h0, h1, h2 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32), bytes.Repeat([]byte{3}, 32)
	sess := auth.Session{ID: "s1", Username: "alice", CreatedAt: authT0, ExpiresAt: authT0.Add(time.Hour)}
	if err := s.CreateSession(ctx, sess, h0); err != nil {
		t.Fatal(err)
	}
	res, err := s.RotateRefresh(ctx, h0, h1, authT0.Add(time.Minute), authT0.Add(2*time.Hour))
	if err != nil || res.Reused || res.Session.ID != "s1" || res.Session.Username != "alice" {
		t.Fatalf("first rotation: %+v %v", res, err)
	}
	st, _ := s.SessionState(ctx, "s1")
	if st.Revoked || !st.ExpiresAt.Equal(authT0.Add(2*time.Hour)) {
		t.Fatalf("session after rotation %+v, want active until +2h", st)
	}
	res, err = s.RotateRefresh(ctx, h0, h2, authT0.Add(2*time.Minute), authT0.Add(3*time.Hour))
	if err != nil || !res.Reused {
		t.Fatalf("reuse: %+v %v, want Reused", res, err)
	}
	if st, _ := s.SessionState(ctx, "s1"); !st.Revoked {
		t.Fatal("reuse did not revoke the session")
	}
	if _, err := s.RotateRefresh(ctx, h1, h2, authT0.Add(3*time.Minute), authT0.Add(3*time.Hour)); unhidra.ErrorCode(err) != unhidra.EUNAUTHORIZED {
		t.Fatalf("the newer token of a revoked family: %v, want unauthorized", err)
	}
	if _, err := s.RotateRefresh(ctx, h2, h1, authT0, authT0); unhidra.ErrorCode(err) != unhidra.EUNAUTHORIZED {
		t.Fatalf("an unknown token: %v, want unauthorized", err)
	}
}

func TestAuthStoreRefusesExpiredRefreshTokensAndDisabledUsers(t *testing.T) {
	s := sqlite.NewAuthStore(authTestDB(t))
	ctx := context.Background()
	s.CreateUser(ctx, authUser("alice"))
	s.CreateUser(ctx, authUser("bob"))
	hA, hB, hN := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32), bytes.Repeat([]byte{3}, 32)
	s.CreateSession(ctx, auth.Session{ID: "sa", Username: "alice", CreatedAt: authT0, ExpiresAt: authT0.Add(time.Hour)}, hA)
	s.CreateSession(ctx, auth.Session{ID: "sb", Username: "bob", CreatedAt: authT0, ExpiresAt: authT0.Add(time.Hour)}, hB)
	if _, err := s.RotateRefresh(ctx, hA, hN, authT0.Add(time.Hour), authT0.Add(2*time.Hour)); unhidra.ErrorCode(err) != unhidra.EUNAUTHORIZED {
		t.Fatalf("expired token: %v", err)
	}
	ids, err := s.DisableUser(ctx, "bob", authT0)
	if err != nil || len(ids) != 1 || ids[0] != "sb" {
		t.Fatalf("disable: %v %v", ids, err)
	}
	if _, err := s.RotateRefresh(ctx, hB, hN, authT0.Add(time.Minute), authT0.Add(2*time.Hour)); unhidra.ErrorCode(err) != unhidra.EUNAUTHORIZED {
		t.Fatalf("disabled user's token: %v", err)
	}
	if n, _ := s.CountActiveSessions(ctx, authT0.Add(time.Minute)); n != 1 {
		t.Errorf("active sessions %d, want 1 (alice's)", n)
	}
}

func TestAuthStorePasswordChangeKeepsOnlyTheCurrentSession(t *testing.T) {
	s := sqlite.NewAuthStore(authTestDB(t))
	ctx := context.Background()
	s.CreateUser(ctx, authUser("alice"))
	for i, id := range []string{"s1", "s2", "s3"} {
		s.CreateSession(ctx, auth.Session{ID: id, Username: "alice", CreatedAt: authT0, ExpiresAt: authT0.Add(time.Hour)}, bytes.Repeat([]byte{byte(i)}, 32))
	}
	ids, err := s.ChangePassword(ctx, "alice", "$argon2id$new", "s2", authT0)
	if err != nil || len(ids) != 2 {
		t.Fatalf("revoked %v %v, want s1 and s3", ids, err)
	}
	for id, revoked := range map[string]bool{"s1": true, "s2": false, "s3": true} {
		if st, _ := s.SessionState(ctx, id); st.Revoked != revoked {
			t.Errorf("%s revoked = %v, want %v", id, st.Revoked, revoked)
		}
	}
	if u, _ := s.User(ctx, "alice"); u.PasswordHash != "$argon2id$new" {
		t.Errorf("hash not replaced")
	}
}
