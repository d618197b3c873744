package mqttbridge_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.golang/paho"

	"github.com/unhidra/unhidra/internal/chat"
	"github.com/unhidra/unhidra/internal/mqttbridge"
)

// Pipelined QoS 1 acknowledgements (acks.go): several publishes of one
// connection wait for their commit at once, yet every PUBACK follows its
// commit and PUBACKs leave in the order of the PUBLISHes (MQTT 4.6), on
// the queued path and on the read loop alike.

// puback is one acknowledgement as it came off the wire.
type puback struct {
	id   uint16
	code byte // 0 when the PUBACK carries no reason code (success)
}

// readPubacks reads n packets, each of which must be a PUBACK, in the
// order they arrive; check, when set, runs after each one.
func (c *rawConn) readPubacks(t *testing.T, n int, check func(i int, a puback)) []puback {
	t.Helper()
	got := make([]puback, 0, n)
	for i := range n {
		h, body, err := c.read(20 * time.Second)
		if err != nil {
			t.Fatalf("after %d PUBACKs (%v): %v", i, got, err)
		}
		if h>>4 != 4 || len(body) < 2 {
			t.Fatalf("packet %d: header %#x body %x, want a PUBACK", i, h, body)
		}
		a := puback{id: binary.BigEndian.Uint16(body)}
		if len(body) > 2 {
			a.code = body[2]
		}
		got = append(got, a)
		if check != nil {
			check(i, a)
		}
	}
	return got
}

// writeAll writes the packets back to back from another goroutine (the
// server may stop reading while its queue is full) and reports the error.
func (c *rawConn) writeAll(pkts ...[]byte) <-chan error {
	errc := make(chan error, 1)
	b := bytes.Join(pkts, nil)
	go func() {
		_, err := c.Write(b)
		errc <- err
	}()
	return errc
}

// batchHistogram returns how many group commits the chat service made and
// how many appends they held (unhidra_chat_commit_batch_size).
func batchHistogram(t *testing.T, h *harness) (commits uint64, appends float64) {
	t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "unhidra_chat_commit_batch_size" {
			hg := mf.GetMetric()[0].GetHistogram()
			return hg.GetSampleCount(), hg.GetSampleSum()
		}
	}
	t.Fatal("unhidra_chat_commit_batch_size is not registered")
	return 0, 0
}

func telemetryPkt(v byte, device string, id uint16, seq int) []byte {
	return publishPkt(v, "unhidra/devices/"+device+"/telemetry", 1, id, fmt.Appendf(nil, `{"data":{"v":%d},"seq":%d}`, seq, seq))
}

// checkStoredOnce checks that device's points are seq 1..n, each stored
// once, in publish order, each with its device-channel message.
func checkStoredOnce(t *testing.T, h *harness, device string, n int) {
	t.Helper()
	if got := h.count(`SELECT COUNT(*) FROM telemetry WHERE device_id = ?`, device); got != n {
		t.Errorf("%d points stored, want %d", got, n)
	}
	if got := h.count(`SELECT COUNT(DISTINCT seq) FROM telemetry WHERE device_id = ? AND seq BETWEEN 1 AND ?`, device, n); got != n {
		t.Errorf("%d distinct seq in 1..%d stored, want %d", got, n, n)
	}
	if bad := h.count(`SELECT COUNT(*) FROM (SELECT seq, LAG(seq) OVER (ORDER BY id) AS prev FROM telemetry WHERE device_id = ?) WHERE prev IS NOT NULL AND seq <> prev + 1`, device); bad != 0 {
		t.Errorf("%d points stored out of publish order", bad)
	}
	if got := h.count(`SELECT COUNT(*) FROM messages WHERE channel_id = ? AND json_extract(CAST(data AS TEXT), '$.type') = 'telemetry'`, "device:"+device); got != n {
		t.Errorf("%d telemetry messages in device:%s, want %d", got, device, n)
	}
}

// TestManyQoS1PublishesInFlightAreAckedInOrderAfterOneSharedCommit: 200
// QoS 1 telemetry points written back to back on one connection (MQTT 5
// and 3.1.1) get 200 PUBACKs in the order of their PUBLISHes, each only
// once its point is stored; every point is stored once, in order; and the
// points in flight shared group commits (fewer commits than points: had
// each publish waited for its own commit before the next was read, there
// would be one commit per point).
func TestManyQoS1PublishesInFlightAreAckedInOrderAfterOneSharedCommit(t *testing.T) {
	const n = 200
	for _, v := range []byte{5, 4} {
		t.Run(fmt.Sprintf("protocol %d", v), func(t *testing.T) {
			h := newHarness(t, harnessOpts{})
			c := dialRaw(t, h.srv.Addr())
			if code := c.connack(t, connectPkt(v, "burst", "d1", h.keys["d1"], 30, nil)); code != 0 {
				t.Fatalf("CONNACK 0x%02x", code)
			}
			commits0, _ := batchHistogram(t, h)
			pkts := make([][]byte, n)
			for i := range pkts {
				pkts[i] = telemetryPkt(v, "d1", uint16(i+1), i+1)
			}
			errc := c.writeAll(pkts...)
			c.readPubacks(t, n, func(i int, a puback) {
				if a.id != uint16(i+1) || a.code != 0 {
					t.Fatalf("PUBACK %d: id %d reason 0x%02x, want id %d success", i, a.id, a.code, i+1)
				}
				// Acknowledged means committed: the point is there.
				if got := h.count(`SELECT COUNT(*) FROM telemetry WHERE device_id = 'd1' AND seq = ?`, i+1); got != 1 {
					t.Fatalf("PUBACK of seq %d arrived with %d such points stored", i+1, got)
				}
			})
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			checkStoredOnce(t, h, "d1", n)
			commits, appends := batchHistogram(t, h)
			if appends < n {
				t.Errorf("the group commits held %v appends, want at least %d", appends, n)
			}
			if d := commits - commits0; d >= n {
				t.Errorf("%d group commits for %d points in flight: none held more than one of them", d, n)
			}
			t.Logf("%d points in %d group commits", n, commits-commits0)
		})
	}
}

// TestPahoKeepsManyQoS1PublishesInFlightOnOneConnection: the paho v5
// client, publishing from 200 goroutines over one connection (the broker
// announces a Receive Maximum of MaxQueuedAcks), gets a success PUBACK for
// every publish and every point is stored once.
func TestPahoKeepsManyQoS1PublishesInFlightOnOneConnection(t *testing.T) {
	const n = 200
	h := newHarness(t, harnessOpts{})
	d := mustV5(t, h.srv.Addr(), "paho-burst", "d1", h.keys["d1"])
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			pr, err := d.c.Publish(ctx, &paho.Publish{Topic: "unhidra/devices/d1/telemetry", QoS: 1, Payload: fmt.Appendf(nil, `{"data":{"v":%d},"seq":%d}`, i+1, i+1)})
			switch {
			case err != nil:
				errs[i] = err
			case pr == nil || pr.ReasonCode != 0:
				errs[i] = fmt.Errorf("PUBACK %+v", pr)
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	if got := h.count(`SELECT COUNT(*) FROM telemetry WHERE device_id = 'd1'`); got != n {
		t.Errorf("%d points stored, want %d", got, n)
	}
	if got := h.count(`SELECT COUNT(DISTINCT seq) FROM telemetry WHERE device_id = 'd1'`); got != n {
		t.Errorf("%d distinct points stored, want %d", got, n)
	}
}

// TestAnswersGivenOnTheReadLoopWaitForTheAcksQueuedBeforeThem: queued
// telemetry, then publishes answered on the read loop — one refused by the
// ACL (another device's topic), one refused for its payload, heartbeats
// and a status accepted there — then more telemetry, all written back to
// back: the PUBACKs come in exactly the order of the PUBLISHes, each with
// its own reason code, and every accepted point is stored.
func TestAnswersGivenOnTheReadLoopWaitForTheAcksQueuedBeforeThem(t *testing.T) {
	type step struct {
		pkt  func(v byte, id uint16) []byte
		code byte // expected PUBACK reason
		seq  bool // a telemetry point (numbered in order)
	}
	tele := step{seq: true}
	heartbeat := step{pkt: func(v byte, id uint16) []byte {
		return publishPkt(v, "unhidra/devices/d1/heartbeat", 1, id, []byte(`{"free_heap":1}`))
	}}
	status := step{pkt: func(v byte, id uint16) []byte {
		return publishPkt(v, "unhidra/devices/d1/status", 1, id, []byte(`{"online":true,"fw":"1.0"}`))
	}}
	forbidden := step{code: 0x87, pkt: func(v byte, id uint16) []byte {
		return publishPkt(v, "unhidra/devices/d2/telemetry", 1, id, []byte(`{"data":{"v":1}}`))
	}}
	invalid := step{code: 0x99, pkt: func(v byte, id uint16) []byte {
		return publishPkt(v, "unhidra/devices/d1/telemetry", 1, id, []byte(`[1]`))
	}}
	repeat := func(s step, k int) []step {
		out := make([]step, k)
		for i := range out {
			out[i] = s
		}
		return out
	}
	plan := func(parts ...[]step) []step {
		var out []step
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		v     byte
		steps []step
	}{
		// MQTT 5 answers refusals with a failure PUBACK: they too wait.
		{"protocol 5 with refusals", 5, plan(repeat(tele, 50), []step{forbidden}, repeat(tele, 50), []step{invalid, heartbeat}, repeat(tele, 20), []step{status, heartbeat}, repeat(tele, 5))},
		// 3.1.1 has no failure PUBACK (a refusal closes the connection):
		// accepted publishes answered on the read loop.
		{"protocol 4", 4, plan(repeat(tele, 50), []step{heartbeat}, repeat(tele, 50), []step{status, heartbeat}, repeat(tele, 20), []step{heartbeat})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOpts{})
			c := dialRaw(t, h.srv.Addr())
			if code := c.connack(t, connectPkt(tc.v, "mixed", "d1", h.keys["d1"], 30, nil)); code != 0 {
				t.Fatalf("CONNACK 0x%02x", code)
			}
			pkts := make([][]byte, len(tc.steps))
			points := 0
			for i, s := range tc.steps {
				id := uint16(i + 1)
				if s.seq {
					points++
					pkts[i] = telemetryPkt(tc.v, "d1", id, points)
				} else {
					pkts[i] = s.pkt(tc.v, id)
				}
			}
			errc := c.writeAll(pkts...)
			got := c.readPubacks(t, len(tc.steps), nil)
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			for i, a := range got {
				if a.id != uint16(i+1) || a.code != tc.steps[i].code {
					t.Errorf("PUBACK %d: id %d reason 0x%02x, want id %d reason 0x%02x (all: %v)", i, a.id, a.code, i+1, tc.steps[i].code, got)
					break
				}
			}
			checkStoredOnce(t, h, "d1", points)
		})
	}
}

// TestAPublishRefusedAtCommitTimeIsAnsweredInItsPlace: a channel message
// whose thread_id names no message passes every check before the commit
// and is refused by the store inside it. On MQTT 5 it gets its failure
// PUBACK (0x99, invalid) between the success PUBACKs of the messages around
// it, consumes no offset, and the connection goes on; on 3.1.1 the
// publishes before it are acknowledged and the connection is then closed
// without a PUBACK for it (the client sends it again).
func TestAPublishRefusedAtCommitTimeIsAnsweredInItsPlace(t *testing.T) {
	const noSuchMessage = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
	for _, v := range []byte{5, 4} {
		t.Run(fmt.Sprintf("protocol %d", v), func(t *testing.T) {
			h := newHarness(t, harnessOpts{})
			ctx := context.Background()
			ch, _, err := h.chat.CreateChannel(ctx, alice(), chat.CreateChannel{Name: "ops", Kind: chat.KindPrivate})
			if err != nil {
				t.Fatal(err)
			}
			topic := "unhidra/channels/" + ch.ID + "/messages"
			msg := func(id uint16, body string) []byte { return publishPkt(v, topic, 1, id, []byte(body)) }
			c := dialRaw(t, h.srv.Addr())
			if code := c.connack(t, connectPkt(v, "poster", "alice", "tok-alice", 30, nil)); code != 0 {
				t.Fatalf("CONNACK 0x%02x", code)
			}
			errc := c.writeAll(
				msg(1, `{"text":"one","client_msg_id":"c1"}`),
				msg(2, `{"text":"two","client_msg_id":"c2"}`),
				msg(3, `{"text":"orphan","client_msg_id":"c3","thread_id":"`+noSuchMessage+`"}`),
				msg(4, `{"text":"four","client_msg_id":"c4"}`),
			)
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			if v == 4 {
				got := c.readPubacks(t, 2, nil)
				if got[0] != (puback{id: 1}) || got[1] != (puback{id: 2}) {
					t.Fatalf("PUBACKs %v, want 1 and 2", got)
				}
				if !c.closedWithin(10 * time.Second) {
					t.Fatal("3.1.1: connection still open after a publish refused at commit time")
				}
				if n := h.count(`SELECT COUNT(*) FROM messages WHERE channel_id = ? AND text = 'orphan'`, ch.ID); n != 0 {
					t.Fatalf("the refused message is stored (%d)", n)
				}
				return
			}
			got := c.readPubacks(t, 4, nil)
			want := []puback{{id: 1}, {id: 2}, {id: 3, code: 0x99}, {id: 4}}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("PUBACKs %v, want %v", got, want)
			}
			// The connection goes on.
			if _, err := c.Write(msg(5, `{"text":"five","client_msg_id":"c5"}`)); err != nil {
				t.Fatal(err)
			}
			if a := c.readPubacks(t, 1, nil); a[0] != (puback{id: 5}) {
				t.Fatalf("PUBACK after the refusal: %v, want id 5 success", a)
			}
			msgs, _, err := h.chat.History(ctx, alice(), ch.ID, chat.Page{Forward: true, Limit: 10})
			if err != nil {
				t.Fatal(err)
			}
			var texts []string
			for i, m := range msgs {
				if m.Offset != int64(i+1) {
					t.Errorf("message %d at offset %d: gap", i, m.Offset)
				}
				texts = append(texts, *m.Text)
			}
			if fmt.Sprint(texts) != "[one two four five]" {
				t.Errorf("stored %v, want [one two four five]", texts)
			}
		})
	}
}

// TestMoreQoS1PublishesThanMayBeQueuedAreAllAckedInOrder: a 3.1.1 client
// (no Receive Maximum) writes more QoS 1 points than MaxQueuedAcks back to
// back; the read loop waits while the queue is full instead of dropping or
// refusing, and every point is acknowledged in order and stored once.
func TestMoreQoS1PublishesThanMayBeQueuedAreAllAckedInOrder(t *testing.T) {
	n := mqttbridge.MaxQueuedAcks + 476
	h := newHarness(t, harnessOpts{})
	c := dialRaw(t, h.srv.Addr())
	if code := c.connack(t, connectPkt(4, "flood", "d1", h.keys["d1"], 30, nil)); code != 0 {
		t.Fatalf("CONNACK 0x%02x", code)
	}
	pkts := make([][]byte, n)
	for i := range pkts {
		pkts[i] = telemetryPkt(4, "d1", uint16(i+1), i+1)
	}
	errc := c.writeAll(pkts...)
	c.readPubacks(t, n, func(i int, a puback) {
		if a.id != uint16(i+1) || a.code != 0 {
			t.Fatalf("PUBACK %d: id %d reason 0x%02x, want id %d", i, a.id, a.code, i+1)
		}
	})
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	checkStoredOnce(t, h, "d1", n)
}
