// Package systemtest holds the system and soak tests that run the real
// `unhidra serve` binary as a child process (internal/e2etest's Child):
// durability under kill -9 (crash_test.go), reconnect storms after a crash
// (storm_test.go), and the measured figures of login floods, slow
// consumers, shutdowns with publishes in flight and floods beside a
// neighbour (figures_test.go). The binary is built once per run, without
// -race, so the child starts and runs at production speed.
//
// `go test ./...` (and so `make check`) runs them in their short form; the
// TestSoak… variants run with UNHIDRA_SOAK=1 (`make soak`). The package has
// no code of its own outside its tests.
package systemtest
