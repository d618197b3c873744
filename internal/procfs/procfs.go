// Package procfs reads what Linux's /proc says about a process (its memory,
// threads and CPU time) and about the machine (load, TCP send queues, the
// ephemeral port range). The load generators and the system tests measure
// the server with it. Every function reads the file afresh and is safe for
// concurrent use; on other systems they return errors (or their "unknown"
// values).
package procfs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
)

// Status is a process's memory and thread count, from /proc/PID/status.
type Status struct {
	RSS     int64 // resident set size (VmRSS), bytes
	HWM     int64 // peak resident set size (VmHWM), bytes; 0 when absent
	Threads int   // threads (Threads); 0 when absent
}

// path names a file of process pid; pid 0 is this process.
func path(pid int, file string) string {
	if pid == 0 {
		return "/proc/self/" + file
	}
	return fmt.Sprintf("/proc/%d/%s", pid, file)
}

// ReadStatus reads /proc/PID/status (pid 0: this process).
func ReadStatus(pid int) (Status, error) {
	b, err := os.ReadFile(path(pid, "status"))
	if err != nil {
		return Status{}, err
	}
	return ParseStatus(b)
}

// RSS returns the resident set size of process pid (0: this process), in
// bytes.
func RSS(pid int) (int64, error) {
	s, err := ReadStatus(pid)
	return s.RSS, err
}

// ParseStatus reads VmRSS, VmHWM and Threads from the text of a
// /proc/PID/status file. A missing or malformed VmRSS is an error.
func ParseStatus(b []byte) (Status, error) {
	var s Status
	rss := false
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch k {
		case "VmRSS":
			n, err := parseKB(v)
			if err != nil {
				return Status{}, fmt.Errorf("VmRSS: %w", err)
			}
			s.RSS, rss = n, true
		case "VmHWM":
			n, err := parseKB(v)
			if err != nil {
				return Status{}, fmt.Errorf("VmHWM: %w", err)
			}
			s.HWM = n
		case "Threads":
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || n < 0 {
				return Status{}, errors.New("Threads: not a count")
			}
			s.Threads = n
		}
	}
	if !rss {
		return Status{}, errors.New("no VmRSS line")
	}
	return s, nil
}

// parseKB parses a status value such as "  2048 kB" into bytes.
func parseKB(v string) (int64, error) {
	f := strings.Fields(v)
	if len(f) < 1 {
		return 0, errors.New("no value")
	}
	n, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil || n < 0 || n > 1<<40 {
		return 0, fmt.Errorf("bad value %q", f[0])
	}
	if len(f) > 1 && f[1] == "kB" {
		n *= 1024
	}
	return n, nil
}

// CPU returns the user+system CPU time process pid (0: this process) has
// used, from /proc/PID/stat.
func CPU(pid int) (time.Duration, error) {
	if pid < 0 {
		return 0, errors.New("no process id")
	}
	b, err := os.ReadFile(path(pid, "stat"))
	if err != nil {
		return 0, err
	}
	return ParseStatCPU(b)
}

// ParseStatCPU reads utime and stime (fields 14 and 15, clock ticks of
// 1/100 s as on every Linux port Go supports) from a /proc/PID/stat line;
// the command name (field 2) may contain spaces and parentheses, so fields
// are counted after its last ')'.
func ParseStatCPU(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("/proc stat: no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): utime is f[11], stime f[12].
	if len(f) < 13 {
		return 0, errors.New("/proc stat: too few fields")
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 63)
	st, err2 := strconv.ParseUint(f[12], 10, 63)
	if err1 != nil || err2 != nil || ut > math.MaxInt64/2/uint64(10*time.Millisecond) || st > math.MaxInt64/2/uint64(10*time.Millisecond) {
		return 0, errors.New("/proc stat: bad utime/stime")
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

// LoadAverage is the machine's 1, 5 and 15-minute load ("0.52 0.58 0.59"),
// or "unknown".
func LoadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	fs := strings.Fields(string(b))
	if len(fs) < 3 {
		return "unknown"
	}
	return strings.Join(fs[:3], " ")
}

// TCPSendQueue returns the bytes in the kernel send queue of the IPv4 TCP
// socket from localPort to remotePort (/proc/net/tcp's tx_queue), or -1
// when there is no such socket.
func TCPSendQueue(localPort, remotePort int) int64 {
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return -1
	}
	local, remote := fmt.Sprintf(":%04X", localPort), fmt.Sprintf(":%04X", remotePort)
	for _, line := range strings.Split(string(b), "\n")[1:] {
		fs := strings.Fields(line)
		if len(fs) < 5 || !strings.HasSuffix(fs[1], local) || !strings.HasSuffix(fs[2], remote) {
			continue
		}
		tx, _, _ := strings.Cut(fs[4], ":")
		n, err := strconv.ParseInt(tx, 16, 64)
		if err != nil {
			return -1
		}
		return n
	}
	return -1
}

// EphemeralPorts returns the kernel's range of ports for outgoing
// connections (/proc/sys/net/ipv4/ip_local_port_range).
func EphemeralPorts() (lo, hi int, err error) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0, err
	}
	if n, _ := fmt.Sscan(string(b), &lo, &hi); n != 2 {
		return 0, 0, errors.New("ip_local_port_range: want two ports")
	}
	return lo, hi, nil
}
