package gateway

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// A REST client that sends its body slowly (or never) must not hold a
// connection and a handler goroutine forever: plain HTTP requests on the
// gateway are bounded by RequestTimeout, while WebSockets are not.
func TestSlowRequestBodiesAreCutOffAfterRequestTimeout(t *testing.T) {
	e := newEnv(t, func(c *Config, d *Deps) {
		c.RequestTimeout = 200 * time.Millisecond
		d.API = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, err := io.ReadAll(r.Body); err != nil {
				http.Error(w, "slow body", http.StatusRequestTimeout)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		})
	})
	nc, err := net.Dial("tcp", e.srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// Headers promise 100 bytes; only one ever comes.
	if _, err := io.WriteString(nc, "POST /api/v1/channels HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"); err != nil {
		t.Fatal(err)
	}
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil {
		t.Fatalf("no answer to a stalled request body: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Errorf("status = %d, want the handler's answer to a timed-out body read (408)", resp.StatusCode)
	}

	// A WebSocket stays open past RequestTimeout.
	c := e.dial(t, e.user("alice", "s1", time.Hour))
	time.Sleep(400 * time.Millisecond)
	roundTrip(t, c)
}
