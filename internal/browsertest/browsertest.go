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

// Browser is a headless Chromium with one page. It records what the page
// reports as going wrong (uncaught exceptions, Content-Security-Policy
// violations, console errors, failed loads): see Errors.
type Browser struct {
	cmd  *exec.Cmd
	conn *websocket.Conn
	port string // the debugging port
	tab  bool   // a second tab: closing it leaves the browser running

	wmu  sync.Mutex // one writer at a time
	mu   sync.Mutex // guards what follows
	next int
	wait map[int]chan reply
	errs []PageError
	dead error // the DevTools connection ended
	done chan struct{}
}

// PageError is one problem the page reported.
type PageError struct {
	Kind string // "exception", "csp", "console" or "network"
	Text string
	URL  string
}

func (e PageError) String() string {
	if e.URL != "" {
		return e.Kind + ": " + e.Text + " (" + e.URL + ")"
	}
	return e.Kind + ": " + e.Text
}

type reply struct {
	Result json.RawMessage
	Error  *struct {
		Message string `json:"message"`
	}
}

// Open starts Chromium, connects to its page, subscribes to the page's
// errors and loads url. The browser is stopped when the test ends. The
// viewport is 1280×800 (see SetViewport).
func Open(t testing.TB, url string) *Browser {
	t.Helper()
	bin := Require(t)
	dir := t.TempDir()
	cmd := exec.Command(bin,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
		"--window-size=1280,800", "--hide-scrollbars",
		"--user-data-dir="+dir, "about:blank")
	// Its own process group, so close can stop the renderer and helper
	// processes too (they write to the profile directory until they exit).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	b := &Browser{cmd: cmd, wait: map[int]chan reply{}, done: make(chan struct{})}
	t.Cleanup(b.close)

	port, err := waitPort(filepath.Join(dir, "DevToolsActivePort"), 30*time.Second)
	if err != nil {
		t.Fatalf("chromium debugging port: %v", err)
	}
	b.port = port
	wsURL, err := pageURL(port, url, 30*time.Second)
	if err != nil {
		t.Fatalf("chromium page: %v", err)
	}
	b.attach(t, wsURL, url)
	return b
}

// NewTab opens url in another tab of the same browser: the same profile,
// so the two share localStorage, service workers and storage events. The
// tab closes when the test ends.
func (b *Browser) NewTab(t testing.TB, url string) *Browser {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, "http://127.0.0.1:"+b.port+"/json/new?about:blank", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("new tab: %v", err)
	}
	var target struct {
		WebSocketDebuggerURL string `json:"webSocketDebuggerUrl"`
	}
	err = json.NewDecoder(resp.Body).Decode(&target)
	resp.Body.Close()
	if err != nil || target.WebSocketDebuggerURL == "" {
		t.Fatalf("new tab: %s %v", resp.Status, err)
	}
	tab := &Browser{cmd: b.cmd, port: b.port, tab: true, wait: map[int]chan reply{}, done: make(chan struct{})}
	t.Cleanup(tab.close)
	tab.attach(t, target.WebSocketDebuggerURL, url)
	return tab
}

// attach connects to a page target, subscribes to its errors and loads url.
func (b *Browser) attach(t testing.TB, wsURL, url string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, wsURL, nil)
	if err != nil {
		t.Fatalf("devtools dial: %v", err)
	}
	conn.SetReadLimit(64 << 20)
	b.conn = conn
	go b.read()
	for _, m := range []string{"Runtime.enable", "Log.enable", "Page.enable"} {
		if _, err := b.Call(ctx, m, nil); err != nil {
			t.Fatalf("devtools %s: %v", m, err)
		}
	}
	// Every tab behaves as the focused one (focus events, :focus-visible),
	// as the user's window would.
	if _, err := b.Call(ctx, "Emulation.setFocusEmulationEnabled", map[string]any{"enabled": true}); err != nil {
		t.Fatalf("devtools focus emulation: %v", err)
	}
	if err := b.SetViewport(ctx, 1280, 800); err != nil {
		t.Fatalf("devtools viewport: %v", err)
	}
	if _, err := b.Call(ctx, "Page.navigate", map[string]any{"url": url}); err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
}

func (b *Browser) close() {
	if b.conn != nil {
		b.conn.Close(websocket.StatusNormalClosure, "")
	}
	if !b.tab && b.cmd.Process != nil {
		_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
		_ = b.cmd.Process.Kill()
		_ = b.cmd.Wait()
		// Children of the group may take a moment to go away.
		for i := 0; i < 100 && syscall.Kill(-b.cmd.Process.Pid, 0) == nil; i++ {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// read hands replies to their callers and records the page's errors, for
// the life of the DevTools connection.
func (b *Browser) read() {
	defer close(b.done)
	for {
		_, data, err := b.conn.Read(context.Background())
		if err != nil {
			b.mu.Lock()
			b.dead = err
			for id, ch := range b.wait {
				close(ch)
				delete(b.wait, id)
			}
			b.mu.Unlock()
			return
		}
		var msg struct {
			ID     int             `json:"id"`
			Method string          `json:"method"`
			Params json.RawMessage `json:"params"`
			reply
		}
		if json.Unmarshal(data, &msg) != nil {
			continue
		}
		if msg.ID != 0 {
			b.mu.Lock()
			ch := b.wait[msg.ID]
			delete(b.wait, msg.ID)
			b.mu.Unlock()
			if ch != nil {
				ch <- msg.reply
			}
			continue
		}
		if e, ok := pageError(msg.Method, msg.Params); ok {
			b.mu.Lock()
			b.errs = append(b.errs, e)
			b.mu.Unlock()
		}
	}
}

// pageError turns a DevTools event into a PageError when it reports one.
func pageError(method string, params json.RawMessage) (PageError, bool) {
	switch method {
	case "Runtime.exceptionThrown":
		var p struct {
			ExceptionDetails struct {
				Text      string `json:"text"`
				URL       string `json:"url"`
				Exception *struct {
					Description string `json:"description"`
				} `json:"exception"`
			} `json:"exceptionDetails"`
		}
		_ = json.Unmarshal(params, &p)
		d := p.ExceptionDetails
		text := d.Text
		if d.Exception != nil && d.Exception.Description != "" {
			text += " " + d.Exception.Description
		}
		return PageError{Kind: "exception", Text: text, URL: d.URL}, true
	case "Log.entryAdded":
		var p struct {
			Entry struct {
				Source, Level, Text, URL string
			} `json:"entry"`
		}
		_ = json.Unmarshal(params, &p)
		e := p.Entry
		if e.Level != "error" {
			return PageError{}, false
		}
		kind := "console"
		switch {
		case strings.Contains(e.Text, "Content Security Policy") || e.Source == "security":
			kind = "csp"
		case e.Source == "network":
			kind = "network"
		}
		return PageError{Kind: kind, Text: e.Text, URL: e.URL}, true
	case "Runtime.consoleAPICalled":
		var p struct {
			Type string `json:"type"`
			Args []struct {
				Value       any    `json:"value"`
				Description string `json:"description"`
			} `json:"args"`
		}
		_ = json.Unmarshal(params, &p)
		if p.Type != "error" && p.Type != "assert" {
			return PageError{}, false
		}
		var parts []string
		for _, a := range p.Args {
			if a.Description != "" {
				parts = append(parts, a.Description)
			} else {
				parts = append(parts, fmt.Sprint(a.Value))
			}
		}
		return PageError{Kind: "console", Text: strings.Join(parts, " ")}, true
	}
	return PageError{}, false
}

// Errors returns what the page has reported as going wrong so far.
func (b *Browser) Errors() []PageError {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]PageError(nil), b.errs...)
}

// Call sends a DevTools command to the page and returns its result.
func (b *Browser) Call(ctx context.Context, method string, params any) (json.RawMessage, error) {
	ch := make(chan reply, 1)
	b.mu.Lock()
	if b.dead != nil {
		b.mu.Unlock()
		return nil, fmt.Errorf("devtools connection: %w", b.dead)
	}
	b.next++
	id := b.next
	b.wait[id] = ch
	b.mu.Unlock()
	if params == nil {
		params = map[string]any{}
	}
	req, _ := json.Marshal(map[string]any{"id": id, "method": method, "params": params})
	b.wmu.Lock()
	err := b.conn.Write(ctx, websocket.MessageText, req)
	b.wmu.Unlock()
	if err != nil {
		b.forget(id)
		return nil, err
	}
	select {
	case r, ok := <-ch:
		if !ok {
			return nil, errors.New("devtools connection closed")
		}
		if r.Error != nil {
			return nil, errors.New(r.Error.Message)
		}
		return r.Result, nil
	case <-ctx.Done():
		b.forget(id)
		return nil, ctx.Err()
	}
}

func (b *Browser) forget(id int) {
	b.mu.Lock()
	delete(b.wait, id)
	b.mu.Unlock()
}

// Screenshot returns a PNG of the page's viewport.
func (b *Browser) Screenshot(ctx context.Context) ([]byte, error) {
	res, err := b.Call(ctx, "Page.captureScreenshot", map[string]any{"format": "png"})
	if err != nil {
		return nil, err
	}
	var r struct {
		Data []byte `json:"data"` // base64 in JSON
	}
	if err := json.Unmarshal(res, &r); err != nil {
		return nil, err
	}
	return r.Data, nil
}

// Keys Press knows, with their DOM key code.
var keys = map[string]struct {
	code string
	vk   int
	text string
}{
	"Tab": {"Tab", 9, ""}, "Enter": {"Enter", 13, "\r"}, "Escape": {"Escape", 27, ""}, " ": {"Space", 32, " "},
	"ArrowDown": {"ArrowDown", 40, ""}, "ArrowUp": {"ArrowUp", 38, ""},
}

// Press sends a real key press (down and up) to the focused element, as a
// keyboard would: Tab moves the focus, Enter activates a link. shift holds
// Shift down meanwhile.
func (b *Browser) Press(ctx context.Context, key string, shift bool) error {
	k, ok := keys[key]
	if !ok {
		return fmt.Errorf("browsertest: unknown key %q", key)
	}
	mods := 0
	if shift {
		mods = 8
	}
	down := map[string]any{"type": "keyDown", "key": key, "code": k.code, "windowsVirtualKeyCode": k.vk, "modifiers": mods}
	if k.text != "" {
		down["text"] = k.text
	} else {
		down["type"] = "rawKeyDown"
	}
	if _, err := b.Call(ctx, "Input.dispatchKeyEvent", down); err != nil {
		return err
	}
	_, err := b.Call(ctx, "Input.dispatchKeyEvent", map[string]any{"type": "keyUp", "key": key, "code": k.code, "windowsVirtualKeyCode": k.vk, "modifiers": mods})
	return err
}

// SetViewport makes the page w×h CSS pixels (a phone below 700 wide is
// emulated as a mobile device, touch aside).
func (b *Browser) SetViewport(ctx context.Context, w, h int) error {
	_, err := b.Call(ctx, "Emulation.setDeviceMetricsOverride", map[string]any{
		"width": w, "height": h, "deviceScaleFactor": 1, "mobile": w < 700,
	})
	return err
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
	res, err := b.Call(ctx, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true, "awaitPromise": true})
	if err != nil {
		return nil, err
	}
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text      string `json:"text"`
			Exception *struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	if err := json.Unmarshal(res, &r); err != nil {
		return nil, err
	}
	if d := r.ExceptionDetails; d != nil {
		if d.Exception != nil && d.Exception.Description != "" {
			return nil, fmt.Errorf("javascript: %s", d.Exception.Description)
		}
		return nil, fmt.Errorf("javascript: %s", d.Text)
	}
	return r.Result.Value, nil
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
