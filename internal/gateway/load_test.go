package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/broker"
	"github.com/unhidra/unhidra/internal/inmem"
	"github.com/unhidra/unhidra/wire"
)

// discardConn is a net.Conn whose writes vanish and whose reads block until
// Close: a socket to nowhere for hub benchmarks.
type discardConn struct {
	written atomic.Int64
	closed  chan struct{}
	once    sync.Once
}

func newDiscardConn() *discardConn { return &discardConn{closed: make(chan struct{})} }

func (d *discardConn) Read([]byte) (int, error) { <-d.closed; return 0, io.EOF }
func (d *discardConn) Write(p []byte) (int, error) {
	d.written.Add(int64(len(p)))
	return len(p), nil
}
func (d *discardConn) Close() error                     { d.once.Do(func() { close(d.closed) }); return nil }
func (d *discardConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (d *discardConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (d *discardConn) SetDeadline(time.Time) error      { return nil }
func (d *discardConn) SetReadDeadline(time.Time) error  { return nil }
func (d *discardConn) SetWriteDeadline(time.Time) error { return nil }

// BenchmarkHubFanout publishes one message event to N local subscribers
// through the broker and the hub (enqueue plus the on-demand writers'
// writev to a discarding socket). deliveries/s is N × events / time.
func BenchmarkHubFanout(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			br := inmem.NewBroker()
			srv, err := New(Config{PingInterval: time.Hour, MaxQueueBytes: 64 << 20, CloseTimeout: 10 * time.Millisecond}, Deps{Tokens: &fakeAuth{}, Chat: newFakeChat(br), Broker: br})
			if err != nil {
				b.Fatal(err)
			}
			topic := broker.ChannelTopic("bench")
			var conns []*conn
			var sinks []*discardConn
			for i := range n {
				d := newDiscardConn()
				id := unhidra.Identity{Principal: wire.Principal{Kind: wire.KindUser, ID: fmt.Sprint("u", i)}}
				c := newConn(srv, d, nil, id, netip.MustParseAddr("127.0.0.1"))
				srv.register(c)
				srv.reserve(id.Principal)
				c.start(nil)
				sb := &sub{topic: topic, channel: "bench", active: true}
				c.mu.Lock()
				c.subs = map[string]*sub{topic: sb}
				c.mu.Unlock()
				if err := srv.hub.add(topic, c, sb); err != nil {
					b.Fatal(err)
				}
				conns = append(conns, c)
				sinks = append(sinks, d)
			}
			text := strings.Repeat("x", 100)
			payloads := make([]*broker.Event, b.N)
			for i := range payloads {
				m := &wire.Message{ID: fmt.Sprint("m", i+1), Channel: "bench", Offset: int64(i + 1), Text: &text}
				payloads[i] = &broker.Event{Kind: broker.Message, Channel: "bench", Offset: int64(i + 1), Message: m}
			}
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for i := range b.N {
				_ = br.Publish(context.Background(), topic, payloads[i])
			}
			// Wait for the writers to drain every queue.
			for i := 0; i < len(conns); {
				c := conns[i]
				c.mu.Lock()
				idle := len(c.out) == 0 && !c.flushing
				c.mu.Unlock()
				if idle {
					i++
					continue
				}
				time.Sleep(100 * time.Microsecond)
			}
			el := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(n)*float64(b.N)/el.Seconds(), "deliveries/s")
			for _, d := range sinks {
				d.Close()
			}
			srv.drain()
		})
	}
}

// loadResult is what a loopback fan-out run measured.
type loadResult struct {
	subscribers int
	published   int
	deliveries  int64
	elapsed     time.Duration
	p50         time.Duration
	p99         time.Duration
	p999        time.Duration
}

func (r loadResult) String() string {
	return fmt.Sprintf("%d subscribers, %d messages published: %d deliveries in %v = %.0f deliveries/s; end-to-end latency p50 %v p99 %v p99.9 %v",
		r.subscribers, r.published, r.deliveries, r.elapsed.Round(time.Millisecond), float64(r.deliveries)/r.elapsed.Seconds(),
		r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), r.p999.Round(time.Microsecond))
}

// publishFunc publishes one text message on a channel.
type publishFunc func(channel, text string) error

// loadProto is what the load harness needs to know of a server's protocol,
// so the same load runs against the gateway and against Centrifugo.
type loadProto struct {
	// connect opens an authenticated connection.
	connect func() (net.Conn, error)
	// subscribe is the frame that subscribes to a channel; subscribed
	// marks its reply.
	subscribe  func(channel string) []byte
	subscribed []byte
	// delivery marks a message delivery; textKey precedes the publisher's
	// timestamp in it.
	delivery func(line []byte) bool
	textKey  []byte
	// ping, when set, is an application-level ping to answer with pong.
	ping, pong []byte
}

// unhidraLoad speaks the gateway's protocol.
func unhidraLoad(addr, tok string) loadProto {
	return loadProto{
		connect: func() (net.Conn, error) { return rawHandshake(addr, tok) },
		subscribe: func(ch string) []byte {
			return clientFrame([]byte(fmt.Sprintf(`{"type":"subscribe","channel":%q}`, ch)))
		},
		subscribed: []byte(`"type":"subscribed"`),
		delivery:   func(b []byte) bool { return frameOffset(b) != 0 },
		textKey:    []byte(`"text":"`),
	}
}

// runFanoutLoad opens channels × perChannel real loopback WebSocket clients,
// subscribes each to its channel, publishes messages per channel (as fast
// as the slowest subscriber allows, keeping at most window messages in
// flight per channel) and measures deliveries/s and publish-to-receive
// latency. Clients read with a plain bufio.Reader and look only at the
// timestamp the publisher put in the message.
//
// rate, when positive, paces the publisher at rate messages per second per
// channel (to measure latency below saturation).
func runFanoutLoad(tb testing.TB, proto loadProto, publish publishFunc, channels, perChannel, messages, window, size int, rate float64) loadResult {
	tb.Helper()
	type client struct {
		nc  net.Conn
		br  *bufio.Reader
		got atomic.Int64
		lat []time.Duration
		err error
	}
	clients := make([]*client, 0, channels*perChannel)
	defer func() {
		for _, c := range clients {
			c.nc.Close()
		}
	}()
	for ch := range channels {
		for range perChannel {
			nc, err := proto.connect()
			if err != nil {
				tb.Fatalf("connect %d: %v", len(clients), err)
			}
			c := &client{nc: nc, br: bufio.NewReaderSize(nc, 4<<10)}
			clients = append(clients, c)
			if _, err := nc.Write(proto.subscribe(fmt.Sprint("load", ch))); err != nil {
				tb.Fatal(err)
			}
		}
	}
	for i, c := range clients {
		_ = c.nc.SetReadDeadline(time.Now().Add(60 * time.Second))
		for {
			op, b, err := readServerFrame(c.br, nil)
			if err != nil {
				tb.Fatalf("client %d waiting for subscribed: %v", i, err)
			}
			if op == opText && bytes.Contains(b, proto.subscribed) {
				break
			}
		}
		_ = c.nc.SetReadDeadline(time.Time{})
	}
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.lat = make([]time.Duration, 0, messages)
			var buf []byte
			for c.got.Load() < int64(messages) {
				op, b, err := readServerFrame(c.br, buf)
				if err != nil {
					c.err = err
					return
				}
				buf = b
				if op == opPing {
					c.nc.Write(append([]byte{0x8A, 0x80, 0, 0, 0, 0}, b...)) // empty-mask pong
					continue
				}
				if op != opText {
					continue
				}
				if proto.ping != nil && bytes.Equal(bytes.TrimSpace(b), proto.ping) {
					c.nc.Write(clientFrame(proto.pong))
					continue
				}
				// A frame may carry several newline-separated replies.
				for line := range bytes.SplitSeq(b, []byte("\n")) {
					if !proto.delivery(line) {
						continue
					}
					i := bytes.Index(line, proto.textKey)
					if i < 0 {
						continue
					}
					j := i + len(proto.textKey)
					k := j
					for k < len(line) && line[k] >= '0' && line[k] <= '9' {
						k++
					}
					sent, _ := strconv.ParseInt(string(line[j:k]), 10, 64)
					c.lat = append(c.lat, time.Duration(time.Now().UnixNano()-sent))
					c.got.Add(1)
				}
			}
		}()
	}
	pad := strings.Repeat("x", max(0, size-20))
	minGot := func() int64 {
		m := int64(messages)
		for _, c := range clients {
			if g := c.got.Load(); g < m {
				m = g
			}
		}
		return m
	}
	start := time.Now()
	for i := range messages {
		for int64(i)-minGot() >= int64(window) {
			time.Sleep(100 * time.Microsecond)
		}
		for ch := range channels {
			if rate > 0 { // spread evenly, not in bursts of one per channel
				k := float64(i*channels + ch)
				if d := time.Until(start.Add(time.Duration(k / (rate * float64(channels)) * float64(time.Second)))); d > 0 {
					time.Sleep(d)
				}
			}
			text := strconv.FormatInt(time.Now().UnixNano(), 10) + " " + pad
			if err := publish(fmt.Sprint("load", ch), text); err != nil {
				tb.Fatal(err)
			}
		}
	}
	wg.Wait()
	el := time.Since(start)
	var all []time.Duration
	var total int64
	for _, c := range clients {
		if c.err != nil {
			tb.Fatalf("client: %v (after %d messages)", c.err, c.got.Load())
		}
		total += c.got.Load()
		all = append(all, c.lat...)
	}
	slices.Sort(all)
	pct := func(p float64) time.Duration { return all[min(len(all)-1, int(p*float64(len(all))))] }
	return loadResult{subscribers: len(clients), published: messages * channels, deliveries: total, elapsed: el, p50: pct(0.50), p99: pct(0.99), p999: pct(0.999)}
}

// readServerFrame reads one unmasked server frame.
func readServerFrame(br *bufio.Reader, buf []byte) (byte, []byte, error) {
	var hdr [10]byte
	if _, err := io.ReadFull(br, hdr[:2]); err != nil {
		return 0, nil, err
	}
	n := int(hdr[1] & 0x7F)
	switch n {
	case 126:
		io.ReadFull(br, hdr[2:4])
		n = int(binary.BigEndian.Uint16(hdr[2:4]))
	case 127:
		io.ReadFull(br, hdr[2:10])
		n = int(binary.BigEndian.Uint64(hdr[2:10]))
	}
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	_, err := io.ReadFull(br, buf)
	return hdr[0] & 0x0F, buf, err
}

// chatPublisher publishes through the in-process fake chat service.
func chatPublisher(e *env) publishFunc {
	pub := unhidra.Identity{Principal: wire.Principal{Kind: wire.KindUser, ID: "publisher"}}
	return func(channel, text string) error {
		_, err := e.chat.Publish(context.Background(), pub, wire.Publish{Channel: channel, Text: &text})
		return err
	}
}

// wsPublisher publishes with `publish` frames over one WebSocket and
// discards the acks.
func wsPublisher(tb testing.TB, addr, tok string) publishFunc {
	nc, err := rawHandshake(addr, tok)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { nc.Close() })
	go io.Copy(io.Discard, nc)
	bw := bufio.NewWriterSize(nc, 64<<10)
	var mu sync.Mutex
	n := 0
	return func(channel, text string) error {
		mu.Lock()
		defer mu.Unlock()
		f := fmt.Sprintf(`{"type":"publish","channel":%q,"text":%q}`, channel, text)
		if _, err := bw.Write(clientFrame([]byte(f))); err != nil {
			return err
		}
		n++
		return bw.Flush()
	}
}

// clientFrame masks p as one client text frame.
func clientFrame(p []byte) []byte {
	b := []byte{0x81}
	switch {
	case len(p) <= 125:
		b = append(b, 0x80|byte(len(p)))
	default:
		b = append(b, 0x80|126, byte(len(p)>>8), byte(len(p)))
	}
	key := []byte{1, 2, 3, 4}
	b = append(b, key...)
	for i, c := range p {
		b = append(b, c^key[i&3])
	}
	return b
}

// TestLoopbackFanoutSmall runs the load harness at a small scale in every
// check, so the figures' harness itself is tested.
func TestLoopbackFanoutSmall(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *Deps) { c.MaxConnsPerUser = 1000 })
	r := runFanoutLoad(t, unhidraLoad(e.srv.Addr(), e.user("load", "s", time.Hour)), chatPublisher(e), 4, 10, 50, 20, 100, 0)
	if r.deliveries != 4*10*50 {
		t.Fatalf("deliveries = %d, want %d", r.deliveries, 4*10*50)
	}
	t.Log(r)
}

// TestLoopbackFanoutFigures prints the README figures against a gateway in
// a separate process (so clients and server do not share file descriptors
// or memory): 1 publisher → 1,000 subscribers, and 1,000 channels × 10
// subscribers, publishing with WebSocket `publish` frames. Set
// UNHIDRA_WS_LOAD=1.
func TestLoopbackFanoutFigures(t *testing.T) {
	if os.Getenv("UNHIDRA_WS_LOAD") == "" {
		t.Skip("set UNHIDRA_WS_LOAD=1 to measure fan-out figures")
	}
	h := startHelper(t, 20000)
	for _, sc := range fanoutScenarios {
		t.Run(sc.name, func(t *testing.T) {
			r := runFanoutLoad(t, unhidraLoad(h.addr, h.tok), wsPublisher(t, h.addr, h.tok), sc.channels, sc.perChannel, sc.messages, sc.window, 100, sc.rate)
			t.Logf("%v; server RSS %.0f MiB", r, h.rssKiB()/1024)
		})
	}
}

// fanoutScenarios are the README's fan-out figures.
var fanoutScenarios = []struct {
	name                                   string
	channels, perChannel, messages, window int
	rate                                   float64
}{
	{"1 channel x 1000 subscribers, saturated", 1, 1000, 5000, 200, 0},
	{"1 channel x 1000 subscribers, 200 msg/s", 1, 1000, 2000, 200, 200},
	{"1000 channels x 10 subscribers, saturated", 1000, 10, 50, 10, 0},
	{"1000 channels x 10 subscribers, 2 msg/s per channel", 1000, 10, 20, 10, 2},
}
