package procfs

import (
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
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
			got, err := ParseStatCPU([]byte(tc.line))
			if (err == nil) != tc.ok || got != tc.want {
				t.Fatalf("got %v, %v; want %v, ok %v", got, err, tc.want, tc.ok)
			}
		})
	}
}

func FuzzParseStatCPU(f *testing.F) {
	f.Add([]byte("42 (unhidra) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 12 0 1000 0 0"))
	f.Add([]byte("1 ()) R"))
	f.Add([]byte(")"))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ParseStatCPU(b)
		if err == nil && d < 0 {
			t.Fatalf("negative CPU time %v", d)
		}
	})
}

func TestParseStatusVmRSS(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     int64
		ok       bool
	}{
		{"a kB value is converted to bytes", "Name:\tx\nVmRSS:\t  2048 kB\nVmSwap: 0 kB\n", 2048 * 1024, true},
		{"a missing line is an error", "Name:\tx\n", 0, false},
		{"a negative value is an error", "VmRSS: -5 kB\n", 0, false},
		{"garbage is an error", "VmRSS: lots kB\n", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseStatus([]byte(tc.in))
			if (err == nil) != tc.ok || got.RSS != tc.want {
				t.Errorf("ParseStatus = %+v, %v; want RSS %d, ok=%v", got, err, tc.want, tc.ok)
			}
		})
	}
}

func FuzzParseStatus(f *testing.F) {
	f.Add([]byte("VmRSS:\t  2048 kB\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if s, err := ParseStatus(b); err == nil && (s.RSS < 0 || s.HWM < 0 || s.Threads < 0) {
			t.Fatalf("negative figures %+v", s)
		}
	})
}

func TestParseStatusReadsThePeakAndTheThreads(t *testing.T) {
	in := "Name:\tunhidra\nVmHWM:\t  4096 kB\nVmRSS:\t  2048 kB\nThreads:\t12\n"
	got, err := ParseStatus([]byte(in))
	if want := (Status{RSS: 2048 << 10, HWM: 4096 << 10, Threads: 12}); err != nil || got != want {
		t.Fatalf("ParseStatus = %+v, %v; want %+v", got, err, want)
	}
	for _, bad := range []string{"VmRSS: 1 kB\nVmHWM: lots kB\n", "VmRSS: 1 kB\nThreads: -2\n"} {
		if _, err := ParseStatus([]byte(bad)); err == nil {
			t.Errorf("ParseStatus(%q) accepted a malformed line", bad)
		}
	}
}

// This process's own /proc entries read back as a running process's.
func TestThisProcessHasMemoryThreadsAndCPUTime(t *testing.T) {
	needProc(t, "/proc/self/status")
	s, err := ReadStatus(0)
	if err != nil || s.RSS <= 0 || s.HWM < s.RSS || s.Threads < 1 {
		t.Fatalf("ReadStatus(self) = %+v, %v", s, err)
	}
	byPID, err := RSS(os.Getpid())
	if err != nil || byPID <= 0 {
		t.Fatalf("RSS(own pid) = %d, %v", byPID, err)
	}
	for start := time.Now(); time.Since(start) < 50*time.Millisecond; {
	}
	if cpu, err := CPU(0); err != nil || cpu <= 0 {
		t.Errorf("CPU(self) = %v, %v after 50 ms of spinning", cpu, err)
	}
	if lo, hi, err := EphemeralPorts(); err != nil || lo <= 0 || hi < lo || hi > 65535 {
		t.Errorf("EphemeralPorts = %d, %d, %v", lo, hi, err)
	}
	if la := LoadAverage(); len(strings.Fields(la)) != 3 {
		t.Errorf("LoadAverage = %q", la)
	}
}

// A listening socket's peer that has read everything has an empty send
// queue; a port pair with no socket gives -1.
func TestTCPSendQueueFindsALoopbackSocket(t *testing.T) {
	needProc(t, "/proc/net/tcp")
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	local, remote := c.LocalAddr().(*net.TCPAddr).Port, ln.Addr().(*net.TCPAddr).Port
	if q := TCPSendQueue(local, remote); q != 0 {
		t.Errorf("TCPSendQueue of an idle connection = %d, want 0", q)
	}
	if q := TCPSendQueue(remote, remote); q != -1 {
		t.Errorf("TCPSendQueue of no socket = %d, want -1", q)
	}
}

// needProc skips a test outside Linux; under make check (UNHIDRA_CHECK set),
// which runs on Linux, a missing /proc entry is a failure.
func needProc(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("UNHIDRA_CHECK") != "" {
			t.Fatalf("%s: %v (make check runs on Linux, where /proc is there)", path, err)
		}
		t.Skipf("no %s here (not Linux?); make check makes this a failure", path)
	}
}
