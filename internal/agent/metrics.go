package agent

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// sysMetrics reads Linux system metrics from /proc (root is "/" except in
// tests). It keeps the previous CPU sample to report utilisation between two
// reads; safe for concurrent use.
type sysMetrics struct {
	root string

	mu      sync.Mutex
	prevCPU cpuTimes
	havePre bool
}

type cpuTimes struct{ idle, total uint64 }

const maxProcFile = 64 << 10

func (m *sysMetrics) read(name string) ([]byte, error) {
	f, err := os.Open(m.root + name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, maxProcFile)
	n, err := f.Read(b)
	if n == 0 && err != nil {
		return nil, err
	}
	return b[:n], nil
}

// Collect returns the current metrics; a source that cannot be read is
// skipped (and listed under "errors").
func (m *sysMetrics) Collect() map[string]any {
	out := map[string]any{}
	var errs []string
	if b, err := m.read("/proc/loadavg"); err == nil {
		if l1, l5, l15, err := parseLoadAvg(b); err == nil {
			out["load1"], out["load5"], out["load15"] = l1, l5, l15
		} else {
			errs = append(errs, "loadavg")
		}
	} else {
		errs = append(errs, "loadavg")
	}
	if b, err := m.read("/proc/meminfo"); err == nil {
		mi := parseMeminfo(b)
		if total, ok := mi["MemTotal"]; ok && total > 0 {
			avail, ok := mi["MemAvailable"]
			if !ok {
				avail = mi["MemFree"] + mi["Buffers"] + mi["Cached"]
			}
			out["mem_total_bytes"] = total
			out["mem_available_bytes"] = avail
			out["mem_used_pct"] = round2(100 * float64(total-min(avail, total)) / float64(total))
		} else {
			errs = append(errs, "meminfo")
		}
	} else {
		errs = append(errs, "meminfo")
	}
	if b, err := m.read("/proc/uptime"); err == nil {
		if up, err := parseUptime(b); err == nil {
			out["uptime_s"] = up
		} else {
			errs = append(errs, "uptime")
		}
	} else {
		errs = append(errs, "uptime")
	}
	if b, err := m.read("/proc/stat"); err == nil {
		if cur, err := parseCPUStat(b); err == nil {
			m.mu.Lock()
			if m.havePre && cur.total > m.prevCPU.total {
				dt := cur.total - m.prevCPU.total
				di := cur.idle - min(m.prevCPU.idle, cur.idle)
				out["cpu_pct"] = round2(100 * float64(dt-min(di, dt)) / float64(dt))
			}
			m.prevCPU, m.havePre = cur, true
			m.mu.Unlock()
		} else {
			errs = append(errs, "stat")
		}
	} else {
		errs = append(errs, "stat")
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(m.root+"/", &st); err == nil {
		bs := uint64(st.Bsize)
		total, avail := uint64(st.Blocks)*bs, uint64(st.Bavail)*bs
		out["disk_total_bytes"] = total
		out["disk_free_bytes"] = avail
		if total > 0 {
			out["disk_used_pct"] = round2(100 * float64(total-min(avail, total)) / float64(total))
		}
	} else {
		errs = append(errs, "statfs")
	}
	if len(errs) > 0 {
		out["errors"] = errs
	}
	return out
}

// FreeMemory returns MemAvailable in bytes (the Linux counterpart of the
// firmware's free_heap), or 0.
func (m *sysMetrics) FreeMemory() uint64 {
	b, err := m.read("/proc/meminfo")
	if err != nil {
		return 0
	}
	return parseMeminfo(b)["MemAvailable"]
}

func round2(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }

// parseLoadAvg parses /proc/loadavg ("0.52 0.58 0.59 1/467 12345").
func parseLoadAvg(b []byte) (l1, l5, l15 float64, err error) {
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return 0, 0, 0, errors.New("loadavg: too few fields")
	}
	var v [3]float64
	for i := range v {
		v[i], err = strconv.ParseFloat(f[i], 64)
		if err != nil || v[i] < 0 || v[i] != v[i] || v[i] > 1e9 {
			return 0, 0, 0, fmt.Errorf("loadavg: bad field %d", i)
		}
	}
	return v[0], v[1], v[2], nil
}

// parseMeminfo parses /proc/meminfo into bytes per key ("MemTotal: 16 kB").
func parseMeminfo(b []byte) map[string]uint64 {
	out := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			continue
		}
		if len(f) > 1 && f[1] == "kB" {
			if n > (1<<64-1)/1024 {
				continue
			}
			n *= 1024
		}
		out[strings.TrimSpace(k)] = n
	}
	return out
}

// parseUptime parses /proc/uptime ("35.12 60.01") into whole seconds.
func parseUptime(b []byte) (int64, error) {
	f := strings.Fields(string(b))
	if len(f) < 1 {
		return 0, errors.New("uptime: empty")
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil || v < 0 || v != v || v > 1e15 {
		return 0, errors.New("uptime: bad value")
	}
	return int64(v), nil
}

// parseCPUStat parses the aggregate "cpu" line of /proc/stat.
func parseCPUStat(b []byte) (cpuTimes, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 || f[0] != "cpu" {
			continue
		}
		var t cpuTimes
		for i, s := range f[1:] {
			n, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return cpuTimes{}, fmt.Errorf("stat: bad field %d", i+1)
			}
			if t.total+n < t.total {
				return cpuTimes{}, errors.New("stat: overflow")
			}
			t.total += n
			if i == 3 || i == 4 { // idle, iowait
				t.idle += n
			}
		}
		return t, nil
	}
	return cpuTimes{}, errors.New("stat: no cpu line")
}
