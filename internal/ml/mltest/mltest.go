// Package mltest runs the shipped ML worker (scripts/inference_worker.py)
// for tests: its command line and a socket path short enough for a Unix
// socket. Under `make check` (UNHIDRA_CHECK set) a missing Python fails
// the test; elsewhere it skips, saying what is missing.
package mltest

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// Python is the interpreter the worker is run with: Debian's.
const Python = "/usr/bin/python3"

// Script returns the worker script's path.
func Script() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "scripts", "inference_worker.py")
}

// Command returns ML_WORKER_CMD for the shipped worker with extra flags
// (e.g. "--test-models"), or fails or skips the test when it cannot run.
func Command(t testing.TB, flags ...string) string {
	t.Helper()
	if _, err := exec.LookPath(Python); err != nil {
		if os.Getenv("UNHIDRA_CHECK") != "" {
			t.Fatalf("%s is missing (make check installs python3 and python3-numpy)", Python)
		}
		t.Skipf("%s is missing: apt-get install python3 python3-numpy, or run make check", Python)
	}
	q := func(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
	return strings.Join(append([]string{Python, q(Script())}, flags...), " ")
}

// Socket returns a fresh socket path in a short temporary directory
// (t.TempDir's paths can pass the 107 bytes a socket path may have).
func Socket(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ml")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "ml.sock")
}
