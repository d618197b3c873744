package ml

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/e2etest"
)

// TestMain lets the test binary stand in for a worker process: with
// ML_FAKE_MODE set it is one (the supervisor passes ML_* through).
func TestMain(m *testing.M) {
	if mode := os.Getenv("ML_FAKE_MODE"); mode != "" {
		fakeProcess(mode)
		return
	}
	os.Exit(m.Run())
}

func fakeProcess(mode string) {
	fmt.Fprintf(os.Stderr, "level=warn msg=\"fake worker\" jwt_secret_seen=%t pid=%d\n", os.Getenv("JWT_SECRET") != "", os.Getpid())
	switch mode {
	case "exit":
		os.Exit(3)
	case "stubborn":
		signal.Ignore(syscall.SIGTERM)
		time.Sleep(time.Minute)
		os.Exit(0)
	}
	path := os.Getenv("ML_SOCKET_PATH")
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "level=error listen:", err)
		os.Exit(2)
	}
	os.Chmod(path, 0o600)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	go func() { <-sig; ln.Close(); os.Remove(path); os.Exit(0) }()
	w := &fakeWorker{path: path, ln: ln}
	w.mode.Store("normal")
	for {
		c, err := ln.Accept()
		if err != nil {
			os.Exit(0)
		}
		go func() { defer c.Close(); w.serve(c) }()
	}
}

func fakeCommand(t *testing.T, mode string) string {
	t.Helper()
	t.Setenv("ML_FAKE_MODE", mode)
	t.Setenv("JWT_SECRET", "a-secret-the-worker-must-not-see")
	return "'" + os.Args[0] + "' -test.run=^$"
}

func alive(pid int) bool { return pid > 0 && syscall.Kill(pid, 0) == nil }

// TestSupervisorRestartsAKilledWorker: the worker is started with the
// socket path and without the server's secrets, its stderr lands in the
// log at its level; killed -9 it is started again and scoring goes on
// with nothing lost; when the server stops, the worker is stopped.
func TestSupervisorRestartsAKilledWorker(t *testing.T) {
	var logs e2etest.SyncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	socket := shortDir(t) + "/w.sock"
	sup, err := NewSupervisor(SupervisorOptions{Command: fakeCommand(t, "serve"), Socket: socket, Logger: log, MinBackoff: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	b := New(Options{Client: NewClient(socket, time.Second, 2), Supervisor: sup, PingEvery: 50 * time.Millisecond, MaxHold: 20 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); sup.Run(ctx) }()
	go func() { defer wg.Done(); b.Run(ctx) }()
	defer func() { cancel(); wg.Wait() }()

	eventually(t, "the worker up", func() bool { return b.Health().Status == "up" })
	first := b.Health().PID
	b.Observe(pt("d", 0, `{"v":1}`))
	eventually(t, "a reading scored", func() bool { return b.Health().Scored == 1 })

	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 200; i++ { // ingestion goes on while the worker is down
		b.Observe(pt("d", i, `{"v":1}`))
		time.Sleep(time.Millisecond)
	}
	eventually(t, "a restart", func() bool { h := b.Health(); return h.Restarts == 1 && h.Status == "up" && h.PID != first })
	eventually(t, "every reading scored", func() bool { return b.Health().Scored == 201 })
	if h := b.Health(); h.Failed != 0 || h.Dropped != 0 {
		t.Fatalf("readings lost over the restart: %+v", h)
	}
	out := logs.String()
	if !strings.Contains(out, "level=WARN msg=\"ml worker\"") || !strings.Contains(out, "jwt_secret_seen=false") {
		t.Fatalf("the worker's stderr is not in the log at its level, or it saw the secret:\n%s", out)
	}
	second := b.Health().PID
	cancel()
	wg.Wait()
	if alive(second) {
		t.Fatalf("worker %d still running after the stop", second)
	}
	if _, err := os.Stat(socket); !os.IsNotExist(err) {
		t.Fatalf("socket left behind: %v", err)
	}
}

// TestSupervisorBacksOffAWorkerThatExits: a worker that exits at once is
// restarted with a growing wait, and the health names the exit.
func TestSupervisorBacksOffAWorkerThatExits(t *testing.T) {
	sup, err := NewSupervisor(SupervisorOptions{Command: fakeCommand(t, "exit"), Socket: shortDir(t) + "/w.sock",
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	start := time.Now()
	sup.Run(ctx)
	st := sup.State()
	// Waits of 20, 40, 80, 160, 200, 200… ms: far fewer restarts than a
	// tight loop would make.
	if st.Restarts < 3 || st.Restarts > 15 || !strings.Contains(st.LastErr, "exit status 3") || st.Running {
		t.Fatalf("after %v: %+v", time.Since(start), st)
	}
}

// TestSupervisorKillsAWorkerThatIgnoresSIGTERM: it gets StopTimeout, then
// SIGKILL.
func TestSupervisorKillsAWorkerThatIgnoresSIGTERM(t *testing.T) {
	sup, err := NewSupervisor(SupervisorOptions{Command: fakeCommand(t, "stubborn"), Socket: shortDir(t) + "/w.sock", StopTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { sup.Run(ctx); close(done) }()
	eventually(t, "the worker started", func() bool { return sup.State().Running })
	time.Sleep(200 * time.Millisecond) // past its signal.Ignore
	pid := sup.State().PID
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	if alive(pid) {
		t.Fatalf("worker %d survived the stop", pid)
	}
}

func TestNewSupervisorRefusesABadCommand(t *testing.T) {
	for _, cmd := range []string{"", "   ", `python3 'unterminated`} {
		if _, err := NewSupervisor(SupervisorOptions{Command: cmd}); err == nil {
			t.Errorf("%q accepted", cmd)
		}
	}
}

func TestWorkerEnv(t *testing.T) {
	env := workerEnv([]string{"PATH=/bin", "JWT_SECRET=x", "AUDIT_SIGNING_KEY=y", "ML_TIMEOUT_MS=5", "ML_SOCKET_PATH=/old", "LC_ALL=C", "PYTHONPATH=/p", "DATABASE_URL=z"}, "/new.sock")
	got := strings.Join(env, " ")
	if got != "PATH=/bin ML_TIMEOUT_MS=5 LC_ALL=C PYTHONPATH=/p ML_SOCKET_PATH=/new.sock" {
		t.Fatalf("worker env %q", got)
	}
}

func TestLineLogBoundsLinesAndRate(t *testing.T) {
	var buf e2etest.SyncBuffer
	l := &lineLog{log: slog.New(slog.NewTextHandler(&buf, nil))}
	fmt.Fprintf(l, "%s\nlevel=error boom\npartial", strings.Repeat("x", 5000))
	l.flush()
	out := buf.String()
	if strings.Count(out, "msg=\"ml worker\"") != 3 || !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "partial") {
		t.Fatalf("lines: %s", out)
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if len(line) > maxLogLine+200 {
			t.Fatalf("a line of %d bytes logged", len(line))
		}
	}
	var flood e2etest.SyncBuffer
	l = &lineLog{log: slog.New(slog.NewTextHandler(&flood, nil))}
	for range 10 * linesPerSecond {
		fmt.Fprintln(l, "spam")
	}
	if n := strings.Count(flood.String(), "spam"); n > 2*linesPerSecond {
		t.Fatalf("%d of %d flood lines logged", n, 10*linesPerSecond)
	}
}
