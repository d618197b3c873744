package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/unhidra/unhidra/internal/agent"
)

var agentCmd = &cmdSpec{
	name: "agent",
	args: "[flags]",
	summary: `The device agent (docs/protocol.md#agent): connects to the gateway over WebSocket with the
device's API key, sends telemetry (built-in system metrics, or TELEMETRY_CMD's JSON
output) and heartbeats, and answers the commands ping, set_interval {"seconds": N}
and exec (only the names given with --allow-cmd). It reconnects with backoff,
buffers telemetry while offline, and stops with a clear message when its key is
revoked.`,
	more: `Environment (a flag, where there is one, overrides its variable):
  GATEWAY_URL         the gateway's WebSocket URL, e.g. wss://api.example.com/ws (required)
  DEVICE_API_KEY      the device's API key, from "unhidra device register" or POST /devices
                      (required; read from the environment only, never a flag)
  DEVICE_ID           the device's id; a warning is logged when the key belongs to another
  CA_FILE             PEM file of an extra trusted CA (a private CA for wss://)
  TELEMETRY_INTERVAL  time between telemetry points (default 60s, 1s to 24h)
  TELEMETRY_CMD       a command whose JSON object output is sent as telemetry
                      (default: built-in system metrics from /proc)
  LOG_LEVEL           debug, info, warn or error (default info)
  LOG_FORMAT          text or json (default text)`,
	examples: []string{
		"GATEWAY_URL=ws://localhost:9000/ws DEVICE_ID=gh-1 DEVICE_API_KEY=$KEY unhidra agent",
		"GATEWAY_URL=wss://iot.example.com/ws CA_FILE=ca.pem DEVICE_API_KEY=$KEY unhidra agent --interval 10s --allow-cmd uptime",
	},
}

// runAgent is `unhidra agent`: the device agent of docs/protocol.md#agent. The same agent
// is built alone as cmd/unhidra-agent for devices the server cannot run on.
func runAgent(ctx context.Context, e env) error {
	if len(e.args) == 1 && e.args[0] == "help" {
		return agentHelp(e)
	}
	cfg, err := agent.LoadConfig(e.args, e.getenv, io.Discard)
	if errors.Is(err, agent.ErrUsage) {
		if strings.Contains(err.Error(), flag.ErrHelp.Error()) {
			return agentHelp(e)
		}
		msg := strings.TrimPrefix(err.Error(), agent.ErrUsage.Error()+": ")
		if rest, ok := strings.CutPrefix(msg, "flag provided but not defined: "); ok {
			msg = "unknown flag " + rest
		}
		return agentCmd.errorf("%s", msg)
	}
	if err != nil {
		return fmt.Errorf("the agent's configuration has problems (run \"unhidra agent -h\" for its variables and flags):\n%w", err)
	}
	format := cfg.LogFormat
	if format == "" {
		format = "text"
	}
	return agent.New(cfg, newLogger(e.stderr, format, cfg.LogLevel)).Run(ctx)
}

// agentHelp prints the agent's usage. Its flags are the agent package's
// own, listed with their built-in defaults (not the environment's).
func agentHelp(e env) error {
	var defaults bytes.Buffer
	_, _ = agent.LoadConfig([]string{"-h"}, func(string) string { return "" }, &defaults)
	// The flag package's listing starts with a "Usage of agent:" line.
	_, list, _ := strings.Cut(defaults.String(), "\n")
	w := e.stdout
	fmt.Fprintf(w, "Usage: unhidra %s %s\n\n%s\n", agentCmd.name, agentCmd.args, agentCmd.summary)
	if strings.TrimSpace(list) != "" {
		fmt.Fprintf(w, "\nFlags:\n%s", list)
	}
	fmt.Fprintf(w, "\n%s\n\nExamples:\n", strings.TrimSpace(agentCmd.more))
	for _, ex := range agentCmd.examples {
		fmt.Fprintf(w, "  %s\n", ex)
	}
	return errHelped
}
