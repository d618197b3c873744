package wire

import (
	"encoding/json"
	"time"
)

// Server frame types (server → client).
const (
	TypeWelcome        = "welcome"
	TypeSubscribed     = "subscribed"
	TypeUnsubscribed   = "unsubscribed"
	TypeAck            = "ack"
	TypeMessage        = "message"
	TypeMessageUpdated = "message_updated"
	TypeMessageDeleted = "message_deleted"
	TypePresence       = "presence"
	TypeTyping         = "typing"
	TypeCommand        = "command"
	TypeHeartbeatAck   = "heartbeat_ack"
	TypeRefreshed      = "refreshed"
	TypeError          = "error"
	// TypeMemberRemoved and TypeChannelDeleted are published on a channel's
	// topic when someone loses the right to read it; gateways end the
	// affected subscriptions with an `unsubscribed` frame.
	TypeMemberRemoved  = "member_removed"
	TypeChannelDeleted = "channel_deleted"
	// TypeKeyChange says a member's end-to-end identity key changed.
	TypeKeyChange = "key_change"
)

// Client frame types (client → server).
const (
	TypeSubscribe     = "subscribe"
	TypeUnsubscribe   = "unsubscribe"
	TypePublish       = "publish"
	TypeHeartbeat     = "heartbeat"
	TypeTelemetry     = "telemetry"
	TypeCommandResult = "command_result"
	TypeRefresh       = "refresh"
	// TypeTyping and TypePresence are also client frame types.
)

// Welcome is sent right after the upgrade.
type Welcome struct {
	Type              string    `json:"type"`
	SessionID         string    `json:"session_id"`
	Principal         Principal `json:"principal"`
	ServerTime        time.Time `json:"server_time"`
	PingInterval      int       `json:"ping_interval"`
	HeartbeatInterval int       `json:"heartbeat_interval"`
}

// Subscribed answers a subscribe frame.
type Subscribed struct {
	Type      string          `json:"type"`
	ID        json.RawMessage `json:"id,omitempty"`
	Channel   string          `json:"channel"`
	Offset    int64           `json:"offset"`
	Recovered bool            `json:"recovered"`
}

// Unsubscribed answers an unsubscribe frame. The server also sends it
// unasked (no ID) when it ends a subscription itself; Reason then says why
// (UnsubscribedRemoved, UnsubscribedDeleted).
type Unsubscribed struct {
	Type    string          `json:"type"`
	ID      json.RawMessage `json:"id,omitempty"`
	Channel string          `json:"channel"`
	Reason  string          `json:"reason,omitempty"`
}

// Reasons of a server-initiated unsubscribed frame.
const (
	UnsubscribedRemoved = "removed" // the user is no longer a member
	UnsubscribedDeleted = "deleted" // the channel was deleted
)

// MemberRemovedFrame says that User left or was removed from a channel they
// may no longer read (private channels).
type MemberRemovedFrame struct {
	Type    string `json:"type"`
	Channel string `json:"channel"`
	User    string `json:"user"`
}

// KeyChangeFrame says that User's client device DeviceID changed its
// end-to-end identity key or was deleted: members re-fetch its keys before
// encrypting to it again.
type KeyChangeFrame struct {
	Type     string `json:"type"`
	Channel  string `json:"channel"`
	User     string `json:"user"`
	DeviceID string `json:"device_id"`
}

// ChannelDeletedFrame says that a channel was deleted.
type ChannelDeletedFrame struct {
	Type    string `json:"type"`
	Channel string `json:"channel"`
}

// AckFrame answers publish and telemetry frames once stored.
type AckFrame struct {
	Type string          `json:"type"`
	ID   json.RawMessage `json:"id,omitempty"`
	Ack
}

// MessageFrame delivers a new message of a subscribed channel. Offset repeats
// the message's offset at the top level so receivers can order and dedupe
// without decoding the message.
type MessageFrame struct {
	Type    string  `json:"type"`
	Channel string  `json:"channel"`
	Offset  int64   `json:"offset"`
	Message Message `json:"message"`
}

// MessageChangeFrame is message_updated or message_deleted.
type MessageChangeFrame struct {
	Type    string  `json:"type"`
	Channel string  `json:"channel"`
	Message Message `json:"message"`
}

// PresenceFrame reports a user's presence.
type PresenceFrame struct {
	Type     string     `json:"type"`
	User     string     `json:"user"`
	Status   string     `json:"status"`
	LastSeen *time.Time `json:"last_seen,omitempty"`
}

// TypingFrame reports that a user is typing in a channel (not stored).
type TypingFrame struct {
	Type    string `json:"type"`
	Channel string `json:"channel"`
	User    string `json:"user"`
}

// CommandFrame delivers a command to a device.
type CommandFrame struct {
	Type      string          `json:"type"`
	CommandID string          `json:"command_id"`
	Name      string          `json:"name"`
	Params    json.RawMessage `json:"params,omitempty"`
}

// HeartbeatAck answers a device heartbeat.
type HeartbeatAck struct {
	Type       string          `json:"type"`
	ID         json.RawMessage `json:"id,omitempty"`
	ServerTime time.Time       `json:"server_time"`
}

// Refreshed answers an in-band token refresh.
type Refreshed struct {
	Type      string          `json:"type"`
	ID        json.RawMessage `json:"id,omitempty"`
	ExpiresAt time.Time       `json:"expires_at"`
}

// ErrorFrame reports a failed client frame; Code is one of the root error
// codes (invalid, unauthorized, forbidden, not_found, conflict, too_large,
// rate_limited, unavailable, internal).
type ErrorFrame struct {
	Type    string          `json:"type"`
	ID      json.RawMessage `json:"id,omitempty"`
	Code    string          `json:"code"`
	Message string          `json:"message"`
}

// Presence statuses.
const (
	StatusOnline  = "online"
	StatusAway    = "away"
	StatusDND     = "dnd"
	StatusOffline = "offline"
)
