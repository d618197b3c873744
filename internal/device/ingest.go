// Package device is Unhidra's device domain: the registry of devices, their
// owners and API keys (registry.go), and the fleet runtime shared by every
// transport — heartbeats and online state, telemetry ingestion and queries,
// and commands (ingest.go, online.go, telemetry.go, commands.go). Services
// authorize every call, so the WebSocket gateway, MQTT and REST get the
// same rules.
// Both services are safe for concurrent use.
package device

// This file holds device.Fleet: the live side of devices (heartbeats,
// online state, telemetry ingestion, commands) shared by every transport,
// its options, the store and channel contracts it needs, and the checks of
// who may act; online.go the liveness of devices, telemetry.go the points.
//
// Design (telemetry path). A telemetry point is written twice, on purpose,
// in ONE transaction:
//
//  1. into the telemetry table, which answers time-range queries
//     (GET /api/v1/devices/{id}/telemetry, FleetStore.QueryTelemetry) and
//     is pruned after TELEMETRY_RETENTION;
//  2. as a message with data {"type":"telemetry","ts","seq?","data"} in the
//     device channel "device:<id>", which gives every subscriber of that
//     channel, WebSocket or MQTT, live telemetry with offsets and recovery,
//     under the channel's read rule, like any other channel message.
//
// The point rides along with its channel message through the chat
// service's group commit (Channels.QueueDeviceData, which hands the store
// both in one append: chat.Append.Telemetry), so a batch of points costs
// one fsync, and the point and its message are stored together or not at
// all. That is the one write path; a fleet without Channels (tests, tools
// that relay nothing) stores the point alone with FleetStore.AppendTelemetry.
//
// The ack handed back to the device (WebSocket `ack`, MQTT PUBACK) is sent
// only after the commit; it is the channel message's ack. A failure is
// returned to the caller, who refuses the ack, so the device retries:
// delivery is at-least-once. TelemetryNoWait (MQTT QoS 0, which has no
// ack) returns once the point is queued, bounded by
// MaxTelemetryInFlight, beyond which it waits like Telemetry.

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/broker"
	"github.com/unhidra/unhidra/wire"
)

// FleetStore persists telemetry, commands and the online state of devices.
// The SQLite implementation is internal/sqlite.FleetStore. It enforces no
// authorization. Errors use the root vocabulary (not_found, unavailable).
// It is safe for concurrent use; implementations pass the conformance
// suites storetest.Fleet and storetest.Telemetry.
type FleetStore interface {
	// AppendTelemetry stores every point in one transaction and moves the
	// last_seen of their devices forward to the newest ReceivedAt (at the
	// store's resolution: SQLite moves it only by a second or more). The
	// fleet uses it only without Channels; with them a point is stored in
	// its channel message's transaction (chat.Append.Telemetry), which
	// moves last_seen alike.
	AppendTelemetry(ctx context.Context, points []TelemetryPoint) error
	// QueryTelemetry returns points of device with since <= ts < until,
	// oldest first (points of one ts in the order they were stored), at
	// most limit, each with DeviceID set.
	QueryTelemetry(ctx context.Context, deviceID string, since, until time.Time, limit int) ([]TelemetryPoint, error)
	// PruneTelemetry deletes points with ts < before and returns how many.
	PruneTelemetry(ctx context.Context, before time.Time) (int64, error)

	// SetOnline records the online state and last_seen (= at) of a device
	// and reports whether the online state changed. An unknown device is
	// not_found; a revoked device cannot go online (forbidden), only
	// offline. The fleet's methods take a device's canonical id, as the
	// registry stores it.
	SetOnline(ctx context.Context, deviceID string, online bool, at time.Time) (changed bool, err error)
	// ResetOnline marks every device offline and returns how many were
	// online.
	ResetOnline(ctx context.Context) (int64, error)

	// CreateCommand stores a new command: not_found for an unknown device,
	// conflict for a revoked one or a command id already stored.
	CreateCommand(ctx context.Context, c Command) error
	// GetCommand returns a command of the device; not_found for an unknown
	// command or one of another device.
	GetCommand(ctx context.Context, deviceID, commandID string) (Command, error)
	// PendingCommands returns the device's pending commands whose deadline
	// is after now, oldest first, at most limit.
	PendingCommands(ctx context.Context, deviceID string, now time.Time, limit int) ([]Command, error)
	// TransitionCommand moves a command whose status is one of from to the
	// status to (setting delivered_at or completed_at = at, and result when
	// non-nil). It returns the command as it is afterwards and whether it
	// moved; a command in another status is returned unchanged. It is a
	// compare-and-set: of concurrent transitions from one status exactly
	// one moves the command. An unknown command (or one of another device)
	// is not_found.
	TransitionCommand(ctx context.Context, deviceID, commandID string, from []string, to string, result json.RawMessage, at time.Time) (Command, bool, error)
	// ExpireCommands moves every pending or delivered command whose
	// deadline is at or before now to timeout (completed_at = now) and
	// returns them, at most limit; a command times out once.
	ExpireCommands(ctx context.Context, now time.Time, limit int) ([]Command, error)
}

// Channels posts into device channels: the chat service, as it is. The
// chat rules apply (a device posts only in its own channel device:<id>).
type Channels interface {
	// Publish posts an event (heartbeat, status, command result) as who.
	Publish(ctx context.Context, who unhidra.Identity, in wire.Publish) (wire.Ack, error)
	// QueueDeviceData queues data as a message of device:<deviceID> sent
	// by that device, with point (when not nil) stored in the same
	// transaction, and returns without waiting for the commit: the wait
	// gives the message's ack once both are committed. The channel must
	// exist (not_found otherwise, from the wait). The commit skips the
	// message if ctx has ended by then.
	QueueDeviceData(ctx context.Context, deviceID string, data json.RawMessage, point *TelemetryPoint) (TelemetryWait, error)
}

// TelemetryWait waits for the commit of what Channels.QueueDeviceData
// queued: the ack, or unavailable when ctx ends first.
type TelemetryWait = func(ctx context.Context) (wire.Ack, error)

// Owners answers who owns a device: the device registry. An unknown device
// is not_found.
type Owners interface {
	DeviceOwner(ctx context.Context, deviceID string) (owner string, err error)
}

// DeviceLookup finds a device by id in any letter case: the registry
// (*Service.LookupDevice). When FleetOptions.Owners implements it (the
// registry does), a user's call resolves the id it names to the device's
// canonical id, and sees whether the device is revoked; otherwise the id is
// used as given.
type DeviceLookup interface {
	LookupDevice(ctx context.Context, deviceID string) (Device, error)
}

// FleetOptions configures a Fleet. Store and Broker are required.
type FleetOptions struct {
	Store  FleetStore
	Broker broker.Broker
	// Channels receives telemetry, heartbeats, status and command results
	// as messages of device:<id>, each telemetry point stored in its
	// message's transaction. Nil: nothing is posted, a point is stored
	// alone (acks then carry a fresh id and offset 0).
	Channels Channels
	// Owners authorizes user calls (owner or admin). Nil: admins only.
	Owners Owners
	// EnsureChannel, when set, makes sure device:<id> exists (owned by the
	// device's owner) before the first post of a device on this node: the
	// chat service's EnsureDeviceChannel, adapted by the composition root.
	EnsureChannel func(ctx context.Context, deviceID, owner string) error
	Logger        *slog.Logger
	// Now is the clock; default time.Now in UTC.
	Now func() time.Time
	// Retention is how long telemetry is kept (TELEMETRY_RETENTION).
	// Default 30 days.
	Retention time.Duration
	// OfflineGrace delays marking a device offline after its last
	// connection ends; a reconnect within it writes nothing. It keeps a
	// device that reconnects in a loop from costing two commits per
	// connection. Zero: offline at once.
	OfflineGrace time.Duration
	// MaxTelemetryInFlight bounds the points TelemetryNoWait has queued and
	// not yet seen committed; beyond it TelemetryNoWait waits for the
	// commit like Telemetry (backpressure). Default 4096.
	MaxTelemetryInFlight int
	// Registerer, when set, receives the fleet's metrics:
	// unhidra_devices_online, unhidra_telemetry_points_stored_total and
	// unhidra_device_commands_total{status}.
	Registerer prometheus.Registerer
}

// Fleet is the device runtime service. It is safe for concurrent use.
type Fleet struct {
	store     FleetStore
	broker    broker.Broker
	channels  Channels
	owners    Owners
	log       *slog.Logger
	now       func() time.Time
	retention time.Duration

	mu      sync.Mutex
	conns   map[string]*liveDevice // devices with live connections on this node
	stopped bool                   // Run ended: no new offline-grace timers
	grace   time.Duration

	ensure  func(ctx context.Context, deviceID, owner string) error
	ensured sync.Map // device id → struct{}

	maxInFlight int64
	inFlight    atomic.Int64  // TelemetryNoWait points not yet committed
	noWaitFail  atomic.Uint64 // TelemetryNoWait points whose commit failed

	entropy *ulid.MonotonicEntropy
	idMu    sync.Mutex

	// revoked holds the ids of devices this node has seen revoked (a
	// revocation event, a lookup, a refused SetOnline): their sessions that
	// are still open may not post, heartbeat or answer. Revocation is
	// final, so entries are never removed.
	revoked sync.Map // device id → struct{}
	met     *fleetMetrics
	// observer sees every ingested point (SetObserver).
	observer atomic.Pointer[func(TelemetryPoint)]
}

// Default limits.
const (
	DefaultRetention      = 30 * 24 * time.Hour
	DefaultCommandTimeout = 60 * time.Second
	MaxCommandTimeout     = 7 * 24 * time.Hour
	MaxQueryLimit         = 10000
	DefaultQueryLimit     = 1000
	maxPendingDelivered   = 100
)

// NewFleet returns a Fleet.
func NewFleet(o FleetOptions) *Fleet {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = func() time.Time { return time.Now().UTC() }
	}
	if o.Retention <= 0 {
		o.Retention = DefaultRetention
	}
	if o.MaxTelemetryInFlight <= 0 {
		o.MaxTelemetryInFlight = 4096
	}
	f := &Fleet{
		maxInFlight: int64(o.MaxTelemetryInFlight),
		store:       o.Store,
		broker:      o.Broker,
		channels:    o.Channels,
		owners:      o.Owners,
		log:         o.Logger,
		now:         o.Now,
		retention:   o.Retention,
		conns:       make(map[string]*liveDevice),
		grace:       o.OfflineGrace,
		ensure:      o.EnsureChannel,
		entropy:     ulid.Monotonic(rand.Reader, 0),
	}
	f.met = newFleetMetrics(o.Registerer, f)
	if o.Broker != nil {
		if _, err := o.Broker.Subscribe(broker.RevocationTopic, f.onRevocation); err != nil {
			f.log.Warn("fleet: no revocation events", "err", err)
		}
	}
	return f
}

// errRevoked refuses what a revoked device's lingering session asks for.
var errRevoked = unhidra.Errorf(unhidra.EFORBIDDEN, "device is revoked")

// markRevoked records that the device is revoked. The registry marked it
// offline when it revoked it; this node no longer counts it online.
func (f *Fleet) markRevoked(id string) {
	f.revoked.Store(id, struct{}{})
	f.mu.Lock()
	if d := f.conns[id]; d != nil {
		d.online = false
	}
	f.mu.Unlock()
}

func (f *Fleet) isRevoked(id string) bool {
	_, ok := f.revoked.Load(id)
	return ok
}

// onRevocation learns of revoked devices from the revocation events the
// registry publishes (on revocation and on key rotation, which revokes no
// device: the registry tells them apart). It must not block.
func (f *Fleet) onRevocation(ev *broker.Event) {
	if ev.Kind != broker.Revoke || ev.Revocation == nil {
		return
	}
	r := *ev.Revocation
	if r.Kind != broker.RevokeDevice || CheckID(r.ID) != nil {
		return
	}
	l, ok := f.owners.(DeviceLookup)
	if !ok {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		d, err := l.LookupDevice(ctx, r.ID)
		if err != nil {
			f.log.Debug("revocation event: device lookup", "device", r.ID, "err", err)
			return
		}
		if d.Revoked {
			f.markRevoked(d.ID)
		}
	}()
}

// transportKey is the context key of WithTransport.
type transportKey struct{}

// WithTransport returns ctx naming the transport ("websocket", "mqtt") a
// device's call arrives on, for the fleet's connect and disconnect log.
func WithTransport(ctx context.Context, transport string) context.Context {
	return context.WithValue(ctx, transportKey{}, transport)
}

func transportOf(ctx context.Context) string {
	if t, ok := ctx.Value(transportKey{}).(string); ok && t != "" {
		return t
	}
	return "unknown"
}

func (f *Fleet) newID() string {
	f.idMu.Lock()
	defer f.idMu.Unlock()
	return ulid.MustNew(ulid.Timestamp(f.now()), f.entropy).String()
}

// deviceSelf checks that who is the device deviceID itself (ids compare
// case-insensitively; who's is the canonical one).
func deviceSelf(who unhidra.Identity, deviceID string) error {
	if !who.IsDevice() {
		return unhidra.Errorf(unhidra.EFORBIDDEN, "only a device may do this")
	}
	if deviceID != "" && !SameID(deviceID, who.Principal.ID) {
		return unhidra.Errorf(unhidra.EFORBIDDEN, "a device may act only as itself")
	}
	return nil
}

// deviceActs checks that who is the device deviceID itself and is not known
// to be revoked, for what a device sends.
func (f *Fleet) deviceActs(who unhidra.Identity, deviceID string) error {
	if err := deviceSelf(who, deviceID); err != nil {
		return err
	}
	if f.isRevoked(who.Principal.ID) {
		return errRevoked
	}
	return nil
}

// authorizeUser lets the device's owner and admins through and returns the
// device (with its canonical id; Revoked is known only with a DeviceLookup).
func (f *Fleet) authorizeUser(ctx context.Context, who unhidra.Identity, deviceID string) (Device, error) {
	if err := CheckID(deviceID); err != nil {
		return Device{}, err
	}
	if who.IsDevice() {
		return Device{}, unhidra.Errorf(unhidra.EFORBIDDEN, "forbidden")
	}
	if f.owners == nil {
		if who.IsAdmin() {
			return Device{ID: deviceID}, nil
		}
		return Device{}, unhidra.Errorf(unhidra.EFORBIDDEN, "forbidden")
	}
	var d Device
	var err error
	if l, ok := f.owners.(DeviceLookup); ok {
		d, err = l.LookupDevice(ctx, deviceID)
	} else {
		d.ID = deviceID
		d.Owner, err = f.owners.DeviceOwner(ctx, deviceID)
	}
	if err != nil {
		if unhidra.ErrorCode(err) == unhidra.ENOTFOUND {
			if who.IsAdmin() {
				return Device{}, unhidra.Errorf(unhidra.ENOTFOUND, "device not found")
			}
			// No leak of which device ids exist.
			return Device{}, unhidra.Errorf(unhidra.EFORBIDDEN, "forbidden")
		}
		return Device{}, err
	}
	if d.Revoked {
		f.markRevoked(d.ID)
	}
	if who.IsAdmin() || strings.EqualFold(d.Owner, who.Principal.ID) {
		return d, nil
	}
	return Device{}, unhidra.Errorf(unhidra.EFORBIDDEN, "forbidden")
}

// post puts an event into the device channel as the device itself and
// returns the channel's ack. Without Channels it returns a synthetic ack.
func (f *Fleet) post(ctx context.Context, deviceID string, event any) (wire.Ack, error) {
	if f.channels == nil {
		return wire.Ack{Channel: wire.DeviceChannel(deviceID), MessageID: f.newID()}, nil
	}
	data, err := json.Marshal(event)
	if err != nil {
		return wire.Ack{}, unhidra.Wrap(unhidra.EINTERNAL, "encode event", err)
	}
	if err := f.ensureChannel(ctx, deviceID); err != nil {
		return wire.Ack{}, err
	}
	who := unhidra.Identity{Principal: wire.Principal{Kind: wire.KindDevice, ID: deviceID}}
	return f.channels.Publish(ctx, who, wire.Publish{Channel: wire.DeviceChannel(deviceID), Data: data})
}

// ensureChannel makes sure device:<id> exists before the device's first post
// on this node (see FleetOptions.EnsureChannel).
func (f *Fleet) ensureChannel(ctx context.Context, deviceID string) error {
	if f.ensure == nil || f.owners == nil {
		return nil
	}
	if _, ok := f.ensured.Load(deviceID); ok {
		return nil
	}
	owner, err := f.owners.DeviceOwner(ctx, deviceID)
	if err != nil {
		return err
	}
	if err := f.ensure(ctx, deviceID, owner); err != nil {
		return err
	}
	f.ensured.Store(deviceID, struct{}{})
	return nil
}

// Run prunes telemetry older than the retention every hour (and once at
// start) and expires command timeouts every second, until ctx ends.
func (f *Fleet) Run(ctx context.Context) error {
	prune := func() {
		n, err := f.Prune(ctx, f.now().Add(-f.retention))
		if err != nil {
			f.log.Warn("telemetry prune", "err", err)
		} else if n > 0 {
			f.log.Info("telemetry pruned", "points", n)
		}
	}
	prune()
	pruneT := time.NewTicker(time.Hour)
	defer pruneT.Stop()
	expT := time.NewTicker(time.Second)
	defer expT.Stop()
	for {
		select {
		case <-ctx.Done():
			f.stop()
			return nil
		case <-pruneT.C:
			prune()
		case <-expT.C:
			if _, err := f.ExpireCommands(ctx); err != nil && ctx.Err() == nil {
				f.log.Warn("command expiry", "err", err)
			}
		}
	}
}
