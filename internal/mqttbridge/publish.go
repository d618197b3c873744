package mqttbridge

import (
	"context"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/device"
	"github.com/unhidra/unhidra/wire"
)

// The publish path. A client's PUBLISH and its Will take the same two
// steps: parsePublish checks the topic against the publisher and decodes
// the payload (no side effects, so a Will is checked when it is set, at
// CONNECT), and applyPublish hands it to the service that authorizes,
// validates and stores it (for a Will, when it is due). What the service
// refuses never reaches a subscriber.
//
// Retained messages: only a device's own status topic keeps one (its last
// accepted status), so there is at most one retained message per device
// and none per user. Retain never applies to channel topics: a channel's
// late subscriber catches up from history, and a channel message reaches
// MQTT subscribers only as the stored Message the bridge relays.

// opKind is what a publish is.
type opKind int

const (
	opTelemetry opKind = iota + 1
	opHeartbeat
	opStatus
	opCommandResult
	opChannel
)

// publishOp is a parsed publish, ready for its service.
type publishOp struct {
	kind      opKind
	point     device.TelemetryPoint
	heartbeat device.Heartbeat
	payload   []byte // opStatus: the status as sent
	result    device.CommandResult
	message   wire.Publish
}

// forward reports whether mochi delivers the packet itself once the
// service accepted it (device topics). A channel message is delivered by
// the bridge from the stored Message instead.
func (op publishOp) forward() bool { return op.kind != opChannel }

// retainable reports whether the packet may be retained: a device status.
func (op publishOp) retainable() bool { return op.kind == opStatus }

// parsePublish checks that who may publish to topicName and decodes the
// payload for the service it goes to.
func parsePublish(who unhidra.Identity, topicName string, payload []byte) (publishOp, error) {
	t := parseTopic(topicName)
	var (
		op  publishOp
		err error
	)
	switch {
	case t.kind == topicDevice && who.IsDevice() && t.id == who.Principal.ID:
		switch t.sub {
		case subTelemetry:
			op.kind = opTelemetry
			op.point, err = device.ParseTelemetry(payload)
		case subHeartbeat:
			op.kind = opHeartbeat
			op.heartbeat, err = device.ParseHeartbeat(payload)
		case subStatus:
			op.kind = opStatus
			op.payload = payload
			_, err = device.ParseStatus(payload)
		case subCommandResult:
			op.kind = opCommandResult
			op.result, err = device.ParseCommandResult(payload)
		default:
			err = unhidra.Errorf(unhidra.EFORBIDDEN, "topic not allowed")
		}
	case t.kind == topicChannel && t.literal && t.sub == subMessages && !who.IsDevice():
		op.kind = opChannel
		if op.message, err = decodeChannelPublish(payload); err == nil {
			op.message.Channel = t.id
		}
	default:
		err = unhidra.Errorf(unhidra.EFORBIDDEN, "topic not allowed")
	}
	return op, err
}

// applyPublish hands a parsed publish to its service. QoS 0 telemetry may
// take the fleet's early-return path (there is no ack to give).
func (s *Server) applyPublish(ctx context.Context, who unhidra.Identity, op publishOp, qos byte) error {
	switch op.kind {
	case opTelemetry:
		if qos == 0 && s.noWait != nil {
			// Queue the point and let the read loop go on (bounded; see
			// device.Fleet.TelemetryNoWait).
			queued, err := s.noWait.TelemetryNoWait(ctx, who, op.point)
			if err == nil {
				if queued {
					s.m.qos0Queued.Inc()
				} else {
					s.m.qos0Waited.Inc()
				}
			}
			return err
		}
		_, err := s.deps.Fleet.Telemetry(ctx, who, op.point)
		return err
	case opHeartbeat:
		return s.deps.Fleet.Heartbeat(ctx, who, op.heartbeat)
	case opStatus:
		return s.deps.Fleet.Status(ctx, who, op.payload)
	case opCommandResult:
		return s.deps.Fleet.CommandResult(ctx, who, op.result)
	case opChannel:
		if s.deps.Chat == nil {
			return unhidra.Errorf(unhidra.EFORBIDDEN, "channels are not available over MQTT here")
		}
		_, err := s.deps.Chat.Publish(ctx, who, op.message)
		return err
	}
	return unhidra.Errorf(unhidra.EFORBIDDEN, "topic not allowed")
}
