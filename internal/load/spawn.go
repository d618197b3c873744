package load

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

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
