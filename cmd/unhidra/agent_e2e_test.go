package main

// The agent, the SDK and the fleet simulator against the real server,
// started in-process on fixed free ports so it can be restarted in place.

import (
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/e2etest"
	"github.com/unhidra/unhidra/internal/platform"
)

// deviceServer is a running server with the gateway, on known ports.
type deviceServer struct {
	*testServer
	env     map[string]string
	gwPort  int
	adminPW string
	top     *testing.T // the test that owns the server (restarts outlive subtests)
}

func startDeviceServer(t *testing.T, extra map[string]string) *deviceServer {
	t.Helper()
	gw, err := e2etest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	authPort, err := e2etest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	pw := e2etest.Secret("admin password", "agent-admin-"+e2etest.RandomHex(8))
	e := map[string]string{
		"UNHIDRA_DATA_DIR": t.TempDir(), "UNHIDRA_SERVICES": "auth,gateway",
		"GATEWAY_PORT": strconv.Itoa(gw), "AUTH_PORT": strconv.Itoa(authPort),
		"UNHIDRA_ADMIN_PASSWORD": pw, "LOG_LEVEL": "info",
	}
	for k, v := range extra {
		e[k] = v
	}
	d := &deviceServer{env: e, gwPort: gw, adminPW: pw, top: t}
	d.testServer = startServer(t, e, platform.NodeOptions{})
	d.waitGateway(t)
	return d
}

func (d *deviceServer) scheme() string {
	if d.env["TLS_CERT_FILE"] != "" {
		return "s"
	}
	return ""
}

func (d *deviceServer) wsURL() string {
	return fmt.Sprintf("ws%s://127.0.0.1:%d/ws", d.scheme(), d.gwPort)
}

func (d *deviceServer) waitGateway(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", d.gwPort), time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway is not listening on %d", d.gwPort)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// restart stops the server and starts it again on the same ports and data.
func (d *deviceServer) restart(t *testing.T, down time.Duration) {
	t.Helper()
	d.testServer.stop(t)
	time.Sleep(down)
	d.testServer = startServer(d.top, d.env, platform.NodeOptions{})
	d.waitGateway(t)
}

var apiKeyLine = regexp.MustCompile(`api_key: (\S+)`)
var deviceIDLine = regexp.MustCompile(`device_id: (\S+)`)

// registerDevice registers a device owned by admin and returns its id and key.
func (d *deviceServer) registerDevice(t *testing.T, name string) (id, key string) {
	t.Helper()
	out, err := d.cli(t, "", "device", "register", name, "--owner", "admin")
	if err != nil {
		t.Fatalf("device register: %v", err)
	}
	k, i := apiKeyLine.FindStringSubmatch(out), deviceIDLine.FindStringSubmatch(out)
	if k == nil || i == nil {
		t.Fatalf("no key in %q", out)
	}
	return i[1], e2etest.Secret("device key", k[1])
}

// gw calls the gateway's REST API.
func (d *deviceServer) gw(t *testing.T, method, path, bearer string, body any) e2etest.Reply {
	t.Helper()
	saved := d.testServer.url
	d.testServer.url = fmt.Sprintf("http://127.0.0.1:%d", d.gwPort)
	defer func() { d.testServer.url = saved }()
	return d.call(t, method, path, bearer, body)
}

// agentRun runs `unhidra agent` in-process and returns its log and a channel
// with its result.
func agentRun(t *testing.T, ctx context.Context, vars map[string]string, args ...string) (*e2etest.SyncBuffer, <-chan error) {
	t.Helper()
	logs := e2etest.CaptureLogs()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, env{args: append([]string{"agent"}, args...), getenv: func(k string) string { return vars[k] },
			stdout: logs, stderr: logs})
	}()
	return logs, done
}

func waitLog(t *testing.T, logs *e2etest.SyncBuffer, what string, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for strings.Count(logs.String(), what) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%q not logged %d time(s) within %s; log:\n%s", what, n, within, logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type telemetryPoint struct {
	TS   time.Time      `json:"ts"`
	Data map[string]any `json:"data"`
	Seq  int64          `json:"seq"`
}

func (d *deviceServer) telemetry(t *testing.T, token, id string) []telemetryPoint {
	t.Helper()
	r := d.gw(t, "GET", "/api/v1/devices/"+id+"/telemetry?limit=1000", token, nil)
	if r.Status != 200 {
		t.Fatalf("telemetry: %d %s", r.Status, r.Body)
	}
	var out struct {
		Points []telemetryPoint `json:"points"`
	}
	if err := json.Unmarshal(r.Body, &out); err != nil || out.Points == nil {
		var arr []telemetryPoint
		if err2 := json.Unmarshal(r.Body, &arr); err2 != nil {
			t.Fatalf("telemetry body %s: %v", r.Body, err)
		}
		return arr
	}
	return out.Points
}

func TestAgentAgainstTheRealServer(t *testing.T) {
	s := startDeviceServer(t, nil)
	admin := s.login(t, "admin", s.adminPW).AccessToken
	id, key := s.registerDevice(t, "agent-e2e")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs, done := agentRun(t, ctx, map[string]string{"GATEWAY_URL": s.wsURL(), "DEVICE_ID": id, "DEVICE_API_KEY": key, "TELEMETRY_INTERVAL": "1s"},
		"--heartbeat-interval", "1s", "--allow-cmd", "echo")

	waitLog(t, logs, "Device "+id+" registered with server", 1, 10*time.Second)

	t.Run("heartbeats mark the device online with a last_seen", func(t *testing.T) {
		deadline := time.Now().Add(10 * time.Second)
		for {
			r := s.call(t, "GET", "/devices/"+id, admin, nil)
			var dev struct {
				Online   bool       `json:"online"`
				LastSeen *time.Time `json:"last_seen"`
			}
			r.JSON(t, &dev)
			if dev.Online && dev.LastSeen != nil && !dev.LastSeen.IsZero() {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("device not online with last_seen: %s", r.Body)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	t.Run("a REST command reaches the agent and its result comes back", func(t *testing.T) {
		for _, tc := range []struct{ name, params, status, result string }{
			{"ping", `{}`, "ok", `"pong":true`},
			{"exec", `{"cmd":"echo","args":["hi"]}`, "ok", `"stdout":"hi\n"`},
			{"exec", `{"cmd":"rm","args":["-rf","/"]}`, "error", "not allowed"},
			{"reboot", `{}`, "error", "unknown command"},
		} {
			r := s.gw(t, "POST", "/api/v1/devices/"+id+"/commands", admin, map[string]any{"name": tc.name, "params": json.RawMessage(tc.params), "timeout_s": 30})
			s.want(t, r, http.StatusAccepted, "send command")
			var c struct {
				CommandID string `json:"command_id"`
			}
			r.JSON(t, &c)
			deadline := time.Now().Add(10 * time.Second)
			for {
				r := s.gw(t, "GET", "/api/v1/devices/"+id+"/commands/"+c.CommandID, admin, nil)
				var st struct {
					Status string          `json:"status"`
					Result json.RawMessage `json:"result"`
				}
				r.JSON(t, &st)
				if st.Status == tc.status {
					if !strings.Contains(string(st.Result), tc.result) {
						t.Errorf("%s: result %s, want it to contain %s", tc.name, st.Result, tc.result)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: status %q, want %q: %s", tc.name, st.Status, tc.status, r.Body)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	})

	t.Run("telemetry produced while the server is down arrives in order after a restart", func(t *testing.T) {
		deadline := time.Now().Add(10 * time.Second)
		for len(s.telemetry(t, admin, id)) < 2 {
			if time.Now().After(deadline) {
				t.Fatal("no telemetry before the restart")
			}
			time.Sleep(100 * time.Millisecond)
		}
		s.restart(t, 3500*time.Millisecond)
		waitLog(t, logs, "Device "+id+" registered with server", 2, 60*time.Second)
		waitLog(t, logs, "disconnected; reconnecting", 1, time.Second)
		admin = s.login(t, "admin", s.adminPW).AccessToken
		time.Sleep(2 * time.Second)
		pts := s.telemetry(t, admin, id)
		seqs := make([]int64, 0, len(pts))
		for _, p := range pts {
			seqs = append(seqs, p.Seq)
		}
		// The API may list newest first; the seqs must be exactly 1..N (no loss,
		// no duplicate) and their timestamps must follow the same order.
		slices.SortFunc(pts, func(a, b telemetryPoint) int { return cmp.Compare(a.Seq, b.Seq) })
		var prev int64
		for i, p := range pts {
			if p.Seq != prev+1 {
				t.Fatalf("point %d has seq %d after %d: lost or out of order (seqs %v)", i, p.Seq, prev, seqs)
			}
			if i > 0 && p.TS.Before(pts[i-1].TS) {
				t.Errorf("point seq %d is timestamped before seq %d", p.Seq, pts[i-1].Seq)
			}
			prev = p.Seq
		}
		if prev < 6 {
			t.Errorf("only %d points; the ones from the outage are missing (seqs %v)", prev, seqs)
		}
	})

	t.Run("a revoked key stops the agent with a clear message", func(t *testing.T) {
		r := s.call(t, "DELETE", "/devices/"+id, admin, nil)
		s.want(t, r, http.StatusNoContent, "revoke")
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "revoked") {
				t.Fatalf("agent ended with %v, want an error saying the key is revoked", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("the agent is still running 30 s after revocation; log:\n%s", logs)
		}
	})
}

// testPKI writes a CA and a server certificate for 127.0.0.1 signed by it.
func testPKI(t *testing.T) (caFile, certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "unhidra test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	write := func(name, typ string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("server.pem", "CERTIFICATE", der), write("server.key", "EC PRIVATE KEY", kb)
}

func TestAgentOverWSSChecksTheCertificate(t *testing.T) {
	caFile, certFile, keyFile := testPKI(t)
	otherCA, _, _ := testPKI(t)
	s := startDeviceServer(t, map[string]string{"TLS_CERT_FILE": certFile, "TLS_KEY_FILE": keyFile})
	id, key := s.registerDevice(t, "agent-wss")
	vars := map[string]string{"GATEWAY_URL": s.wsURL(), "DEVICE_ID": id, "DEVICE_API_KEY": key}

	t.Run("with CA_FILE naming the server's CA it connects", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		v := map[string]string{"CA_FILE": caFile}
		for k, x := range vars {
			v[k] = x
		}
		logs, done := agentRun(t, ctx, v)
		waitLog(t, logs, "Device "+id+" registered with server", 1, 10*time.Second)
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent ended with %v after cancel", err)
		}
	})
	t.Run("with another CA it refuses and says why", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		v := map[string]string{"CA_FILE": otherCA}
		for k, x := range vars {
			v[k] = x
		}
		logs, done := agentRun(t, ctx, v)
		err := <-done
		if err == nil || !strings.Contains(err.Error(), "certificate") || !strings.Contains(err.Error(), "authority") {
			t.Fatalf("agent ended with %v, want a refusal naming the certificate authority", err)
		}
		if strings.Contains(logs.String(), "registered with server") {
			t.Error("the agent connected to a server whose certificate it cannot verify")
		}
	})
}
