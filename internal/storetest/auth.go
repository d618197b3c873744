package storetest

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/auth"
)

// Auth runs the auth.Store conformance suite. open returns an empty,
// migrated store.
func Auth(t *testing.T, open func(t *testing.T) auth.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s auth.Store)
	}{
		{"a user is stored and read back with every field", testUserRoundTrip},
		{"usernames are unique and found in any letter case", testUsernameCase},
		{"every call naming a missing user is not_found", testUserNotFound},
		{"users are listed by name and counted", testUsersList},
		{"profile updates change their field and end no session", testUserUpdates},
		{"a password change revokes every other session in the same step", testChangePassword},
		{"disabling a user revokes its sessions and refuses its refresh tokens", testDisableUser},
		{"a session is stored with its first refresh token and read back", testSessionState},
		{"a refresh token rotates once and presenting it again revokes the session", testRotateRefresh},
		{"expired, revoked and unknown refresh tokens are refused", testRotateRefused},
		{"of concurrent rotations of one token exactly one succeeds", testRotateConcurrent},
		{"revoking a session reports whether it was active", testRevokeSession},
		{"active sessions are those neither revoked nor expired", testCountActiveSessions},
		{"pruning deletes sessions that ended before the cutoff, with their tokens", testPruneSessions},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, open(t))
		})
	}
}

var authT0 = time.Date(2026, 3, 4, 5, 6, 7, 8000, time.UTC)

func authUser(name string, roles ...string) auth.User {
	if roles == nil {
		roles = []string{}
	}
	return auth.User{Username: name, DisplayName: "The " + name, PasswordHash: "$argon2id$hash-" + name, Roles: roles, Verified: true, CreatedAt: authT0}
}

func mkUsers(t *testing.T, s auth.Store, names ...string) {
	t.Helper()
	for _, n := range names {
		if err := s.CreateUser(context.Background(), authUser(n)); err != nil {
			t.Fatalf("CreateUser(%s): %v", n, err)
		}
	}
}

// tokenHash is a distinct 32-byte refresh token hash for each i.
func tokenHash(i int) []byte { return bytes.Repeat([]byte{byte(i + 1)}, 32) }

// mkSession stores session id of user, expiring ttl after authT0, with
// refresh token hash tokenHash(tok).
func mkSession(t *testing.T, s auth.Store, id, user string, ttl time.Duration, tok int) {
	t.Helper()
	sess := auth.Session{ID: id, Username: user, CreatedAt: authT0, ExpiresAt: authT0.Add(ttl)}
	if err := s.CreateSession(context.Background(), sess, tokenHash(tok)); err != nil {
		t.Fatalf("CreateSession(%s): %v", id, err)
	}
}

func sessionState(t *testing.T, s auth.Store, id string) auth.SessionState {
	t.Helper()
	st, err := s.SessionState(context.Background(), id)
	if err != nil {
		t.Fatalf("SessionState(%s): %v", id, err)
	}
	return st
}

func sorted(ids []string) string {
	out := append([]string(nil), ids...)
	sort.Strings(out)
	return fmt.Sprint(out)
}

func testUserRoundTrip(t *testing.T, s auth.Store) {
	ctx := context.Background()
	in := auth.User{Username: "alice", DisplayName: "Alice A.", PasswordHash: "$argon2id$v=19$abc", Roles: []string{"admin"}, Verified: true, CreatedAt: authT0}
	if err := s.CreateUser(ctx, in); err != nil {
		t.Fatal(err)
	}
	got, err := s.User(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if got.Username != "alice" || got.DisplayName != in.DisplayName || got.PasswordHash != in.PasswordHash ||
		fmt.Sprint(got.Roles) != "[admin]" || !got.Verified || got.Disabled || !got.CreatedAt.Equal(authT0) {
		t.Errorf("User = %+v, want %+v", got, in)
	}
	plain := auth.User{Username: "bob", DisplayName: "bob", PasswordHash: "x", CreatedAt: authT0}
	if err := s.CreateUser(ctx, plain); err != nil {
		t.Fatal(err)
	}
	got, err = s.User(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if got.Roles == nil || len(got.Roles) != 0 || got.Verified || got.Disabled {
		t.Errorf("User(bob) = %+v, want no roles (an empty, non-nil list), unverified, enabled", got)
	}
}

func testUsernameCase(t *testing.T, s auth.Store) {
	ctx := context.Background()
	mkUsers(t, s, "alice")
	for _, name := range []string{"alice", "ALICE", "Alice"} {
		if err := s.CreateUser(ctx, authUser(name)); code(err) != unhidra.ECONFLICT {
			t.Errorf("CreateUser(%s) after alice: %v, want conflict", name, err)
		}
	}
	for _, name := range []string{"alice", "ALICE", "aLiCe"} {
		u, err := s.User(ctx, name)
		if err != nil || u.Username != "alice" {
			t.Errorf("User(%s) = %q, %v; want alice", name, u.Username, err)
		}
	}
	if n, err := s.CountUsers(ctx); err != nil || n != 1 {
		t.Errorf("CountUsers = %d, %v; want 1", n, err)
	}
}

func testUserNotFound(t *testing.T, s auth.Store) {
	ctx := context.Background()
	mkUsers(t, s, "alice")
	calls := map[string]func() error{
		"User":            func() error { _, err := s.User(ctx, "bob"); return err },
		"SetDisplayName":  func() error { _, err := s.SetDisplayName(ctx, "bob", "Bob", authT0); return err },
		"SetVerified":     func() error { return s.SetVerified(ctx, "bob", authT0) },
		"SetPasswordHash": func() error { return s.SetPasswordHash(ctx, "bob", "h", authT0) },
		"ChangePassword":  func() error { _, err := s.ChangePassword(ctx, "bob", "h", "", authT0); return err },
		"DisableUser":     func() error { _, err := s.DisableUser(ctx, "bob", authT0); return err },
		"SessionState":    func() error { _, err := s.SessionState(ctx, "no-such-session"); return err },
	}
	for name, call := range calls {
		if err := call(); code(err) != unhidra.ENOTFOUND {
			t.Errorf("%s(missing) error = %v, want not_found", name, err)
		}
	}
	if n, _ := s.CountUsers(ctx); n != 1 {
		t.Errorf("CountUsers after calls on a missing user = %d, want 1", n)
	}
}

func testUsersList(t *testing.T, s auth.Store) {
	ctx := context.Background()
	if us, err := s.Users(ctx); err != nil || len(us) != 0 {
		t.Errorf("Users on an empty store = %v, %v; want none", us, err)
	}
	if n, err := s.CountUsers(ctx); err != nil || n != 0 {
		t.Errorf("CountUsers on an empty store = %d, %v; want 0", n, err)
	}
	mkUsers(t, s, "carol", "alice", "dave", "bob")
	us, err := s.Users(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, u := range us {
		names = append(names, u.Username)
		if u.DisplayName != "The "+u.Username || u.PasswordHash == "" {
			t.Errorf("Users entry %+v lacks fields", u)
		}
	}
	if got := fmt.Sprint(names); got != "[alice bob carol dave]" {
		t.Errorf("Users = %s, want [alice bob carol dave] (ordered by name)", got)
	}
	if n, err := s.CountUsers(ctx); err != nil || n != 4 {
		t.Errorf("CountUsers = %d, %v; want 4", n, err)
	}
}

func testUserUpdates(t *testing.T, s auth.Store) {
	ctx := context.Background()
	u := authUser("alice")
	u.Verified = false
	if err := s.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	mkSession(t, s, "s1", "alice", time.Hour, 1)
	got, err := s.SetDisplayName(ctx, "ALICE", "Alice Liddell", authT0.Add(time.Minute))
	if err != nil || got.Username != "alice" || got.DisplayName != "Alice Liddell" || got.PasswordHash != u.PasswordHash {
		t.Errorf("SetDisplayName = %+v, %v; want the user with the new name", got, err)
	}
	if err := s.SetVerified(ctx, "alice", authT0); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPasswordHash(ctx, "alice", "$argon2id$upgraded", authT0); err != nil {
		t.Fatal(err)
	}
	got, err = s.User(ctx, "alice")
	if err != nil || !got.Verified || got.PasswordHash != "$argon2id$upgraded" || got.DisplayName != "Alice Liddell" || !got.CreatedAt.Equal(authT0) {
		t.Errorf("User after updates = %+v, %v; want verified, upgraded hash, new name, created_at kept", got, err)
	}
	if st := sessionState(t, s, "s1"); st.Revoked {
		t.Error("SetPasswordHash (an upgrade) revoked a session")
	}
}

func testChangePassword(t *testing.T, s auth.Store) {
	ctx := context.Background()
	mkUsers(t, s, "alice", "bob")
	mkSession(t, s, "a1", "alice", time.Hour, 1)
	mkSession(t, s, "a2", "alice", time.Hour, 2)
	mkSession(t, s, "a3", "alice", time.Hour, 3)
	mkSession(t, s, "a4", "alice", time.Hour, 4)
	mkSession(t, s, "b1", "bob", time.Hour, 5)
	if _, err := s.RevokeSession(ctx, "a4", "logout", authT0); err != nil {
		t.Fatal(err)
	}
	ids, err := s.ChangePassword(ctx, "alice", "$argon2id$new", "a2", authT0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if got := sorted(ids); got != "[a1 a3]" {
		t.Errorf("ChangePassword revoked %s, want [a1 a3] (not the kept one, not the one already revoked)", got)
	}
	for id, revoked := range map[string]bool{"a1": true, "a2": false, "a3": true, "a4": true, "b1": false} {
		if st := sessionState(t, s, id); st.Revoked != revoked {
			t.Errorf("%s revoked = %v, want %v", id, st.Revoked, revoked)
		}
	}
	if u, _ := s.User(ctx, "alice"); u.PasswordHash != "$argon2id$new" {
		t.Errorf("hash = %q, want the new one", u.PasswordHash)
	}
	// With no session kept (an administrator's reset), all go.
	ids, err = s.ChangePassword(ctx, "alice", "$argon2id$reset", "", authT0.Add(2*time.Minute))
	if err != nil || sorted(ids) != "[a2]" {
		t.Errorf("ChangePassword keeping none revoked %v, %v; want [a2]", ids, err)
	}
	if _, err := s.RotateRefresh(ctx, tokenHash(2), tokenHash(20), authT0.Add(3*time.Minute), authT0.Add(time.Hour)); code(err) != unhidra.EUNAUTHORIZED {
		t.Errorf("refresh of a session ended by a password change: %v, want unauthorized", err)
	}
}

func testDisableUser(t *testing.T, s auth.Store) {
	ctx := context.Background()
	mkUsers(t, s, "alice", "bob")
	mkSession(t, s, "b1", "bob", time.Hour, 1)
	mkSession(t, s, "b2", "bob", time.Hour, 2)
	mkSession(t, s, "a1", "alice", time.Hour, 3)
	ids, err := s.DisableUser(ctx, "bob", authT0.Add(time.Minute))
	if err != nil || sorted(ids) != "[b1 b2]" {
		t.Fatalf("DisableUser = %v, %v; want [b1 b2]", ids, err)
	}
	if u, _ := s.User(ctx, "bob"); !u.Disabled {
		t.Error("User(bob) not disabled")
	}
	st := sessionState(t, s, "b1")
	if !st.Revoked || !st.UserDisabled {
		t.Errorf("SessionState(b1) = %+v, want revoked and the user disabled", st)
	}
	if st := sessionState(t, s, "a1"); st.Revoked || st.UserDisabled {
		t.Errorf("another user's session = %+v, want untouched", st)
	}
	if _, err := s.RotateRefresh(ctx, tokenHash(1), tokenHash(10), authT0.Add(2*time.Minute), authT0.Add(time.Hour)); code(err) != unhidra.EUNAUTHORIZED {
		t.Errorf("refresh of a disabled user: %v, want unauthorized", err)
	}
	if ids, err := s.DisableUser(ctx, "bob", authT0.Add(time.Hour)); err != nil || len(ids) != 0 {
		t.Errorf("DisableUser again = %v, %v; want nothing more revoked", ids, err)
	}
}

func testSessionState(t *testing.T, s auth.Store) {
	ctx := context.Background()
	if err := s.CreateUser(ctx, authUser("alice", "admin")); err != nil {
		t.Fatal(err)
	}
	mkSession(t, s, "s1", "alice", time.Hour, 1)
	st := sessionState(t, s, "s1")
	if st.ID != "s1" || st.Username != "alice" || fmt.Sprint(st.Roles) != "[admin]" || st.Revoked || st.UserDisabled || !st.ExpiresAt.Equal(authT0.Add(time.Hour)) {
		t.Errorf("SessionState = %+v, want s1 of alice (admin), active until %v", st, authT0.Add(time.Hour))
	}
	res, err := s.RotateRefresh(ctx, tokenHash(1), tokenHash(2), authT0.Add(time.Minute), authT0.Add(2*time.Hour))
	if err != nil || res.Reused {
		t.Fatalf("rotating the first token: %+v, %v", res, err)
	}
	if st := sessionState(t, s, "s1"); !st.ExpiresAt.Equal(authT0.Add(2 * time.Hour)) {
		t.Errorf("ExpiresAt after a rotation = %v, want it extended to %v", st.ExpiresAt, authT0.Add(2*time.Hour))
	}
}

func testRotateRefresh(t *testing.T, s auth.Store) {
	ctx := context.Background()
	if err := s.CreateUser(ctx, authUser("alice", "admin")); err != nil {
		t.Fatal(err)
	}
	mkSession(t, s, "s1", "alice", time.Hour, 0)
	// A chain of rotations: each new token rotates in turn.
	for i := 0; i < 3; i++ {
		now, exp := authT0.Add(time.Duration(i+1)*time.Minute), authT0.Add(time.Duration(i+2)*time.Hour)
		res, err := s.RotateRefresh(ctx, tokenHash(i), tokenHash(i+1), now, exp)
		if err != nil || res.Reused {
			t.Fatalf("rotation %d: %+v, %v", i, res, err)
		}
		if res.Session.ID != "s1" || res.Session.Username != "alice" || fmt.Sprint(res.Session.Roles) != "[admin]" ||
			res.Session.Revoked || !res.Session.ExpiresAt.Equal(exp) {
			t.Errorf("rotation %d session = %+v, want s1 of alice, active until %v", i, res.Session, exp)
		}
	}
	// The token retired in the second rotation, presented again.
	res, err := s.RotateRefresh(ctx, tokenHash(1), tokenHash(50), authT0.Add(time.Hour), authT0.Add(5*time.Hour))
	if err != nil || !res.Reused || res.Session.ID != "s1" || res.Session.Username != "alice" || !res.Session.Revoked {
		t.Fatalf("reuse = %+v, %v; want Reused with session s1 of alice, revoked", res, err)
	}
	if st := sessionState(t, s, "s1"); !st.Revoked {
		t.Error("reuse did not revoke the session")
	}
	if _, err := s.RotateRefresh(ctx, tokenHash(50), tokenHash(51), authT0.Add(time.Hour), authT0.Add(5*time.Hour)); code(err) != unhidra.EUNAUTHORIZED {
		t.Errorf("the hash handed in with a reuse: %v, want unauthorized (it was not stored)", err)
	}
	if _, err := s.RotateRefresh(ctx, tokenHash(3), tokenHash(52), authT0.Add(time.Hour), authT0.Add(5*time.Hour)); code(err) != unhidra.EUNAUTHORIZED {
		t.Errorf("the newest token of a revoked family: %v, want unauthorized", err)
	}
	if res, err := s.RotateRefresh(ctx, tokenHash(0), tokenHash(53), authT0.Add(2*time.Hour), authT0.Add(5*time.Hour)); err != nil || !res.Reused {
		t.Errorf("a retired token of a revoked family = %+v, %v; want Reused again", res, err)
	}
}

func testRotateRefused(t *testing.T, s auth.Store) {
	ctx := context.Background()
	mkUsers(t, s, "alice")
	mkSession(t, s, "s1", "alice", time.Hour, 1)
	mkSession(t, s, "s2", "alice", time.Hour, 2)
	tests := []struct {
		name string
		old  []byte
		now  time.Time
	}{
		{"an unknown token", tokenHash(99), authT0},
		{"a token at its expiry", tokenHash(1), authT0.Add(time.Hour)},
		{"a token after its expiry", tokenHash(1), authT0.Add(2 * time.Hour)},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := s.RotateRefresh(ctx, tc.old, tokenHash(10+i), tc.now, tc.now.Add(time.Hour)); code(err) != unhidra.EUNAUTHORIZED {
				t.Errorf("RotateRefresh = %v, want unauthorized", err)
			}
		})
	}
	if res, err := s.RotateRefresh(ctx, tokenHash(1), tokenHash(20), authT0.Add(time.Hour-time.Second), authT0.Add(2*time.Hour)); err != nil || res.Reused {
		t.Errorf("the refused attempts retired the token: %+v, %v; want a normal rotation before expiry", res, err)
	}
	if _, err := s.RevokeSession(ctx, "s2", "logout", authT0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RotateRefresh(ctx, tokenHash(2), tokenHash(21), authT0.Add(time.Minute), authT0.Add(2*time.Hour)); code(err) != unhidra.EUNAUTHORIZED {
		t.Errorf("a revoked session's token: %v, want unauthorized", err)
	}
}

func testRotateConcurrent(t *testing.T, s auth.Store) {
	ctx := context.Background()
	mkUsers(t, s, "alice")
	mkSession(t, s, "s1", "alice", time.Hour, 0)
	const n = 8
	type outcome struct {
		res auth.RotateResult
		err error
	}
	out := make([]outcome, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := s.RotateRefresh(ctx, tokenHash(0), tokenHash(i+1), authT0.Add(time.Minute), authT0.Add(2*time.Hour))
			out[i] = outcome{res, err}
		}()
	}
	wg.Wait()
	rotated, reused := 0, 0
	for i, o := range out {
		switch {
		case o.err != nil:
			t.Errorf("rotation %d: %v, want success or Reused", i, o.err)
		case o.res.Reused:
			reused++
		default:
			rotated++
		}
	}
	if rotated != 1 || reused != n-1 {
		t.Errorf("%d rotations and %d reuses of one token, want 1 and %d", rotated, reused, n-1)
	}
	if st := sessionState(t, s, "s1"); !st.Revoked {
		t.Error("the session survived concurrent presentations of one token")
	}
}

func testRevokeSession(t *testing.T, s auth.Store) {
	ctx := context.Background()
	mkUsers(t, s, "alice")
	mkSession(t, s, "s1", "alice", time.Hour, 1)
	mkSession(t, s, "s2", "alice", time.Hour, 2)
	if ok, err := s.RevokeSession(ctx, "s1", "logout", authT0); err != nil || !ok {
		t.Errorf("RevokeSession = %v, %v; want true", ok, err)
	}
	if ok, err := s.RevokeSession(ctx, "s1", "logout", authT0.Add(time.Minute)); err != nil || ok {
		t.Errorf("RevokeSession again = %v, %v; want false, no error", ok, err)
	}
	if ok, err := s.RevokeSession(ctx, "no-such-session", "logout", authT0); err != nil || ok {
		t.Errorf("RevokeSession(unknown) = %v, %v; want false, no error", ok, err)
	}
	if st := sessionState(t, s, "s1"); !st.Revoked {
		t.Error("s1 not revoked")
	}
	if st := sessionState(t, s, "s2"); st.Revoked {
		t.Error("revoking s1 revoked s2")
	}
}

func testCountActiveSessions(t *testing.T, s auth.Store) {
	ctx := context.Background()
	mkUsers(t, s, "alice", "bob")
	mkSession(t, s, "s1", "alice", time.Hour, 1)
	mkSession(t, s, "s2", "alice", 2*time.Hour, 2)
	mkSession(t, s, "s3", "bob", 3*time.Hour, 3)
	mkSession(t, s, "s4", "bob", 3*time.Hour, 4)
	if _, err := s.RevokeSession(ctx, "s4", "logout", authT0); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		at   time.Time
		want int
	}{
		{authT0, 3},
		{authT0.Add(time.Hour), 2}, // s1 expires at exactly this time
		{authT0.Add(150 * time.Minute), 1},
		{authT0.Add(3 * time.Hour), 0},
	} {
		if n, err := s.CountActiveSessions(ctx, tc.at); err != nil || n != tc.want {
			t.Errorf("CountActiveSessions(t0+%v) = %d, %v; want %d", tc.at.Sub(authT0), n, err, tc.want)
		}
	}
}

func testPruneSessions(t *testing.T, s auth.Store) {
	ctx := context.Background()
	mkUsers(t, s, "alice")
	cutoff := authT0.Add(2 * time.Hour)
	mkSession(t, s, "expired", "alice", time.Hour, 1)         // expired before the cutoff
	mkSession(t, s, "at-cutoff", "alice", 2*time.Hour, 2)     // expires exactly at it
	mkSession(t, s, "revoked-early", "alice", 5*time.Hour, 3) // revoked before it
	mkSession(t, s, "revoked-late", "alice", 5*time.Hour, 4)  // revoked after it
	mkSession(t, s, "active", "alice", 5*time.Hour, 5)        // neither
	mkSession(t, s, "rotated", "alice", 90*time.Minute, 6)    // rotated, then expired
	if _, err := s.RotateRefresh(ctx, tokenHash(6), tokenHash(7), authT0.Add(time.Minute), authT0.Add(100*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RevokeSession(ctx, "revoked-early", "logout", authT0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RevokeSession(ctx, "revoked-late", "logout", authT0.Add(3*time.Hour)); err != nil {
		t.Fatal(err)
	}
	n, err := s.PruneSessions(ctx, cutoff)
	if err != nil || n != 3 {
		t.Errorf("PruneSessions = %d, %v; want 3 (expired, revoked-early, rotated)", n, err)
	}
	for id, gone := range map[string]bool{"expired": true, "revoked-early": true, "rotated": true, "at-cutoff": false, "revoked-late": false, "active": false} {
		_, err := s.SessionState(ctx, id)
		if gone && code(err) != unhidra.ENOTFOUND {
			t.Errorf("SessionState(%s) after pruning: %v, want not_found", id, err)
		}
		if !gone && err != nil {
			t.Errorf("SessionState(%s) after pruning: %v, want it kept", id, err)
		}
	}
	// A pruned session's refresh tokens go with it: the retired one no
	// longer counts as a reuse.
	for _, h := range [][]byte{tokenHash(6), tokenHash(7)} {
		if res, err := s.RotateRefresh(ctx, h, tokenHash(30), authT0, authT0.Add(time.Hour)); code(err) != unhidra.EUNAUTHORIZED {
			t.Errorf("a pruned session's token = %+v, %v; want unauthorized", res, err)
		}
	}
	if n, err := s.PruneSessions(ctx, cutoff); err != nil || n != 0 {
		t.Errorf("PruneSessions again = %d, %v; want 0", n, err)
	}
}
