package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/unhidra/unhidra/wire"
)

// TestSeedWscatCheckGetsWelcome runs the seed's own check with the real
// wscat client: `wscat -c "ws://localhost:9000/ws?token=<JWT>"` connects and
// receives the welcome frame.
func TestSeedWscatCheckGetsWelcome(t *testing.T) {
	wscatWelcome(t, func(s *stack, tok string) []string { return []string{"-c", s.wsURL + "?token=" + tok} })
}

// TestQuickStartWscatGetsWelcome runs the README's quick-start line, the
// token in Sec-WebSocket-Protocol: `wscat -c ws://…/ws -s unhidra.v1 -s
// bearer.$AT`.
func TestQuickStartWscatGetsWelcome(t *testing.T) {
	wscatWelcome(t, func(s *stack, tok string) []string {
		return []string{"-c", s.wsURL, "-s", "unhidra.v1", "-s", "bearer." + tok}
	})
}

// wscatWelcome runs wscat with args and checks it prints the welcome frame.
func wscatWelcome(t *testing.T, args func(s *stack, tok string) []string) {
	bin, err := exec.LookPath("wscat")
	if err != nil {
		if os.Getenv("UNHIDRA_CHECK") != "" {
			t.Fatal("wscat is not installed (make check installs it with scripts/test-deps.sh)")
		}
		t.Skip("wscat is not installed; run `make check` or npm install -g wscat")
	}
	s := startStack(t, nil)
	tok := s.admin(t)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args(s, tok)...)
	// wscat exits at the end of its input: keep stdin open until the frame
	// is in, as a person at the terminal would.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	var out bytes.Buffer
	var mu sync.Mutex
	cmd.Stdout = lockedWriter{&mu, &out}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()

	var welcome wire.Welcome
	found := false
	for !found && ctx.Err() == nil {
		mu.Lock()
		text := out.String()
		mu.Unlock()
		for _, line := range strings.Split(text, "\n") {
			line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "<"))
			if strings.HasPrefix(line, "{") && json.Unmarshal([]byte(line), &welcome) == nil && welcome.Type == wire.TypeWelcome {
				found = true
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !found {
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("wscat did not print a welcome frame; output:\n%s", out.String())
	}
	if welcome.Principal != (wire.Principal{Kind: wire.KindUser, ID: "admin"}) {
		t.Errorf("welcome principal = %+v, want user admin", welcome.Principal)
	}
	if welcome.SessionID == "" || welcome.PingInterval != 30 || welcome.HeartbeatInterval != 60 {
		t.Errorf("welcome = %+v, want a session id, ping_interval 30, heartbeat_interval 60", welcome)
	}
}

// lockedWriter serialises writes to w with mu.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
