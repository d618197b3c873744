package auth_test

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/auth"
	"github.com/unhidra/unhidra/internal/broker"
	"github.com/unhidra/unhidra/internal/inmem"
	"github.com/unhidra/unhidra/internal/sqlite"
)

const secret = "service-test-secret-0123456789abcdef"

// cheap are Argon2id parameters for tests that are not about hashing.
var cheap = auth.Params{MemoryKiB: 64, Iterations: 1, Parallelism: 1}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type env struct {
	svc    *auth.Service
	store  *sqlite.AuthStore
	db     *sqlite.DB
	clock  *clock
	broker *inmem.Broker
	mu     sync.Mutex
	revs   []broker.Revocation
}

func (e *env) revocations() []broker.Revocation {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]broker.Revocation(nil), e.revs...)
}

func openDB(t testing.TB, dir string) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(dir, "unhidra.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return db
}

func newEnv(t testing.TB, cfg auth.Config) *env {
	t.Helper()
	e := &env{clock: &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}, broker: inmem.NewBroker()}
	e.db = openDB(t, t.TempDir())
	e.store = sqlite.NewAuthStore(e.db)
	e.broker.Subscribe(broker.RevocationTopic, func(ev *broker.Event) {
		if ev.Kind == broker.Revoke && ev.Revocation != nil {
			e.mu.Lock()
			e.revs = append(e.revs, *ev.Revocation)
			e.mu.Unlock()
		}
	})
	if cfg.Secret == "" {
		cfg.Secret = secret
	}
	if cfg.Params == (auth.Params{}) {
		cfg.Params = cheap
	}
	if cfg.Now == nil {
		cfg.Now = e.clock.Now
	}
	svc, err := auth.New(cfg, auth.Deps{Store: e.store, Publisher: e.broker})
	if err != nil {
		t.Fatal(err)
	}
	e.svc = svc
	return e
}

var ip1 = netip.MustParseAddr("192.0.2.1")

func (e *env) mustRegister(t testing.TB, name, pw string) {
	t.Helper()
	if _, err := e.svc.Register(context.Background(), auth.RegisterInput{Username: name, Password: pw, IP: ip1}); err != nil {
		t.Fatalf("register %s: %v", name, err)
	}
}

func (e *env) mustLogin(t testing.TB, name, pw string) auth.TokenPair {
	t.Helper()
	p, err := e.svc.Login(context.Background(), auth.LoginInput{Username: name, Password: pw, IP: ip1})
	if err != nil {
		t.Fatalf("login %s: %v", name, err)
	}
	return p
}

func code(err error) string { return unhidra.ErrorCode(err) }

func TestPasswordBounds(t *testing.T) {
	e := newEnv(t, auth.Config{LoginPerMinute: 1000})
	ctx := context.Background()
	unicode1024 := strings.Repeat("é", 511) + "ab" // 1024 bytes
	tests := []struct {
		name     string
		password string
		want     string
	}{
		{"a 7-byte password is refused", "1234567", unhidra.EINVALID},
		{"an 8-byte password is accepted", "12345678", ""},
		{"a 1024-byte Unicode password is accepted", unicode1024, ""},
		{"a 1025-byte password is refused", unicode1024 + "x", unhidra.EINVALID},
		{"a 1 MiB password is refused", strings.Repeat("x", 1<<20), unhidra.EINVALID},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.svc.HashCount()
			_, err := e.svc.Register(ctx, auth.RegisterInput{Username: fmt.Sprintf("user%d", i), Password: tt.password})
			if code(err) != tt.want {
				t.Fatalf("err = %v, want code %q", err, tt.want)
			}
			if tt.want != "" && e.svc.HashCount() != before {
				t.Error("a refused password was hashed")
			}
		})
	}
	t.Run("the 1024-byte password round-trips byte-exact", func(t *testing.T) {
		e.mustLogin(t, "user2", unicode1024)
		// The same text in another Unicode normal form is another password.
		nfd := strings.Repeat("e\u0301", 511) + "ab"
		if _, err := e.svc.Login(ctx, auth.LoginInput{Username: "user2", Password: nfd[:min(len(nfd), 1024)], IP: ip1}); code(err) != unhidra.EUNAUTHORIZED {
			t.Fatalf("a different byte sequence logged in: %v", err)
		}
	})
	t.Run("an over-long login password is refused before hashing", func(t *testing.T) {
		before := e.svc.HashCount()
		_, err := e.svc.Login(ctx, auth.LoginInput{Username: "user1", Password: strings.Repeat("x", 1025), IP: ip1})
		if code(err) != unhidra.EINVALID || e.svc.HashCount() != before {
			t.Fatalf("err = %v, hashes +%d; want invalid and no hash", err, e.svc.HashCount()-before)
		}
	})
}

func TestWeakHashesAreUpgradedAtTheNextGoodLogin(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, dir)
	store := sqlite.NewAuthStore(db)
	ctx := context.Background()
	weak, err := auth.New(auth.Config{Secret: secret, Params: cheap}, auth.Deps{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := weak.CreateUser(ctx, auth.CreateUserInput{Username: "old", Password: "old password"}); err != nil {
		t.Fatal(err)
	}
	strong, err := auth.New(auth.Config{Secret: secret}, auth.Deps{Store: store}) // DefaultParams
	if err != nil {
		t.Fatal(err)
	}
	if _, err := strong.Login(ctx, auth.LoginInput{Username: "old", Password: "wrong password", IP: ip1}); code(err) != unhidra.EUNAUTHORIZED {
		t.Fatalf("wrong password: %v", err)
	}
	u, _ := store.User(ctx, "old")
	if !strings.HasPrefix(u.PasswordHash, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Fatalf("a failed login changed the hash: %s", u.PasswordHash[:30])
	}
	if _, err := strong.Login(ctx, auth.LoginInput{Username: "old", Password: "old password", IP: ip1}); err != nil {
		t.Fatal(err)
	}
	u, _ = store.User(ctx, "old")
	if !strings.HasPrefix(u.PasswordHash, "$argon2id$v=19$m=49152,t=3,p=1$") {
		t.Fatalf("after a good login the hash is %s…, want m=49152,t=3,p=1", u.PasswordHash[:32])
	}
	if _, err := strong.Login(ctx, auth.LoginInput{Username: "old", Password: "old password", IP: ip1}); err != nil {
		t.Fatalf("the upgraded hash does not verify: %v", err)
	}
}

func TestPerIPLoginLimit(t *testing.T) {
	e := newEnv(t, auth.Config{LoginPerMinute: 10})
	e.mustRegister(t, "alice", "alice password")
	ctx := context.Background()
	for i := range 10 {
		pw := "wrong password"
		if i%2 == 0 {
			pw = "alice password"
		}
		if _, err := e.svc.Login(ctx, auth.LoginInput{Username: "alice", Password: pw, IP: ip1}); code(err) == unhidra.ERATELIMITED {
			t.Fatalf("attempt %d was rate limited", i+1)
		}
		e.clock.Add(time.Second)
	}
	_, err := e.svc.Login(ctx, auth.LoginInput{Username: "alice", Password: "alice password", IP: ip1})
	if code(err) != unhidra.ERATELIMITED {
		t.Fatalf("the 11th attempt with the right password: %v, want rate_limited", err)
	}
	if ra := unhidra.RetryAfter(err); ra < 1 || ra > 60 {
		t.Errorf("Retry-After %d, want 1..60", ra)
	}
	if _, err := e.svc.Login(ctx, auth.LoginInput{Username: "alice", Password: "alice password", IP: netip.MustParseAddr("192.0.2.2")}); err != nil {
		t.Errorf("another IP was limited too: %v", err)
	}
	e.clock.Add(time.Minute)
	if _, err := e.svc.Login(ctx, auth.LoginInput{Username: "alice", Password: "alice password", IP: ip1}); err != nil {
		t.Errorf("a minute later the IP is still limited: %v", err)
	}
}

func TestPerAccountCapAcrossManyIPs(t *testing.T) {
	e := newEnv(t, auth.Config{LoginPerMinute: 10, HashQueue: 1000})
	e.mustRegister(t, "victim", "victim password")
	e.mustRegister(t, "bystander", "bystander password")
	ctx := context.Background()
	before := e.svc.HashCount()
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[string]int{}
	for i := range 500 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ip := netip.AddrFrom4([4]byte{127, 0, byte(i % 200 / 100), byte(1 + i%200)})
			_, err := e.svc.Login(ctx, auth.LoginInput{Username: "victim", Password: fmt.Sprintf("guess %d", i), IP: ip})
			mu.Lock()
			codes[code(err)]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	hashed := e.svc.HashCount() - before
	if hashed > auth.MaxAccountFailures {
		t.Fatalf("%d password attempts were hashed on one account, want at most %d", hashed, auth.MaxAccountFailures)
	}
	if codes[unhidra.EUNAUTHORIZED] != int(hashed) || codes[unhidra.ERATELIMITED] != 500-int(hashed) {
		t.Errorf("answers %v, want %d unauthorized and the rest rate_limited", codes, hashed)
	}
	if _, err := e.svc.Login(ctx, auth.LoginInput{Username: "victim", Password: "victim password", IP: netip.MustParseAddr("198.51.100.7")}); code(err) != unhidra.ERATELIMITED {
		t.Errorf("the locked account's owner got %v, want rate_limited for the rest of the hour", err)
	}
	if _, err := e.svc.Login(ctx, auth.LoginInput{Username: "bystander", Password: "bystander password", IP: netip.MustParseAddr("127.0.0.5")}); err != nil {
		t.Errorf("another account was affected: %v", err)
	}
	e.clock.Add(time.Hour + time.Second)
	if _, err := e.svc.Login(ctx, auth.LoginInput{Username: "victim", Password: "victim password", IP: ip1}); err != nil {
		t.Errorf("an hour later the account is still locked: %v", err)
	}
}

func TestUnknownUserAndWrongPasswordLookTheSame(t *testing.T) {
	// A cost where the hash dominates; few samples keep the test short.
	e := newEnv(t, auth.Config{LoginPerMinute: 1 << 20, Params: auth.Params{MemoryKiB: 4096, Iterations: 1, Parallelism: 1}})
	// One account per round: 15 failures each stay under the per-account
	// cap (20 an hour), which would otherwise answer round 2 with 429.
	for round := range 3 {
		e.mustRegister(t, fmt.Sprintf("known%d", round), "known password")
	}
	e.svc.Warm()
	ctx := context.Background()
	attempt := func(name string) (error, time.Duration, int64) {
		before := e.svc.HashCount()
		start := time.Now()
		_, err := e.svc.Login(ctx, auth.LoginInput{Username: name, Password: "not the password", IP: ip1})
		return err, time.Since(start), e.svc.HashCount() - before
	}
	med := func(d []time.Duration) time.Duration {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return d[len(d)/2]
	}
	// The guarantee: both answers are identical and both cost exactly one
	// verification with the same parameters. The timing check confirms it;
	// on a machine shared with other work a round may be noisy, so a
	// systematic difference must show in each of three rounds to fail.
	var diffs []time.Duration
	for round := range 3 {
		var known, unknown []time.Duration
		for i := range 15 {
			errK, dK, hK := attempt(fmt.Sprintf("known%d", round))
			errU, dU, hU := attempt(fmt.Sprintf("nobody%d-%d", round, i))
			if code(errK) != code(errU) || unhidra.ErrorMessage(errK) != unhidra.ErrorMessage(errU) {
				t.Fatalf("wrong password → %v; unknown user → %v; want the same", errK, errU)
			}
			if hK != 1 || hU != 1 {
				t.Fatalf("hashes: wrong password %d, unknown user %d; want one each", hK, hU)
			}
			known, unknown = append(known, dK), append(unknown, dU)
		}
		diff := med(known) - med(unknown)
		t.Logf("round %d: median wrong password %v, unknown user %v", round+1, med(known), med(unknown))
		if diff > -5*time.Millisecond && diff < 5*time.Millisecond {
			return
		}
		diffs = append(diffs, diff)
	}
	t.Errorf("median times differ by %v in every round, want < 5ms", diffs)
}

func TestParallelRegistrationsOfOneNameMakeOneAccount(t *testing.T) {
	e := newEnv(t, auth.Config{HashQueue: 200})
	ctx := context.Background()
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[string]int{}
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := []byte("racer")
			for j := range name {
				if i>>j&1 == 1 {
					name[j] -= 'a' - 'A'
				}
			}
			_, err := e.svc.Register(ctx, auth.RegisterInput{Username: string(name), Password: fmt.Sprintf("password %d", i)})
			mu.Lock()
			codes[code(err)]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if codes[""] != 1 || codes[unhidra.ECONFLICT] != 99 {
		t.Fatalf("results %v, want exactly one success and 99 conflicts", codes)
	}
	us, _ := e.store.Users(ctx)
	if len(us) != 1 || us[0].Username != "racer" {
		t.Fatalf("users %v, want exactly [racer]", us)
	}
}

func TestRefreshRotationAndReuseDetection(t *testing.T) {
	e := newEnv(t, auth.Config{})
	e.mustRegister(t, "alice", "alice password")
	ctx := context.Background()
	first := e.mustLogin(t, "alice", "alice password")
	second, err := e.svc.Refresh(ctx, first.RefreshToken, ip1)
	if err != nil {
		t.Fatal(err)
	}
	if second.RefreshToken == first.RefreshToken {
		t.Fatal("refresh did not rotate the token")
	}
	id, err := e.svc.AuthenticateToken(ctx, second.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	firstID, _ := e.svc.AuthenticateToken(ctx, first.AccessToken)
	if id.SessionID != firstID.SessionID {
		t.Error("the refreshed token belongs to another session")
	}
	// The rotated token again: the whole family dies.
	if _, err := e.svc.Refresh(ctx, first.RefreshToken, ip1); code(err) != unhidra.EUNAUTHORIZED {
		t.Fatalf("reuse: %v, want unauthorized", err)
	}
	if _, err := e.svc.Refresh(ctx, second.RefreshToken, ip1); code(err) != unhidra.EUNAUTHORIZED {
		t.Fatalf("the newer refresh token survived the reuse: %v", err)
	}
	if _, err := e.svc.AuthenticateToken(ctx, second.AccessToken); code(err) != unhidra.EUNAUTHORIZED {
		t.Fatalf("the session's access token survived the reuse: %v", err)
	}
	revs := e.revocations()
	if len(revs) != 1 || revs[0] != (broker.Revocation{Kind: broker.RevokeSession, ID: id.SessionID}) {
		t.Errorf("revocations %+v, want one for the session", revs)
	}
	for name, tok := range map[string]string{"an unknown token": "unhidra_rt_nope", "an empty token": "", "a huge token": strings.Repeat("x", 10000)} {
		if _, err := e.svc.Refresh(ctx, tok, ip1); code(err) != unhidra.EUNAUTHORIZED {
			t.Errorf("%s: %v, want unauthorized", name, err)
		}
	}
}

func TestParallelRefreshesWithOneTokenHaveExactlyOneWinner(t *testing.T) {
	e := newEnv(t, auth.Config{LoginPerMinute: 1 << 20})
	e.mustRegister(t, "alice", "alice password")
	ctx := context.Background()
	tries := 1000
	if testing.Short() {
		tries = 100
	}
	for i := range tries {
		p := e.mustLogin(t, "alice", "alice password")
		var wg sync.WaitGroup
		results := make([]error, 2)
		for j := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, results[j] = e.svc.Refresh(ctx, p.RefreshToken, ip1)
			}()
		}
		wg.Wait()
		wins := 0
		for _, err := range results {
			if err == nil {
				wins++
			} else if code(err) != unhidra.EUNAUTHORIZED {
				t.Fatalf("try %d: %v", i, err)
			}
		}
		if wins != 1 {
			t.Fatalf("try %d: %d winners, want exactly 1", i, wins)
		}
	}
}

func TestLogoutRefusesTheSessionsAccessTokenAtOnce(t *testing.T) {
	e := newEnv(t, auth.Config{})
	e.mustRegister(t, "alice", "alice password")
	ctx := context.Background()
	p := e.mustLogin(t, "alice", "alice password")
	other := e.mustLogin(t, "alice", "alice password")
	who, err := e.svc.AuthenticateToken(ctx, p.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Logout(ctx, who); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.AuthenticateToken(ctx, p.AccessToken); code(err) != unhidra.EUNAUTHORIZED {
		t.Fatalf("access token after logout: %v, want unauthorized", err)
	}
	if _, err := e.svc.Refresh(ctx, p.RefreshToken, ip1); code(err) != unhidra.EUNAUTHORIZED {
		t.Fatalf("refresh token after logout: %v, want unauthorized", err)
	}
	if _, err := e.svc.AuthenticateToken(ctx, other.AccessToken); err != nil {
		t.Fatalf("another session was ended too: %v", err)
	}
	if revs := e.revocations(); len(revs) != 1 || revs[0] != (broker.Revocation{Kind: broker.RevokeSession, ID: who.SessionID}) {
		t.Errorf("revocations %+v", revs)
	}
}

func TestPasswordChangeEndsEveryOtherSession(t *testing.T) {
	e := newEnv(t, auth.Config{})
	e.mustRegister(t, "alice", "alice password")
	ctx := context.Background()
	keep := e.mustLogin(t, "alice", "alice password")
	lose := e.mustLogin(t, "alice", "alice password")
	who, _ := e.svc.AuthenticateToken(ctx, keep.AccessToken)
	if _, err := e.svc.AuthenticateToken(ctx, lose.AccessToken); err != nil {
		t.Fatal(err) // cached as valid: the change must still end it at once
	}
	if err := e.svc.ChangePassword(ctx, who, "wrong password", "new password!"); code(err) != unhidra.EFORBIDDEN {
		t.Fatalf("wrong current password: %v, want forbidden", err)
	}
	if err := e.svc.ChangePassword(ctx, who, "alice password", "short"); code(err) != unhidra.EINVALID {
		t.Fatalf("short new password: %v, want invalid", err)
	}
	if err := e.svc.ChangePassword(ctx, who, "alice password", "new password!"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.AuthenticateToken(ctx, lose.AccessToken); code(err) != unhidra.EUNAUTHORIZED {
		t.Errorf("the other session survived: %v", err)
	}
	if _, err := e.svc.AuthenticateToken(ctx, keep.AccessToken); err != nil {
		t.Errorf("the current session was ended: %v", err)
	}
	if _, err := e.svc.Login(ctx, auth.LoginInput{Username: "alice", Password: "alice password", IP: ip1}); code(err) != unhidra.EUNAUTHORIZED {
		t.Errorf("the old password still works: %v", err)
	}
	e.mustLogin(t, "alice", "new password!")
	want := broker.Revocation{Kind: broker.RevokeUserExcept, ID: "alice", Except: who.SessionID}
	if revs := e.revocations(); len(revs) != 1 || revs[0] != want {
		t.Errorf("revocations %+v, want [%+v]", revs, want)
	}
}

func TestRegistrationModes(t *testing.T) {
	ctx := context.Background()
	t.Run("open registration makes verified accounts", func(t *testing.T) {
		e := newEnv(t, auth.Config{Registration: "open"})
		u, err := e.svc.Register(ctx, auth.RegisterInput{Username: "Bob", Password: "bob password", DisplayName: " Bob B. "})
		if err != nil || !u.Verified || u.Username != "bob" || u.DisplayName != "Bob B." {
			t.Fatalf("got %+v, %v", u, err)
		}
		if _, err := e.svc.Register(ctx, auth.RegisterInput{Username: "BOB", Password: "bob password"}); code(err) != unhidra.ECONFLICT {
			t.Errorf("a case variant: %v, want conflict", err)
		}
	})
	t.Run("approval registration needs an admin before login", func(t *testing.T) {
		e := newEnv(t, auth.Config{Registration: "approval"})
		u, err := e.svc.Register(ctx, auth.RegisterInput{Username: "bob", Password: "bob password"})
		if err != nil || u.Verified {
			t.Fatalf("got %+v, %v; want an unverified account", u, err)
		}
		if _, err := e.svc.Login(ctx, auth.LoginInput{Username: "bob", Password: "bob password", IP: ip1}); code(err) != unhidra.EFORBIDDEN {
			t.Fatalf("unverified login: %v, want forbidden", err)
		}
		if _, err := e.svc.VerifyUser(ctx, auth.Operator, "bob"); err != nil {
			t.Fatal(err)
		}
		e.mustLogin(t, "bob", "bob password")
	})
	t.Run("closed registration is forbidden", func(t *testing.T) {
		e := newEnv(t, auth.Config{Registration: "closed"})
		if _, err := e.svc.Register(ctx, auth.RegisterInput{Username: "bob", Password: "bob password"}); code(err) != unhidra.EFORBIDDEN {
			t.Fatalf("got %v, want forbidden", err)
		}
	})
	t.Run("bad usernames are refused", func(t *testing.T) {
		e := newEnv(t, auth.Config{})
		for _, name := range []string{"ab", strings.Repeat("a", 33), "bob\x00", "bob\r\nx", "bob smith", "böb", "bob/../x", strings.Repeat("a", 1<<20)} {
			if _, err := e.svc.Register(ctx, auth.RegisterInput{Username: name, Password: "bob password"}); code(err) != unhidra.EINVALID {
				t.Errorf("username %.20q: %v, want invalid", name, err)
			}
		}
	})
}

func TestDisablingAUserEndsItsSessionsAndLogins(t *testing.T) {
	e := newEnv(t, auth.Config{})
	ctx := context.Background()
	e.mustRegister(t, "alice", "alice password")
	if _, err := e.svc.CreateUser(ctx, auth.CreateUserInput{Username: "root", Password: "root password", Admin: true}); err != nil {
		t.Fatal(err)
	}
	p := e.mustLogin(t, "alice", "alice password")
	alice, _ := e.svc.AuthenticateToken(ctx, p.AccessToken)
	root, _ := e.svc.AuthenticateToken(ctx, e.mustLogin(t, "root", "root password").AccessToken)
	if _, err := e.svc.DisableUser(ctx, alice, "root"); code(err) != unhidra.EFORBIDDEN {
		t.Fatalf("a non-admin disabled someone: %v", err)
	}
	if _, err := e.svc.Users(ctx, alice); code(err) != unhidra.EFORBIDDEN {
		t.Fatalf("a non-admin listed users: %v", err)
	}
	if _, err := e.svc.DisableUser(ctx, root, "root"); code(err) != unhidra.EINVALID {
		t.Fatalf("an admin disabled themself: %v", err)
	}
	u, err := e.svc.DisableUser(ctx, root, "alice")
	if err != nil || !u.Disabled {
		t.Fatalf("disable: %+v %v", u, err)
	}
	if _, err := e.svc.AuthenticateToken(ctx, p.AccessToken); code(err) != unhidra.EUNAUTHORIZED {
		t.Errorf("a disabled user's token still works: %v", err)
	}
	if _, err := e.svc.Login(ctx, auth.LoginInput{Username: "alice", Password: "alice password", IP: ip1}); code(err) != unhidra.EFORBIDDEN {
		t.Errorf("a disabled user logged in: %v", err)
	}
	if revs := e.revocations(); len(revs) != 1 || revs[0] != (broker.Revocation{Kind: broker.RevokeUser, ID: "alice"}) {
		t.Errorf("revocations %+v", revs)
	}
}

func TestARevocationByAnotherProcessIsSeenWithinTheCacheTTL(t *testing.T) {
	e := newEnv(t, auth.Config{RevocationTTL: 5 * time.Second})
	ctx := context.Background()
	e.mustRegister(t, "alice", "alice password")
	p := e.mustLogin(t, "alice", "alice password")
	if _, err := e.svc.AuthenticateToken(ctx, p.AccessToken); err != nil {
		t.Fatal(err)
	}
	// The command line is another Service on the same database.
	cli, err := auth.New(auth.Config{Secret: secret, Params: cheap, Now: e.clock.Now}, auth.Deps{Store: sqlite.NewAuthStore(e.db)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.DisableUser(ctx, auth.Operator, "alice"); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(5*time.Second + time.Millisecond)
	if _, err := e.svc.AuthenticateToken(ctx, p.AccessToken); code(err) != unhidra.EUNAUTHORIZED {
		t.Fatalf("after the cache TTL the disabled user's token: %v, want unauthorized", err)
	}
}

func TestEnsureAdminCreatesTheFirstAccountOnce(t *testing.T) {
	e := newEnv(t, auth.Config{})
	ctx := context.Background()
	created, pw, err := e.svc.EnsureAdmin(ctx, "")
	if err != nil || !created || len(pw) < 16 {
		t.Fatalf("EnsureAdmin = %v, %d-char password, %v", created, len(pw), err)
	}
	p := e.mustLogin(t, "admin", pw)
	if len(p.User.Roles) != 1 || p.User.Roles[0] != unhidra.RoleAdmin {
		t.Errorf("admin roles %v", p.User.Roles)
	}
	if created, _, err := e.svc.EnsureAdmin(ctx, "another password"); created || err != nil {
		t.Errorf("second EnsureAdmin = %v, %v; want nothing done", created, err)
	}
}

func TestDeviceIdentitiesCannotUseUserOperations(t *testing.T) {
	e := newEnv(t, auth.Config{})
	ctx := context.Background()
	dev := unhidra.Identity{Principal: auth.Operator.Principal}
	dev.Principal.Kind, dev.Principal.ID = "device", "d1"
	if _, err := e.svc.Me(ctx, dev); code(err) != unhidra.EFORBIDDEN {
		t.Errorf("Me: %v", err)
	}
	if err := e.svc.Logout(ctx, dev); code(err) != unhidra.EFORBIDDEN {
		t.Errorf("Logout: %v", err)
	}
	if _, err := e.svc.Users(ctx, dev); code(err) != unhidra.EFORBIDDEN {
		t.Errorf("Users: %v", err)
	}
}

func BenchmarkAuthenticateToken(b *testing.B) {
	e := newEnv(b, auth.Config{})
	e.mustRegister(b, "alice", "alice password")
	p := e.mustLogin(b, "alice", "alice password")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.svc.AuthenticateToken(ctx, p.AccessToken); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoginThroughput measures successful password logins per second
// through the bounded pool with the production parameters, against the
// limit the pool allows: pool workers ÷ the time of one hash.
func BenchmarkLoginThroughput(b *testing.B) {
	e := newEnv(b, auth.Config{Params: auth.DefaultParams, LoginPerMinute: 1 << 30, HashQueue: 4096})
	e.mustRegister(b, "alice", "alice password")
	one := time.Duration(1 << 62)
	for range 3 {
		start := time.Now()
		e.mustLogin(b, "alice", "alice password")
		one = min(one, time.Since(start))
	}
	workers := runtime.GOMAXPROCS(0)
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := e.svc.Login(context.Background(), auth.LoginInput{Username: "alice", Password: "alice password", IP: ip1}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "logins/s")
	b.ReportMetric(float64(workers)/one.Seconds(), "limit-logins/s")
	b.ReportMetric(float64(one.Milliseconds()), "ms/hash")
	b.ReportMetric(float64(e.svc.HashPeak()), "peak-hashes")
}

func TestRevocationsFromAnotherNodeApplyAtOnce(t *testing.T) {
	e := newEnv(t, auth.Config{RevocationTTL: time.Hour})
	ctx := context.Background()
	e.mustRegister(t, "alice", "alice password")
	// A second node: same database and broker, its own cache.
	other, err := auth.New(auth.Config{Secret: secret, Params: cheap, Now: e.clock.Now, RevocationTTL: time.Hour},
		auth.Deps{Store: sqlite.NewAuthStore(e.db), Publisher: e.broker})
	if err != nil {
		t.Fatal(err)
	}
	e.broker.Subscribe(broker.RevocationTopic, other.OnRevocation)
	p := e.mustLogin(t, "alice", "alice password")
	who, err := other.AuthenticateToken(ctx, p.AccessToken) // cached as valid for an hour
	if err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Logout(ctx, who); err != nil {
		t.Fatal(err)
	}
	if _, err := other.AuthenticateToken(ctx, p.AccessToken); code(err) != unhidra.EUNAUTHORIZED {
		t.Fatalf("the other node still accepts the logged-out token: %v", err)
	}
	other.OnRevocation(&broker.Event{Kind: broker.Revoke}) // ignored, not a panic
	other.OnRevocation(&broker.Event{Kind: broker.Typing, Channel: "c"})
}

func TestEndedSessionsArePrunedAfterAnAccessTokenLifetime(t *testing.T) {
	e := newEnv(t, auth.Config{AccessTTL: 15 * time.Minute})
	ctx := context.Background()
	e.mustRegister(t, "alice", "alice password")
	ended := e.mustLogin(t, "alice", "alice password")
	live := e.mustLogin(t, "alice", "alice password")
	who, _ := e.svc.AuthenticateToken(ctx, ended.AccessToken)
	if err := e.svc.Logout(ctx, who); err != nil {
		t.Fatal(err)
	}
	if n, err := e.svc.PruneSessions(ctx); err != nil || n != 0 {
		t.Fatalf("pruned %d (%v) right after logout, want 0", n, err)
	}
	e.clock.Add(16*time.Minute + time.Second)
	if n, err := e.svc.PruneSessions(ctx); err != nil || n != 1 {
		t.Fatalf("pruned %d (%v), want the one ended session", n, err)
	}
	if _, err := e.svc.Refresh(ctx, ended.RefreshToken, ip1); code(err) != unhidra.EUNAUTHORIZED {
		t.Errorf("a pruned session's refresh token: %v", err)
	}
	if _, err := e.svc.Refresh(ctx, live.RefreshToken, ip1); err != nil {
		t.Errorf("the live session was pruned: %v", err)
	}
}
