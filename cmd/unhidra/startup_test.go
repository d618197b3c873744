package main

// Start-up: every port is opened before the data dir is touched, so a busy
// port or a refused configuration leaves no database, secret or admin
// behind; problems name their variable and are listed at once; the ready
// line gives the web client's URL.

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/e2etest"
)

// serveOnce runs `unhidra serve` in-process with env (over a base of free
// ports, every service but ML, JSON logs) and returns its error, stdout and
// stderr. It is for starts that must fail: a start that succeeds is stopped
// at once and reported.
func serveOnce(t *testing.T, extra map[string]string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	e := map[string]string{
		"AUTH_PORT": "0", "GATEWAY_PORT": "0", "MQTT_PORT": "0", "MQTT_TLS_PORT": "0",
		"UNHIDRA_SERVICES": "auth,gateway,mqtt", "LOG_FORMAT": "json", "SHUTDOWN_TIMEOUT": "2s",
	}
	for k, v := range extra {
		e[k] = v
	}
	var out, errs e2etest.SyncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, env{args: append([]string{"serve"}, args...), getenv: func(k string) string { return e[k] }, stdout: &out, stderr: &errs})
	}()
	// A start that fails returns at once; one that succeeds logs its ready
	// line and is stopped.
	for {
		select {
		case err := <-done:
			return out.String(), errs.String(), err
		case <-time.After(10 * time.Millisecond):
			if strings.Contains(errs.String(), "unhidra ready") {
				cancel()
				<-done
				t.Fatalf("serve started; want a refusal. logs:\n%s", errs.String())
			}
		}
	}
}

// busyPort holds a port of 127.0.0.1 for the test.
func busyPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

// releasedPort returns a port of 127.0.0.1 that was free a moment ago.
func releasedPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// assertUntouched fails unless dir does not exist or is empty.
func assertUntouched(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) > 0 {
		t.Errorf("the data dir %s holds %v; want nothing", dir, names)
	}
}

func TestStartupBusyPortNamesItsVariableAndLeavesNothing(t *testing.T) {
	_, cert, key := testPKI(t)
	for _, v := range []string{"GATEWAY_PORT", "MQTT_PORT", "MQTT_TLS_PORT", "AUTH_PORT"} {
		t.Run(v, func(t *testing.T) {
			port := busyPort(t)
			dir := filepath.Join(t.TempDir(), "data")
			extra := map[string]string{"UNHIDRA_DATA_DIR": dir, v: strconv.Itoa(port)}
			if v == "MQTT_TLS_PORT" {
				extra["TLS_CERT_FILE"], extra["TLS_KEY_FILE"] = cert, key
			}
			stdout, stderr, err := serveOnce(t, extra)
			want := v + " " + strconv.Itoa(port) + " is in use"
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("serve: %v; want an error saying %q", err, want)
			}
			if strings.Contains(stdout, "admin password") || strings.Contains(stderr, "created user admin") {
				t.Errorf("an admin was created before the ports were open:\n%s%s", stdout, stderr)
			}
			assertUntouched(t, dir)
		})
	}

	t.Run("an existing empty data dir stays empty, and every busy port is named", func(t *testing.T) {
		dir := t.TempDir()
		gw, mq := busyPort(t), busyPort(t)
		_, _, err := serveOnce(t, map[string]string{"UNHIDRA_DATA_DIR": dir, "GATEWAY_PORT": strconv.Itoa(gw), "MQTT_PORT": strconv.Itoa(mq)})
		for _, want := range []string{"GATEWAY_PORT " + strconv.Itoa(gw) + " is in use", "MQTT_PORT " + strconv.Itoa(mq) + " is in use"} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("serve: %v; want %q", err, want)
			}
		}
		assertUntouched(t, dir)
	})

	t.Run("the ports opened before the busy one are released", func(t *testing.T) {
		auth := releasedPort(t)
		_, _, err := serveOnce(t, map[string]string{"UNHIDRA_DATA_DIR": t.TempDir(), "AUTH_PORT": strconv.Itoa(auth), "MQTT_PORT": strconv.Itoa(busyPort(t))})
		if err == nil {
			t.Fatal("serve started on a busy MQTT_PORT")
		}
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(auth))
		if err != nil {
			t.Fatalf("AUTH_PORT %d is still held after the refusal: %v", auth, err)
		}
		ln.Close()
	})
}

func TestStartupRefusedConfigurationListsEveryProblemAndWritesNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	stdout, stderr, err := serveOnce(t, map[string]string{
		"UNHIDRA_DATA_DIR": dir,
		"GATEWAY_PORT":     "abc",
		"ACCESS_TOKEN_TTL": "5 minutes",
		"E2EE_ENFORCED":    "maybe",
		"REGISTRATION":     "sometimes",
		"AUTH_PORT":        "70000",
	}, "--mqtt-port", "xyz", "--shutdown-timeout", "soon")
	if err == nil || !strings.Contains(err.Error(), "invalid configuration") {
		t.Fatalf("serve: %v", err)
	}
	for _, want := range []string{
		`GATEWAY_PORT: "abc" is not an integer`,
		`ACCESS_TOKEN_TTL: "5 minutes" is not a duration`,
		`E2EE_ENFORCED: "maybe" is not a boolean`,
		`--mqtt-port: "xyz" is not an integer`,
		`--shutdown-timeout: "soon" is not a duration`,
		`REGISTRATION: "sometimes" must be open, approval or closed`,
		`AUTH_PORT: 70000 is not a port`,
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("the problem list lacks %s:\n%s", want, stderr)
		}
	}
	if stdout != "" {
		t.Errorf("stdout: %q", stdout)
	}
	assertUntouched(t, dir)

	t.Run("an unsupported store is refused before the secret is kept", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "data")
		_, _, err := serveOnce(t, map[string]string{"UNHIDRA_DATA_DIR": dir, "REDIS_URL": "redis://localhost:6379/0"})
		if err == nil || !strings.Contains(err.Error(), "REDIS_URL") {
			t.Fatalf("serve: %v", err)
		}
		assertUntouched(t, dir)
	})

	t.Run("an unreadable certificate is refused before anything is written", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "data")
		bad := filepath.Join(t.TempDir(), "cert.pem")
		os.WriteFile(bad, []byte("not a certificate"), 0o600)
		_, _, err := serveOnce(t, map[string]string{"UNHIDRA_DATA_DIR": dir, "TLS_CERT_FILE": bad, "TLS_KEY_FILE": bad})
		if err == nil || !strings.Contains(err.Error(), "TLS_CERT_FILE") {
			t.Fatalf("serve: %v", err)
		}
		assertUntouched(t, dir)
	})

	t.Run("two variables on one port name each other", func(t *testing.T) {
		port := strconv.Itoa(releasedPort(t))
		_, stderr, _ := serveOnce(t, map[string]string{"UNHIDRA_DATA_DIR": t.TempDir(), "AUTH_PORT": port, "GATEWAY_PORT": port})
		if !strings.Contains(stderr, "GATEWAY_PORT: "+port+" is also AUTH_PORT") {
			t.Errorf("stderr:\n%s", stderr)
		}
	})

	t.Run("a wrong flag is one line and a hint", func(t *testing.T) {
		_, stderr, err := serveOnce(t, map[string]string{"UNHIDRA_DATA_DIR": filepath.Join(t.TempDir(), "data")}, "--no-such-flag")
		if err == nil || !strings.Contains(err.Error(), "no-such-flag") || !strings.Contains(err.Error(), "unhidra serve -h") || strings.Contains(err.Error(), "\n") {
			t.Errorf("serve: %v", err)
		}
		if strings.Contains(stderr, "-jwt-secret") {
			t.Errorf("a wrong flag printed every flag:\n%s", stderr)
		}
	})
}

func TestStartupUnwritableDataDirSaysCannotWrite(t *testing.T) {
	// A directory under a regular file cannot be made, by root either.
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(file, "sub")
	gw := releasedPort(t)
	stdout, _, err := serveOnce(t, map[string]string{"UNHIDRA_DATA_DIR": dir, "GATEWAY_PORT": strconv.Itoa(gw)})
	if err == nil || !strings.Contains(err.Error(), "cannot write "+dir) {
		t.Fatalf("serve: %v; want \"cannot write %s\"", err, dir)
	}
	if strings.Contains(stdout, "admin password") {
		t.Error("an admin was created")
	}
	// The ports it opened first are released.
	ln, lerr := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(gw))
	if lerr != nil {
		t.Fatalf("GATEWAY_PORT %d is still held: %v", gw, lerr)
	}
	ln.Close()

	t.Run("a database elsewhere whose directory cannot be made", func(t *testing.T) {
		data := filepath.Join(t.TempDir(), "data")
		dbDir := filepath.Join(file, "db")
		_, _, err := serveOnce(t, map[string]string{"UNHIDRA_DATA_DIR": data, "DATABASE_URL": "sqlite://" + filepath.Join(dbDir, "u.db")})
		if err == nil || !strings.Contains(err.Error(), "cannot write "+dbDir) {
			t.Fatalf("serve: %v", err)
		}
		if _, err := os.Stat(filepath.Join(data, "jwt_secret")); err == nil {
			t.Error("the JWT secret was kept before the database dir was found unwritable")
		}
	})

	if os.Geteuid() != 0 {
		t.Run("a read-only data dir", func(t *testing.T) {
			ro := t.TempDir()
			if err := os.Chmod(ro, 0o500); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Chmod(ro, 0o700) })
			_, _, err := serveOnce(t, map[string]string{"UNHIDRA_DATA_DIR": ro})
			if err == nil || !strings.Contains(err.Error(), "cannot write "+ro) {
				t.Fatalf("serve: %v", err)
			}
		})
	}
}

var readyURL = regexp.MustCompile(`"msg":"unhidra ready".*?"url":"(http://127\.0\.0\.1:\d+/)"`)

func TestStartupLogsTheWebClientURLWhenReady(t *testing.T) {
	s := startServer(t, map[string]string{"UNHIDRA_SERVICES": "auth,gateway,mqtt", "LOG_LEVEL": "info"}, cheapHash)
	var url string
	deadline := time.Now().Add(5 * time.Second)
	for {
		if m := readyURL.FindStringSubmatch(s.logs.String()); m != nil {
			url = m[1]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no ready line with the web client's URL:\n%s", s.logs)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if want := "http://" + s.app.GatewayAddr() + "/"; url != want {
		t.Errorf("ready url %s, want the gateway's %s", url, want)
	}
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(res.Header.Get("Content-Type"), "text/html") || !bytes.Contains(bytes.ToLower(body), []byte("<html")) {
		t.Errorf("GET %s: %d %s %.200s", url, res.StatusCode, res.Header.Get("Content-Type"), body)
	}
	if !strings.Contains(s.logs.String(), `"mqtt":"`+s.app.MQTTAddr()+`"`) {
		t.Errorf("the ready line lacks the MQTT address:\n%s", s.logs)
	}
}
