package device_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/chat"
	"github.com/unhidra/unhidra/internal/device"
	"github.com/unhidra/unhidra/internal/inmem"
	"github.com/unhidra/unhidra/internal/sqlite"
	"github.com/unhidra/unhidra/internal/sqlitetest"
	"github.com/unhidra/unhidra/wire"
)

// fleetClock is a settable test fleetClock.
type fleetClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fleetClock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fleetClock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// fleetPosts records what the fleet posts into device channels (events
// are recorded and go no further: the chat rules are another package's
// job), and hands telemetry to the real chat service on the fleet's
// database, so that a point and its channel message are stored in one
// transaction as `unhidra serve` stores them.
type fleetPosts struct {
	chat *chat.Service
	mu   sync.Mutex
	msgs []wire.Publish
	who  []unhidra.Identity
	fail error
}

func (p *fleetPosts) Publish(_ context.Context, who unhidra.Identity, in wire.Publish) (wire.Ack, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail != nil {
		return wire.Ack{}, p.fail
	}
	p.msgs = append(p.msgs, in)
	p.who = append(p.who, who)
	return wire.Ack{Channel: in.Channel, MessageID: "m" + string(rune('0'+len(p.msgs)%10)), Offset: int64(len(p.msgs))}, nil
}

func (p *fleetPosts) QueueDeviceData(ctx context.Context, deviceID string, data json.RawMessage, point *device.TelemetryPoint) (device.TelemetryWait, error) {
	p.mu.Lock()
	if p.fail != nil {
		p.mu.Unlock()
		return nil, p.fail
	}
	p.msgs = append(p.msgs, wire.Publish{Channel: wire.DeviceChannel(deviceID), Data: data})
	p.who = append(p.who, asDevice(deviceID))
	p.mu.Unlock()
	return p.chat.QueueDeviceData(ctx, deviceID, data, point)
}

// types returns the "type" of each posted event, in order.
func (p *fleetPosts) types() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, m := range p.msgs {
		var ev struct{ Type string }
		_ = json.Unmarshal(m.Data, &ev)
		out = append(out, ev.Type)
	}
	return out
}

func (p *fleetPosts) last() map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	var m map[string]any
	_ = json.Unmarshal(p.msgs[len(p.msgs)-1].Data, &m)
	return m
}

type fleetOwners map[string]string

func (o fleetOwners) DeviceOwner(_ context.Context, id string) (string, error) {
	if u, ok := o[id]; ok {
		return u, nil
	}
	return "", unhidra.Errorf(unhidra.ENOTFOUND, "device not found")
}

type fleetEnv struct {
	db         *sqlite.DB
	fleet      *device.Fleet
	fleetClock *fleetClock
	fleetPosts *fleetPosts
	broker     *inmem.Broker
	chat       *chat.Service // stores telemetry with its channel messages
}

func asUser(name string, admin bool) unhidra.Identity {
	id := unhidra.Identity{Principal: wire.Principal{Kind: wire.KindUser, ID: name}}
	if admin {
		id.Roles = []string{unhidra.RoleAdmin}
	}
	return id
}

func asDevice(id string) unhidra.Identity {
	return unhidra.Identity{Principal: wire.Principal{Kind: wire.KindDevice, ID: id}}
}

// newFleetEnv opens a migrated SQLite database with users alice, bob and admin
// and devices d1 (alice) and d2 (bob).
func newFleetEnv(t testing.TB) *fleetEnv {
	t.Helper()
	ctx := context.Background()
	db := sqlitetest.Open(t)
	sqlitetest.AddUsers(t, db, "alice", "bob", "admin")
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for id, owner := range map[string]string{"d1": "alice", "d2": "bob"} {
		if _, err := db.Writer().ExecContext(ctx, `INSERT INTO devices (id, name, owner, key_hash, created_at) VALUES (?, ?, ?, ?, ?)`,
			id, id, owner, []byte("hash-"+id), sqlite.Time(now)); err != nil {
			t.Fatal(err)
		}
	}
	c := &fleetClock{t: now}
	b := inmem.NewBroker()
	cs, err := sqlite.NewChatStore(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	svc := chat.NewService(cs, b, chat.Options{Users: allUsers{}})
	t.Cleanup(svc.Wait)
	p := &fleetPosts{chat: svc}
	f := device.NewFleet(device.FleetOptions{
		Store:    sqlite.NewFleetStore(db),
		Broker:   b,
		Channels: p,
		Owners:   fleetOwners{"d1": "alice", "d2": "bob"},
		Now:      c.Now,
		EnsureChannel: func(ctx context.Context, id, owner string) error {
			_, err := svc.EnsureDeviceChannel(ctx, id, owner)
			return err
		},
	})
	return &fleetEnv{db: db, fleet: f, fleetClock: c, fleetPosts: p, broker: b, chat: svc}
}

func (e *fleetEnv) deviceRow(t *testing.T, id string) (online bool, lastSeen string) {
	t.Helper()
	var ls *string
	if err := e.db.Reader().QueryRow(`SELECT online, last_seen FROM devices WHERE id = ?`, id).Scan(&online, &ls); err != nil {
		t.Fatal(err)
	}
	if ls != nil {
		lastSeen = *ls
	}
	return online, lastSeen
}
