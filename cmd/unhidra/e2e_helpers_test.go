package main

// Shared pieces of the whole-system tests (e2e_ws_test.go,
// e2e_devices_test.go, crash_test.go): the full stack in-process (auth API,
// gateway and MQTT on free ports), the same stack as a real child process
// built from this package, and small clients on every transport.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.golang/paho"

	"github.com/unhidra/unhidra/internal/auth"
	"github.com/unhidra/unhidra/internal/wstest"
	"github.com/unhidra/unhidra/wire"
)

// cheapHash keeps logins fast where the test is not about hashing.
var cheapHash = appOptions{hashParams: auth.Params{MemoryKiB: 64, Iterations: 1, Parallelism: 1}}

// stack is the whole server (auth API, gateway, MQTT) running in-process.
type stack struct {
	*testServer
	gwURL   string // http://host:port of the gateway
	wsURL   string // ws://host:port/ws
	mqtt    string // host:port of the MQTT listener
	adminPW string
}

// startStack starts every service on free ports with limits raised so the
// tests' many connections from 127.0.0.1 are not refused.
func startStack(t *testing.T, extra map[string]string) *stack {
	t.Helper()
	pw := secret("admin password", "e2e-admin-"+randomHex(8))
	e := map[string]string{
		"UNHIDRA_SERVICES":            "auth,gateway,mqtt",
		"UNHIDRA_ADMIN_PASSWORD":      pw,
		"RATE_LIMIT_IP_PER_MINUTE":    "100000",
		"RATE_LIMIT_LOGIN_PER_MINUTE": "100000",
		"LOG_LEVEL":                   "info",
	}
	for k, v := range extra {
		e[k] = v
	}
	s := &stack{testServer: startServer(t, e, cheapHash), adminPW: pw}
	s.gwURL = "http://" + s.app.GatewayAddr()
	s.wsURL = "ws://" + s.app.GatewayAddr() + "/ws"
	s.mqtt = s.app.MQTTAddr()
	waitHTTP(t, s.gwURL+"/ready", 10*time.Second)
	return s
}

// waitHTTP polls url until it answers 200.
func waitHTTP(t testing.TB, url string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	c := &http.Client{Timeout: time.Second}
	for {
		res, err := c.Get(url)
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return time.Since(start)
			}
		}
		if time.Since(start) > within {
			t.Fatalf("%s not ready within %s (last: %v)", url, within, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// httpCall is one JSON request to base+path.
func httpCall(t testing.TB, base, method, path, bearer string, body any) reply {
	t.Helper()
	var rd io.Reader
	if body != nil {
		j, _ := json.Marshal(body)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	res, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return reply{res.StatusCode, res.Header, b}
}

// api calls the gateway's REST API.
func (s *stack) api(t testing.TB, method, path, bearer string, body any) reply {
	t.Helper()
	return httpCall(t, s.gwURL, method, path, bearer, body)
}

// authAPI calls the auth API.
func (s *stack) authAPI(t testing.TB, method, path, bearer string, body any) reply {
	t.Helper()
	return httpCall(t, s.url, method, path, bearer, body)
}

// decode decodes a JSON answer.
func decode(t testing.TB, r reply, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

func wantStatus(t testing.TB, r reply, status int, what string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: got %d %s, want %d", what, r.status, r.body, status)
	}
}

// user registers name (when new) and logs it in.
func (s *stack) user(t *testing.T, name string) (access string, password string) {
	t.Helper()
	pw := secret("password", "pw-of-"+name+"-"+randomHex(4))
	wantStatus(t, s.authAPI(t, "POST", "/register", "", map[string]string{"username": name, "password": pw}), 201, "register "+name)
	return s.login(t, name, pw).AccessToken, pw
}

func (s *stack) admin(t *testing.T) string {
	t.Helper()
	return s.login(t, "admin", s.adminPW).AccessToken
}

// device registers a device of the token's user and returns its key.
func (s *stack) device(t *testing.T, owner, id string) string {
	t.Helper()
	r := s.authAPI(t, "POST", "/devices", owner, map[string]string{"name": id, "device_id": id})
	wantStatus(t, r, 201, "register device "+id)
	var d struct {
		APIKey string `json:"api_key"`
	}
	r.json(t, &d)
	return secret("device API key", d.APIKey)
}

// channel creates a channel and returns its id.
func (s *stack) channel(t *testing.T, owner, name, kind string, members ...string) string {
	t.Helper()
	r := s.api(t, "POST", "/api/v1/channels", owner, map[string]any{"name": name, "kind": kind, "members": members})
	wantStatus(t, r, 201, "create channel "+name)
	var ch struct {
		ID string `json:"id"`
	}
	r.json(t, &ch)
	if ch.ID == "" {
		t.Fatalf("channel without an id: %s", r.body)
	}
	return ch.ID
}

// history returns the whole history of a channel, oldest first, paging
// back from the newest with before= (the API's default order).
func history(t testing.TB, base, channel, bearer string) []wire.Message {
	t.Helper()
	var all []wire.Message
	q := ""
	for {
		r := httpCall(t, base, "GET", "/api/v1/channels/"+channel+"/messages?limit=200"+q, bearer, nil)
		if r.status != 200 {
			t.Fatalf("history of %s: %d %s", channel, r.status, r.body)
		}
		var p struct {
			Messages []wire.Message `json:"messages"`
			HasMore  bool           `json:"has_more"`
		}
		decode(t, r, &p)
		for i := 1; i < len(p.Messages); i++ {
			if p.Messages[i].Offset >= p.Messages[i-1].Offset {
				t.Fatalf("history page not newest first: offset %d after %d", p.Messages[i].Offset, p.Messages[i-1].Offset)
			}
		}
		all = append(all, p.Messages...)
		if !p.HasMore || len(p.Messages) == 0 {
			break
		}
		q = fmt.Sprintf("&before=%d", p.Messages[len(p.Messages)-1].Offset)
	}
	slices.Reverse(all)
	return all
}

// ---- WebSocket (the raw-frame client) ----

// wsConn is a raw-frame WebSocket client that has read its welcome.
type wsConn struct {
	*wstest.Conn
	welcome wire.Welcome
}

// dialWS connects with the given Sec-WebSocket-Protocol (empty: none) and
// reads the welcome frame.
func dialWS(t testing.TB, url, protocol string) *wsConn {
	t.Helper()
	c, err := tryWS(url, protocol)
	if err != nil {
		t.Fatalf("dial %s: %v", strings.SplitN(url, "?", 2)[0], err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func tryWS(url, protocol string) (*wsConn, error) {
	h := http.Header{}
	if protocol != "" {
		h.Set("Sec-WebSocket-Protocol", protocol)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, res, err := wstest.Dial(ctx, url, wstest.Options{Header: h})
	if err != nil {
		if res != nil {
			b, _ := io.ReadAll(res.Body)
			return nil, fmt.Errorf("%w: %d %s", err, res.StatusCode, b)
		}
		return nil, err
	}
	w := &wsConn{Conn: c}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	typ, err := c.ReadJSON(&w.welcome)
	_ = c.SetDeadline(time.Time{})
	if err != nil || typ != wire.TypeWelcome {
		c.Close()
		return nil, fmt.Errorf("first frame %q: %v", typ, err)
	}
	return w, nil
}

// frame is any server frame, decoded loosely.
type frame struct {
	Type      string          `json:"type"`
	ID        json.RawMessage `json:"id"`
	Channel   string          `json:"channel"`
	Offset    int64           `json:"offset"`
	Recovered bool            `json:"recovered"`
	MessageID string          `json:"message_id"`
	Message   json.RawMessage `json:"message"` // a Message object, or an error frame's text
	Code      string          `json:"code"`
	CommandID string          `json:"command_id"`
	Name      string          `json:"name"`
	Params    json.RawMessage `json:"params"`
	raw       []byte
}

// msg decodes the Message a message, message_updated or message_deleted
// frame carries.
func (f frame) msg(t testing.TB) wire.Message {
	t.Helper()
	var m wire.Message
	if err := json.Unmarshal(f.Message, &m); err != nil {
		t.Fatalf("%s frame without a message: %s", f.Type, f.raw)
	}
	return m
}

// read reads the next server frame within d.
func (c *wsConn) read(t testing.TB, d time.Duration) frame {
	t.Helper()
	f, err := c.tryRead(d)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return f
}

func (c *wsConn) tryRead(d time.Duration) (frame, error) {
	_ = c.SetDeadline(time.Now().Add(d))
	defer c.SetDeadline(time.Time{})
	_, msg, err := c.ReadMessage()
	if err != nil {
		return frame{}, err
	}
	var f frame
	if err := json.Unmarshal(msg, &f); err != nil {
		return frame{}, fmt.Errorf("not JSON: %q", msg)
	}
	f.raw = msg
	return f, nil
}

// until reads frames until one of type typ arrives (within d in total).
func (c *wsConn) until(t testing.TB, typ string, d time.Duration) frame {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("no %q frame within %s", typ, d)
		}
		f, err := c.tryRead(left)
		if err != nil {
			t.Fatalf("waiting for %q: %v", typ, err)
		}
		if f.Type == typ {
			return f
		}
	}
}

// send writes one frame.
func (c *wsConn) send(t testing.TB, v any) {
	t.Helper()
	if err := c.WriteJSON(v); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// closeCode waits up to d for the server's close frame and returns its code
// (0 when the connection ended without one).
func (c *wsConn) closeCode(d time.Duration) (int, error) {
	_ = c.SetDeadline(time.Now().Add(d))
	code, _, err := c.ExpectClose()
	return code, err
}

// ---- MQTT (paho.golang, v5) ----

type mqttClient struct {
	c    *paho.Client
	msgs chan *paho.Publish
	gone chan struct{} // closed when the server disconnects or the connection fails
	once sync.Once
}

// dialMQTT connects a v5 client; on refusal it returns the CONNACK reason.
func dialMQTT(t testing.TB, addr, clientID, user, pass string) (*mqttClient, byte, error) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, 0, err
	}
	m := &mqttClient{msgs: make(chan *paho.Publish, 4096), gone: make(chan struct{})}
	end := func() { m.once.Do(func() { close(m.gone) }) }
	m.c = paho.NewClient(paho.ClientConfig{
		ClientID: clientID,
		Conn:     conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			select {
			case m.msgs <- pr.Packet:
			default:
			}
			return true, nil
		}},
		OnServerDisconnect: func(*paho.Disconnect) { end() },
		OnClientError:      func(error) { end() },
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ca, err := m.c.Connect(ctx, &paho.Connect{ClientID: clientID, KeepAlive: 30, CleanStart: true,
		Username: user, UsernameFlag: user != "", Password: []byte(pass), PasswordFlag: pass != ""})
	if ca == nil {
		conn.Close()
		return nil, 0, fmt.Errorf("connect: %v", err)
	}
	if ca.ReasonCode != 0 {
		conn.Close()
		return nil, ca.ReasonCode, fmt.Errorf("CONNACK 0x%02x", ca.ReasonCode)
	}
	t.Cleanup(func() { _ = m.c.Disconnect(&paho.Disconnect{}) })
	return m, 0, nil
}

func mustMQTT(t testing.TB, addr, clientID, user, pass string) *mqttClient {
	t.Helper()
	m, code, err := dialMQTT(t, addr, clientID, user, pass)
	if m == nil {
		t.Fatalf("MQTT connect as %s: 0x%02x %v", user, code, err)
	}
	return m
}

// subscribe returns the SUBACK reason code.
func (m *mqttClient) subscribe(t testing.TB, filter string, qos byte) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sa, err := m.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: qos}}})
	if sa == nil || len(sa.Reasons) != 1 {
		t.Fatalf("subscribe %s: %v", filter, err)
	}
	return sa.Reasons[0]
}

// publish sends at QoS 1 and returns the PUBACK reason.
func (m *mqttClient) publish(t testing.TB, topic string, payload []byte) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pr, err := m.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: payload})
	if pr == nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
	return pr.ReasonCode
}

// next returns the next message within d, or fails.
func (m *mqttClient) next(t testing.TB, d time.Duration) *paho.Publish {
	t.Helper()
	select {
	case p := <-m.msgs:
		return p
	case <-time.After(d):
		t.Fatalf("no MQTT message within %s", d)
		return nil
	}
}

// ---- the real binary as a child process ----

var binary struct {
	once sync.Once
	path string
	err  error
}

// unhidraBinary builds this command once per test binary (without -race, so
// the child starts and runs at production speed). The result is renamed
// into one fixed place per user, so runs do not pile up binaries; a rename
// leaves a copy that another run is executing intact.
func unhidraBinary(t testing.TB) string {
	t.Helper()
	binary.once.Do(func() {
		home := filepath.Join(os.TempDir(), fmt.Sprintf("unhidra-e2e-%d", os.Getuid()))
		if binary.err = os.MkdirAll(home, 0o700); binary.err != nil {
			return
		}
		tmp, err := os.MkdirTemp(home, "build")
		if err != nil {
			binary.err = err
			return
		}
		defer os.RemoveAll(tmp)
		built := filepath.Join(tmp, "unhidra")
		cmd := exec.Command("go", "build", "-o", built, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			binary.err = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		binary.path = filepath.Join(home, fmt.Sprintf("unhidra-%d", os.Getpid()))
		if binary.err = os.Rename(built, binary.path); binary.err != nil {
			return
		}
		// Older runs' binaries (their processes are gone) are removed.
		olds, _ := filepath.Glob(filepath.Join(home, "unhidra-*"))
		for _, o := range olds {
			if st, err := os.Stat(o); err == nil && o != binary.path && time.Since(st.ModTime()) > time.Hour {
				os.Remove(o)
			}
		}
	})
	if binary.err != nil {
		t.Fatal(binary.err)
	}
	return binary.path
}

// child is `unhidra serve` as a separate process on fixed ports and one
// data dir, so it can be killed and started again in place.
type child struct {
	t       testing.TB
	env     map[string]string
	gwURL   string
	wsURL   string
	authURL string
	mqtt    string
	adminPW string
	cmd     *exec.Cmd
	logs    *syncBuffer
	exited  chan error
}

func newChild(t testing.TB, extra map[string]string) *child {
	t.Helper()
	ports := make([]int, 3)
	for i := range ports {
		ports[i] = stablePort(t)
	}
	pw := secret("admin password", "crash-admin-"+randomHex(8))
	c := &child{t: t, adminPW: pw, env: map[string]string{
		"UNHIDRA_DATA_DIR": t.TempDir(), "UNHIDRA_SERVICES": "auth,gateway,mqtt",
		"AUTH_PORT": strconv.Itoa(ports[0]), "GATEWAY_PORT": strconv.Itoa(ports[1]), "MQTT_PORT": strconv.Itoa(ports[2]),
		"UNHIDRA_ADMIN_PASSWORD": pw, "RATE_LIMIT_IP_PER_MINUTE": "1000000", "RATE_LIMIT_LOGIN_PER_MINUTE": "100000",
		"MAX_CONNECTIONS_PER_USER": "1000", "LOG_LEVEL": "warn", "LOG_FORMAT": "json", "SHUTDOWN_TIMEOUT": "10s",
	}}
	for k, v := range extra {
		c.env[k] = v
	}
	c.authURL = "http://127.0.0.1:" + c.env["AUTH_PORT"]
	c.gwURL = "http://127.0.0.1:" + c.env["GATEWAY_PORT"]
	c.wsURL = "ws://127.0.0.1:" + c.env["GATEWAY_PORT"] + "/ws"
	c.mqtt = "127.0.0.1:" + c.env["MQTT_PORT"]
	t.Cleanup(func() { c.kill() })
	return c
}

// start runs the process and returns how long it took until the gateway's
// /ready answered 200.
func (c *child) start() time.Duration {
	c.t.Helper()
	bin := unhidraBinary(c.t)
	cmd := exec.Command(bin, "serve")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range c.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	c.logs = captureLogs()
	cmd.Stdout = c.logs
	cmd.Stderr = c.logs
	begin := time.Now()
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.cmd = cmd
	c.exited = make(chan error, 1)
	go func() { c.exited <- cmd.Wait() }()
	hc := &http.Client{Timeout: time.Second}
	for {
		select {
		case err := <-c.exited:
			c.cmd = nil
			c.t.Fatalf("unhidra serve exited at start: %v\n%s", err, c.logs)
		default:
		}
		ok := true
		for _, u := range []string{c.gwURL + "/ready", c.authURL + "/ready"} {
			res, err := hc.Get(u)
			if err != nil {
				ok = false
				break
			}
			res.Body.Close()
			ok = ok && res.StatusCode == 200
		}
		if ok && mqttListening(c.mqtt) {
			return time.Since(begin)
		}
		if time.Since(begin) > 30*time.Second {
			c.t.Fatalf("unhidra serve not ready within 30 s\n%s", c.logs)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stablePort returns a free loopback port below the kernel's ephemeral
// range, so no client connection of this or another test can take it while
// the child is down between a kill and its restart.
func stablePort(t testing.TB) int {
	t.Helper()
	lo, hi := 20000, 32000
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		var a, z int
		if n, _ := fmt.Sscan(string(b), &a, &z); n == 2 && a > 11000 {
			lo, hi = 10000, a-1
		}
	}
	for range 1000 {
		p := lo + mrand.IntN(hi-lo)
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err == nil {
			ln.Close()
			return p
		}
	}
	t.Fatal("no free port below the ephemeral range")
	return 0
}

func mqttListening(addr string) bool {
	nc, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	nc.Close()
	return true
}

// kill sends SIGKILL and waits for the process to end.
func (c *child) kill() {
	if c.cmd == nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.exited
	c.cmd = nil
}

// terminate sends SIGTERM and returns the exit error and how long the
// process took to exit (it is killed after within).
func (c *child) terminate(within time.Duration) (error, time.Duration) {
	c.t.Helper()
	begin := time.Now()
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-c.exited:
		c.cmd = nil
		return err, time.Since(begin)
	case <-time.After(within):
		_ = c.cmd.Process.Signal(syscall.SIGKILL)
		<-c.exited
		c.cmd = nil
		return errors.New("did not exit in time; killed"), time.Since(begin)
	}
}

func (c *child) login(t testing.TB, user, pw string) string {
	t.Helper()
	r := httpCall(t, c.authURL, "POST", "/login", "", map[string]string{"username": user, "password": pw})
	if r.status != 200 {
		t.Fatalf("login %s: %d %s", user, r.status, r.body)
	}
	var p auth.TokenPair
	decode(t, r, &p)
	secret("access token", p.AccessToken)
	secret("refresh token", p.RefreshToken)
	return p.AccessToken
}

// lines returns the log lines that contain s.
func lines(logs, s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), s) {
			out = append(out, sc.Text())
		}
	}
	return out
}
