package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// centrifugo is a Centrifugo v6 server started for a side-by-side run.
type centrifugo struct {
	cmd  *exec.Cmd
	addr string
	jwt  string
}

func startCentrifugo(t *testing.T, bin string) *centrifugo {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	const secret = "bench-secret-0123456789-0123456789"
	cfg := map[string]any{
		"http_server": map[string]any{"address": "127.0.0.1", "port": p},
		"log":         map[string]any{"level": "error"},
		"client":      map[string]any{"token": map[string]any{"hmac_secret_key": secret}},
		"channel": map[string]any{"without_namespace": map[string]any{
			"allow_subscribe_for_client": true, "allow_publish_for_client": true,
		}},
	}
	b, _ := json.Marshal(cfg)
	file := filepath.Join(t.TempDir(), "config.json")
	os.WriteFile(file, b, 0o600)
	cmd := exec.Command(bin, "--config", file)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGKILL); cmd.Wait() })
	eventually(t, 30*time.Second, "centrifugo listening", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "bench", "exp": time.Now().Add(24 * time.Hour).Unix()}).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return &centrifugo{cmd: cmd, addr: addr, jwt: tok}
}

func (c *centrifugo) rssKiB() float64 {
	return (&helper{cmd: c.cmd}).rssKiB()
}

// connect opens a Centrifugo JSON-protocol connection and completes its
// connect command, keeping no client-side buffer.
func (c *centrifugo) connect() (net.Conn, error) {
	nc, err := net.DialTimeout("tcp", c.addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	_ = nc.SetDeadline(time.Now().Add(30 * time.Second))
	req := "GET /connection/websocket HTTP/1.1\r\nHost: " + c.addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(nc, req); err != nil {
		nc.Close()
		return nil, err
	}
	var buf [2048]byte
	n := 0
	for !bytes.Contains(buf[:n], []byte("\r\n\r\n")) {
		m, err := nc.Read(buf[n:])
		if err != nil {
			nc.Close()
			return nil, err
		}
		n += m
	}
	if !bytes.HasPrefix(buf[:n], []byte("HTTP/1.1 101")) {
		nc.Close()
		return nil, fmt.Errorf("handshake: %q", buf[:min(n, 80)])
	}
	if _, err := nc.Write(clientFrame([]byte(`{"id":1,"connect":{"token":"` + c.jwt + `"}}`))); err != nil {
		nc.Close()
		return nil, err
	}
	n = 0
	for {
		m, err := nc.Read(buf[n:])
		if err != nil {
			nc.Close()
			return nil, err
		}
		n += m
		if n >= 2 && n >= 2+int(buf[1]&0x7F) && buf[1]&0x7F < 126 || n >= 4 && buf[1]&0x7F == 126 && n >= 4+int(buf[2])<<8|int(buf[3]) {
			break
		}
	}
	if !bytes.Contains(buf[:n], []byte(`"connect"`)) {
		nc.Close()
		return nil, fmt.Errorf("connect: %q", buf[:min(n, 120)])
	}
	_ = nc.SetDeadline(time.Time{})
	return nc, nil
}

func (c *centrifugo) load() loadProto {
	return loadProto{
		connect: c.connect,
		subscribe: func(ch string) []byte {
			return clientFrame([]byte(fmt.Sprintf(`{"id":2,"subscribe":{"channel":%q}}`, ch)))
		},
		subscribed: []byte(`"id":2`),
		delivery: func(b []byte) bool {
			return bytes.Contains(b, []byte(`"push":{"channel"`)) && bytes.Contains(b, []byte(`"pub":`))
		},
		textKey: []byte(`"t":"`),
		ping:    []byte("{}"),
		pong:    []byte("{}"),
	}
}

// publisher publishes with the client protocol's publish command over one
// connection, as the gateway's load publisher does with `publish` frames.
func (c *centrifugo) publisher(t *testing.T) publishFunc {
	nc, err := c.connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	go io.Copy(io.Discard, nc)
	var mu sync.Mutex
	id := 10
	return func(channel, text string) error {
		mu.Lock()
		defer mu.Unlock()
		id++
		f := fmt.Sprintf(`{"id":%d,"publish":{"channel":%q,"data":{"t":%q}}}`, id, channel, text)
		_, err := nc.Write(clientFrame([]byte(f)))
		return err
	}
}

// TestCentrifugoSideBySide runs the memory and fan-out measurements against
// Centrifugo and against the gateway, one after the other on this machine.
// Set CENTRIFUGO_BIN to a Centrifugo v6 binary
// (go install github.com/centrifugal/centrifugo/v6@v6.9.1).
func TestCentrifugoSideBySide(t *testing.T) {
	bin := os.Getenv("CENTRIFUGO_BIN")
	if bin == "" {
		t.Skip("set CENTRIFUGO_BIN to compare with Centrifugo")
	}
	n := 10000
	if v, err := strconv.Atoi(os.Getenv("UNHIDRA_WS_MEM_PROCESS")); err == nil && v > 0 {
		n = v
	}
	idle := func(t *testing.T, connect func() (net.Conn, error), rss func() float64) float64 {
		warm, err := connect()
		if err != nil {
			t.Fatal(err)
		}
		defer warm.Close()
		time.Sleep(time.Second)
		r0 := rss()
		conns := make([]net.Conn, 0, n)
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for range n {
			c, err := connect()
			if err != nil {
				t.Fatalf("after %d: %v", len(conns), err)
			}
			conns = append(conns, c)
		}
		time.Sleep(2 * time.Second)
		return (rss() - r0) / float64(n)
	}
	var report []string
	t.Run("idle memory", func(t *testing.T) {
		cf := startCentrifugo(t, bin)
		cfKiB := idle(t, cf.connect, cf.rssKiB)
		h := startHelper(t, n+10)
		unKiB := idle(t, func() (net.Conn, error) { return rawHandshake(h.addr, h.tok) }, h.rssKiB)
		report = append(report, fmt.Sprintf("RSS per idle authenticated connection at %d: unhidra %.2f KiB, centrifugo %.2f KiB", n, unKiB, cfKiB))
	})
	for _, sc := range fanoutScenarios {
		t.Run(sc.name, func(t *testing.T) {
			cf := startCentrifugo(t, bin)
			rc := runFanoutLoad(t, cf.load(), cf.publisher(t), sc.channels, sc.perChannel, sc.messages, sc.window, 100, sc.rate)
			h := startHelper(t, 20000)
			ru := runFanoutLoad(t, unhidraLoad(h.addr, h.tok), wsPublisher(t, h.addr, h.tok), sc.channels, sc.perChannel, sc.messages, sc.window, 100, sc.rate)
			report = append(report, fmt.Sprintf("%s:\n  unhidra    %v\n  centrifugo %v", sc.name, ru, rc))
		})
	}
	t.Log("\n" + strings.Join(report, "\n"))
}
