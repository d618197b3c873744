// Command unhidra is the whole Unhidra platform in one binary: `serve` runs
// every service; the other subcommands administer, load-test and simulate.
//
// main only parses, dispatches and exits; each subcommand lives in its own file
// and returns an error instead of exiting. Every command and subcommand
// answers -h, --help and help with its own usage (synopsis, flags, examples)
// on stdout; a command-line mistake is one line and a hint to run -h.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
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
  unhidra audit verify | export [--from N] | keygen
  unhidra agent [flags]          the device agent (GATEWAY_URL, DEVICE_API_KEY, CA_FILE, …)
  unhidra devsim --devices N     a fleet of simulated devices (--transport ws|mqtt|mixed)
  unhidra bench ws|mqtt|login    load generators: throughput, latency percentiles, server memory
  unhidra version                version, commit, Go version

Run "unhidra COMMAND -h" for a command's flags and examples ("unhidra serve -h"
lists the configuration; each setting has an environment variable).
`

// errUsage marks a command-line mistake: main prints it as one line with a
// hint and exits 2. Commands return a *usageError (cmdSpec.errorf), which
// matches it with errors.Is.
var errUsage = errors.New("usage")

// errHelped is returned by cmdSpec.parse once it has printed the usage that
// -h asked for; run turns it into success.
var errHelped = errors.New("usage printed")

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
	os.Exit(exitCode(err, os.Stderr))
}

// exitCode prints err the way the command line shows it and returns the
// process's exit status: 0 for success, 2 for a usage mistake (one line and
// a hint; the command list only when no command was recognised), 1 for
// anything else.
func exitCode(err error, stderr io.Writer) int {
	var ue *usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue) && ue.cmd == "":
		fmt.Fprintf(stderr, "unhidra: %s\n\n%s", ue.problem, usage)
		return 2
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "unhidra %s: %s\n%s\n", ue.cmd, ue.problem, ue.hint())
		return 2
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "unhidra: %s\n%s\n", oneLine(err.Error()), `run "unhidra -h" for the commands`)
		return 2
	default:
		fmt.Fprintf(stderr, "unhidra: %v\n", err)
		return 1
	}
}

// run dispatches to a subcommand.
func run(ctx context.Context, e env) error {
	err := dispatch(ctx, e)
	if errors.Is(err, errHelped) {
		return nil
	}
	return err
}

func dispatch(ctx context.Context, e env) error {
	if len(e.args) == 0 {
		return topLevel.errorf("no command given")
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
	case "audit":
		return runAudit(ctx, e)
	case "agent":
		return runAgent(ctx, e)
	case "devsim":
		return runDevsim(ctx, e)
	case "bench":
		return runBench(ctx, e)
	case "version", "--version", "-v":
		return runVersion(e)
	case "help", "-h", "-help", "--help":
		if len(rest) > 0 && rest[0] != "help" && !isHelpFlag(rest[0]) {
			// "unhidra help user create" is "unhidra user create -h".
			e.args = append(append([]string{}, rest...), "-h")
			return dispatch(ctx, e)
		}
		fmt.Fprint(e.stdout, usage)
		return nil
	default:
		return topLevel.errorf("unknown command %q", cmd)
	}
}

var topLevel = &cmdSpec{}

// cmdSpec describes one command or subcommand: what its -h prints and which
// command its usage errors point to.
type cmdSpec struct {
	name     string      // the words after "unhidra": "user create"
	args     string      // the synopsis after the name: "NAME [--admin] [--password-stdin]"
	pos      []string    // the positional arguments it takes, by name (leaf commands)
	anyPos   bool        // it takes any number of positional arguments
	summary  string      // what it does
	commands [][2]string // a command group's subcommands and what each does
	more     string      // printed after the flags: environment variables, notes
	examples []string    // complete invocations, each runnable as shown
}

// usageError is a command-line mistake in command cmd ("" before a command
// is known). It matches errUsage.
type usageError struct {
	cmd, problem string
}

func (e *usageError) Error() string        { return e.problem + "; " + e.hint() }
func (e *usageError) Is(target error) bool { return target == errUsage }

func (e *usageError) hint() string {
	if e.cmd == "" {
		return `run "unhidra -h" for the commands`
	}
	return fmt.Sprintf("run \"unhidra %s -h\" for usage", e.cmd)
}

// errorf returns the usage error "problem" of this command.
func (c *cmdSpec) errorf(format string, a ...any) error {
	return &usageError{cmd: c.name, problem: oneLine(fmt.Sprintf(format, a...))}
}

// invalid returns the usage error listing problems (nil when there are none).
func (c *cmdSpec) invalid(problems []error) error {
	if len(problems) == 0 {
		return nil
	}
	s := make([]string, len(problems))
	for i, p := range problems {
		s[i] = p.Error()
	}
	return c.errorf("%s", strings.Join(s, "; "))
}

// flags returns a flag set for the command that prints nothing itself:
// parse turns -h into the usage on stdout and mistakes into one line.
func (c *cmdSpec) flags() *flag.FlagSet {
	fs := flag.NewFlagSet("unhidra "+c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parse parses args into fs (nil: the command has no flags); flags may come
// before, between or after positional arguments, and "--" ends them. It
// checks the number of positional arguments against c.pos and returns them.
// -h, -help or --help (or "help" alone, for a command without positional
// arguments) prints the usage to e.stdout and returns errHelped.
func (c *cmdSpec) parse(e env, fs *flag.FlagSet, args []string) ([]string, error) {
	if fs == nil {
		fs = c.flags()
	}
	if len(args) == 1 && args[0] == "help" && len(c.pos) == 0 && !c.anyPos {
		c.printUsage(e.stdout, fs)
		return nil, errHelped
	}
	var pos []string
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			c.printUsage(e.stdout, fs)
			return nil, errHelped
		}
		if err != nil {
			return nil, c.errorf("%s", flagProblem(err))
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		if args[0] == "--" {
			pos = append(pos, args[1:]...)
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	if c.anyPos || len(pos) == len(c.pos) {
		return pos, nil
	}
	switch {
	case len(c.pos) == 0:
		return nil, c.errorf("takes no arguments, got %q", strings.Join(pos, " "))
	case len(pos) < len(c.pos):
		return nil, c.errorf("needs %s", strings.Join(c.pos[len(pos):], " "))
	default:
		return nil, c.errorf("takes %d argument(s) (%s), got %d: %q", len(c.pos), strings.Join(c.pos, " "), len(pos), strings.Join(pos, " "))
	}
}

// group reads the subcommand of a command group: it prints the group's
// usage for -h, --help or help (and returns errHelped), and refuses a
// missing or unknown subcommand.
func (c *cmdSpec) group(e env) (sub string, rest []string, err error) {
	if len(e.args) == 0 {
		return "", nil, c.errorf("needs a command: %s", c.commandNames())
	}
	sub, rest = e.args[0], e.args[1:]
	if sub == "help" || isHelpFlag(sub) {
		c.printUsage(e.stdout, nil)
		return "", nil, errHelped
	}
	for _, sc := range c.commands {
		if name, _, _ := strings.Cut(sc[0], " "); name == sub {
			return sub, rest, nil
		}
	}
	return "", nil, c.errorf("unknown command %q (%s)", sub, c.commandNames())
}

func (c *cmdSpec) commandNames() string {
	names := make([]string, len(c.commands))
	for i, sc := range c.commands {
		names[i], _, _ = strings.Cut(sc[0], " ")
	}
	return strings.Join(names, ", ")
}

// printUsage writes the command's usage: synopsis, summary, subcommands or
// flags with their defaults, notes and examples.
func (c *cmdSpec) printUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: unhidra %s", c.name)
	if c.args != "" {
		fmt.Fprintf(w, " %s", c.args)
	}
	fmt.Fprintf(w, "\n\n%s\n", strings.TrimSpace(c.summary))
	if len(c.commands) > 0 {
		fmt.Fprintf(w, "\nCommands:\n")
		width := 0
		for _, sc := range c.commands {
			width = max(width, len(sc[0]))
		}
		for _, sc := range c.commands {
			fmt.Fprintf(w, "  %-*s  %s\n", width, sc[0], sc[1])
		}
		fmt.Fprintf(w, "\nRun \"unhidra %s COMMAND -h\" for a command's flags and examples.\n", c.name)
	}
	if fs != nil && hasFlags(fs) {
		fmt.Fprintf(w, "\nFlags:\n")
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	if c.more != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(c.more))
	}
	if len(c.examples) > 0 {
		fmt.Fprintf(w, "\nExamples:\n")
		for _, ex := range c.examples {
			fmt.Fprintf(w, "  %s\n", ex)
		}
	}
}

// flagProblem words a flag package parse error for the command line.
func flagProblem(err error) string {
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, "flag provided but not defined: "); ok {
		return "unknown flag " + rest
	}
	return msg
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

func isHelpFlag(s string) bool {
	switch s {
	case "-h", "-help", "--h", "--help":
		return true
	}
	return false
}

// oneLine joins the lines of s with "; ", so a usage error stays one line.
func oneLine(s string) string {
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool { return r == '\n' }), "; ")
}
