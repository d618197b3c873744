package auth_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/auth"
	"github.com/unhidra/unhidra/internal/sqlite"
)

// stranger makes n wrong attempts on name from many addresses, without a
// device cookie.
func (e *env) stranger(t *testing.T, name string, n int) {
	t.Helper()
	for i := range n {
		ip := netip.AddrFrom4([4]byte{203, 0, 113, byte(1 + i%250)})
		if _, err := e.svc.Login(context.Background(), auth.LoginInput{Username: name, Password: fmt.Sprintf("guess %d", i), IP: ip}); code(err) != unhidra.EUNAUTHORIZED {
			t.Fatalf("stranger's attempt %d: %v, want unauthorized", i+1, err)
		}
	}
}

func (e *env) loginWith(name, pw, cookie string) (auth.TokenPair, error) {
	return e.svc.Login(context.Background(), auth.LoginInput{Username: name, Password: pw, IP: ip1, DeviceCookie: cookie})
}

func TestDeviceCookieKeepsTheOwnerInWhileStrangersLockTheAccount(t *testing.T) {
	e := newEnv(t, auth.Config{LoginPerMinute: 1000})
	e.mustRegister(t, "victim", "victim password")
	owner := e.mustLogin(t, "victim", "victim password")
	if owner.DeviceCookie == "" {
		t.Fatal("a successful login returned no device cookie")
	}
	e.stranger(t, "victim", auth.MaxAccountFailures)

	if _, err := e.loginWith("victim", "victim password", ""); code(err) != unhidra.ERATELIMITED {
		t.Fatalf("an untrusted client with the right password: %v, want rate_limited (the account is locked)", err)
	}
	p, err := e.loginWith("victim", "victim password", owner.DeviceCookie)
	if err != nil {
		t.Fatalf("the owner with a valid device cookie was locked out: %v", err)
	}
	if p.AccessToken == "" || p.DeviceCookie == "" || p.DeviceCookie == owner.DeviceCookie {
		t.Errorf("the trusted login answered %+v, want tokens and a fresh device cookie", p)
	}
	if _, err := e.loginWith("victim", "victim password", p.DeviceCookie); err != nil {
		t.Errorf("the fresh cookie is not trusted: %v", err)
	}
	if _, err := e.loginWith("victim", "wrong password", owner.DeviceCookie); code(err) != unhidra.EUNAUTHORIZED {
		t.Errorf("a wrong password with a valid cookie: %v, want unauthorized", err)
	}
}

func TestDeviceCookieThatIsNotValidGivesNoExemption(t *testing.T) {
	e := newEnv(t, auth.Config{LoginPerMinute: 1000})
	e.mustRegister(t, "victim", "victim password")
	e.mustRegister(t, "other", "other password")
	good := e.mustLogin(t, "victim", "victim password").DeviceCookie
	others := e.mustLogin(t, "other", "other password").DeviceCookie

	// A cookie of the same shape under another server's secret.
	foreign := newEnv(t, auth.Config{Secret: "another-server-secret-0123456789abcdef", LoginPerMinute: 1000})
	foreign.mustRegister(t, "victim", "victim password")
	forged := foreign.mustLogin(t, "victim", "victim password").DeviceCookie

	payload, mac, _ := strings.Cut(good, ".")
	raw, _ := base64.RawURLEncoding.DecodeString(payload)
	renamed := base64.RawURLEncoding.EncodeToString(bytes.Replace(raw, []byte("victim|"), []byte("other|"), 1)) + "." + mac
	flipped := []byte(good)
	flipped[len(flipped)-3] ^= 1
	if flipped[len(flipped)-3] == good[len(good)-3] {
		t.Fatal("the tampered cookie did not change")
	}
	e.stranger(t, "victim", auth.MaxAccountFailures)

	for _, tc := range []struct{ name, cookie string }{
		{"no cookie", ""},
		{"a cookie with a flipped signature byte", string(flipped)},
		{"a cookie of another user", others},
		{"a cookie whose user was rewritten", renamed},
		{"a cookie signed under another secret", forged},
		{"the payload alone", payload},
		{"garbage", "x.y"},
		{"an over-long cookie", good + strings.Repeat("A", auth.MaxDeviceCookieLen)},
	} {
		t.Run(tc.name+" is untrusted", func(t *testing.T) {
			if _, err := e.loginWith("victim", "victim password", tc.cookie); code(err) != unhidra.ERATELIMITED {
				t.Fatalf("login with %s on a locked account: %v, want rate_limited", tc.name, err)
			}
		})
	}
	t.Run("the genuine cookie is trusted", func(t *testing.T) {
		if _, err := e.loginWith("victim", "victim password", good); err != nil {
			t.Fatal(err)
		}
	})
}

func TestDeviceCookieExpiresAfterItsMaxAge(t *testing.T) {
	e := newEnv(t, auth.Config{LoginPerMinute: 1000})
	e.mustRegister(t, "victim", "victim password")
	old := e.mustLogin(t, "victim", "victim password").DeviceCookie
	e.clock.Add(auth.DeviceCookieMaxAge + time.Hour)
	e.stranger(t, "victim", auth.MaxAccountFailures)
	if _, err := e.loginWith("victim", "victim password", old); code(err) != unhidra.ERATELIMITED {
		t.Fatalf("a cookie older than its max age: %v, want rate_limited", err)
	}
}

func TestDeviceCookieFailuresLockOnlyThatCookie(t *testing.T) {
	e := newEnv(t, auth.Config{LoginPerMinute: 1000})
	e.mustRegister(t, "victim", "victim password")
	first := e.mustLogin(t, "victim", "victim password").DeviceCookie
	second := e.mustLogin(t, "victim", "victim password").DeviceCookie

	for i := range auth.DeviceCookieMaxFailures {
		if _, err := e.loginWith("victim", "wrong password", first); code(err) != unhidra.EUNAUTHORIZED {
			t.Fatalf("trusted failure %d: %v", i+1, err)
		}
	}
	_, err := e.loginWith("victim", "victim password", first)
	if code(err) != unhidra.ERATELIMITED || unhidra.RetryAfter(err) < 1 {
		t.Fatalf("the cookie after %d failures: %v, want rate_limited with Retry-After", auth.DeviceCookieMaxFailures, err)
	}
	if _, err := e.loginWith("victim", "victim password", second); err != nil {
		t.Errorf("another cookie of the same user was locked too: %v", err)
	}
	// The cookie's failures did not count against the account: 19 more
	// untrusted failures still leave untrusted logins open.
	e.stranger(t, "victim", auth.MaxAccountFailures-1)
	if _, err := e.loginWith("victim", "victim password", ""); err != nil {
		t.Errorf("after %d trusted and %d untrusted failures the account is locked: %v", auth.DeviceCookieMaxFailures, auth.MaxAccountFailures-1, err)
	}
	e.clock.Add(auth.DeviceCookieWindow + time.Second)
	if _, err := e.loginWith("victim", "victim password", first); err != nil {
		t.Errorf("the cookie is still locked after its window: %v", err)
	}
}

func TestDeviceCookieSurvivesSecretRotation(t *testing.T) {
	e := newEnv(t, auth.Config{LoginPerMinute: 1000})
	e.mustRegister(t, "victim", "victim password")
	old := e.mustLogin(t, "victim", "victim password").DeviceCookie
	rotated, err := auth.New(auth.Config{Secret: "the-next-secret-0123456789abcdefghij", PreviousSecret: secret, Params: cheap, LoginPerMinute: 1000, Now: e.clock.Now}, auth.Deps{Store: e.store})
	if err != nil {
		t.Fatal(err)
	}
	e.svc = rotated
	e.stranger(t, "victim", auth.MaxAccountFailures)
	if _, err := e.loginWith("victim", "victim password", old); err != nil {
		t.Fatalf("a cookie signed under JWT_SECRET_PREVIOUS: %v", err)
	}
}

func TestPasswordChangeIsNotBlockedByAStrangersLockout(t *testing.T) {
	e := newEnv(t, auth.Config{LoginPerMinute: 1000})
	e.mustRegister(t, "victim", "victim password")
	p := e.mustLogin(t, "victim", "victim password")
	who, err := e.svc.AuthenticateToken(context.Background(), p.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	e.stranger(t, "victim", auth.MaxAccountFailures)
	if err := e.svc.ChangePassword(context.Background(), who, "victim password", "a new victim password"); err != nil {
		t.Fatalf("the owner could not change the password of a locked account: %v", err)
	}
	// The session's own wrong guesses are still capped.
	var last error
	for range auth.DeviceCookieMaxFailures + 1 {
		last = e.svc.ChangePassword(context.Background(), who, "wrong current password", "another new password")
	}
	if code(last) != unhidra.ERATELIMITED {
		t.Errorf("after %d wrong current passwords in one session: %v, want rate_limited", auth.DeviceCookieMaxFailures+1, last)
	}
}

func TestDeviceCookieName(t *testing.T) {
	a, b := auth.DeviceCookieName("Alice"), auth.DeviceCookieName("alice")
	if a == "" || a != b || !strings.HasPrefix(a, auth.DeviceCookiePrefix) || strings.Contains(a, "alice") {
		t.Errorf("DeviceCookieName(Alice)=%q, (alice)=%q: want one opaque name for both", a, b)
	}
	if auth.DeviceCookieName("bob") == a {
		t.Error("two users share a cookie name")
	}
	if auth.DeviceCookieName("no spaces allowed") != "" {
		t.Error("an invalid username has a cookie name")
	}
}

// lockedBuffer is a goroutine-safe log sink.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func TestFailedLoginsNeverLogWhatWasTyped(t *testing.T) {
	var logs lockedBuffer
	db := openDB(t, t.TempDir())
	svc, err := auth.New(auth.Config{Secret: secret, Params: cheap, LoginPerMinute: 1000},
		auth.Deps{Store: sqlite.NewAuthStore(db), Log: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	pw := "tr0ub4dor-and-3-horses"
	if _, err := svc.Register(ctx, auth.RegisterInput{Username: "alice", Password: pw}); err != nil {
		t.Fatal(err)
	}
	typed := []string{
		pw,                            // the password typed in the username field
		"eyjhbgcioi.eyjzdwiioi.sig",   // a JWT pasted there (lower-cased by the name rules)
		"eyJhbGciOi.eyJzdWIiOi.sig",   // and as typed
		"unhidra_rt_abcdefghijklmnop", // a refresh token
	}
	for _, name := range typed {
		for range auth.MaxAccountFailures + 1 { // the last one hits the lock
			_, _ = svc.Login(ctx, auth.LoginInput{Username: name, Password: pw, IP: ip1})
		}
	}
	if _, err := svc.Login(ctx, auth.LoginInput{Username: "alice", Password: "the wrong one", IP: ip1}); code(err) != unhidra.EUNAUTHORIZED {
		t.Fatal(err)
	}
	if _, err := svc.Refresh(ctx, "unhidra_rt_bogusbogusbogusbogus", ip1); code(err) != unhidra.EUNAUTHORIZED {
		t.Fatal(err)
	}
	out := logs.String()
	if !strings.Contains(out, "bad credentials") || !strings.Contains(out, "account locked") || !strings.Contains(out, "redacted:") {
		t.Fatalf("the failures were not audited with a redacted name:\n%s", out)
	}
	for _, s := range append(typed, strings.ToLower(pw), "unhidra_rt_bogus", "the wrong one") {
		if strings.Contains(out, s) {
			t.Errorf("the log holds %q:\n%s", s, out)
		}
	}
}
