package e2etest

// The real binary as a child process: built once per test binary, started
// with an environment, waited for until ready, killed or terminated, its
// output captured.

import (
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/auth"
	"github.com/unhidra/unhidra/internal/procfs"
)

var binary struct {
	once sync.Once
	path string
	err  error
}

// Binary builds cmd/unhidra once per test binary (without -race, so
// the child starts and runs at production speed). The result is renamed
// into one fixed place per user, so runs do not pile up binaries; a rename
// leaves a copy that another run is executing intact.
func Binary(t testing.TB) string {
	t.Helper()
	binary.once.Do(func() {
		home := filepath.Join(os.TempDir(), fmt.Sprintf("unhidra-e2e-%d", os.Getuid()))
		if binary.err = os.MkdirAll(home, 0o700); binary.err != nil {
			return
		}
		tmp, err := os.MkdirTemp(home, "build")
		if err != nil {
			binary.err = err
			return
		}
		defer os.RemoveAll(tmp)
		built := filepath.Join(tmp, "unhidra")
		cmd := exec.Command("go", "build", "-o", built, "github.com/unhidra/unhidra/cmd/unhidra")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			binary.err = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		binary.path = filepath.Join(home, fmt.Sprintf("unhidra-%d", os.Getpid()))
		if binary.err = os.Rename(built, binary.path); binary.err != nil {
			return
		}
		// Older runs' binaries (their processes are gone) are removed.
		olds, _ := filepath.Glob(filepath.Join(home, "unhidra-*"))
		for _, o := range olds {
			if st, err := os.Stat(o); err == nil && o != binary.path && time.Since(st.ModTime()) > time.Hour {
				os.Remove(o)
			}
		}
	})
	if binary.err != nil {
		t.Fatal(binary.err)
	}
	return binary.path
}

// Child is `unhidra serve` as a separate process on fixed ports and one
// data dir, so it can be killed and started again in place.
type Child struct {
	Env     map[string]string // the environment of every start
	GWURL   string            // http://127.0.0.1:port of the gateway
	WSURL   string            // ws://127.0.0.1:port/ws
	AuthURL string            // http://127.0.0.1:port of the auth API
	MQTT    string            // 127.0.0.1:port of the MQTT listener
	AdminPW string
	Logs    *SyncBuffer // stdout and stderr of the latest start

	t      testing.TB
	cmd    *exec.Cmd
	exited chan error
}

// NewChild prepares a child on stable ports (StablePort) with a fresh data
// dir and limits raised for tests; extra overrides the environment. It is
// killed when the test ends.
func NewChild(t testing.TB, extra map[string]string) *Child {
	t.Helper()
	ports := make([]int, 3)
	for i := range ports {
		ports[i] = StablePort(t)
	}
	pw := Secret("admin password", "crash-admin-"+RandomHex(8))
	c := &Child{t: t, AdminPW: pw, Env: map[string]string{
		"UNHIDRA_DATA_DIR": t.TempDir(), "UNHIDRA_SERVICES": "auth,gateway,mqtt",
		"AUTH_PORT": strconv.Itoa(ports[0]), "GATEWAY_PORT": strconv.Itoa(ports[1]), "MQTT_PORT": strconv.Itoa(ports[2]),
		"UNHIDRA_ADMIN_PASSWORD": pw, "RATE_LIMIT_IP_PER_MINUTE": "1000000", "RATE_LIMIT_LOGIN_PER_MINUTE": "100000",
		"MAX_CONNECTIONS_PER_USER": "1000", "LOG_LEVEL": "warn", "LOG_FORMAT": "json", "SHUTDOWN_TIMEOUT": "10s",
	}}
	for k, v := range extra {
		c.Env[k] = v
	}
	c.AuthURL = "http://127.0.0.1:" + c.Env["AUTH_PORT"]
	c.GWURL = "http://127.0.0.1:" + c.Env["GATEWAY_PORT"]
	c.WSURL = "ws://127.0.0.1:" + c.Env["GATEWAY_PORT"] + "/ws"
	c.MQTT = "127.0.0.1:" + c.Env["MQTT_PORT"]
	t.Cleanup(func() { c.Kill() })
	return c
}

// Start runs the process and returns how long it took until the gateway's
// /ready answered 200.
func (c *Child) Start() time.Duration {
	c.t.Helper()
	bin := Binary(c.t)
	cmd := exec.Command(bin, "serve")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range c.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	c.Logs = CaptureLogs()
	cmd.Stdout = c.Logs
	cmd.Stderr = c.Logs
	begin := time.Now()
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.cmd = cmd
	c.exited = make(chan error, 1)
	go func() { c.exited <- cmd.Wait() }()
	hc := &http.Client{Timeout: time.Second}
	for {
		select {
		case err := <-c.exited:
			c.cmd = nil
			c.t.Fatalf("unhidra serve exited at start: %v\n%s", err, c.Logs)
		default:
		}
		ok := true
		for _, u := range []string{c.GWURL + "/ready", c.AuthURL + "/ready"} {
			res, err := hc.Get(u)
			if err != nil {
				ok = false
				break
			}
			res.Body.Close()
			ok = ok && res.StatusCode == 200
		}
		if ok && MQTTListening(c.MQTT) {
			return time.Since(begin)
		}
		if time.Since(begin) > 30*time.Second {
			c.t.Fatalf("unhidra serve not ready within 30 s\n%s", c.Logs)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// StablePort returns a free loopback port below the kernel's ephemeral
// range, so no client connection of this or another test can take it while
// the child is down between a kill and its restart.
func StablePort(t testing.TB) int {
	t.Helper()
	lo, hi := 20000, 32000
	if a, _, err := procfs.EphemeralPorts(); err == nil && a > 11000 {
		lo, hi = 10000, a-1
	}
	for range 1000 {
		p := lo + mrand.IntN(hi-lo)
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err == nil {
			ln.Close()
			return p
		}
	}
	t.Fatal("no free port below the ephemeral range")
	return 0
}

// MQTTListening reports whether addr accepts a TCP connection.
func MQTTListening(addr string) bool {
	nc, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	nc.Close()
	return true
}

// Kill sends SIGKILL and waits for the process to end.
func (c *Child) Kill() {
	if c.cmd == nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.exited
	c.cmd = nil
}

// Terminate sends SIGTERM and returns the exit error and how long the
// process took to exit (it is killed after within).
func (c *Child) Terminate(within time.Duration) (error, time.Duration) {
	c.t.Helper()
	begin := time.Now()
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-c.exited:
		c.cmd = nil
		return err, time.Since(begin)
	case <-time.After(within):
		_ = c.cmd.Process.Signal(syscall.SIGKILL)
		<-c.exited
		c.cmd = nil
		return errors.New("did not exit in time; killed"), time.Since(begin)
	}
}

// Login logs user in and returns the access token.
func (c *Child) Login(t testing.TB, user, pw string) string {
	t.Helper()
	r := HTTPCall(t, c.AuthURL, "POST", "/login", "", map[string]string{"username": user, "password": pw})
	if r.Status != 200 {
		t.Fatalf("login %s: %d %s", user, r.Status, r.Body)
	}
	var p auth.TokenPair
	Decode(t, r, &p)
	Secret("access token", p.AccessToken)
	Secret("refresh token", p.RefreshToken)
	return p.AccessToken
}

// PID is the running child's process id.
func (c *Child) PID() int {
	c.t.Helper()
	if c.cmd == nil {
		c.t.Fatal("the child is not running")
	}
	return c.cmd.Process.Pid
}
