package gateway

import (
	"context"
	"encoding/json"
	"log/slog"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/device"
	"github.com/unhidra/unhidra/wire"
)

// DeviceFrames adapts the device fleet to the gateway: it turns a device's
// decoded client frames into the same Fleet calls (and so the same rules)
// that MQTT and REST make (Devices), and tracks the device's WebSocket
// sessions (DeviceSessions). Log receives what a session's end could not
// record; nil discards it.
type DeviceFrames struct {
	Fleet *device.Fleet
	Log   *slog.Logger
}

var (
	_ Devices        = DeviceFrames{}
	_ DeviceSessions = DeviceFrames{}
)

// Heartbeat handles a `heartbeat` frame; extra fields of the frame are kept.
func (fr DeviceFrames) Heartbeat(ctx context.Context, who unhidra.Identity, f wire.ClientFrame) error {
	var hb device.Heartbeat
	var err error
	if len(f.Raw) > 0 {
		if hb, err = device.ParseHeartbeat(f.Raw); err != nil {
			return err
		}
	} else {
		hb = device.Heartbeat{DeviceID: f.DeviceID, Fields: map[string]json.RawMessage{}}
		if hb.TS, err = device.ParseTS(f.TS); err != nil {
			return err
		}
	}
	if f.DeviceID != "" {
		hb.DeviceID = f.DeviceID
	}
	return fr.Fleet.Heartbeat(ctx, who, hb)
}

// Telemetry handles a `telemetry` frame; the ack is sent once stored.
func (fr DeviceFrames) Telemetry(ctx context.Context, who unhidra.Identity, f wire.ClientFrame) (wire.Ack, error) {
	ts, err := device.ParseTS(f.TS)
	if err != nil {
		return wire.Ack{}, err
	}
	return fr.Fleet.Telemetry(ctx, who, device.TelemetryPoint{TS: ts, Data: f.Data, Seq: f.Seq})
}

// CommandResult handles a `command_result` frame.
func (fr DeviceFrames) CommandResult(ctx context.Context, who unhidra.Identity, f wire.ClientFrame) error {
	return fr.Fleet.CommandResult(ctx, who, device.CommandResult{CommandID: f.CommandID, Status: f.Status, Result: f.Result})
}

// DeviceConnected marks the device of who online and returns the commands
// waiting for it, oldest first, as frames to hand it.
func (fr DeviceFrames) DeviceConnected(ctx context.Context, who unhidra.Identity) ([]wire.CommandFrame, error) {
	if !who.IsDevice() {
		return nil, unhidra.Errorf(unhidra.EFORBIDDEN, "only devices have device sessions")
	}
	ctx = device.WithTransport(ctx, "websocket")
	if err := fr.Fleet.Connected(ctx, who.Principal.ID); err != nil {
		return nil, err
	}
	cmds, err := fr.Fleet.PendingCommands(ctx, who.Principal.ID)
	if err != nil {
		return nil, err
	}
	frames := make([]wire.CommandFrame, 0, len(cmds))
	for _, c := range cmds {
		frames = append(frames, commandFrame(c))
	}
	return frames, nil
}

// DeviceDisconnected records that one connection of the device ended.
func (fr DeviceFrames) DeviceDisconnected(ctx context.Context, who unhidra.Identity) {
	if !who.IsDevice() {
		return
	}
	if err := fr.Fleet.Disconnected(device.WithTransport(ctx, "websocket"), who.Principal.ID); err != nil && fr.Log != nil {
		fr.Log.Warn("device disconnect bookkeeping failed", "device", who.Principal.ID, "err", err)
	}
}

// CommandDelivered moves a command from pending to delivered and reports
// whether this caller won it.
func (fr DeviceFrames) CommandDelivered(ctx context.Context, deviceID, commandID string) (bool, error) {
	return fr.Fleet.CommandDelivered(ctx, deviceID, commandID)
}

// commandFrame is the `command` frame that delivers c to its device.
func commandFrame(c device.Command) wire.CommandFrame {
	return wire.CommandFrame{Type: wire.TypeCommand, CommandID: c.ID, Name: c.Name, Params: c.Params}
}
