//go:build race

package main

// raceEnabled reports a -race build, whose shadow memory inflates RSS.
const raceEnabled = true
