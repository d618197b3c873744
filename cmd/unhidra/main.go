// Command unhidra is the whole Unhidra platform in one binary: `serve` runs
// every service; the other subcommands administer, load-test and simulate.
//
// main only parses, dispatches and exits; each subcommand lives in its own file
// and returns an error instead of exiting.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// usage lists the subcommands.
const usage = `unhidra: a secure real-time platform for devices and people

Usage:
  unhidra serve [flags]          run the platform (auth API, gateway, MQTT, ML bridge)
  unhidra migrate                apply the schema to DATABASE_URL and exit
  unhidra user create NAME [--admin] [--password-stdin]
  unhidra user list | verify NAME | disable NAME | set-password NAME --password-stdin
  unhidra device register NAME --owner USER | list | revoke ID
  unhidra agent [flags]          the device agent (GATEWAY_URL, DEVICE_API_KEY, CA_FILE, …)
  unhidra devsim --devices N     a fleet of simulated devices (--transport ws|mqtt|mixed)
  unhidra bench ws|mqtt|login    load generators: throughput, latency percentiles, server memory
  unhidra version                version, commit, Go version

Run "unhidra serve -h" for the configuration flags; each has an environment variable.
`

// errUsage marks a command-line mistake: main prints it with the usage and exits 2.
var errUsage = errors.New("usage")

// env is what a subcommand may read of its surroundings, so tests can run
// subcommands in-process.
type env struct {
	args   []string
	getenv func(string) string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	e := env{args: os.Args[1:], getenv: os.Getenv, stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}
	err := run(ctx, e)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, errUsage):
		fmt.Fprintf(os.Stderr, "%v\n\n%s", err, usage)
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "unhidra: %v\n", err)
		os.Exit(1)
	}
}

// run dispatches to a subcommand.
func run(ctx context.Context, e env) error {
	if len(e.args) == 0 {
		return fmt.Errorf("%w: no command given", errUsage)
	}
	cmd, rest := e.args[0], e.args[1:]
	e.args = rest
	switch cmd {
	case "serve":
		return runServe(ctx, e)
	case "migrate":
		return runMigrate(ctx, e)
	case "user":
		return runUser(ctx, e)
	case "device":
		return runDevice(ctx, e)
	case "agent":
		return runAgent(ctx, e)
	case "devsim":
		return runDevsim(ctx, e)
	case "bench":
		return runBench(ctx, e)
	case "version", "--version", "-v":
		return runVersion(e)
	case "help", "-h", "--help":
		fmt.Fprint(e.stdout, usage)
		return nil
	default:
		return fmt.Errorf("%w: unknown command %q", errUsage, cmd)
	}
}
