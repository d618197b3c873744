package device

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/wire"
)

// TelemetryPoint is one telemetry reading of a device, as stored and as
// GET /api/v1/devices/{id}/telemetry returns it ({ts, data, seq?}). It is
// the root package's type, which chat's store contract carries beside the
// device-channel message that relays it.
type TelemetryPoint = unhidra.TelemetryPoint

// Limits on telemetry.
const (
	// MaxTelemetryDataBytes bounds a point's data so that the device channel
	// message wrapping it stays within wire.MaxDataBytes.
	MaxTelemetryDataBytes = wire.MaxDataBytes - 256
	// MaxClockSkew is how far in the future a device's ts may lie.
	MaxClockSkew = time.Hour
)

// ParseTS reads a timestamp: an RFC 3339 string, or a number of Unix
// seconds (below 1e11) or milliseconds. null is the zero time.
func ParseTS(raw json.RawMessage) (time.Time, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return time.Time{}, nil
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return time.Time{}, unhidra.Errorf(unhidra.EINVALID, "ts must be RFC 3339 or Unix time")
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return time.Time{}, unhidra.Errorf(unhidra.EINVALID, "ts must be RFC 3339 or Unix time")
		}
		return t.UTC(), nil
	}
	var n float64
	if err := json.Unmarshal(raw, &n); err != nil || math.IsNaN(n) || n < 0 || n > 1e14 {
		return time.Time{}, unhidra.Errorf(unhidra.EINVALID, "ts must be RFC 3339 or Unix time")
	}
	if n < 1e11 {
		sec, frac := math.Modf(n)
		return time.Unix(int64(sec), int64(frac*1e9)).UTC(), nil
	}
	return time.UnixMilli(int64(n)).UTC(), nil
}

// ParseTelemetry decodes an MQTT telemetry payload (docs/protocol.md#mqtt-topics): either the
// envelope {"data":{…}, "ts"?, "seq"?} (an object whose keys are only those
// and whose data is an object) or any other JSON object, which is the data
// itself.
func ParseTelemetry(payload []byte) (TelemetryPoint, error) {
	if len(payload) > MaxTelemetryDataBytes {
		return TelemetryPoint{}, unhidra.Errorf(unhidra.ETOOLARGE, "telemetry is larger than %d bytes", MaxTelemetryDataBytes)
	}
	if err := checkJSON("telemetry", payload, true); err != nil {
		return TelemetryPoint{}, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(payload, &m); err != nil || m == nil {
		return TelemetryPoint{}, unhidra.Errorf(unhidra.EINVALID, "telemetry must be a JSON object")
	}
	envelope := false
	if d, ok := m["data"]; ok && isObject(d) {
		envelope = true
		for k := range m {
			if k != "data" && k != "ts" && k != "seq" {
				envelope = false
			}
		}
	}
	if !envelope {
		return TelemetryPoint{Data: compact(payload)}, nil
	}
	p := TelemetryPoint{Data: compact(m["data"])}
	ts, err := ParseTS(m["ts"])
	if err != nil {
		return TelemetryPoint{}, err
	}
	p.TS = ts
	if raw, ok := m["seq"]; ok && string(bytes.TrimSpace(raw)) != "null" {
		var seq int64
		if err := json.Unmarshal(raw, &seq); err != nil {
			return TelemetryPoint{}, unhidra.Errorf(unhidra.EINVALID, "seq must be an integer")
		}
		p.Seq = &seq
	}
	return p, nil
}

func isObject(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && raw[0] == '{'
}

func compact(raw []byte) json.RawMessage {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return append(json.RawMessage(nil), raw...)
	}
	return b.Bytes()
}

// validatePoint checks a point and fills TS and ReceivedAt.
func (f *Fleet) validatePoint(p *TelemetryPoint, now time.Time) error {
	if len(p.Data) == 0 || !isObject(p.Data) {
		return unhidra.Errorf(unhidra.EINVALID, "telemetry data must be a JSON object")
	}
	if err := checkJSON("telemetry data", p.Data, false); err != nil {
		return err
	}
	if len(p.Data) > MaxTelemetryDataBytes {
		return unhidra.Errorf(unhidra.ETOOLARGE, "telemetry data is larger than %d bytes", MaxTelemetryDataBytes)
	}
	p.Data = compact(p.Data)
	if p.TS.IsZero() {
		p.TS = now
	}
	if p.TS.After(now.Add(MaxClockSkew)) {
		return unhidra.Errorf(unhidra.EINVALID, "ts is more than %s in the future", MaxClockSkew)
	}
	if p.TS.Year() < 2000 {
		// A device without a set clock (ESP32 at boot): use arrival time.
		p.TS = now
	}
	p.TS = p.TS.UTC()
	p.ReceivedAt = now
	return nil
}

type telemetryEvent struct {
	Type string          `json:"type"`
	TS   time.Time       `json:"ts"`
	Seq  *int64          `json:"seq,omitempty"`
	Data json.RawMessage `json:"data"`
}

// Telemetry stores a point of the calling device durably and relays it to
// the subscribers of device:<id>. The returned ack is sent to the device
// only when err is nil: the point and its channel message are then
// committed, in one transaction.
func (f *Fleet) Telemetry(ctx context.Context, who unhidra.Identity, p TelemetryPoint) (wire.Ack, error) {
	wait, err := f.QueueTelemetry(ctx, who, p)
	if err != nil {
		return wire.Ack{}, err
	}
	return wait(ctx)
}

// QueueTelemetry is Telemetry in two steps, for a transport that keeps
// several acknowledged writes of one connection in flight (MQTT QoS 1): it
// checks the point and queues it for the group commit, then returns; the
// wait gives the ack once the point and its channel message are committed.
// Points are committed in the order they were queued, so a connection that
// waits for its points in that order acknowledges them in that order.
// ctx bounds the queued point as well: the commit skips it if ctx has
// ended by then.
func (f *Fleet) QueueTelemetry(ctx context.Context, who unhidra.Identity, p TelemetryPoint) (TelemetryWait, error) {
	if err := f.preparePoint(who, &p); err != nil {
		return nil, err
	}
	if f.channels == nil {
		ack, err := f.storeAlone(ctx, p)
		return func(context.Context) (wire.Ack, error) { return ack, err }, nil
	}
	wait, err := f.queuePoint(ctx, p)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) (wire.Ack, error) {
		ack, err := wait(ctx)
		if err == nil {
			f.met.telemetryStored.Inc()
		}
		return ack, err
	}, nil
}

// storeAlone stores a point when the fleet has no Channels: there is no
// message to store it with and nobody to relay it to.
func (f *Fleet) storeAlone(ctx context.Context, p TelemetryPoint) (wire.Ack, error) {
	if err := f.store.AppendTelemetry(ctx, []TelemetryPoint{p}); err != nil {
		return wire.Ack{}, err
	}
	f.observe(p)
	f.met.telemetryStored.Inc()
	return wire.Ack{Channel: wire.DeviceChannel(p.DeviceID), MessageID: f.newID()}, nil
}

// TelemetryNoWait stores a point like Telemetry but, when it can, returns
// once the point is queued for the group commit instead of once it is
// committed: for MQTT QoS 0, which has no acknowledgement to give, so the
// publisher's connection is not held for an fsync. queued reports that it
// returned early. Points are committed in the order they were queued, with
// the points and messages that Telemetry queues.
//
// The early return needs Channels. It is bounded: while
// MaxTelemetryInFlight points are queued and not yet committed, further
// calls wait for their commit like Telemetry (queued false), which slows
// the publisher down instead of dropping its points. A commit that fails
// after an early return loses the point (there is nobody left to tell):
// it is logged and counted (TelemetryNoWaitFailures).
func (f *Fleet) TelemetryNoWait(ctx context.Context, who unhidra.Identity, p TelemetryPoint) (queued bool, err error) {
	if err := f.preparePoint(who, &p); err != nil {
		return false, err
	}
	if f.channels == nil {
		_, err := f.storeAlone(ctx, p)
		return false, err
	}
	if f.inFlight.Add(1) > f.maxInFlight {
		f.inFlight.Add(-1)
		_, err := f.Telemetry(ctx, who, p)
		return false, err
	}
	// The commit must not be skipped when the publisher's request ends.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), noWaitCommitTimeout)
	wait, err := f.queuePoint(cctx, p)
	if err != nil {
		cancel()
		f.inFlight.Add(-1)
		return false, err
	}
	go func() {
		defer cancel()
		defer f.inFlight.Add(-1)
		if _, err := wait(cctx); err != nil {
			f.noWaitFail.Add(1)
			f.log.Warn("telemetry not stored after an early return", "device", p.DeviceID, "err", err)
		} else {
			f.met.telemetryStored.Inc()
		}
	}()
	return true, nil
}

// noWaitCommitTimeout bounds the commit of a point TelemetryNoWait queued.
const noWaitCommitTimeout = 30 * time.Second

// TelemetryNoWaitFailures returns how many points TelemetryNoWait returned
// early for and then failed to commit.
func (f *Fleet) TelemetryNoWaitFailures() uint64 { return f.noWaitFail.Load() }

// TelemetryInFlight returns how many points TelemetryNoWait returned early
// for that are not committed yet.
func (f *Fleet) TelemetryInFlight() int64 { return max(f.inFlight.Load(), 0) }

// preparePoint checks who may send p (the device itself, not revoked) and
// validates it.
func (f *Fleet) preparePoint(who unhidra.Identity, p *TelemetryPoint) error {
	if err := f.deviceActs(who, p.DeviceID); err != nil {
		return err
	}
	p.DeviceID = who.Principal.ID
	return f.validatePoint(p, f.now())
}

// queuePoint queues the point's device-channel message with the point
// itself, to be stored in one transaction.
func (f *Fleet) queuePoint(ctx context.Context, p TelemetryPoint) (TelemetryWait, error) {
	if err := f.ensureChannel(ctx, p.DeviceID); err != nil {
		return nil, err
	}
	data, err := json.Marshal(telemetryEvent{Type: "telemetry", TS: p.TS, Seq: p.Seq, Data: p.Data})
	if err != nil {
		return nil, unhidra.Wrap(unhidra.EINTERNAL, "encode event", err)
	}
	wait, err := f.channels.QueueDeviceData(ctx, p.DeviceID, data, &p)
	if err == nil {
		f.observe(p)
	}
	return wait, err
}

// SetObserver makes fn see every telemetry point this node ingests, once
// it is queued for its commit (in the order of each connection's points):
// the ML bridge. fn must not block; it may keep p (its Data is not
// changed afterwards). A point whose commit then fails is seen all the
// same (its device will send it again). Set it before the fleet serves.
func (f *Fleet) SetObserver(fn func(p TelemetryPoint)) { f.observer.Store(&fn) }

func (f *Fleet) observe(p TelemetryPoint) {
	if fn := f.observer.Load(); fn != nil {
		(*fn)(p)
	}
}

// PostAlert posts an alert about a device (the ML bridge's anomaly alert)
// in its channel device:<id> as the device itself (SPEC §5: the device's
// channel carries its telemetry, heartbeats, status and ML alerts). It is
// for the node's own components, never a transport: it checks no caller.
// A revoked device gets no alert.
func (f *Fleet) PostAlert(ctx context.Context, deviceID string, alert any) error {
	if f.isRevoked(deviceID) {
		return errRevoked
	}
	_, err := f.post(ctx, deviceID, alert)
	return err
}

// QueryTelemetry returns the device's points with since <= ts < until,
// oldest first. A zero until means now (plus the allowed clock skew); limit
// 0 means DefaultQueryLimit. The owner, admins and the device itself may
// read.
func (f *Fleet) QueryTelemetry(ctx context.Context, who unhidra.Identity, deviceID string, since, until time.Time, limit int) ([]TelemetryPoint, error) {
	if who.IsDevice() {
		if err := deviceSelf(who, deviceID); err != nil {
			return nil, err
		}
		deviceID = who.Principal.ID
	} else {
		d, err := f.authorizeUser(ctx, who, deviceID)
		if err != nil {
			return nil, err
		}
		deviceID = d.ID
	}
	switch {
	case limit == 0:
		limit = DefaultQueryLimit
	case limit < 0 || limit > MaxQueryLimit:
		return nil, unhidra.Errorf(unhidra.EINVALID, "limit must be between 1 and %d", MaxQueryLimit)
	}
	if until.IsZero() {
		until = f.now().Add(MaxClockSkew + time.Nanosecond)
	}
	if !since.IsZero() && !until.After(since) {
		return nil, unhidra.Errorf(unhidra.EINVALID, "until must be after since")
	}
	pts, err := f.store.QueryTelemetry(ctx, deviceID, since, until, limit)
	if err != nil {
		return nil, err
	}
	if pts == nil {
		pts = []TelemetryPoint{}
	}
	return pts, nil
}

// Prune deletes telemetry with ts before the given time.
func (f *Fleet) Prune(ctx context.Context, before time.Time) (int64, error) {
	return f.store.PruneTelemetry(ctx, before)
}
