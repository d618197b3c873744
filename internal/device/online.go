package device

// This file holds the liveness of devices on a Fleet: heartbeats, the
// status a device reports, its connections on this node and the online
// state they make (with the offline grace), which every transport shares.

import (
	"context"
	"encoding/json"
	"time"

	"github.com/unhidra/unhidra"
)

// Heartbeat is a device's sign of life (the WebSocket `heartbeat` frame, the
// MQTT unhidra/devices/D/heartbeat topic).
type Heartbeat struct {
	// DeviceID, when set, must be the sender's id.
	DeviceID string
	// TS is the device's clock; zero when it sent none.
	TS time.Time
	// Fields are the other fields of the heartbeat (free_heap, uptime, …),
	// relayed as they are. At most MaxHeartbeatBytes in total.
	Fields map[string]json.RawMessage
}

// MaxHeartbeatBytes bounds a heartbeat payload.
const MaxHeartbeatBytes = 8 << 10

// ParseHeartbeat decodes a heartbeat payload: a JSON object with optional
// device_id (string) and ts (RFC 3339 or Unix seconds/milliseconds), any
// other fields kept.
func ParseHeartbeat(payload []byte) (Heartbeat, error) {
	if len(payload) > MaxHeartbeatBytes {
		return Heartbeat{}, unhidra.Errorf(unhidra.ETOOLARGE, "heartbeat is larger than %d bytes", MaxHeartbeatBytes)
	}
	var m map[string]json.RawMessage
	if len(payload) == 0 {
		m = map[string]json.RawMessage{}
	} else if err := checkJSON("heartbeat", payload, true); err != nil {
		return Heartbeat{}, err
	} else if err := json.Unmarshal(payload, &m); err != nil || m == nil {
		return Heartbeat{}, unhidra.Errorf(unhidra.EINVALID, "heartbeat must be a JSON object")
	}
	hb := Heartbeat{Fields: m}
	if raw, ok := m["device_id"]; ok {
		if err := json.Unmarshal(raw, &hb.DeviceID); err != nil {
			return Heartbeat{}, unhidra.Errorf(unhidra.EINVALID, "device_id must be a string")
		}
		delete(m, "device_id")
	}
	if raw, ok := m["ts"]; ok {
		ts, err := ParseTS(raw)
		if err != nil {
			return Heartbeat{}, err
		}
		hb.TS = ts
		delete(m, "ts")
	}
	delete(m, "type")
	delete(m, "id")
	return hb, nil
}

// Heartbeat records that the device is alive: online, last_seen now, and a
// heartbeat event {"type":"heartbeat","ts",…fields} in device:<id>.
func (f *Fleet) Heartbeat(ctx context.Context, who unhidra.Identity, hb Heartbeat) error {
	if err := f.deviceActs(who, hb.DeviceID); err != nil {
		return err
	}
	id := who.Principal.ID
	now := f.now()
	changed, err := f.storeOnline(ctx, id, true, now)
	if err != nil {
		return err
	}
	f.noteOnline(id, true)
	if changed {
		if _, err := f.post(ctx, id, statusEvent{Type: "status", Online: true, At: now}); err != nil {
			f.log.Warn("device status event", "device", id, "err", err)
		}
	}
	ev := make(map[string]any, len(hb.Fields)+3)
	for k, v := range hb.Fields {
		ev[k] = v
	}
	ev["type"] = "heartbeat"
	ev["received_at"] = now
	if !hb.TS.IsZero() {
		ev["ts"] = hb.TS
	}
	_, err = f.post(ctx, id, ev)
	return err
}

type statusEvent struct {
	Type   string          `json:"type"`
	Online bool            `json:"online"`
	At     time.Time       `json:"at"`
	Status json.RawMessage `json:"status,omitempty"`
}

// Status records a status the device reported itself (MQTT
// unhidra/devices/D/status, also its Will): payload is a JSON object whose
// "online" field, when a boolean, sets the online state. Any JSON object is
// accepted and relayed as a status event.
func (f *Fleet) Status(ctx context.Context, who unhidra.Identity, payload []byte) error {
	if err := f.deviceActs(who, ""); err != nil {
		return err
	}
	online, err := ParseStatus(payload)
	if err != nil {
		return err
	}
	id := who.Principal.ID
	now := f.now()
	if _, err := f.storeOnline(ctx, id, online, now); err != nil {
		return err
	}
	f.noteOnline(id, online)
	_, err = f.post(ctx, id, statusEvent{Type: "status", Online: online, At: now, Status: payload})
	return err
}

// ParseStatus checks a device's status payload (a JSON object of at most
// MaxHeartbeatBytes, with an optional boolean "online", true when absent)
// and returns its online flag.
func ParseStatus(payload []byte) (online bool, err error) {
	if len(payload) > MaxHeartbeatBytes {
		return false, unhidra.Errorf(unhidra.ETOOLARGE, "status is larger than %d bytes", MaxHeartbeatBytes)
	}
	if err := checkJSON("status", payload, true); err != nil {
		return false, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(payload, &m); err != nil || m == nil {
		return false, unhidra.Errorf(unhidra.EINVALID, "status must be a JSON object")
	}
	online = true
	if raw, ok := m["online"]; ok {
		if err := json.Unmarshal(raw, &online); err != nil {
			return false, unhidra.Errorf(unhidra.EINVALID, "online must be a boolean")
		}
	}
	return online, nil
}

// noteOnline keeps this node's view of a connected device in step with an
// online state the device itself stored (a status or heartbeat). Without
// it, a device that reported {"online":false} (its Will, say) while a
// connection was still counted would stay offline when it reconnects:
// Connected would take the device for online already and write nothing.
func (f *Fleet) noteOnline(deviceID string, online bool) {
	f.mu.Lock()
	if d := f.conns[deviceID]; d != nil {
		d.online = online
	}
	f.mu.Unlock()
}

// liveDevice is a device's connection state on this node.
type liveDevice struct {
	n       int // live connections
	gen     uint64
	offline *time.Timer // pending offline after the grace period
	online  bool        // this node marked the device online
}

// DevicesOnline returns how many devices this node has marked online: with
// a live connection here, or within the offline grace after the last one.
func (f *Fleet) DevicesOnline() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, d := range f.conns {
		if d.online {
			n++
		}
	}
	return n
}

// Connected records that a transport accepted a connection of the device:
// the device is online. Call Disconnected when it ends, also when Connected
// failed. A revoked device does not go online (forbidden). The transport
// is named by WithTransport(ctx, …), for the log.
func (f *Fleet) Connected(ctx context.Context, deviceID string) error {
	f.mu.Lock()
	d := f.conns[deviceID]
	wasOnline := d != nil && d.online
	if d == nil {
		d = &liveDevice{}
		f.conns[deviceID] = d
	}
	d.n++
	n := d.n
	if d.offline != nil {
		d.offline.Stop()
		d.offline = nil
		d.gen++
	}
	f.mu.Unlock()
	if f.isRevoked(deviceID) {
		f.log.Info("revoked device connection refused", "device", deviceID, "transport", transportOf(ctx))
		return errRevoked
	}
	f.log.Info("device connected", "device", deviceID, "transport", transportOf(ctx), "connections", n)
	if wasOnline {
		return nil
	}
	if err := f.setOnline(ctx, deviceID, true); err != nil {
		return err
	}
	f.mu.Lock()
	if d := f.conns[deviceID]; d != nil && d.n > 0 {
		d.online = true
		f.mu.Unlock()
		return nil
	}
	f.mu.Unlock()
	// The connection ended while it was being marked online.
	return f.setOnline(ctx, deviceID, false)
}

// Disconnected records the end of a connection of the device; when it was
// the device's last live connection on this node, the device goes offline
// (after OfflineGrace, unless it connects again before).
func (f *Fleet) Disconnected(ctx context.Context, deviceID string) error {
	f.mu.Lock()
	d := f.conns[deviceID]
	if d == nil {
		f.mu.Unlock()
		return nil
	}
	d.n--
	n, wasOnline := d.n, d.online
	if n > 0 {
		f.mu.Unlock()
		f.log.Info("device disconnected", "device", deviceID, "transport", transportOf(ctx), "connections", n)
		return nil
	}
	if f.grace <= 0 || !wasOnline {
		delete(f.conns, deviceID)
		f.mu.Unlock()
		f.log.Info("device disconnected", "device", deviceID, "transport", transportOf(ctx), "connections", 0)
		if !wasOnline {
			return nil
		}
		return f.setOnline(ctx, deviceID, false)
	}
	if f.stopped {
		// The process is shutting down: no timer may outlive it. The next
		// start marks every device offline (ResetOnline).
		delete(f.conns, deviceID)
		f.mu.Unlock()
		return nil
	}
	d.gen++
	gen := d.gen
	d.offline = time.AfterFunc(f.grace, func() { f.goOffline(deviceID, gen) })
	f.mu.Unlock()
	f.log.Info("device disconnected", "device", deviceID, "transport", transportOf(ctx), "connections", 0, "offline_in", f.grace)
	return nil
}

// stop ends the offline-grace timers when Run ends, so nothing writes to the
// store after the process began closing it.
func (f *Fleet) stop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopped = true
	for id, d := range f.conns {
		if d.offline != nil && d.offline.Stop() && d.n <= 0 {
			delete(f.conns, id)
		}
	}
}

func (f *Fleet) goOffline(deviceID string, gen uint64) {
	f.mu.Lock()
	d := f.conns[deviceID]
	if d == nil || d.gen != gen || d.n > 0 {
		f.mu.Unlock()
		return
	}
	delete(f.conns, deviceID)
	f.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := f.setOnline(ctx, deviceID, false); err != nil {
		f.log.Warn("device offline", "device", deviceID, "err", err)
	}
}

// storeOnline is store.SetOnline, learning from a refusal that the device
// is revoked.
func (f *Fleet) storeOnline(ctx context.Context, deviceID string, online bool, at time.Time) (bool, error) {
	changed, err := f.store.SetOnline(ctx, deviceID, online, at)
	if online && unhidra.ErrorCode(err) == unhidra.EFORBIDDEN {
		f.markRevoked(deviceID)
	}
	return changed, err
}

func (f *Fleet) setOnline(ctx context.Context, deviceID string, online bool) error {
	now := f.now()
	changed, err := f.storeOnline(ctx, deviceID, online, now)
	if err != nil {
		return err
	}
	if changed {
		state := "offline"
		if online {
			state = "online"
		}
		f.log.Info("device "+state, "device", deviceID)
		if _, err := f.post(ctx, deviceID, statusEvent{Type: "status", Online: online, At: now}); err != nil {
			f.log.Warn("device status event", "device", deviceID, "err", err)
		}
	}
	return nil
}

// ResetOnline marks every device offline. A single node calls it at start,
// before its transports accept connections: devices marked online by a
// process that died are not connected any more.
func (f *Fleet) ResetOnline(ctx context.Context) error {
	n, err := f.store.ResetOnline(ctx)
	if n > 0 {
		f.log.Info("devices marked offline at start", "devices", n)
	}
	return err
}
