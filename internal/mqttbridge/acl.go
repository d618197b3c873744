package mqttbridge

import (
	"strings"

	"github.com/unhidra/unhidra"
)

// Topic layout (docs/protocol.md#mqtt-topics). Device D, channel C:
//
//	unhidra/devices/D/telemetry        D publishes
//	unhidra/devices/D/status           D publishes (retained allowed; the Will)
//	unhidra/devices/D/heartbeat        D publishes
//	unhidra/devices/D/commands         D subscribes
//	unhidra/devices/D/commands/result  D publishes
//	unhidra/channels/C/messages        users publish / subscribe
//	unhidra/channels/C/events          users subscribe (key_change)
const (
	topicRoot     = "unhidra"
	levelDevices  = "devices"
	levelChannels = "channels"
)

// Channel subtopics (after unhidra/channels/C/): Message JSON, and the
// channel's other events as their WebSocket frames (key_change).
const (
	subMessages = "messages"
	subEvents   = "events"
)

// Device subtopics (after unhidra/devices/D/).
const (
	subTelemetry     = "telemetry"
	subStatus        = "status"
	subHeartbeat     = "heartbeat"
	subCommands      = "commands"
	subCommandResult = "commands/result"
)

// DeviceTopic returns unhidra/devices/D/sub.
func DeviceTopic(deviceID, sub string) string {
	return topicRoot + "/" + levelDevices + "/" + deviceID + "/" + sub
}

// ChannelTopic returns unhidra/channels/C/messages.
func ChannelTopic(channel string) string {
	return topicRoot + "/" + levelChannels + "/" + channel + "/" + subMessages
}

// EventsTopic returns unhidra/channels/C/events, where channel C's
// key_change frames are relayed (read-only: nobody publishes there).
func EventsTopic(channel string) string {
	return topicRoot + "/" + levelChannels + "/" + channel + "/" + subEvents
}

// topic is a parsed topic name or filter.
type topic struct {
	kind    int    // topicOther, topicDevice, topicChannel
	id      string // device or channel id (may be a wildcard in a filter)
	sub     string // device subtopic (rest after the device id)
	literal bool   // id contains no wildcard
}

const (
	topicOther = iota
	topicDevice
	topicChannel
)

func hasWildcard(s string) bool { return strings.ContainsAny(s, "+#") }

// parseTopic splits a topic name or filter into the parts the ACL needs.
func parseTopic(t string) topic {
	rest, ok := strings.CutPrefix(t, topicRoot+"/")
	if !ok {
		return topic{}
	}
	kind, rest, ok := strings.Cut(rest, "/")
	if !ok {
		return topic{}
	}
	id, sub, _ := strings.Cut(rest, "/")
	if id == "" {
		return topic{}
	}
	switch kind {
	case levelDevices:
		if sub == "" && id != "#" {
			return topic{}
		}
		return topic{kind: topicDevice, id: id, sub: sub, literal: !hasWildcard(id)}
	case levelChannels:
		if sub != subMessages && sub != subEvents && id != "#" {
			return topic{}
		}
		return topic{kind: topicChannel, id: id, sub: sub, literal: !hasWildcard(id)}
	}
	return topic{}
}

// aclRequest is one ACL question, with the answers that need a lookup
// supplied as functions so the decision itself is pure (and fuzzed).
type aclRequest struct {
	who   unhidra.Identity
	topic string // a topic name (write, delivery) or a filter (subscribe)
	write bool
	// readsDevice reports whether the (user) caller may read device id's
	// topics (the read rule of its channel device:<id>).
	readsDevice func(deviceID string) bool
	// canRead reports whether the caller may read channel id.
	canRead func(channel string) bool
}

// allowed decides an ACL question (docs/protocol.md#mqtt-acl):
//
// Devices: publish only to their own telemetry, status, heartbeat and
// commands/result topics; subscribe only to filters inside their own
// unhidra/devices/D/ subtree; never $SYS, never another device, never a
// channel topic.
//
// Users: publish only to unhidra/channels/C/messages with a literal C (the
// chat service then decides whether they may post there); subscribe to
// unhidra/channels/C/messages and unhidra/channels/C/events for channels
// they may read (literal C, no wildcards across channels), and to unhidra/devices/D/… of devices whose
// channel device:D they may read (their own: the rule WebSocket subscribers
// of device:D get). Admins, who may read every device channel, may also use
// wildcards for the device level
// (unhidra/devices/+/telemetry, unhidra/devices/#) and read $SYS.
// Shared subscriptions ($share/…) are not offered.
func allowed(r aclRequest) bool {
	t := r.topic
	if t == "" || len(t) > maxTopicLen {
		return false
	}
	if strings.HasPrefix(t, "$") {
		return !r.write && !r.who.IsDevice() && r.who.IsAdmin() && strings.HasPrefix(t, "$SYS/")
	}
	p := parseTopic(t)
	if r.who.IsDevice() {
		if p.kind != topicDevice || !p.literal || p.id != r.who.Principal.ID {
			return false
		}
		if r.write {
			switch p.sub {
			case subTelemetry, subStatus, subHeartbeat, subCommandResult:
				return true
			}
			return false
		}
		return p.sub != ""
	}
	switch p.kind {
	case topicChannel:
		if !p.literal || (p.sub != subMessages && p.sub != subEvents) {
			return false
		}
		if r.write {
			return p.sub == subMessages
		}
		return r.canRead != nil && r.canRead(p.id)
	case topicDevice:
		if r.write {
			return false
		}
		if r.who.IsAdmin() {
			return true
		}
		return p.literal && r.readsDevice != nil && r.readsDevice(p.id)
	}
	return false
}

// maxTopicLen bounds topic names and filters we look at.
const maxTopicLen = 512
