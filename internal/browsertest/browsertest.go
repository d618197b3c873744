// Package browsertest drives a real headless Chromium for end-to-end tests of
// what a browser does: it opens a page and evaluates JavaScript in it over
// the DevTools protocol (a WebSocket to the browser's debugging port).
//
// A Browser belongs to one test; Eval is safe for concurrent use.
package browsertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// Path returns the Chromium binary, or "" when none is installed.
func Path() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// Require returns the Chromium path. Under `make check` (UNHIDRA_CHECK set) a
// missing browser fails the test; elsewhere the test is skipped, saying so.
func Require(t testing.TB) string {
	t.Helper()
	p := Path()
	if p == "" {
		if os.Getenv("UNHIDRA_CHECK") != "" {
			t.Fatal("chromium is not installed (make check installs it with scripts/test-deps.sh)")
		}
		t.Skip("chromium is not installed; run `make check` or apt-get install chromium")
	}
	return p
}

// Browser is a headless Chromium with one page.
type Browser struct {
	cmd  *exec.Cmd
	conn *websocket.Conn
	mu   sync.Mutex
	next int
}

// Open starts Chromium on url and connects to its page. The browser is
// stopped when the test ends.
func Open(t testing.TB, url string) *Browser {
	t.Helper()
	bin := Require(t)
	dir := t.TempDir()
	cmd := exec.Command(bin,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
		"--user-data-dir="+dir, url)
	// Its own process group, so close can stop the renderer and helper
	// processes too (they write to the profile directory until they exit).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	b := &Browser{cmd: cmd}
	t.Cleanup(b.close)

	port, err := waitPort(filepath.Join(dir, "DevToolsActivePort"), 30*time.Second)
	if err != nil {
		t.Fatalf("chromium debugging port: %v", err)
	}
	wsURL, err := pageURL(port, url, 30*time.Second)
	if err != nil {
		t.Fatalf("chromium page: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, wsURL, nil)
	if err != nil {
		t.Fatalf("devtools dial: %v", err)
	}
	conn.SetReadLimit(16 << 20)
	b.conn = conn
	return b
}

func (b *Browser) close() {
	if b.conn != nil {
		b.conn.Close(websocket.StatusNormalClosure, "")
	}
	if b.cmd.Process != nil {
		_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
		_ = b.cmd.Process.Kill()
		_ = b.cmd.Wait()
		// Children of the group may take a moment to go away.
		for i := 0; i < 100 && syscall.Kill(-b.cmd.Process.Pid, 0) == nil; i++ {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func waitPort(file string, limit time.Duration) (string, error) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(file); err == nil {
			if line, _, _ := strings.Cut(string(b), "\n"); line != "" {
				return line, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "", errors.New("DevToolsActivePort never appeared")
}

func pageURL(port, want string, limit time.Duration) (string, error) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://127.0.0.1:" + port + "/json/list")
		if err == nil {
			var targets []struct {
				Type, URL            string
				WebSocketDebuggerURL string `json:"webSocketDebuggerUrl"`
			}
			err = json.NewDecoder(resp.Body).Decode(&targets)
			resp.Body.Close()
			if err == nil {
				for _, tg := range targets {
					if tg.Type == "page" && tg.WebSocketDebuggerURL != "" {
						return tg.WebSocketDebuggerURL, nil
					}
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return "", fmt.Errorf("no page target for %s", want)
}

// Eval evaluates a JavaScript expression in the page (awaiting promises) and
// returns its value as JSON.
func (b *Browser) Eval(ctx context.Context, expr string) (json.RawMessage, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.next++
	id := b.next
	req, _ := json.Marshal(map[string]any{
		"id":     id,
		"method": "Runtime.evaluate",
		"params": map[string]any{"expression": expr, "returnByValue": true, "awaitPromise": true},
	})
	if err := b.conn.Write(ctx, websocket.MessageText, req); err != nil {
		return nil, err
	}
	for {
		_, data, err := b.conn.Read(ctx)
		if err != nil {
			return nil, err
		}
		var resp struct {
			ID     int `json:"id"`
			Result struct {
				Result struct {
					Value json.RawMessage `json:"value"`
				} `json:"result"`
				ExceptionDetails *struct {
					Text string `json:"text"`
				} `json:"exceptionDetails"`
			} `json:"result"`
			Error *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal(data, &resp); err != nil || resp.ID != id {
			continue // an event, or another reply
		}
		if resp.Error != nil {
			return nil, errors.New(resp.Error.Message)
		}
		if resp.Result.ExceptionDetails != nil {
			return nil, fmt.Errorf("javascript: %s", resp.Result.ExceptionDetails.Text)
		}
		return resp.Result.Result.Value, nil
	}
}

// WaitFor evaluates expr until it yields the JSON value want, or fails the
// test when ctx ends; it returns the last value seen.
func (b *Browser) WaitFor(t testing.TB, ctx context.Context, expr, want string) json.RawMessage {
	t.Helper()
	var last json.RawMessage
	for {
		v, err := b.Eval(ctx, expr)
		if err == nil {
			last = v
			if string(v) == want {
				return v
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s == %s: last value %s, err %v", expr, want, last, err)
			return last
		case <-time.After(100 * time.Millisecond):
		}
	}
}
