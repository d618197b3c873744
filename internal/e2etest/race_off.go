//go:build !race

package e2etest

// RaceEnabled reports a -race build, whose shadow memory inflates RSS and
// whose instrumentation slows this process (not a child built by Binary).
const RaceEnabled = false
