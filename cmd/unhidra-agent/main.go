// Command unhidra-agent is the device agent alone (`unhidra agent` without
// the server), for devices the full binary cannot be built for, such as
// linux/mipsle routers: `make cross` builds it for every device target.
//
// Configuration and behaviour are those of `unhidra agent` (docs/protocol.md#agent):
// GATEWAY_URL, DEVICE_ID, DEVICE_API_KEY, CA_FILE, TELEMETRY_INTERVAL,
// TELEMETRY_CMD, and the flags listed by -h.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/unhidra/unhidra/internal/agent"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "unhidra-agent: %v\n", err)
		if errors.Is(err, agent.ErrUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	cfg, err := agent.LoadConfig(os.Args[1:], os.Getenv, os.Stderr)
	if err != nil {
		return err
	}
	level := slog.LevelInfo
	switch cfg.LogLevel {
	case "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(os.Stderr, opts)
	if cfg.LogFormat == "json" {
		h = slog.NewJSONHandler(os.Stderr, opts)
	}
	return agent.New(cfg, slog.New(h)).Run(ctx)
}
