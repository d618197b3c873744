// Package agent is the device agent of docs/protocol.md#agent, the behaviour of the ESP32
// firmware for Linux-class devices: it connects with the public client SDK,
// sends built-in system metrics (or a command's JSON output) as telemetry,
// heartbeats, and answers commands (ping, set_interval, allow-listed exec).
//
// An Agent is used by one Run at a time; its command handler and telemetry
// loop run concurrently and share only atomic state.
package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/unhidra/unhidra/client"
	"github.com/unhidra/unhidra/wire"
)

// Limits of the agent's commands.
const (
	agentMaxInterval   = 24 * time.Hour
	agentMinInterval   = time.Second
	agentExecMaxArgs   = 16
	agentExecMaxArgLen = 256
	agentExecMaxOutput = 16 << 10
	agentCmdMaxOutput  = wire.MaxDataBytes
)

// Config is the agent's configuration (docs/protocol.md#agent).
type Config struct {
	URL          string
	DeviceID     string
	APIKey       string
	CAFile       string
	Insecure     bool
	Interval     time.Duration
	TelemetryCmd string
	AllowCmds    []string
	ExecTimeout  time.Duration
	BufferSize   int
	Heartbeat    time.Duration
	LogLevel     string
	LogFormat    string
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// ErrUsage marks a command-line mistake.
var ErrUsage = errors.New("usage")

// LoadConfig reads the agent's configuration from the environment (getenv)
// and the command-line flags (args), reporting every problem at once.
func LoadConfig(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	c := Config{
		URL:          getenv("GATEWAY_URL"),
		DeviceID:     getenv("DEVICE_ID"),
		APIKey:       getenv("DEVICE_API_KEY"),
		CAFile:       getenv("CA_FILE"),
		TelemetryCmd: getenv("TELEMETRY_CMD"),
		Interval:     60 * time.Second,
		ExecTimeout:  10 * time.Second,
		BufferSize:   1000,
		Heartbeat:    60 * time.Second,
		LogLevel:     getenv("LOG_LEVEL"),
		LogFormat:    getenv("LOG_FORMAT"),
	}
	var errs []error
	if v := getenv("TELEMETRY_INTERVAL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("TELEMETRY_INTERVAL: %q is not a duration (like 60s)", v))
		}
		c.Interval = d
	}
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.URL, "gateway-url", c.URL, "GATEWAY_URL: the gateway's WebSocket URL, e.g. wss://api.example.com/ws")
	fs.StringVar(&c.DeviceID, "device-id", c.DeviceID, "DEVICE_ID: this device's id (checked against the server's welcome)")
	fs.StringVar(&c.CAFile, "ca-file", c.CAFile, "CA_FILE: PEM file of an extra trusted CA")
	fs.BoolVar(&c.Insecure, "insecure-skip-verify", false, "turn TLS certificate verification off (prints a warning; never in production)")
	fs.DurationVar(&c.Interval, "interval", c.Interval, "TELEMETRY_INTERVAL: time between telemetry points")
	fs.StringVar(&c.TelemetryCmd, "telemetry-cmd", c.TelemetryCmd, "TELEMETRY_CMD: command whose JSON object output is sent as telemetry (default: built-in system metrics)")
	var allow stringList
	fs.Var(&allow, "allow-cmd", "`NAME` of a command the exec command may run (repeatable)")
	fs.DurationVar(&c.ExecTimeout, "exec-timeout", c.ExecTimeout, "time limit of exec and TELEMETRY_CMD runs")
	fs.DurationVar(&c.Heartbeat, "heartbeat-interval", c.Heartbeat, "time between heartbeats")
	fs.IntVar(&c.BufferSize, "buffer", c.BufferSize, "telemetry points kept while offline (oldest dropped first)")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "LOG_LEVEL: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		return c, fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " ")))
	}
	c.AllowCmds = allow
	if c.URL == "" {
		errs = append(errs, errors.New("GATEWAY_URL (or --gateway-url) is required"))
	}
	if c.APIKey == "" {
		errs = append(errs, errors.New("DEVICE_API_KEY is required (it is read from the environment only)"))
	}
	if c.Interval < agentMinInterval || c.Interval > agentMaxInterval {
		errs = append(errs, fmt.Errorf("TELEMETRY_INTERVAL: %s must be between %s and %s", c.Interval, agentMinInterval, agentMaxInterval))
	}
	if c.Heartbeat < time.Second || c.Heartbeat > time.Hour {
		errs = append(errs, errors.New("--heartbeat-interval must be between 1s and 1h"))
	}
	if c.BufferSize < 1 || c.BufferSize > 1_000_000 {
		errs = append(errs, errors.New("--buffer must be between 1 and 1000000"))
	}
	for _, name := range c.AllowCmds {
		if name == "" || strings.ContainsAny(name, " \t\n") {
			errs = append(errs, fmt.Errorf("--allow-cmd %q: must be a command name or path without spaces", name))
		}
	}
	return c, errors.Join(errs...)
}

// Agent ties the SDK client to the device's metrics and commands. Its
// methods are safe for concurrent use.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	metrics *sysMetrics
	allowed map[string]bool

	interval atomic.Int64 // nanoseconds
	changed  chan struct{}
	seq      atomic.Int64
	c        *client.Client
	mu       sync.Mutex
}

// New returns an agent; call Run.
func New(cfg Config, log *slog.Logger) *Agent {
	a := &Agent{cfg: cfg, log: log, metrics: &sysMetrics{}, allowed: map[string]bool{}, changed: make(chan struct{}, 1)}
	for _, n := range cfg.AllowCmds {
		a.allowed[n] = true
	}
	a.interval.Store(int64(cfg.Interval))
	return a
}

// clientOptions returns the SDK options for the agent.
func (a *Agent) clientOptions() client.Options {
	return client.Options{
		URL:                a.cfg.URL,
		APIKey:             a.cfg.APIKey,
		CAFile:             a.cfg.CAFile,
		InsecureSkipVerify: a.cfg.Insecure,
		Logger:             a.log,
		BufferSize:         a.cfg.BufferSize,
		HeartbeatInterval:  a.cfg.Heartbeat,
		Heartbeat: func() map[string]any {
			return map[string]any{"free_heap": a.metrics.FreeMemory()}
		},
		OnConnect: func(w wire.Welcome) {
			a.log.Info(fmt.Sprintf("Device %s registered with server", w.Principal.ID), "session", w.SessionID)
			if a.cfg.DeviceID != "" && w.Principal.ID != a.cfg.DeviceID {
				a.log.Warn("DEVICE_ID differs from the device the key belongs to", "device_id", a.cfg.DeviceID, "server_says", w.Principal.ID)
			}
		},
		OnCommand: a.handleCommand,
	}
}

// Run connects and sends telemetry until ctx ends or the key is refused.
func (a *Agent) Run(ctx context.Context) error {
	if a.cfg.Insecure {
		a.log.Warn("--insecure-skip-verify: the server's certificate is NOT checked")
	}
	c, err := client.New(a.clientOptions())
	if err != nil {
		return err
	}
	a.c = c
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.telemetryLoop(ctx)
	}()
	err = c.Run(ctx)
	cancel()
	<-done
	if err != nil {
		return fmt.Errorf("agent stopped: %w", err)
	}
	return nil
}

// telemetryLoop queues a telemetry point at start (a new device shows data
// at once, not one interval later) and then every interval; the client
// sends it now or, when offline, in order after reconnecting.
func (a *Agent) telemetryLoop(ctx context.Context) {
	a.sample(ctx)
	for {
		t := time.NewTimer(time.Duration(a.interval.Load()))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-a.changed:
			t.Stop()
			continue
		case <-t.C:
		}
		a.sample(ctx)
	}
}

// sample queues one telemetry point.
func (a *Agent) sample(ctx context.Context) {
	data, err := a.collect(ctx)
	if err != nil {
		a.log.Error("telemetry not collected", "err", err)
		return
	}
	a.c.QueueTelemetry(client.Telemetry{Data: data, TS: time.Now(), Seq: a.seq.Add(1)})
	if s := a.c.Stats(); !s.Connected && s.Queued > 0 {
		a.log.Debug("offline: telemetry buffered", "queued", s.Queued, "dropped", s.Dropped)
	}
}

// collect returns one telemetry object: TELEMETRY_CMD's output or the
// built-in system metrics.
func (a *Agent) collect(ctx context.Context) (map[string]any, error) {
	if a.cfg.TelemetryCmd == "" {
		return a.metrics.Collect(), nil
	}
	args := strings.Fields(a.cfg.TelemetryCmd)
	ctx, cancel := context.WithTimeout(ctx, a.cfg.ExecTimeout)
	defer cancel()
	out, _, err := runBounded(ctx, args[0], args[1:], agentCmdMaxOutput)
	if err != nil {
		return nil, fmt.Errorf("TELEMETRY_CMD: %w", err)
	}
	var obj map[string]any
	if err := json.Unmarshal(bytes.TrimSpace(out.stdout), &obj); err != nil || obj == nil {
		return nil, errors.New("TELEMETRY_CMD: output is not a JSON object")
	}
	return obj, nil
}

// handleCommand runs a command from the server (docs/protocol.md#agent).
func (a *Agent) handleCommand(ctx context.Context, cmd client.Command) (any, error) {
	a.log.Info("command", "name", cmd.Name, "command_id", cmd.ID)
	switch cmd.Name {
	case "ping":
		return map[string]any{"pong": true}, nil
	case "set_interval":
		var p struct {
			Seconds *float64 `json:"seconds"`
		}
		if err := json.Unmarshal(orEmpty(cmd.Params), &p); err != nil || p.Seconds == nil {
			return nil, errors.New("set_interval needs {\"seconds\": N}")
		}
		d := time.Duration(*p.Seconds * float64(time.Second))
		if *p.Seconds != *p.Seconds || d < agentMinInterval || d > agentMaxInterval {
			return nil, fmt.Errorf("seconds must be between %d and %d", int(agentMinInterval.Seconds()), int(agentMaxInterval.Seconds()))
		}
		a.interval.Store(int64(d))
		select {
		case a.changed <- struct{}{}:
		default:
		}
		a.log.Info("telemetry interval changed", "interval", d)
		return map[string]any{"interval_s": d.Seconds()}, nil
	case "exec":
		return a.exec(ctx, cmd.Params)
	default:
		return nil, fmt.Errorf("unknown command %q", truncate(cmd.Name, 64))
	}
}

func orEmpty(b json.RawMessage) json.RawMessage {
	if len(b) == 0 || string(b) == "null" {
		return json.RawMessage(`{}`)
	}
	return b
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// exec runs an allowed command without a shell, bounded in time and output.
func (a *Agent) exec(ctx context.Context, params json.RawMessage) (any, error) {
	var p struct {
		Cmd  string   `json:"cmd"`
		Name string   `json:"name"`
		Args []string `json:"args"`
	}
	if err := json.Unmarshal(orEmpty(params), &p); err != nil {
		return nil, errors.New("exec needs {\"cmd\": NAME, \"args\": [...]}")
	}
	name := p.Cmd
	if name == "" {
		name = p.Name
	}
	if name == "" {
		return nil, errors.New("exec needs {\"cmd\": NAME}")
	}
	if !a.allowed[name] {
		return nil, fmt.Errorf("exec: %q is not allowed on this device (see --allow-cmd)", truncate(name, 64))
	}
	if len(p.Args) > agentExecMaxArgs {
		return nil, fmt.Errorf("exec: at most %d arguments", agentExecMaxArgs)
	}
	for _, s := range p.Args {
		if len(s) > agentExecMaxArgLen || strings.ContainsRune(s, 0) {
			return nil, fmt.Errorf("exec: arguments are limited to %d bytes without NUL", agentExecMaxArgLen)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, a.cfg.ExecTimeout)
	defer cancel()
	out, code, err := runBounded(ctx, name, p.Args, agentExecMaxOutput)
	if err != nil && code < 0 {
		return nil, fmt.Errorf("exec %s: %w", name, err)
	}
	return map[string]any{
		"exit_code": code,
		"stdout":    string(out.stdout),
		"stderr":    string(out.stderr),
		"truncated": out.truncated,
	}, nil
}

type boundedOutput struct {
	stdout, stderr []byte
	truncated      bool
}

// capWriter keeps the first n bytes written to it.
type capWriter struct {
	buf       bytes.Buffer
	n         int
	truncated bool
}

func (w *capWriter) Write(p []byte) (int, error) {
	room := w.n - w.buf.Len()
	if room < len(p) {
		w.truncated = true
		if room > 0 {
			w.buf.Write(p[:room])
		}
		return len(p), nil
	}
	w.buf.Write(p)
	return len(p), nil
}

// runBounded runs name with args (no shell) until ctx ends, keeping at most
// limit bytes of each output. code is the exit code, or -1 when the command
// did not run to completion.
func runBounded(ctx context.Context, name string, args []string, limit int) (boundedOutput, int, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = time.Second
	so, se := &capWriter{n: limit}, &capWriter{n: limit}
	cmd.Stdout, cmd.Stderr = so, se
	err := cmd.Run()
	out := boundedOutput{stdout: so.buf.Bytes(), stderr: se.buf.Bytes(), truncated: so.truncated || se.truncated}
	if ctx.Err() != nil {
		return out, -1, fmt.Errorf("timed out")
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out, ee.ExitCode(), err
	}
	if err != nil {
		return out, -1, err
	}
	return out, 0, nil
}
