package mqttbridge_test

import (
	"bufio"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/mqttbridge"
)

// manualClock is a clock the test moves by hand.
type manualClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *manualClock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *manualClock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// dialFrom connects to addr from the loopback source address src.
func dialFrom(t *testing.T, src, addr string) *rawConn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{Conn: c, r: bufio.NewReader(c)}
}

// TestConnectRateIsLimitedPerIP covers RATE_LIMIT_IP_PER_MINUTE on MQTT:
// every CONNECT from an address counts (bad credentials too); past the
// limit inside any sliding minute the CONNACK refuses (v5 0x9F, 3.1.1 0x03)
// and the connection is closed; other addresses are not affected, and the
// address is allowed again exactly when its oldest CONNECT is a minute old.
func TestConnectRateIsLimitedPerIP(t *testing.T) {
	for _, tc := range []struct {
		name    string
		v       byte
		refused byte
	}{
		{"an MQTT 5 client over the rate gets CONNACK 0x9F", 5, 0x9F},
		{"an MQTT 3.1.1 client over the rate gets CONNACK 0x03", 4, 0x03},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := &manualClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
			h := newHarness(t, harnessOpts{cfg: mqttbridge.Config{RateLimitIPPerMinute: 3}, now: clock.Now})
			addr := h.srv.Addr()
			for i, pass := range []string{h.keys["d1"], "unhidra_dk_wrong", h.keys["d1"]} {
				c := dialFrom(t, "127.0.0.1", addr)
				code := c.connack(t, connectPkt(tc.v, "c", "d1", pass, 30, nil))
				if i == 1 && code == 0 {
					t.Fatal("a wrong key was accepted")
				}
				if i != 1 && code != 0 {
					t.Fatalf("connect %d within the rate refused: 0x%02x", i+1, code)
				}
				c.Close()
			}
			over := dialFrom(t, "127.0.0.1", addr)
			if code := over.connack(t, connectPkt(tc.v, "c", "d1", h.keys["d1"], 30, nil)); code != tc.refused {
				t.Fatalf("fourth CONNECT in a minute: CONNACK 0x%02x, want 0x%02x", code, tc.refused)
			}
			if !over.closedWithin(2 * time.Second) {
				t.Fatal("the refused connection was left open")
			}
			other := dialFrom(t, "127.0.0.2", addr)
			if code := other.connack(t, connectPkt(tc.v, "c2", "d2", h.keys["d2"], 30, nil)); code != 0 {
				t.Fatalf("another address was refused: 0x%02x", code)
			}
			// An exact sliding minute: 59 s later the three are still in
			// the window (a token bucket would have refilled by now).
			clock.Add(59 * time.Second)
			still := dialFrom(t, "127.0.0.1", addr)
			if code := still.connack(t, connectPkt(tc.v, "c", "d1", h.keys["d1"], 30, nil)); code != tc.refused {
				t.Fatalf("59 s later: CONNACK 0x%02x, want 0x%02x (the minute is not over)", code, tc.refused)
			}
			clock.Add(time.Second)
			again := dialFrom(t, "127.0.0.1", addr)
			if code := again.connack(t, connectPkt(tc.v, "c", "d1", h.keys["d1"], 30, nil)); code != 0 {
				t.Fatalf("a minute after the first CONNECT the address is still refused: 0x%02x", code)
			}
			if n := metricValue(t, h, "unhidra_mqtt_connections_refused_total", "connect_rate"); n != 2 {
				t.Fatalf("unhidra_mqtt_connections_refused_total{limit=connect_rate} = %v, want 2", n)
			}
		})
	}
}

// TestConnectionsPerPrincipalAreLimited covers MAX_CONNECTIONS_PER_USER on
// MQTT: a principal's connections beyond the limit are refused (v5 0x97,
// 3.1.1 0x03), a reconnect with the same client id (which takes the old
// session over) is not, other principals are not affected, and a slot frees
// when a connection ends.
func TestConnectionsPerPrincipalAreLimited(t *testing.T) {
	for _, tc := range []struct {
		name    string
		v       byte
		refused byte
	}{
		{"an MQTT 5 device over its connections gets CONNACK 0x97", 5, 0x97},
		{"an MQTT 3.1.1 device over its connections gets CONNACK 0x03", 4, 0x03},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOpts{cfg: mqttbridge.Config{MaxConnsPerUser: 2}})
			addr := h.srv.Addr()
			a := dialRaw(t, addr)
			if code := a.connack(t, connectPkt(tc.v, "a", "d1", h.keys["d1"], 30, nil)); code != 0 {
				t.Fatalf("first connection refused: 0x%02x", code)
			}
			b := dialRaw(t, addr)
			if code := b.connack(t, connectPkt(tc.v, "b", "d1", h.keys["d1"], 30, nil)); code != 0 {
				t.Fatalf("second connection refused: 0x%02x", code)
			}
			c := dialRaw(t, addr)
			if code := c.connack(t, connectPkt(tc.v, "c", "d1", h.keys["d1"], 30, nil)); code != tc.refused {
				t.Fatalf("third connection: CONNACK 0x%02x, want 0x%02x", code, tc.refused)
			}
			if !c.closedWithin(2 * time.Second) {
				t.Fatal("the refused connection was left open")
			}
			if n := metricValue(t, h, "unhidra_mqtt_connections_refused_total", "connections_per_user"); n != 1 {
				t.Fatalf("unhidra_mqtt_connections_refused_total{limit=connections_per_user} = %v, want 1", n)
			}
			takeover := dialRaw(t, addr)
			if code := takeover.connack(t, connectPkt(tc.v, "a", "d1", h.keys["d1"], 30, nil)); code != 0 {
				t.Fatalf("a reconnect with the same client id was refused: 0x%02x", code)
			}
			if !a.closedWithin(2 * time.Second) {
				t.Fatal("the taken-over connection is still open")
			}
			d2 := dialRaw(t, addr)
			if code := d2.connack(t, connectPkt(tc.v, "a", "d2", h.keys["d2"], 30, nil)); code != 0 {
				t.Fatalf("another device was refused: 0x%02x", code)
			}
			b.Close()
			waitFor(t, 5*time.Second, "the closed connection to be forgotten", func() bool { return h.srv.Connections() == 2 })
			d := dialRaw(t, addr)
			if code := d.connack(t, connectPkt(tc.v, "d", "d1", h.keys["d1"], 30, nil)); code != 0 {
				t.Fatalf("a connection after one ended was refused: 0x%02x", code)
			}
		})
	}
}

// metricValue returns the value of the counter or gauge name whose only
// label value is label ("" for none), 0 when absent.
func metricValue(t *testing.T, h *harness, name, label string) float64 {
	t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := ""
			if ls := m.GetLabel(); len(ls) == 1 {
				l = ls[0].GetValue()
			}
			if l == label {
				return m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return 0
}
