package main

// The command line of a new operator: every command and subcommand answers
// -h with its own usage and an example, and a mistake is one line with a
// hint, never the whole command list.

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// cliRun runs the command line in-process with an environment that holds
// secrets (which -h must never show) and a data dir that must not appear.
func cliRun(t *testing.T, args ...string) (stdout, stderr string, err error, dataDir string) {
	t.Helper()
	dataDir = filepath.Join(t.TempDir(), "data")
	vars := map[string]string{
		"UNHIDRA_DATA_DIR":                        dataDir,
		"UNHIDRA_ADMIN_PASSWORD":                  "env-admin-password-must-not-show",
		"UNHIDRA_ADMIN_TOKEN":                     "env-admin-token-must-not-show",
		"UNHIDRA_BENCH_PASSWORD":                  "env-bench-password-must-not-show",
		"CENTRIFUGO_HTTP_API_KEY":                 "env-centrifugo-key-must-not-show",
		"CENTRIFUGO_CLIENT_TOKEN_HMAC_SECRET_KEY": "env-centrifugo-secret-must-not-show",
		"DEVICE_API_KEY":                          "env-device-key-must-not-show",
	}
	var out, errOut bytes.Buffer
	err = run(context.Background(), env{args: args, getenv: func(k string) string { return vars[k] },
		stdin: strings.NewReader(""), stdout: &out, stderr: &errOut})
	return out.String(), errOut.String(), err, dataDir
}

func TestHelpOfEveryCommand(t *testing.T) {
	for _, tc := range []struct {
		args []string
		name string // the command the usage is about
		want []string
	}{
		{[]string{"user", "-h"}, "user", []string{"create NAME", "set-password NAME", "UNHIDRA_DATA_DIR"}},
		{[]string{"user", "--help"}, "user", nil},
		{[]string{"user", "help"}, "user", nil},
		{[]string{"user", "create", "-h"}, "user create", []string{"-admin", "-password-stdin"}},
		{[]string{"user", "create", "--help"}, "user create", nil},
		{[]string{"user", "list", "-h"}, "user list", nil},
		{[]string{"user", "list", "help"}, "user list", nil},
		{[]string{"user", "verify", "-h"}, "user verify", nil},
		{[]string{"user", "disable", "-h"}, "user disable", nil},
		{[]string{"user", "set-password", "bob", "-h"}, "user set-password", []string{"-password-stdin"}},
		{[]string{"device", "-h"}, "device", []string{"register NAME --owner USER", "revoke ID"}},
		{[]string{"device", "register", "-h"}, "device register", []string{"-owner", "-id"}},
		{[]string{"device", "list", "-h"}, "device list", nil},
		{[]string{"device", "revoke", "-h"}, "device revoke", nil},
		{[]string{"agent", "-h"}, "agent", []string{"GATEWAY_URL", "DEVICE_API_KEY", "DEVICE_ID", "CA_FILE",
			"TELEMETRY_INTERVAL", "TELEMETRY_CMD", "LOG_LEVEL", "LOG_FORMAT", "-allow-cmd", "-insecure-skip-verify", "set_interval"}},
		{[]string{"agent", "--help"}, "agent", []string{"GATEWAY_URL", "DEVICE_API_KEY"}},
		{[]string{"agent", "help"}, "agent", []string{"GATEWAY_URL", "DEVICE_API_KEY"}},
		{[]string{"migrate", "-h"}, "migrate", nil},
		{[]string{"migrate", "help"}, "migrate", nil},
		{[]string{"bench", "-h"}, "bench", []string{"ws", "mqtt", "login"}},
		{[]string{"bench", "help"}, "bench", nil},
		{[]string{"bench", "ws", "-h"}, "bench ws", []string{"-conns", "-spawn", "default 1000"}},
		{[]string{"bench", "mqtt", "-h"}, "bench mqtt", []string{"-qos", "-plain"}},
		{[]string{"bench", "login", "-h"}, "bench login", []string{"-concurrency"}},
		{[]string{"devsim", "-h"}, "devsim", []string{"-devices", "-transport", "-cleanup", "summary"}},
		{[]string{"devsim", "--devices", "5", "--help"}, "devsim", nil},
		{[]string{"version", "-h"}, "version", nil},
		{[]string{"help", "user", "create"}, "user create", []string{"-admin"}},
		{[]string{"help", "bench", "ws"}, "bench ws", nil},
	} {
		t.Run(strings.Join(tc.args, " ")+" prints the usage of "+tc.name+" and succeeds", func(t *testing.T) {
			out, errOut, err, dataDir := cliRun(t, tc.args...)
			if err != nil {
				t.Fatalf("err = %v, want nil", err)
			}
			var code bytes.Buffer
			if got := exitCode(err, &code); got != 0 || code.Len() > 0 {
				t.Errorf("exit code %d, printed %q; want 0 and nothing", got, code.String())
			}
			for _, w := range append([]string{"Usage: unhidra " + tc.name, "Flags:\n"}, tc.want...) {
				if w == "Flags:\n" && !strings.Contains(out, "\n  -") {
					continue // a command without flags lists none
				}
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			_, examples, ok := strings.Cut(out, "\nExamples:\n")
			if !ok || !strings.Contains(examples, "unhidra "+tc.name) {
				t.Errorf("no example of %q in the usage:\n%s", "unhidra "+tc.name, out)
			}
			if errOut != "" {
				t.Errorf("stderr = %q, want nothing", errOut)
			}
			if strings.Contains(out, "must-not-show") {
				t.Errorf("the usage shows a secret from the environment:\n%s", out)
			}
			if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
				t.Errorf("-h touched the data dir %s (stat: %v)", dataDir, err)
			}
		})
	}
}

func TestUsageErrorsAreOneLineAndAHint(t *testing.T) {
	for _, tc := range []struct {
		args []string
		cmd  string // the command whose -h the hint names
	}{
		{[]string{"user"}, "user"},
		{[]string{"user", "frobnicate"}, "user"},
		{[]string{"user", "create"}, "user create"},
		{[]string{"user", "create", "--bogus", "bob"}, "user create"},
		{[]string{"user", "create", "bob", "carol"}, "user create"},
		{[]string{"user", "list", "extra"}, "user list"},
		{[]string{"user", "list", "--admin"}, "user list"},
		{[]string{"user", "set-password", "bob"}, "user set-password"},
		{[]string{"device"}, "device"},
		{[]string{"device", "register", "x"}, "device register"},
		{[]string{"device", "register", "x", "--owner"}, "device register"},
		{[]string{"device", "revoke"}, "device revoke"},
		{[]string{"agent", "--bogus"}, "agent"},
		{[]string{"agent", "--interval", "soon"}, "agent"},
		{[]string{"migrate", "--bogus"}, "migrate"},
		{[]string{"migrate", "extra"}, "migrate"},
		{[]string{"bench"}, "bench"},
		{[]string{"bench", "tcp"}, "bench"},
		{[]string{"bench", "ws", "--bogus"}, "bench ws"},
		{[]string{"bench", "ws", "--conns", "many"}, "bench ws"},
		{[]string{"bench", "ws", "--conns", "0", "--rate", "-1"}, "bench ws"},
		{[]string{"bench", "mqtt", "--qos", "2"}, "bench mqtt"},
		{[]string{"bench", "login", "--bogus"}, "bench login"},
		{[]string{"devsim", "--bogus"}, "devsim"},
		{[]string{"devsim", "--devices", "0", "--transport", "carrier-pigeon"}, "devsim"},
		{[]string{"devsim", "--keys-file", "fleet.keys", "--cleanup"}, "devsim"},
		{[]string{"version", "--bogus"}, "version"},
		{[]string{"serve", "--bogus"}, "serve"},
		{[]string{"serve", "--gateway-port"}, "serve"},
	} {
		t.Run(strings.Join(tc.args, " ")+" is a one-line mistake of "+tc.cmd, func(t *testing.T) {
			out, _, err, dataDir := cliRun(t, tc.args...)
			if !errors.Is(err, errUsage) {
				t.Fatalf("err = %v, want a usage error", err)
			}
			hint := `run "unhidra ` + tc.cmd + ` -h" for usage`
			if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, hint) {
				t.Errorf("err = %q, want one line with %q", msg, hint)
			}
			var printed bytes.Buffer
			if got := exitCode(err, &printed); got != 2 {
				t.Errorf("exit code %d, want 2", got)
			}
			lines := strings.Split(strings.TrimSuffix(printed.String(), "\n"), "\n")
			if len(lines) != 2 || !strings.HasPrefix(lines[0], "unhidra "+tc.cmd+": ") || lines[1] != hint {
				t.Errorf("printed %q, want the problem on one line and then %q", printed.String(), hint)
			}
			if out != "" {
				t.Errorf("stdout = %q, want nothing", out)
			}
			if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
				t.Errorf("a usage mistake touched the data dir (stat: %v)", err)
			}
		})
	}
}

func TestUsageOfTheTopLevel(t *testing.T) {
	for _, args := range [][]string{nil, {"frobnicate"}} {
		t.Run("unhidra "+strings.Join(args, " ")+" names the problem and lists the commands, exit 2", func(t *testing.T) {
			_, _, err, _ := cliRun(t, args...)
			if !errors.Is(err, errUsage) {
				t.Fatalf("err = %v, want a usage error", err)
			}
			var printed bytes.Buffer
			if got := exitCode(err, &printed); got != 2 {
				t.Errorf("exit code %d, want 2", got)
			}
			p := printed.String()
			first, _, _ := strings.Cut(p, "\n")
			if !strings.HasPrefix(first, "unhidra: ") || !strings.Contains(p, "unhidra devsim") || !strings.Contains(p, `"unhidra COMMAND -h"`) {
				t.Errorf("printed:\n%s", p)
			}
			if n := strings.Count(p, "\n"); n > 20 {
				t.Errorf("printed %d lines, want the short command list", n)
			}
		})
	}
	for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}} {
		t.Run("unhidra "+args[0]+" lists the commands on stdout, exit 0", func(t *testing.T) {
			out, _, err, _ := cliRun(t, args...)
			if err != nil || exitCode(err, &bytes.Buffer{}) != 0 {
				t.Fatalf("err = %v", err)
			}
			if !strings.Contains(out, "Usage:") || !strings.Contains(out, "unhidra bench ws|mqtt|login") {
				t.Errorf("stdout:\n%s", out)
			}
		})
	}
	t.Run("serve -h succeeds without touching the data dir", func(t *testing.T) {
		_, _, err, dataDir := cliRun(t, "serve", "-h")
		if err != nil || exitCode(err, &bytes.Buffer{}) != 0 {
			t.Fatalf("err = %v", err)
		}
		if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
			t.Errorf("serve -h touched the data dir (stat: %v)", err)
		}
	})
	t.Run("other errors exit 1 with the error on one line", func(t *testing.T) {
		var printed bytes.Buffer
		if got := exitCode(errors.New("database is locked"), &printed); got != 1 || printed.String() != "unhidra: database is locked\n" {
			t.Errorf("exit %d, printed %q", got, printed.String())
		}
	})
}
