package chat

import (
	"context"
	"encoding/json"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/wire"
)

// Device data fast path.
//
// Device telemetry is the bulk of the writes: every reading becomes a data
// message in its device's channel, stored with its telemetry point in one
// transaction (Append.Telemetry). The general Publish path reads the
// channel and the sender's role before queueing; a device posting in its
// own channel needs neither (the rule is fixed: a device may post data in
// device:<its id>, nothing else), and a channel that does not exist is
// reported by the store per append. So QueueDeviceData validates the body,
// queues the message with its point for the group commit and returns; the
// caller waits for the commit or not (MQTT QoS 0 has no ack to give).

// DeviceDataWait waits for the outcome of QueueDeviceData: the ack once the
// message (and its point) are committed, unavailable when ctx ends first.
// It is a plain function type, so that the device package can name it
// without importing chat.
type DeviceDataWait = func(ctx context.Context) (wire.Ack, error)

// QueueDeviceData queues data as a message of device:<deviceID> sent by
// that device, with point (when not nil) stored in the same transaction
// (see Append.Telemetry), and returns without waiting for the commit.
// point, when given, must be the device's own (DeviceID deviceID).
// Messages are committed, and their events published, in the order they
// were queued. The channel must exist (EnsureDeviceChannel); otherwise the
// wait returns not_found. The commit skips the message if ctx has ended by
// then, so a caller that does not wait passes a context that outlives the
// request.
func (s *Service) QueueDeviceData(ctx context.Context, deviceID string, data json.RawMessage, point *unhidra.TelemetryPoint) (DeviceDataWait, error) {
	channel := DeviceChannelID(deviceID)
	if err := ValidateChannelID(channel); err != nil {
		return nil, err
	}
	if point != nil && point.DeviceID != deviceID {
		return nil, unhidra.Errorf(unhidra.EFORBIDDEN, "a device stores only its own telemetry")
	}
	body, err := bodyOf(nil, data, nil)
	if err != nil {
		return nil, err
	}
	msg := wire.Message{
		ID:        newID(),
		Channel:   channel,
		Sender:    wire.Principal{Kind: wire.KindDevice, ID: deviceID},
		CreatedAt: s.now(),
		Data:      body.Data,
	}
	p := s.enqueue(ctx, Append{Msg: msg, Telemetry: point})
	return func(ctx context.Context) (wire.Ack, error) {
		r, err := p.wait(ctx)
		if err != nil {
			return wire.Ack{}, err
		}
		return wire.Ack{Channel: r.Msg.Channel, MessageID: r.Msg.ID, Offset: r.Msg.Offset}, nil
	}, nil
}
