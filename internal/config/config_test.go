package config

import (
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
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
	t.Run("usage printed for -h hides every secret", func(t *testing.T) {
		var err error
		out := captureStderr(t, func() {
			_, err = Load([]string{"-h"}, func(k string) string { return env[k] })
		})
		if !errors.Is(err, flag.ErrHelp) {
			t.Fatalf("err = %v, want flag.ErrHelp", err)
		}
		if !strings.Contains(out, "-jwt-secret") || !strings.Contains(out, "Example:") {
			t.Fatalf("usage was not printed:\n%s", out)
		}
		for _, s := range []string{secret, previous, dbPass, redisPW} {
			if strings.Contains(out, s) {
				t.Errorf("usage shows the secret %q:\n%s", s, out)
			}
		}
	})
	t.Run("a wrong flag is a FlagError naming it, printing nothing, without secrets", func(t *testing.T) {
		var err error
		out := captureStderr(t, func() {
			_, err = Load([]string{"--no-such-flag"}, func(k string) string { return env[k] })
		})
		var fe *FlagError
		if !errors.As(err, &fe) || !strings.Contains(err.Error(), "no-such-flag") || strings.Contains(err.Error(), "\n") {
			t.Fatalf("err = %v, want a one-line FlagError naming the flag (the caller adds the hint)", err)
		}
		if out != "" {
			t.Errorf("a wrong flag printed:\n%s", out)
		}
		for _, s := range []string{secret, previous, dbPass, redisPW} {
			if strings.Contains(err.Error(), s) {
				t.Errorf("the error shows the secret %q", s)
			}
		}
	})
}

func TestParseErrorsAreAllReportedWithTheConfig(t *testing.T) {
	env := map[string]string{"GATEWAY_PORT": "abc", "ACCESS_TOKEN_TTL": "5x", "TRUST_PROXY_TLS": "perhaps", "REGISTRATION": "sometimes"}
	c, err := Load([]string{"--mqtt-port", "x1", "--refresh-token-ttl=never", "--e2ee-enforced=maybe", "--auth-port", "9300"}, func(k string) string { return env[k] })
	if c == nil {
		t.Fatalf("Load returned no Config with value errors: %v", err)
	}
	for _, want := range []string{`GATEWAY_PORT: "abc" is not an integer`, `ACCESS_TOKEN_TTL: "5x" is not a duration`, `TRUST_PROXY_TLS: "perhaps" is not a boolean`,
		`--mqtt-port: "x1" is not an integer`, `--refresh-token-ttl: "never" is not a duration`, `--e2ee-enforced: "maybe" is not a boolean`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Load's error %v lacks %s", err, want)
		}
	}
	if c.AuthPort != 9300 {
		t.Errorf("a good flag after bad ones: AuthPort = %d, want 9300", c.AuthPort)
	}
	if c.GatewayPort != 9000 || c.MQTTPort != 1883 {
		t.Errorf("unparsable ports = %d, %d; want the defaults", c.GatewayPort, c.MQTTPort)
	}
	// Validate's own problems come on top, so serve lists both at once.
	if v := c.Validate(); v == nil || !strings.Contains(v.Error(), "REGISTRATION") {
		t.Errorf("Validate: %v", v)
	}
	if c, err := Load([]string{"--trust-proxy-tls", "--gateway-port=9100"}, func(string) string { return "" }); err != nil || !c.TrustProxyTLS || c.GatewayPort != 9100 {
		t.Errorf("good flags: %+v %v", c, err)
	}
}

func TestTwoListenersOnOnePortAreRefused(t *testing.T) {
	load := func(env map[string]string) *Config {
		t.Helper()
		c, err := Load(nil, func(k string) string { return env[k] })
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	err := load(map[string]string{"AUTH_PORT": "9500", "MQTT_PORT": "9500"}).Validate()
	if err == nil || !strings.Contains(err.Error(), "MQTT_PORT: 9500 is also AUTH_PORT") {
		t.Errorf("Validate: %v", err)
	}
	// Ports of services this process does not run, and port 0, do not collide.
	if err := load(map[string]string{"AUTH_PORT": "9500", "MQTT_PORT": "9500", "UNHIDRA_SERVICES": "auth,gateway"}).Validate(); err != nil {
		t.Errorf("a port of a service not run here: %v", err)
	}
	if err := load(map[string]string{"AUTH_PORT": "0", "GATEWAY_PORT": "0", "MQTT_PORT": "0"}).Validate(); err != nil {
		t.Errorf("port 0 everywhere: %v", err)
	}
	// MQTT_TLS_PORT is opened only with a certificate.
	if err := load(map[string]string{"MQTT_TLS_PORT": "9000"}).Validate(); err != nil {
		t.Errorf("MQTT_TLS_PORT without a certificate: %v", err)
	}
}

func TestCheckWritableSaysCannotWrite(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, dataDir, db, want string }{
		{"a data dir under a file", filepath.Join(file, "sub"), "", "cannot write " + filepath.Join(file, "sub")},
		{"a database dir under a file", t.TempDir(), "sqlite://" + filepath.Join(file, "db", "u.db"), "cannot write " + filepath.Join(file, "db")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Config{DataDir: tc.dataDir, DatabaseURL: tc.db}
			if c.DatabaseURL == "" {
				c.DatabaseURL = "sqlite://" + filepath.Join(tc.dataDir, "unhidra.db")
			}
			err := c.CheckWritable()
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("CheckWritable: %v; want %q", err, tc.want)
			}
			if _, err := c.EnsureDevSecret(func(b []byte) (int, error) { return len(b), nil }); err == nil || !strings.Contains(err.Error(), "cannot write") {
				if tc.db == "" {
					t.Errorf("EnsureDevSecret: %v", err)
				}
			}
		})
	}
	t.Run("a writable dir is created and left empty", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "new", "data")
		c := &Config{DataDir: dir, DatabaseURL: "sqlite://" + filepath.Join(dir, "unhidra.db")}
		if err := c.CheckWritable(); err != nil {
			t.Fatal(err)
		}
		entries, err := os.ReadDir(dir)
		if err != nil || len(entries) != 0 {
			t.Errorf("the data dir holds %v (%v); want it empty", entries, err)
		}
	})
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
