// Package broker is the contract of Unhidra's message bus: topics carrying
// typed events between the services of one node and, later, across nodes
// (Redis Streams). The in-process implementation is internal/inmem; the
// conformance suite every implementation passes is internal/brokertest.
//
// The domain publishes events, not transport frames: each transport encodes
// its own frame from an event, once per node (the WebSocket hub encodes a
// `message` frame once and fans the bytes out; the MQTT bridge encodes the
// message alone). Encoding an event across a process boundary is the
// adapter's job.
//
// Contract for every implementation:
//   - Publish delivers to every current subscriber of the topic on every node,
//     in publish order per topic as seen from one publisher.
//   - Handlers run on the broker's own goroutine(s); they must not block
//     (enqueue and return). A handler must not call Subscribe or the
//     unsubscribe function of the same topic synchronously.
//   - Events are shared between subscribers and must not be modified, by
//     the publisher after Publish either.
//   - Publish with an ended context returns its error and delivers nothing.
//   - A subscriber receives an event equal to the one published (an adapter
//     that crosses a process boundary round-trips every field).
//
// Topics are named by the functions below so that every package agrees.
package broker

import (
	"context"
	"encoding/json"
	"time"

	"github.com/unhidra/unhidra/wire"
)

// Broker publishes events on topics and delivers them to subscribers.
type Broker interface {
	Publish(ctx context.Context, topic string, ev *Event) error
	// Subscribe registers h for topic and returns a function that removes it.
	Subscribe(topic string, h func(ev *Event)) (unsubscribe func(), err error)
}

// Publisher is the publishing half of a Broker, what the domain services
// need.
type Publisher interface {
	Publish(ctx context.Context, topic string, ev *Event) error
}

// Kind says what an Event carries.
type Kind uint8

// Event kinds. Channel events travel on ChannelTopic, commands on
// DeviceCommandTopic, revocations on RevocationTopic.
const (
	// Message is a stored message: Channel, Offset, Message.
	Message Kind = iota + 1
	// MessageUpdated is an edited message: Channel, Message.
	MessageUpdated
	// MessageDeleted is a deleted message (its tombstone): Channel, Message.
	MessageDeleted
	// Typing says User is typing in Channel (not stored).
	Typing
	// Presence is User's presence: Status and, when offline, LastSeen. It is
	// published on the channel topic of every channel that shows it.
	Presence
	// MemberRemoved ends User's access to Channel: transports drop the
	// user's subscriptions and cached read permissions of it.
	MemberRemoved
	// ChannelDeleted ends every subscription of Channel.
	ChannelDeleted
	// Command is a command for the device of the topic: Command.
	Command
	// Revoke ends live sessions: Revocation.
	Revoke
	// KeyChange says that User's device DeviceID changed its end-to-end
	// identity key or was deleted (internal/keys); published on the topic
	// of every channel of User.
	KeyChange
)

var kindNames = [...]string{
	Message:        wire.TypeMessage,
	MessageUpdated: wire.TypeMessageUpdated,
	MessageDeleted: wire.TypeMessageDeleted,
	Typing:         wire.TypeTyping,
	Presence:       wire.TypePresence,
	MemberRemoved:  wire.TypeMemberRemoved,
	ChannelDeleted: wire.TypeChannelDeleted,
	Command:        wire.TypeCommand,
	Revoke:         "revocation",
	KeyChange:      wire.TypeKeyChange,
}

// String returns the kind's name (the wire frame type where it has one).
func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return "unknown"
}

// Event is what travels on a topic. Which fields are set depends on Kind.
type Event struct {
	Kind    Kind
	Channel string
	// Offset is the message's offset in Channel (Message only; > 0).
	Offset  int64
	Message *wire.Message
	// User is the subject of Typing, Presence and MemberRemoved.
	User       string
	DeviceID   string     // KeyChange: the user's client device
	Status     string     // Presence
	LastSeen   *time.Time // Presence, when offline
	Command    *DeviceCommand
	Revocation *Revocation
}

// DeviceCommand is a command offered to a device.
type DeviceCommand struct {
	ID     string
	Name   string
	Params json.RawMessage
}

// Frame returns the protocol frame that reports ev to a client (the
// structs of package wire, as WebSocket clients receive them), or nil for
// a kind that has none (Revoke).
func (ev *Event) Frame() any {
	switch ev.Kind {
	case Message:
		return wire.MessageFrame{Type: wire.TypeMessage, Channel: ev.Channel, Offset: ev.Offset, Message: *ev.Message}
	case MessageUpdated, MessageDeleted:
		return wire.MessageChangeFrame{Type: ev.Kind.String(), Channel: ev.Channel, Message: *ev.Message}
	case Typing:
		return wire.TypingFrame{Type: wire.TypeTyping, Channel: ev.Channel, User: ev.User}
	case Presence:
		return wire.PresenceFrame{Type: wire.TypePresence, User: ev.User, Status: ev.Status, LastSeen: ev.LastSeen}
	case MemberRemoved:
		return wire.MemberRemovedFrame{Type: wire.TypeMemberRemoved, Channel: ev.Channel, User: ev.User}
	case ChannelDeleted:
		return wire.ChannelDeletedFrame{Type: wire.TypeChannelDeleted, Channel: ev.Channel}
	case KeyChange:
		return wire.KeyChangeFrame{Type: wire.TypeKeyChange, Channel: ev.Channel, User: ev.User, DeviceID: ev.DeviceID}
	case Command:
		return wire.CommandFrame{Type: wire.TypeCommand, CommandID: ev.Command.ID, Name: ev.Command.Name, Params: ev.Command.Params}
	}
	return nil
}

// ChannelTopic carries the events of channel id: Message, MessageUpdated,
// MessageDeleted, Typing, Presence, MemberRemoved and ChannelDeleted.
func ChannelTopic(channelID string) string { return "chan." + channelID }

// DeviceCommandTopic carries Command events for one device, to whichever
// transport it is connected on.
func DeviceCommandTopic(deviceID string) string { return "devcmd." + deviceID }

// RevocationTopic carries Revoke events from the auth and device services
// to every transport, which close the affected live sessions (WebSocket
// 4003, MQTT disconnect) within 5 s.
const RevocationTopic = "revocations"

// Revocation kinds.
const (
	RevokeSession    = "session"     // ID is a session id (logout)
	RevokeUser       = "user"        // ID is a username: every session of the user (disable)
	RevokeUserExcept = "user_except" // ID is a username, Except a session id to keep (password change)
	RevokeDevice     = "device"      // ID is a device id (revocation, key rotation)
)

// Revocation says which live sessions end.
type Revocation struct {
	Kind   string `json:"kind"`
	ID     string `json:"id"`
	Except string `json:"except,omitempty"`
}

// RevocationEvent wraps r as a Revoke event.
func RevocationEvent(r Revocation) *Event { return &Event{Kind: Revoke, Revocation: &r} }
