package gateway

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/broker"
	"github.com/unhidra/unhidra/internal/inmem"
	"github.com/unhidra/unhidra/internal/wstest"
	"github.com/unhidra/unhidra/wire"
)

// holdRounds makes the flush scheduler's rounds start only when the test
// calls flushNow (its timer waits an hour).
func holdRounds(e *env) *flushScheduler {
	f := e.srv.flushes
	f.mu.Lock()
	f.min, f.max = time.Hour, time.Hour
	f.mu.Unlock()
	return f
}

func roundSubscriber(t *testing.T, e *env, user, channel string) *wstest.Conn {
	t.Helper()
	c := e.dial(t, e.user(user, "s", time.Hour))
	if err := c.WriteText(`{"type":"subscribe","id":"s","channel":"` + channel + `"}`); err != nil {
		t.Fatal(err)
	}
	if err := c.ReadUntil(wire.TypeSubscribed, nil); err != nil {
		t.Fatal(err)
	}
	return c
}

// waitFlushersIdle waits until no connection of e has frames queued or a
// flusher running.
func waitFlushersIdle(t *testing.T, e *env) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	e.srv.mu.Lock()
	conns := e.srv.connsSnapshot(nil)
	e.srv.mu.Unlock()
	for _, c := range conns {
		for {
			c.mu.Lock()
			idle := len(c.out) == 0 && !c.flushing && !c.flushDue
			c.mu.Unlock()
			if idle {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("a connection's flusher is still busy after 10 s")
			}
			time.Sleep(time.Millisecond)
		}
	}
}

func messageEvent(channel string, off int64, text string) *broker.Event {
	m := &wire.Message{ID: fmt.Sprint("m", off), Channel: channel, Offset: off, Text: &text}
	return &broker.Event{Kind: broker.Message, Channel: channel, Offset: off, Message: m}
}

// The frames of several events that wait for a round leave in one socket
// write per connection, each still a whole frame, in offset order.
func TestFanoutFramesWaitingForARoundLeaveInOneWrite(t *testing.T) {
	e := newEnv(t, nil)
	f := holdRounds(e)
	a := roundSubscriber(t, e, "alice", "batch")
	b := roundSubscriber(t, e, "bob", "batch")
	// The flushers of the replies must be done: a frame queued while one
	// still runs leaves in its next write, not in the round.
	waitFlushersIdle(t, e)
	before := counterValue(t, e.srv.met.writes)
	const n = 50
	for i := range n {
		// Sizes differ so that a boundary off by one byte shows.
		if err := e.broker.Publish(context.Background(), broker.ChannelTopic("batch"), messageEvent("batch", int64(i+1), strings.Repeat("x", 1+i*37))); err != nil {
			t.Fatal(err)
		}
	}
	if got := counterValue(t, e.srv.met.writes); got != before {
		t.Fatalf("%v socket writes before the round, want none", got-before)
	}
	f.flushNow()
	for _, c := range []*wstest.Conn{a, b} {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		for i := range n {
			var m wire.MessageFrame
			if _, err := c.ReadJSON(&m); err != nil {
				t.Fatal(err)
			}
			if m.Offset != int64(i+1) || m.Message.Text == nil || len(*m.Message.Text) != 1+i*37 {
				t.Fatalf("frame %d: offset %d, want %d with %d bytes of text", i, m.Offset, i+1, 1+i*37)
			}
		}
	}
	if got := counterValue(t, e.srv.met.writes) - before; got != 2 {
		t.Fatalf("%v socket writes for two subscribers' %d frames each, want 2", got, n)
	}
}

// A reply is written at once, with the fan-out frames queued before it,
// and does not wait for a round.
func TestRepliesDoNotWaitForAFlushRound(t *testing.T) {
	e := newEnv(t, nil)
	holdRounds(e)
	c := roundSubscriber(t, e, "alice", "r")
	if err := e.broker.Publish(context.Background(), broker.ChannelTopic("r"), messageEvent("r", 1, "live")); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteText(`{"type":"unsubscribe","id":"u","channel":"r"}`); err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	typ, _, off, _ := nextReply(t, c)
	if typ != wire.TypeMessage || off != 1 {
		t.Fatalf("first frame = %s offset %d, want the queued message 1", typ, off)
	}
	if typ, id, _, _ := nextReply(t, c); typ != wire.TypeUnsubscribed || id != "u" {
		t.Fatalf("second frame = %s %s, want unsubscribed u", typ, id)
	}
}

// Frames waiting for a round count toward MaxQueueBytes: a subscriber
// whose queue passes it is closed with 4008 at once, without waiting for
// the round (the close frame is written at once, the waiting frames are
// dropped).
func TestSlowConsumerIsClosedWhileItsFramesWaitForARound(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *Deps) { c.MaxQueueBytes = 64 << 10 })
	holdRounds(e)
	slow := roundSubscriber(t, e, "slow", "sc")
	text := strings.Repeat("y", 1000)
	for i := range 100 { // ~110 KiB of frames: past the limit
		if err := e.broker.Publish(context.Background(), broker.ChannelTopic("sc"), messageEvent("sc", int64(i+1), text)); err != nil {
			t.Fatal(err)
		}
	}
	_ = slow.SetDeadline(time.Now().Add(10 * time.Second))
	code, _, err := slow.ExpectClose()
	if err != nil || code != CloseSlowConsumer {
		t.Fatalf("slow subscriber: close %d %v, want 4008", code, err)
	}
	if got := counterValue(t, e.srv.met.slowConsumer); got != 1 {
		t.Fatalf("slow consumer closes = %v, want 1", got)
	}
}

// BenchmarkHubFanoutLoopback is BenchmarkHubFanout over real loopback TCP
// sockets (their other ends drained by readers in this process), with
// events published as the chat service's group commit delivers them:
// bursts of 3 every 10 ms (300 events/s). It reports the process CPU per
// delivery (gateway and readers) and socket writes per delivery, with the
// flush rounds and with every burst written at once.
func BenchmarkHubFanoutLoopback(b *testing.B) {
	for _, mode := range []string{"immediate", "rounds"} {
		b.Run("writes="+mode+"/subscribers=1000", func(b *testing.B) {
			const n = 1000
			br := inmem.NewBroker()
			srv, err := New(Config{PingInterval: time.Hour, MaxQueueBytes: 64 << 20, CloseTimeout: 10 * time.Millisecond}, Deps{Tokens: &fakeAuth{}, Chat: newFakeChat(br), Broker: br})
			if err != nil {
				b.Fatal(err)
			}
			if mode == "immediate" {
				srv.flushes = nil
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			topic := broker.ChannelTopic("bench")
			var conns []*conn
			var peers []net.Conn
			for i := range n {
				cl, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				sc, err := ln.Accept()
				if err != nil {
					b.Fatal(err)
				}
				peers = append(peers, cl)
				go func() { _, _ = io.Copy(io.Discard, cl) }()
				id := unhidra.Identity{Principal: wire.Principal{Kind: wire.KindUser, ID: fmt.Sprint("u", i)}}
				c := newConn(srv, sc, nil, id, netip.MustParseAddr("127.0.0.1"))
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
			}
			text := strings.Repeat("x", 100)
			events := make([]*broker.Event, b.N)
			for i := range events {
				events[i] = messageEvent("bench", int64(i+1), text)
			}
			writes0 := counterValue(b, srv.met.writes)
			cpu0 := processCPU()
			b.ResetTimer()
			tick := time.NewTicker(10 * time.Millisecond)
			for i := 0; i < b.N; i += 3 {
				for j := i; j < min(i+3, b.N); j++ {
					_ = br.Publish(context.Background(), topic, events[j])
				}
				<-tick.C
			}
			tick.Stop()
			for i := 0; i < len(conns); {
				c := conns[i]
				c.mu.Lock()
				idle := len(c.out) == 0 && !c.flushing && !c.flushDue
				c.mu.Unlock()
				if idle {
					i++
					continue
				}
				time.Sleep(time.Millisecond)
			}
			b.StopTimer()
			d := float64(n) * float64(b.N)
			b.ReportMetric((processCPU()-cpu0).Seconds()*1e6/d, "cpu-µs/delivery")
			b.ReportMetric((counterValue(b, srv.met.writes)-writes0)/d, "writes/delivery")
			for _, p := range peers {
				p.Close()
			}
			srv.drain()
		})
	}
}

// processCPU is the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
