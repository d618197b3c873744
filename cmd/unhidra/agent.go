package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/unhidra/unhidra/internal/agent"
)

// runAgent is `unhidra agent`: the device agent of SPEC §7. The same agent
// is built alone as cmd/unhidra-agent for devices the server cannot run on.
func runAgent(ctx context.Context, e env) error {
	cfg, err := agent.LoadConfig(e.args, e.getenv, e.stderr)
	if errors.Is(err, agent.ErrUsage) {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if err != nil {
		return err
	}
	format := cfg.LogFormat
	if format == "" {
		format = "text"
	}
	return agent.New(cfg, newLogger(e.stderr, format, cfg.LogLevel)).Run(ctx)
}
