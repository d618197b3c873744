package device

import (
	"context"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/wire"
)

// DeviceConnected marks the device of who online and returns the commands
// waiting for it, oldest first, as frames to hand it.
func (fr Frames) DeviceConnected(ctx context.Context, who unhidra.Identity) ([]wire.CommandFrame, error) {
	if !who.IsDevice() {
		return nil, unhidra.Errorf(unhidra.EFORBIDDEN, "only devices have device sessions")
	}
	ctx = WithTransport(ctx, "websocket")
	if err := fr.Fleet.Connected(ctx, who.Principal.ID); err != nil {
		return nil, err
	}
	cmds, err := fr.Fleet.PendingCommands(ctx, who.Principal.ID)
	if err != nil {
		return nil, err
	}
	frames := make([]wire.CommandFrame, 0, len(cmds))
	for _, c := range cmds {
		frames = append(frames, c.Frame())
	}
	return frames, nil
}

// DeviceDisconnected records that one connection of the device ended.
func (fr Frames) DeviceDisconnected(ctx context.Context, who unhidra.Identity) {
	if !who.IsDevice() {
		return
	}
	if err := fr.Fleet.Disconnected(WithTransport(ctx, "websocket"), who.Principal.ID); err != nil && fr.Fleet.log != nil {
		fr.Fleet.log.Warn("device disconnect bookkeeping failed", "device", who.Principal.ID, "err", err)
	}
}

// CommandDelivered moves a command from pending to delivered and reports
// whether this caller won it.
func (fr Frames) CommandDelivered(ctx context.Context, deviceID, commandID string) (bool, error) {
	return fr.Fleet.CommandDelivered(ctx, deviceID, commandID)
}
