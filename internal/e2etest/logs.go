// Package e2etest holds what the end-to-end suites share: the cmd/unhidra
// tests, which run the server in-process, and the system tests in
// systemtest/, which run the real binary as a child process. It has one
// HTTP helper (HTTPCall) that every JSON request of the suites goes through,
// raw-frame WebSocket and MQTT v5 clients, the captured logs with the check
// that no test secret ever appears in them, Prometheus scraping, and the
// built binary as a child process (Child).
//
// The captured logs and secrets are per test binary: a suite's TestMain
// ends with os.Exit(e2etest.CheckLogs(m.Run())). Everything here is safe
// for concurrent use except a WSConn or a Child, which belong to one test
// goroutine at a time.
package e2etest

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
)

// SyncBuffer is a goroutine-safe log sink.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// The suite's captured logs and the secrets that must never be in them.
var suite struct {
	mu      sync.Mutex
	logs    []*SyncBuffer
	secrets map[string]string // secret → what it is
}

// CaptureLogs returns a new log sink that CheckLogs searches for secrets.
func CaptureLogs() *SyncBuffer {
	b := &SyncBuffer{}
	suite.mu.Lock()
	suite.logs = append(suite.logs, b)
	suite.mu.Unlock()
	return b
}

// Secret registers s (a password, token or key; what says which) as one
// that must not appear in any captured log, and returns it. Strings
// shorter than 8 bytes are not registered.
func Secret(what, s string) string {
	if len(s) < 8 {
		return s
	}
	suite.mu.Lock()
	if suite.secrets == nil {
		suite.secrets = map[string]string{}
	}
	suite.secrets[s] = what
	suite.mu.Unlock()
	return s
}

// CheckLogs is the end of a suite's TestMain: given the exit code of
// m.Run, it searches every captured log for every registered secret and
// returns the code to exit with (1 when a secret leaked).
func CheckLogs(code int) int {
	suite.mu.Lock()
	leaks := 0
	total := 0
	for _, b := range suite.logs {
		logs := b.String()
		total += len(logs)
		for s, what := range suite.secrets {
			if strings.Contains(logs, s) {
				fmt.Fprintf(os.Stderr, "FAIL: a %s appears in the captured logs\n", what)
				leaks++
			}
		}
	}
	suite.mu.Unlock()
	if leaks > 0 && code == 0 {
		code = 1
	}
	if code == 0 && len(suite.secrets) > 0 {
		fmt.Fprintf(os.Stderr, "log check: %d secrets, %d bytes of logs from %d servers and commands, no leak\n", len(suite.secrets), total, len(suite.logs))
	}
	return code
}

// Lines returns the log lines that contain s.
func Lines(logs, s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), s) {
			out = append(out, sc.Text())
		}
	}
	return out
}

// RandomHex returns n random bytes in hex.
func RandomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
