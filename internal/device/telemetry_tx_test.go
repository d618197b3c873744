package device_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/chat"
	"github.com/unhidra/unhidra/internal/device"
	"github.com/unhidra/unhidra/internal/sqlite"
)

type allUsers struct{}

func (allUsers) UserExists(context.Context, string) (bool, error) { return true, nil }

// txEnv is a fleet wired as `unhidra serve` wires it: the real chat
// service on the same SQLite database as its Channels, telemetry point and
// device-channel message in one transaction.
type txEnv struct {
	*fleetEnv
}

func newTxEnv(t *testing.T, maxInFlight int, ensure bool) *txEnv {
	t.Helper()
	e := newFleetEnv(t)
	svc := e.chat
	o := device.FleetOptions{
		Store:                sqlite.NewFleetStore(e.db),
		Broker:               e.broker,
		Channels:             svc,
		Owners:               fleetOwners{"d1": "alice", "d2": "bob"},
		Now:                  e.fleetClock.Now,
		MaxTelemetryInFlight: maxInFlight,
	}
	if ensure {
		o.EnsureChannel = func(ctx context.Context, id, owner string) error {
			_, err := svc.EnsureDeviceChannel(ctx, id, owner)
			return err
		}
	}
	e.fleet = device.NewFleet(o)
	return &txEnv{fleetEnv: e}
}

// stored returns the seqs of d1's telemetry rows and of the telemetry
// messages in device:d1.
func (e *txEnv) stored(t *testing.T) (rows, msgs []int64) {
	t.Helper()
	r, err := e.db.Reader().Query(`SELECT seq FROM telemetry WHERE device_id = 'd1' ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	for r.Next() {
		var s int64
		_ = r.Scan(&s)
		rows = append(rows, s)
	}
	r.Close()
	m, err := e.db.Reader().Query(`SELECT CAST(data AS TEXT) FROM messages WHERE channel_id = 'device:d1' ORDER BY off`)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for m.Next() {
		var d string
		_ = m.Scan(&d)
		var ev struct {
			Type string
			Seq  int64
		}
		if json.Unmarshal([]byte(d), &ev) == nil && ev.Type == "telemetry" {
			msgs = append(msgs, ev.Seq)
		}
	}
	return rows, msgs
}

func seqPoint(n int64) device.TelemetryPoint {
	return device.TelemetryPoint{Data: json.RawMessage(`{"v":1}`), Seq: &n}
}

func TestTelemetryWithMessage(t *testing.T) {
	t.Run("the point and its channel message are stored together and the ack names the message", func(t *testing.T) {
		e := newTxEnv(t, 0, true)
		ctx := context.Background()
		for i := int64(1); i <= 3; i++ {
			ack, err := e.fleet.Telemetry(ctx, asDevice("d1"), seqPoint(i))
			if err != nil {
				t.Fatal(err)
			}
			if ack.Channel != "device:d1" || ack.Offset != i {
				t.Fatalf("ack %+v, want device:d1 offset %d", ack, i)
			}
		}
		rows, msgs := e.stored(t)
		if len(rows) != 3 || len(msgs) != 3 || rows[2] != 3 || msgs[2] != 3 {
			t.Fatalf("rows %v, messages %v; want 1 2 3 in both", rows, msgs)
		}
		if _, ls := e.deviceRow(t, "d1"); ls == "" {
			t.Fatal("last_seen was not set by telemetry")
		}
	})
	t.Run("without a device channel neither the point nor a message is stored", func(t *testing.T) {
		e := newTxEnv(t, 0, false) // no EnsureChannel: device:d1 does not exist
		_, err := e.fleet.Telemetry(context.Background(), asDevice("d1"), seqPoint(1))
		if unhidra.ErrorCode(err) != unhidra.ENOTFOUND {
			t.Fatalf("err %v, want not_found", err)
		}
		if rows, msgs := e.stored(t); len(rows) != 0 || len(msgs) != 0 {
			t.Fatalf("rows %v, messages %v stored for a refused point", rows, msgs)
		}
	})
	t.Run("a device cannot store telemetry as another device", func(t *testing.T) {
		e := newTxEnv(t, 0, true)
		p := seqPoint(1)
		p.DeviceID = "d2"
		if _, err := e.fleet.Telemetry(context.Background(), asDevice("d1"), p); unhidra.ErrorCode(err) != unhidra.EFORBIDDEN {
			t.Fatalf("err %v, want forbidden", err)
		}
	})
}

func TestTelemetryNoWait(t *testing.T) {
	t.Run("returns once queued and the points are stored in order", func(t *testing.T) {
		e := newTxEnv(t, 1000, true)
		ctx := context.Background()
		queued := 0
		for i := int64(1); i <= 50; i++ {
			q, err := e.fleet.TelemetryNoWait(ctx, asDevice("d1"), seqPoint(i))
			if err != nil {
				t.Fatal(err)
			}
			if q {
				queued++
			}
		}
		if queued == 0 {
			t.Fatal("no point returned before its commit")
		}
		// What `unhidra serve` does at shutdown before closing the
		// database: everything queued is committed once Wait returns.
		e.chat.Wait()
		rows, msgs := e.stored(t)
		if len(rows) != 50 || len(msgs) != 50 {
			t.Fatalf("%d rows and %d messages stored, want 50 each", len(rows), len(msgs))
		}
		for i := range msgs {
			if msgs[i] != int64(i+1) || rows[i] != int64(i+1) {
				t.Fatalf("stored out of order: rows %v messages %v", rows, msgs)
			}
		}
		if n := e.fleet.TelemetryNoWaitFailures(); n != 0 {
			t.Fatalf("%d failures counted", n)
		}
	})
	t.Run("beyond the in-flight bound it waits for the commit instead", func(t *testing.T) {
		e := newTxEnv(t, 1, true)
		ctx := context.Background()
		waited := 0
		for i := int64(1); i <= 20; i++ {
			q, err := e.fleet.TelemetryNoWait(ctx, asDevice("d1"), seqPoint(i))
			if err != nil {
				t.Fatal(err)
			}
			if !q {
				waited++
			}
			if e.fleet.TelemetryInFlight() > 1 {
				t.Fatalf("%d points in flight, bound 1", e.fleet.TelemetryInFlight())
			}
		}
		if waited == 0 {
			t.Fatal("no call waited although the bound is 1")
		}
	})
	t.Run("a point refused before queueing is an error, not an early return", func(t *testing.T) {
		e := newTxEnv(t, 1000, true)
		q, err := e.fleet.TelemetryNoWait(context.Background(), asDevice("d1"), device.TelemetryPoint{Data: json.RawMessage(`[1]`)})
		if q || unhidra.ErrorCode(err) != unhidra.EINVALID {
			t.Fatalf("queued %v err %v, want invalid", q, err)
		}
	})
	t.Run("a commit failure after an early return is counted", func(t *testing.T) {
		e := newTxEnv(t, 1000, false) // no device channel: the commit refuses the point
		q, err := e.fleet.TelemetryNoWait(context.Background(), asDevice("d1"), seqPoint(1))
		if err != nil || !q {
			t.Fatalf("queued %v err %v, want an early return", q, err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for e.fleet.TelemetryNoWaitFailures() == 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if e.fleet.TelemetryNoWaitFailures() != 1 {
			t.Fatalf("failures %d, want 1", e.fleet.TelemetryNoWaitFailures())
		}
	})
}

// benchDevices is how many devices BenchmarkFleetTelemetry spreads its
// callers over (each caller is one device).
const benchDevices = 1000

// BenchmarkFleetTelemetry measures Fleet.Telemetry — the path the WebSocket
// gateway's `telemetry` frames and MQTT QoS 1 telemetry both take — with the
// real chat service on SQLite (every commit fsynced), from 64 callers per
// GOMAXPROCS, each a different device with its own channel: the point and its
// device-channel message in one transaction, as `unhidra serve` wires it (the
// one write path; "one commit" keeps the name earlier figures were taken
// under).
func BenchmarkFleetTelemetry(b *testing.B) {
	for _, tc := range []struct {
		name string
	}{{"one commit"}} {
		b.Run(tc.name, func(b *testing.B) {
			e := newFleetEnv(b)
			cs, err := sqlite.NewChatStore(context.Background(), e.db)
			if err != nil {
				b.Fatal(err)
			}
			defer cs.Close()
			owners := fleetOwners{}
			for i := range benchDevices {
				id := fmt.Sprintf("dev-%d", i)
				owners[id] = "alice"
				if _, err := e.db.Writer().Exec(`INSERT INTO devices (id, name, owner, key_hash, created_at) VALUES (?, ?, 'alice', ?, ?)`,
					id, id, []byte("hash-"+id), sqlite.Time(time.Now())); err != nil {
					b.Fatal(err)
				}
			}
			svc := chat.NewService(cs, e.broker, chat.Options{Users: allUsers{}})
			f := device.NewFleet(device.FleetOptions{
				Store: sqlite.NewFleetStore(e.db), Broker: e.broker, Channels: svc,
				Owners: owners,
				EnsureChannel: func(ctx context.Context, id, owner string) error {
					_, err := svc.EnsureDeviceChannel(ctx, id, owner)
					return err
				},
			})
			var mu sync.Mutex
			var lats []time.Duration
			var next atomic.Int64
			b.SetParallelism(64)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				var mine []time.Duration
				dev := asDevice(fmt.Sprintf("dev-%d", next.Add(1)%benchDevices))
				for i := int64(0); pb.Next(); i++ {
					t0 := time.Now()
					if _, err := f.Telemetry(context.Background(), dev, seqPoint(i)); err != nil {
						b.Error(err)
						return
					}
					mine = append(mine, time.Since(t0))
				}
				mu.Lock()
				lats = append(lats, mine...)
				mu.Unlock()
			})
			b.StopTimer()
			if len(lats) > 0 {
				slices.Sort(lats)
				b.ReportMetric(float64(len(lats))/b.Elapsed().Seconds(), "points/s")
				b.ReportMetric(float64(lats[len(lats)/2].Microseconds())/1000, "p50_ms")
				b.ReportMetric(float64(lats[len(lats)*99/100].Microseconds())/1000, "p99_ms")
			}
		})
	}
}
