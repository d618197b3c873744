package gateway

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/wire"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"
)

// rawHandshake opens a WebSocket with no client-side goroutine or buffer
// kept: it writes the request, reads the 101 and the welcome frame, and
// returns the bare connection.
func rawHandshake(addr, token string) (net.Conn, error) {
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	_ = nc.SetDeadline(time.Now().Add(30 * time.Second))
	req := "GET /ws HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
		"Sec-WebSocket-Protocol: unhidra.v1, bearer." + token + "\r\n\r\n"
	if _, err := io.WriteString(nc, req); err != nil {
		nc.Close()
		return nil, err
	}
	var buf [1024]byte
	n := 0
	for {
		m, err := nc.Read(buf[n:])
		if err != nil {
			nc.Close()
			return nil, err
		}
		n += m
		i := bytes.Index(buf[:n], []byte("\r\n\r\n"))
		if i < 0 || n < i+4+2 {
			continue
		}
		if !bytes.HasPrefix(buf[:n], []byte("HTTP/1.1 101")) {
			nc.Close()
			return nil, fmt.Errorf("handshake: %q", buf[:min(n, 64)])
		}
		f := buf[i+4 : n]
		l := int(f[1] & 0x7F)
		hl := 2
		if l == 126 {
			if len(f) < 4 {
				continue
			}
			l, hl = int(binary.BigEndian.Uint16(f[2:4])), 4
		}
		if len(f) >= hl+l {
			break
		}
	}
	_ = nc.SetDeadline(time.Time{})
	return nc, nil
}

// memoryFigures returns Go heap + stacks in use and the process RSS.
func memoryFigures() (goBytes, rss uint64) {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	goBytes = ms.HeapInuse + ms.StackInuse
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				rss = kb << 10
			}
		}
	}
	return goBytes, rss
}

// TestMemoryPerIdleConnection opens idle authenticated connections and logs
// what each costs: Go heap + stacks and process RSS, divided by the count.
// The clients live in the same process but hold only their net.Conn, so the
// figure is an upper bound for the server side. Set UNHIDRA_WS_MEM_CONNS for
// a bigger run (e.g. 9000; each connection takes two file descriptors here).
func TestMemoryPerIdleConnection(t *testing.T) {
	n := 2000
	if v, err := strconv.Atoi(os.Getenv("UNHIDRA_WS_MEM_CONNS")); err == nil && v > 0 {
		n = v
	}
	e := newEnv(t, func(c *Config, _ *Deps) { c.MaxConnsPerUser = n + 1; c.PingInterval = time.Hour })
	tok := e.user("idle", "s", time.Hour)
	// Warm up the server's pools and goroutine stacks.
	warm, err := rawHandshake(e.srv.Addr(), tok)
	if err != nil {
		t.Fatal(err)
	}
	defer warm.Close()
	g0 := runtime.NumGoroutine()
	go0, rss0 := memoryFigures()
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
		eventually(t, 30*time.Second, "connections released", func() bool { return e.srv.Connections() <= 1 })
	}()
	for range n {
		c, err := rawHandshake(e.srv.Addr(), tok)
		if err != nil {
			t.Fatalf("after %d connections: %v", len(conns), err)
		}
		conns = append(conns, c)
	}
	eventually(t, 30*time.Second, "all connections registered", func() bool { return e.srv.Connections() == n+1 })
	// Let the short-lived writer goroutines of the welcome frames finish.
	eventually(t, 30*time.Second, "writers gone", func() bool { return runtime.NumGoroutine()-g0 <= n })
	go1, rss1 := memoryFigures()
	goroutines := float64(runtime.NumGoroutine()-g0) / float64(n)
	perGo := float64(int64(go1)-int64(go0)) / float64(n)
	perRSS := float64(int64(rss1)-int64(rss0)) / float64(n)
	t.Logf("%d idle connections: %.2f goroutines/conn, Go heap+stack %.2f KiB/conn, RSS %.2f KiB/conn (client sockets included; race detector %v)",
		n, goroutines, perGo/1024, perRSS/1024, raceEnabled)
	if goroutines > 1.01 {
		t.Errorf("%.2f goroutines per idle connection, want 1 (the reader only)", goroutines)
	}
	if !raceEnabled && perGo > 16<<10 {
		t.Errorf("Go heap+stack per idle connection = %.1f KiB, want at most 16 KiB", perGo/1024)
	}
}

// helper is a gateway running in a child process (TestHelperGatewayProcess).
type helper struct {
	cmd  *exec.Cmd
	addr string
	tok  string
}

// startHelper starts this test binary again as a gateway-only process.
// env adds variables: UNHIDRA_GATEWAY_HELPER_ADDR (listen address) and
// UNHIDRA_GATEWAY_HELPER_TOKEN (a fixed access token).
func startHelper(t testing.TB, maxConns int, env ...string) *helper {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperGatewayProcess$", "-test.v")
	cmd.Env = append(os.Environ(), "UNHIDRA_GATEWAY_HELPER=1", "UNHIDRA_GATEWAY_HELPER_CONNS="+strconv.Itoa(maxConns))
	cmd.Env = append(cmd.Env, env...)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Wait() })
	sc := bufio.NewScanner(stdout)
	h := &helper{cmd: cmd}
	for sc.Scan() {
		if a, ok := strings.CutPrefix(sc.Text(), "HELPER "); ok {
			h.addr, h.tok, _ = strings.Cut(a, " ")
			break
		}
	}
	if h.addr == "" {
		t.Fatal("helper did not start")
	}
	go io.Copy(io.Discard, stdout)
	return h
}

// rssKiB reads the helper's resident set size.
func (h *helper) rssKiB() float64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", h.cmd.Process.Pid))
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb
		}
	}
	return 0
}

// TestMemoryServerProcess measures the server alone: it starts this test
// binary again as a gateway-only process, opens UNHIDRA_WS_MEM_PROCESS idle
// authenticated connections to it and reads the child's RSS from /proc.
// Skipped unless that variable is set (it needs one file descriptor per
// connection on each side).
func TestMemoryServerProcess(t *testing.T) {
	n, err := strconv.Atoi(os.Getenv("UNHIDRA_WS_MEM_PROCESS"))
	if err != nil || n <= 0 {
		t.Skip("set UNHIDRA_WS_MEM_PROCESS=10000 to measure RSS per connection in a separate server process")
	}
	measureServerProcess(t, n)
}

// TestSoakMemoryPerIdleConnection holds the headline figure in `make soak`:
// at 10,000 idle authenticated connections the gateway process must stay
// within 12 KiB of RSS per connection.
func TestSoakMemoryPerIdleConnection(t *testing.T) {
	if os.Getenv("UNHIDRA_SOAK") == "" {
		t.Skip("set UNHIDRA_SOAK=1 (make soak)")
	}
	const n, limitKiB = 10000, 12.0
	if perConn := measureServerProcess(t, n); perConn > limitKiB {
		t.Errorf("RSS per idle connection %.2f KiB at %d connections, want ≤ %.0f KiB", perConn, n, limitKiB)
	}
}

// measureServerProcess opens n idle connections to a gateway-only child
// process and returns the child's RSS growth per connection in KiB.
func measureServerProcess(t *testing.T, n int) float64 {
	h := startHelper(t, n+10)
	rss := func() float64 {
		time.Sleep(500 * time.Millisecond) // let the helper's GC settle
		return h.rssKiB()
	}
	warm, err := rawHandshake(h.addr, h.tok)
	if err != nil {
		t.Fatal(err)
	}
	defer warm.Close()
	r0 := rss()
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	start := time.Now()
	for range n {
		c, err := rawHandshake(h.addr, h.tok)
		if err != nil {
			t.Fatalf("after %d connections: %v", len(conns), err)
		}
		conns = append(conns, c)
	}
	el := time.Since(start)
	r1 := rss()
	t.Logf("server process: %d idle authenticated connections, RSS %.0f → %.0f KiB: %.2f KiB per connection; %.0f connections/s (sequential)",
		n, r0, r1, (r1-r0)/float64(n), float64(n)/el.Seconds())
	return (r1 - r0) / float64(n)
}

// TestHelperGatewayProcess is the server of the separate-process
// measurements.
func TestHelperGatewayProcess(t *testing.T) {
	if os.Getenv("UNHIDRA_GATEWAY_HELPER") != "1" {
		t.Skip("helper process only")
	}
	max, _ := strconv.Atoi(os.Getenv("UNHIDRA_GATEWAY_HELPER_CONNS"))
	e := newEnv(t, func(c *Config, _ *Deps) {
		c.MaxConnsPerUser = max
		c.PingInterval = time.Hour
		c.InboundRate, c.InboundBurst = 1e9, 1e9 // the load publisher
		if a := os.Getenv("UNHIDRA_GATEWAY_HELPER_ADDR"); a != "" {
			c.Addr = a
		}
	})
	tok := e.user("load", "s", 24*time.Hour)
	if fixed := os.Getenv("UNHIDRA_GATEWAY_HELPER_TOKEN"); fixed != "" {
		tok = fixed
		e.auth.add(tok, unhidra.Identity{Principal: wire.Principal{Kind: wire.KindUser, ID: "storm"}, SessionID: "s", ExpiresAt: time.Now().Add(24 * time.Hour)})
	}
	fmt.Printf("HELPER %s %s\n", e.srv.Addr(), tok)
	io.Copy(io.Discard, os.Stdin) // until the parent closes stdin
}
