package main

import (
	"bufio"
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

var benchCmd = &cmdSpec{
	name:    "bench",
	args:    "ws|mqtt|login [flags]",
	summary: "Load generators: throughput, latency percentiles and the server's memory (see cmd/unhidra/BENCH.md).",
	commands: [][2]string{
		{"ws", "WebSocket connections, channels and publishers: deliveries/s, end-to-end latency, RSS per connection"},
		{"mqtt", "MQTT devices publishing telemetry at QoS 0 or 1: throughput and latency (also against a plain broker)"},
		{"login", "logins per second and their latency through the Argon2id hash pool"},
	},
	examples: []string{
		"unhidra bench ws --spawn --conns 1000 --rate 200 --duration 10s",
		"unhidra bench mqtt --spawn --devices 100 --qos 1",
		"unhidra bench login --spawn --concurrency 4",
	},
}

// runBench is `unhidra bench ws|mqtt|login`: load generators that print
// throughput, latency percentiles and the server's memory.
func runBench(ctx context.Context, e env) error {
	sub, rest, err := benchCmd.group(e)
	if err != nil {
		return err
	}
	e.args = rest
	switch sub {
	case "ws":
		return runBenchWS(ctx, e)
	case "mqtt":
		return runBenchMQTT(ctx, e)
	default:
		return runBenchLogin(ctx, e)
	}
}

// envDefault returns v, or the environment variable name when v is empty.
// Flags whose default is a secret from the environment are declared with
// an empty default and filled in after parsing, so that -h never shows
// the secret.
func envDefault(e env, v, name string) string {
	if v == "" {
		return e.getenv(name)
	}
	return v
}

// ---- latency recording ----

// latencies keeps a uniform sample (reservoir) of at most max durations and
// the exact count, min and max. Safe for concurrent use.
type latencies struct {
	mu       sync.Mutex
	max      int
	samples  []time.Duration
	n        int64
	min, top time.Duration
}

func newLatencies(max int) *latencies { return &latencies{max: max, min: math.MaxInt64} }

func (l *latencies) add(d time.Duration) {
	if d < 0 {
		d = 0
	}
	l.mu.Lock()
	l.n++
	if d < l.min {
		l.min = d
	}
	if d > l.top {
		l.top = d
	}
	if len(l.samples) < l.max {
		l.samples = append(l.samples, d)
	} else if j := rand.Int64N(l.n); j < int64(l.max) {
		l.samples[j] = d
	}
	l.mu.Unlock()
}

// percentile returns the p-th percentile (0 < p ≤ 100) by nearest rank.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	k := int(math.Ceil(p/100*float64(len(sorted))-1e-9)) - 1
	k = max(0, min(k, len(sorted)-1))
	return sorted[k]
}

func (l *latencies) summary() string {
	l.mu.Lock()
	s := slices.Clone(l.samples)
	n, lo, hi := l.n, l.min, l.top
	l.mu.Unlock()
	if n == 0 {
		return "no samples"
	}
	slices.Sort(s)
	r := func(d time.Duration) string { return fmtDur(d) }
	return fmt.Sprintf("n=%d min=%s p50=%s p90=%s p99=%s p999=%s max=%s",
		n, r(lo), r(percentile(s, 50)), r(percentile(s, 90)), r(percentile(s, 99)), r(percentile(s, 99.9)), r(hi))
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%dµs", d/time.Microsecond)
	}
}

// benchTSKey marks the send time (Unix nanoseconds) embedded in payloads.
var benchTSKey = []byte(`"bench_ts":`)

// benchTimestamps calls f with every embedded send time in b (a frame may
// batch several messages).
func benchTimestamps(b []byte, f func(time.Time)) int {
	n := 0
	for {
		i := bytes.Index(b, benchTSKey)
		if i < 0 {
			return n
		}
		b = b[i+len(benchTSKey):]
		j := 0
		for j < len(b) && (b[j] == ' ') {
			j++
		}
		k := j
		for k < len(b) && k-j < 20 && b[k] >= '0' && b[k] <= '9' {
			k++
		}
		if ns, err := strconv.ParseInt(string(b[j:k]), 10, 64); err == nil && k > j {
			f(time.Unix(0, ns))
			n++
		}
		b = b[k:]
	}
}

// benchPayload returns a JSON object of about size bytes carrying the send
// time.
func benchPayload(now time.Time, seq int64, size int) []byte {
	head := fmt.Sprintf(`{"bench_ts":%d,"seq":%d,"pad":"`, now.UnixNano(), seq)
	pad := max(0, size-len(head)-2)
	b := make([]byte, 0, len(head)+pad+2)
	b = append(b, head...)
	for i := 0; i < pad; i++ {
		b = append(b, 'x')
	}
	return append(b, '"', '}')
}

// ---- server memory ----

// readRSS returns the resident set size of process pid from
// /proc/PID/status (VmRSS), in bytes.
func readRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseVmRSS(b)
}

// settledRSS waits until the process's RSS stops moving (two readings half
// a second apart within 1 %, at most 10 s), so that memory freed by earlier
// work (an Argon2 hash at login is 48 MiB) does not count against the
// connections, and returns it.
func settledRSS(ctx context.Context, pid int) (int64, error) {
	prev, err := readRSS(pid)
	if err != nil {
		return 0, err
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(500 * time.Millisecond)
		cur, err := readRSS(pid)
		if err != nil {
			return 0, err
		}
		if d := cur - prev; d*100 <= prev && -d*100 <= prev {
			return cur, nil
		}
		prev = cur
	}
	return prev, nil
}

func parseVmRSS(b []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "VmRSS:") {
			continue
		}
		f := strings.Fields(strings.TrimPrefix(line, "VmRSS:"))
		if len(f) < 1 {
			break
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || n < 0 || n > 1<<40 {
			break
		}
		if len(f) > 1 && f[1] == "kB" {
			n *= 1024
		}
		return n, nil
	}
	return 0, errors.New("no VmRSS line")
}

func fmtBytes(n int64) string {
	if n < 0 {
		return "-" + fmtBytes(-n)
	}
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// ---- source addresses ----

// isLoopbackHost reports whether host names a loopback address.
func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback() && ip.To4() != nil
}

// sourceDialer returns a dialer bound to loopback source address
// 127.0.0.(1+i%n) when the target is loopback, so that more than ~28k
// connections (one ephemeral port range per source address) and per-IP
// limits can be spread; otherwise the default dialer.
func sourceDialer(target string, i, n int) *net.Dialer {
	d := &net.Dialer{Timeout: 15 * time.Second}
	host, _, err := net.SplitHostPort(target)
	if err != nil || n <= 1 || !isLoopbackHost(host) {
		return d
	}
	d.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i%n))}
	return d
}

// ---- the HTTP APIs ----

// apiClient talks to the auth API and the REST API for provisioning.
type apiClient struct {
	authURL string // http://127.0.0.1:9200
	restURL string // http://127.0.0.1:9000/api/v1
	hc      *http.Client
}

func newAPIClient(authURL, restURL string, local net.Addr) *apiClient {
	d := &net.Dialer{Timeout: 10 * time.Second, LocalAddr: local}
	return &apiClient{authURL: strings.TrimRight(authURL, "/"), restURL: strings.TrimRight(restURL, "/"),
		hc: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 64}}}
}

// withSource returns a copy whose requests come from loopback address
// 127.0.0.(1+i) (to spread per-IP login limits).
func (a *apiClient) withSource(i int) *apiClient {
	host := a.authURL
	if u, err := url.Parse(a.authURL); err == nil {
		host = u.Hostname()
	}
	if !isLoopbackHost(host) {
		return a
	}
	return newAPIClient(a.authURL, a.restURL, &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i%250))})
}

type apiError struct {
	Status int
	Code   string
	Msg    string
}

func (e *apiError) Error() string { return fmt.Sprintf("HTTP %d %s: %s", e.Status, e.Code, e.Msg) }

func (a *apiClient) do(ctx context.Context, method, u, token string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode >= 300 {
		var eb struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		_ = json.Unmarshal(b, &eb)
		return &apiError{Status: resp.StatusCode, Code: eb.Error.Code, Msg: eb.Error.Message}
	}
	if out != nil && len(b) > 0 {
		return json.Unmarshal(b, out)
	}
	return nil
}

func (a *apiClient) login(ctx context.Context, user, pass string) (string, error) {
	var out struct {
		AccessToken string `json:"access_token"`
	}
	if err := a.do(ctx, "POST", a.authURL+"/login", "", map[string]string{"username": user, "password": pass}, &out); err != nil {
		return "", fmt.Errorf("login %s: %w", user, err)
	}
	return out.AccessToken, nil
}

func (a *apiClient) register(ctx context.Context, user, pass string) error {
	err := a.do(ctx, "POST", a.authURL+"/register", "", map[string]string{"username": user, "password": pass}, nil)
	if err != nil {
		return fmt.Errorf("register %s: %w", user, err)
	}
	return nil
}

func (a *apiClient) createDevice(ctx context.Context, token, name string) (id, key string, err error) {
	var out struct {
		DeviceID string `json:"device_id"`
		APIKey   string `json:"api_key"`
	}
	if err := a.do(ctx, "POST", a.authURL+"/devices", token, map[string]string{"name": name}, &out); err != nil {
		return "", "", fmt.Errorf("create device %s: %w", name, err)
	}
	return out.DeviceID, out.APIKey, nil
}

// revokeDevice revokes a device (DELETE /devices/{id}): its key stops
// working; the device stays listed as revoked.
func (a *apiClient) revokeDevice(ctx context.Context, token, id string) error {
	if err := a.do(ctx, "DELETE", a.authURL+"/devices/"+url.PathEscape(id), token, nil, nil); err != nil {
		return fmt.Errorf("revoke device %s: %w", id, err)
	}
	return nil
}

func (a *apiClient) createChannel(ctx context.Context, token, name string) (string, error) {
	var out struct {
		ID string `json:"id"`
	}
	if err := a.do(ctx, "POST", a.restURL+"/channels", token, map[string]any{"name": name, "kind": "public"}, &out); err != nil {
		return "", fmt.Errorf("create channel %s: %w", name, err)
	}
	return out.ID, nil
}

func (a *apiClient) joinChannel(ctx context.Context, token, id string) error {
	err := a.do(ctx, "POST", a.restURL+"/channels/"+url.PathEscape(id)+"/join", token, map[string]any{}, nil)
	var ae *apiError
	if errors.As(err, &ae) && ae.Status == http.StatusConflict {
		return nil
	}
	return err
}

// restFromWS derives the REST base (http://host/api/v1) from a WebSocket URL.
func restFromWS(ws string) string {
	u, err := url.Parse(ws)
	if err != nil {
		return ""
	}
	switch u.Scheme {
	case "wss":
		u.Scheme = "https"
	default:
		u.Scheme = "http"
	}
	u.Path, u.RawQuery = "/api/v1", ""
	return u.String()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = crand.Read(b)
	return hex.EncodeToString(b)
}

// ---- a server of our own ----

// spawnedServer is an `unhidra serve` started by a bench in a temporary
// data directory, with the limits raised for load.
type spawnedServer struct {
	cmd           *exec.Cmd
	dir           string
	WSURL         string
	AuthURL       string
	MQTTAddr      string
	AdminPassword string
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// spawnServer starts this binary's `serve` and waits until it is healthy.
func spawnServer(ctx context.Context, stderr io.Writer) (*spawnedServer, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "unhidra-bench-")
	if err != nil {
		return nil, err
	}
	var ports [4]int
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			return nil, err
		}
	}
	s := &spawnedServer{dir: dir, AdminPassword: randomHex(16),
		WSURL:    fmt.Sprintf("ws://127.0.0.1:%d/ws", ports[1]),
		AuthURL:  fmt.Sprintf("http://127.0.0.1:%d", ports[0]),
		MQTTAddr: fmt.Sprintf("127.0.0.1:%d", ports[2])}
	cmd := exec.Command(exe, "serve")
	cmd.Env = append(os.Environ(),
		"UNHIDRA_DATA_DIR="+filepath.Join(dir, "data"),
		"AUTH_PORT="+strconv.Itoa(ports[0]),
		"GATEWAY_PORT="+strconv.Itoa(ports[1]),
		"MQTT_PORT="+strconv.Itoa(ports[2]),
		"MQTT_TLS_PORT="+strconv.Itoa(ports[3]),
		"UNHIDRA_ADMIN_PASSWORD="+s.AdminPassword,
		"RATE_LIMIT_IP_PER_MINUTE=100000000",
		"RATE_LIMIT_LOGIN_PER_MINUTE=100000000",
		"MAX_CONNECTIONS_PER_USER=100000000",
		"LOG_LEVEL=warn",
	)
	logf, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start server: %w", err)
	}
	s.cmd = cmd
	fmt.Fprintf(stderr, "bench: started unhidra serve (pid %d, data and log in %s)\n", cmd.Process.Pid, dir)
	deadline := time.Now().Add(30 * time.Second)
	hc := &http.Client{Timeout: time.Second}
	for _, u := range []string{s.AuthURL + "/health", restFromWS(s.WSURL)[:len(restFromWS(s.WSURL))-len("/api/v1")] + "/health"} {
		for {
			resp, err := hc.Get(u)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					break
				}
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				s.Stop()
				return nil, fmt.Errorf("the spawned server did not become healthy at %s (see %s)", u, filepath.Join(dir, "server.log"))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return s, nil
}

// PID returns the server's process id.
func (s *spawnedServer) PID() int { return s.cmd.Process.Pid }

// Stop ends the server (SIGTERM, then SIGKILL) and removes its directory.
func (s *spawnedServer) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { s.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			s.cmd.Process.Kill()
			<-done
		}
	}
	os.RemoveAll(s.dir)
}
