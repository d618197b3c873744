package sqlite_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/chat"
	"github.com/unhidra/unhidra/internal/sqlite"
	"github.com/unhidra/unhidra/wire"
)

// BenchmarkAppendDeviceData measures the durable write path of device
// telemetry: one group commit (fsynced before it returns) of batch device-channel
// messages, each with its telemetry point, as the MQTT and WebSocket
// transports queue them. ns/op is per message; commits/s and µs/commit are
// reported beside it.
func BenchmarkAppendDeviceData(b *testing.B) {
	for _, batch := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			db, _ := fleetTestDB(b)
			ctx := context.Background()
			cs, err := sqlite.NewChatStore(ctx, db)
			if err != nil {
				b.Fatal(err)
			}
			defer cs.Close()
			if err := cs.CreateChannel(ctx, chat.Channel{ID: "device:d1", Name: "d1", Kind: chat.KindDevice, CreatedBy: "alice", CreatedAt: fleetT0}, "", nil); err != nil {
				b.Fatal(err)
			}
			data := json.RawMessage(`{"type":"telemetry","ts":"2026-01-01T00:00:00Z","data":{"v":1,"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}`)
			apps := make([]chat.Append, batch)
			b.ResetTimer()
			commits := 0
			for i := 0; i < b.N; i += batch {
				now := time.Now().UTC()
				for j := range apps {
					p := unhidra.TelemetryPoint{DeviceID: "d1", TS: now, Data: json.RawMessage(`{"v":1}`), ReceivedAt: now}
					apps[j] = chat.Append{
						Msg:       wire.Message{ID: ulid.Make().String(), Channel: "device:d1", Sender: wire.Principal{Kind: wire.KindDevice, ID: "d1"}, CreatedAt: now, Data: data},
						Telemetry: &p,
					}
				}
				res, err := cs.AppendMessages(ctx, apps)
				if err != nil || res[0].Err != nil {
					b.Fatal(err, res[0].Err)
				}
				commits++
			}
			b.ReportMetric(float64(commits)/b.Elapsed().Seconds(), "commits/s")
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(commits), "µs/commit")
		})
	}
}

// BenchmarkAppendDeviceDataSpread is BenchmarkAppendDeviceData with every
// message of a commit from a different device, as when many devices each
// wait for their PUBACK: each commit of 100 touches 100 channels and 100
// devices' telemetry. ns/op is per message, the fold of telemetry_recent
// (fold.go) running beside it as in the server.
func BenchmarkAppendDeviceDataSpread(b *testing.B) {
	const devices = 100
	db, _ := fleetTestDB(b)
	ctx := context.Background()
	cs, err := sqlite.NewChatStore(ctx, db)
	if err != nil {
		b.Fatal(err)
	}
	defer cs.Close()
	ids := make([]string, devices)
	for d := range ids {
		ids[d] = fmt.Sprintf("spread%03d", d)
		if _, err := db.Writer().ExecContext(ctx, `INSERT INTO devices (id, name, owner, key_hash, created_at) VALUES (?, ?, 'alice', ?, ?)`,
			ids[d], ids[d], []byte("h"+ids[d]), sqlite.Time(fleetT0)); err != nil {
			b.Fatal(err)
		}
		if err := cs.CreateChannel(ctx, chat.Channel{ID: "device:" + ids[d], Name: ids[d], Kind: chat.KindDevice, CreatedBy: "alice", CreatedAt: fleetT0}, "", nil); err != nil {
			b.Fatal(err)
		}
	}
	data := json.RawMessage(`{"type":"telemetry","ts":"2026-01-01T00:00:00Z","data":{"v":1,"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}`)
	apps := make([]chat.Append, devices)
	b.ResetTimer()
	for i := 0; i < b.N; i += devices {
		now := time.Now().UTC()
		for j, id := range ids {
			p := unhidra.TelemetryPoint{DeviceID: id, TS: now, Data: json.RawMessage(`{"v":1}`), ReceivedAt: now}
			apps[j] = chat.Append{
				Msg:       wire.Message{ID: ulid.Make().String(), Channel: "device:" + id, Sender: wire.Principal{Kind: wire.KindDevice, ID: id}, CreatedAt: now, Data: data},
				Telemetry: &p,
			}
		}
		res, err := cs.AppendMessagesDeferred(ctx, apps)
		if err != nil || res[0].Err != nil {
			b.Fatal(err, res[0].Err)
		}
		if err := cs.Sync(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
