package main

// serve loads and checks the configuration, opens every listener, and
// hands them to the composition root (internal/platform), which builds the
// node and runs it.

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/unhidra/unhidra/internal/config"
	"github.com/unhidra/unhidra/internal/platform"
)

func runServe(ctx context.Context, e env) error {
	a, err := startApp(ctx, e, platform.NodeOptions{})
	if err != nil || a == nil {
		return err
	}
	defer a.Close()
	return a.Run(ctx)
}

// startApp loads and validates the configuration, opens every listener,
// and only then touches the data dir (the JWT secret, the database, the
// admin) and builds the app. A refused configuration or a busy port leaves
// nothing behind. Tests use it to hold the app while it runs.
func startApp(ctx context.Context, e env, opts platform.NodeOptions) (*platform.Node, error) {
	cfg, err := config.Load(e.args, e.getenv)
	if errors.Is(err, flag.ErrHelp) {
		return nil, nil
	}
	var fe *config.FlagError
	if errors.As(err, &fe) {
		return nil, &usageError{cmd: "serve", problem: oneLine(fe.Error())}
	}
	if cfg == nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	// Values that did not parse and values that are wrong, in one list.
	if problems := errors.Join(err, cfg.Validate()); problems != nil {
		fmt.Fprintln(e.stderr, "unhidra: the configuration has problems:")
		lines := strings.Split(problems.Error(), "\n")
		for _, line := range lines {
			fmt.Fprintf(e.stderr, "  - %s\n", line)
		}
		// An existing installation records the refusal in its audit log.
		if recorded, err := platform.RecordRefusal(ctx, cfg, lines); err != nil {
			fmt.Fprintf(e.stderr, "unhidra: could not record the refusal in the audit log: %v\n", err)
		} else if recorded {
			fmt.Fprintln(e.stderr, "unhidra: the refusal is recorded in the audit log")
		}
		return nil, errors.New("refusing to start with an invalid configuration")
	}
	if err := platform.Check(cfg); err != nil {
		return nil, err
	}
	tc, err := platform.TLSConfig(cfg)
	if err != nil {
		return nil, err
	}
	lns, err := platform.OpenListeners(cfg)
	if err != nil {
		return nil, err
	}
	// Every port is ours: now the data dir.
	if err := cfg.CheckWritable(); err != nil {
		lns.Close()
		return nil, err
	}
	generated, err := cfg.EnsureDevSecret(rand.Read)
	if err != nil {
		lns.Close()
		return nil, fmt.Errorf("JWT secret: %w", err)
	}
	log := newLogger(e.stderr, cfg.LogFormat, cfg.LogLevel)
	if generated {
		log.Warn("no JWT_SECRET set: generated one and kept it in the data dir; set JWT_SECRET (32+ random bytes) for production", "path", filepath.Join(cfg.DataDir, "jwt_secret"))
	} else if cfg.JWTSecretGenerated {
		log.Warn("no JWT_SECRET set: using the one generated earlier in the data dir", "path", filepath.Join(cfg.DataDir, "jwt_secret"))
	}
	opts.Registry, opts.Stdout = newRegistry(), e.stdout
	return platform.NewNode(ctx, cfg, log, opts, lns, tc)
}
