package config

import (
	"errors"
	"flag"
	"io"
	"os"
	"strings"
	"testing"
)

// captureStderr runs f with os.Stderr redirected and returns what it wrote
// (flag usage goes there).
func captureStderr(t *testing.T, f func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stderr
	os.Stderr = w
	done := make(chan string)
	go func() {
		b, _ := io.ReadAll(r)
		done <- string(b)
	}()
	defer func() { os.Stderr = old }()
	f()
	w.Close()
	return <-done
}

func TestUsageNeverShowsSecretsFromTheEnvironment(t *testing.T) {
	const (
		secret   = "jwt-secret-from-env-0123456789abcdef"
		previous = "previous-secret-from-env-0123456789ab"
		dbPass   = "db-password-from-env"
		redisPW  = "redis-password-from-env"
	)
	env := map[string]string{
		"JWT_SECRET":          secret,
		"JWT_SECRET_PREVIOUS": previous,
		"DATABASE_URL":        "postgres://unhidra:" + dbPass + "@db.example:5432/unhidra",
		"REDIS_URL":           "redis://:" + redisPW + "@cache.example:6379/0",
	}
	for _, args := range [][]string{{"-h"}, {"--no-such-flag"}} {
		t.Run("usage printed for "+args[0]+" hides every secret", func(t *testing.T) {
			var err error
			out := captureStderr(t, func() {
				_, err = Load(args, func(k string) string { return env[k] })
			})
			if err == nil {
				t.Fatal("Load succeeded; want a usage error")
			}
			if args[0] == "-h" && !errors.Is(err, flag.ErrHelp) {
				t.Fatalf("err = %v, want flag.ErrHelp", err)
			}
			if !strings.Contains(out, "-jwt-secret") {
				t.Fatalf("usage was not printed:\n%s", out)
			}
			for _, s := range []string{secret, previous, dbPass, redisPW} {
				if strings.Contains(out, s) {
					t.Errorf("usage shows the secret %q:\n%s", s, out)
				}
			}
		})
	}
}

func TestSecretFlagsStillSetTheirValues(t *testing.T) {
	env := map[string]string{"JWT_SECRET": "from-env-0123456789abcdef0123456789", "DATABASE_URL": "sqlite://from-env.db"}
	c, err := Load([]string{"-jwt-secret", "from-flag-0123456789abcdef0123456789", "-jwt-secret-previous", "prev-flag-0123456789abcdef0123456789",
		"-database-url", "sqlite://flag.db", "-redis-url", "redis://:pw@h:6379/0"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.JWTSecret != "from-flag-0123456789abcdef0123456789" || c.JWTSecretPrevious != "prev-flag-0123456789abcdef0123456789" {
		t.Errorf("secrets = %q, %q; want the flags' values", c.JWTSecret, c.JWTSecretPrevious)
	}
	if c.DatabaseURL != "sqlite://flag.db" || c.RedisURL != "redis://:pw@h:6379/0" {
		t.Errorf("urls = %q, %q; want the flags' values", c.DatabaseURL, c.RedisURL)
	}
	c, err = Load(nil, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.JWTSecret != env["JWT_SECRET"] || c.DatabaseURL != env["DATABASE_URL"] {
		t.Errorf("without flags got %q, %q; want the environment's values", c.JWTSecret, c.DatabaseURL)
	}
}

func TestRedactURLHidesPasswords(t *testing.T) {
	for _, tc := range []struct{ name, in, secret string }{
		{"a postgres URL loses its password", "postgres://u:hunter2pw@db:5432/x", "hunter2pw"},
		{"a redis URL loses its password", "redis://:hunter2pw@cache:6379/0", "hunter2pw"},
		{"an unparsable URL with credentials is not echoed", "postgres://u:hunter2pw@db:bad port/x", "hunter2pw"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := redactURL(tc.in); strings.Contains(got, tc.secret) {
				t.Errorf("redactURL(%q) = %q, still shows the password", tc.in, got)
			}
		})
	}
}
