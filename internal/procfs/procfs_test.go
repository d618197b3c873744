package main

import (
	"testing"
	"time"
)

func TestParseProcStatCPU(t *testing.T) {
	for _, tc := range []struct {
		name string
		line string
		want time.Duration
		ok   bool
	}{
		{"user and system ticks are added up", "42 (unhidra) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 12 0 1000 0 0", 3250 * time.Millisecond, true},
		{"a command name with spaces and parentheses is skipped", "7 (a (b) c) R 1 7 7 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 5 0 0", 70 * time.Millisecond, true},
		{"a line without a command name is refused", "42 unhidra S 1", 0, false},
		{"a truncated line is refused", "42 (unhidra) S 1 42", 0, false},
		{"a negative tick count is refused", "42 (x) S 1 42 42 0 -1 0 0 0 0 0 -5 1 0", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseProcStatCPU([]byte(tc.line))
			if (err == nil) != tc.ok || got != tc.want {
				t.Fatalf("got %v, %v; want %v, ok %v", got, err, tc.want, tc.ok)
			}
		})
	}
}

func FuzzParseProcStatCPU(f *testing.F) {
	f.Add([]byte("42 (unhidra) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 12 0 1000 0 0"))
	f.Add([]byte("1 ()) R"))
	f.Add([]byte(")"))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := parseProcStatCPU(b)
		if err == nil && d < 0 {
			t.Fatalf("negative CPU time %v", d)
		}
	})
}
