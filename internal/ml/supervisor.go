package ml

// Supervisor runs the worker command (ML_WORKER_CMD) and keeps it running:
// restarted with exponential backoff when it exits, its stdout and stderr
// forwarded into the server's log line by line, stopped (SIGTERM to its
// process group, SIGKILL after StopTimeout) when the server stops.
//
// The command is split into words like a shell would split it (quotes and
// backslashes), but no shell runs it: no expansion, no pipes, and the
// worker is the supervisor's own child, so it can be told to die with the
// server (Linux: PR_SET_PDEATHSIG) even when the server is killed -9.
//
// The worker inherits only a small, named part of the environment (PATH,
// HOME, locale, TMPDIR, PYTHON* and ML_*), never the server's secrets
// (JWT_SECRET, AUDIT_SIGNING_KEY, …), plus ML_SOCKET_PATH.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Supervisor runs and restarts the worker. Create it with NewSupervisor.
type Supervisor struct {
	argv        []string
	socket      string
	log         *slog.Logger
	minBackoff  time.Duration
	maxBackoff  time.Duration
	stopTimeout time.Duration
	onStart     func()

	mu       sync.Mutex
	pid      int
	running  bool
	restarts int64
	lastErr  string
}

// SupervisorOptions configures a Supervisor.
type SupervisorOptions struct {
	// Command is ML_WORKER_CMD.
	Command string
	// Socket is ML_SOCKET_PATH, given to the worker in its environment.
	Socket string
	Logger *slog.Logger
	// MinBackoff and MaxBackoff bound the wait before a restart (default
	// 200 ms and 10 s); the wait doubles after each quick exit and starts
	// again from MinBackoff after a worker that ran for a minute.
	MinBackoff, MaxBackoff time.Duration
	// StopTimeout is how long a stopping worker gets after SIGTERM before
	// SIGKILL (default 5 s).
	StopTimeout time.Duration
	// OnStart, when set, is called after each start of the worker process
	// (the restarts metric).
	OnStart func()
}

// NewSupervisor checks the command and returns a supervisor of it.
func NewSupervisor(o SupervisorOptions) (*Supervisor, error) {
	argv, err := SplitCommand(o.Command)
	if err != nil {
		return nil, fmt.Errorf("ML_WORKER_CMD: %w", err)
	}
	if len(argv) == 0 {
		return nil, errors.New("ML_WORKER_CMD: empty")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Supervisor{argv: argv, socket: o.Socket, log: o.Logger, minBackoff: o.MinBackoff, maxBackoff: o.MaxBackoff,
		stopTimeout: o.StopTimeout, onStart: o.OnStart}
	if s.minBackoff <= 0 {
		s.minBackoff = 200 * time.Millisecond
	}
	if s.maxBackoff < s.minBackoff {
		s.maxBackoff = max(10*time.Second, s.minBackoff)
	}
	if s.stopTimeout <= 0 {
		s.stopTimeout = 5 * time.Second
	}
	return s, nil
}

// SupervisorState is what the supervisor knows of the worker process.
type SupervisorState struct {
	Running  bool
	PID      int
	Restarts int64
	LastErr  string
}

// State returns the worker process's state.
func (s *Supervisor) State() SupervisorState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return SupervisorState{Running: s.running, PID: s.pid, Restarts: s.restarts, LastErr: s.lastErr}
}

// Run starts the worker and restarts it whenever it exits, until ctx ends;
// then it stops the worker and returns nil.
func (s *Supervisor) Run(ctx context.Context) error {
	backoff := s.minBackoff
	for first := true; ; first = false {
		if !first {
			s.mu.Lock()
			s.restarts++
			s.mu.Unlock()
		}
		started := time.Now()
		err := s.runOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(started) > time.Minute {
			backoff = s.minBackoff
		}
		msg := "exited"
		if err != nil {
			msg = err.Error()
		}
		s.mu.Lock()
		s.lastErr = "worker " + msg
		s.mu.Unlock()
		s.log.Warn("ml worker stopped; restarting", "err", msg, "after", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, s.maxBackoff)
	}
}

// runOnce runs the worker until it exits or ctx ends.
func (s *Supervisor) runOnce(ctx context.Context) error {
	cmd := exec.Command(s.argv[0], s.argv[1:]...)
	cmd.Env = workerEnv(os.Environ(), s.socket)
	cmd.SysProcAttr = procAttr()
	out := &lineLog{log: s.log}
	cmd.Stdout, cmd.Stderr = out, out
	// A grandchild holding the pipes open must not hold Wait forever.
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("did not start: %w", err)
	}
	pid := cmd.Process.Pid
	s.mu.Lock()
	s.pid, s.running = pid, true
	s.mu.Unlock()
	if s.onStart != nil {
		s.onStart()
	}
	s.log.Info("ml worker started", "pid", pid, "cmd", s.argv[0])
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		out.flush()
		s.mu.Lock()
		s.running = false
		s.mu.Unlock()
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	_ = signalGroup(pid, syscall.SIGTERM)
	select {
	case err := <-done:
		s.log.Info("ml worker stopped", "pid", pid, "status", exitText(err))
		return nil
	case <-time.After(s.stopTimeout):
	}
	s.log.Warn("ml worker ignored SIGTERM; killing it", "pid", pid, "after", s.stopTimeout)
	_ = signalGroup(pid, syscall.SIGKILL)
	<-done
	return nil
}

func exitText(err error) string {
	if err == nil {
		return "exit 0"
	}
	return err.Error()
}

// signalGroup signals the worker's process group (it has its own), so
// children it started stop with it.
func signalGroup(pid int, sig syscall.Signal) error {
	if err := syscall.Kill(-pid, sig); err != nil {
		return syscall.Kill(pid, sig)
	}
	return nil
}

// workerEnv is the environment the worker gets: what a Python program
// needs, ML_* settings, and the socket path; nothing else of the server's.
func workerEnv(environ []string, socket string) []string {
	keep := []string{"PATH=", "HOME=", "LANG=", "LC_", "TZ=", "TMPDIR=", "PYTHON", "ML_"}
	var env []string
	for _, kv := range environ {
		if strings.HasPrefix(kv, "ML_SOCKET_PATH=") {
			continue
		}
		for _, p := range keep {
			if strings.HasPrefix(kv, p) {
				env = append(env, kv)
				break
			}
		}
	}
	return append(env, "ML_SOCKET_PATH="+socket)
}

// lineLog forwards what the worker writes into the log, a line per
// record, each line bounded, at most linesPerSecond lines a second (a
// worker that floods its stderr cannot flood the server's log; what is
// dropped is counted in the next line that gets through).
type lineLog struct {
	log     *slog.Logger
	mu      sync.Mutex
	buf     []byte
	skip    bool // dropping the rest of a line that was too long
	second  int64
	n       int
	dropped int
}

const (
	maxLogLine     = 2048
	linesPerSecond = 50
)

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk, p = p[:i], p[i+1:]
		} else {
			p = nil
		}
		// A line longer than maxLogLine is cut there; the rest of it, up to
		// its newline, is dropped.
		if !l.skip {
			room := maxLogLine - len(l.buf)
			if len(chunk) > room {
				l.buf = append(l.buf, chunk[:room]...)
				l.emit()
				l.skip = true
			} else {
				l.buf = append(l.buf, chunk...)
			}
		}
		if i >= 0 {
			if !l.skip {
				l.emit()
			}
			l.skip = false
		}
	}
	return n, nil
}

func (l *lineLog) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) > 0 {
		l.emit()
	}
}

// emit logs the buffered line; l.mu is held.
func (l *lineLog) emit() {
	line := strings.ToValidUTF8(strings.TrimRight(string(l.buf), "\r"), "?")
	l.buf = l.buf[:0]
	if line == "" {
		return
	}
	now := time.Now().Unix()
	if now != l.second {
		l.second, l.n = now, 0
	}
	if l.n >= linesPerSecond {
		l.dropped++
		return
	}
	l.n++
	level := slog.LevelInfo
	switch {
	case strings.Contains(line, "level=error"), strings.HasPrefix(line, "Traceback"):
		level = slog.LevelError
	case strings.Contains(line, "level=warn"):
		level = slog.LevelWarn
	case strings.Contains(line, "level=debug"):
		level = slog.LevelDebug
	}
	attrs := []any{"line", line}
	if l.dropped > 0 {
		attrs = append(attrs, "lines_dropped_before", l.dropped)
		l.dropped = 0
	}
	l.log.Log(context.Background(), level, "ml worker", attrs...)
}

// SplitCommand splits a command line into words as a POSIX shell does for
// a simple command without expansions: blanks separate words; 'single
// quotes' keep everything; "double quotes" keep everything but \" \\ \$
// \`; a backslash outside quotes escapes the next character.
func SplitCommand(s string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, errors.New("unterminated single quote")
			}
			w.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`", s[i+1]) >= 0 {
					i++
				}
				w.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, errors.New("unterminated double quote")
			}
			inWord = true
		case c == '\\':
			if i+1 >= len(s) {
				return nil, errors.New("trailing backslash")
			}
			i++
			w.WriteByte(s[i])
			inWord = true
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}
