package wire

import (
	"encoding/json"
	"time"
)

// Message is a stored channel message, the same on every transport
// (docs/protocol.md#message). Exactly one of Text, Data and E2EE is set, except on a
// tombstone (Deleted), which carries none.
type Message struct {
	ID          string          `json:"id"`
	Channel     string          `json:"channel"`
	Offset      int64           `json:"offset"`
	Sender      Principal       `json:"sender"`
	CreatedAt   time.Time       `json:"created_at"`
	ClientMsgID string          `json:"client_msg_id,omitempty"`
	ThreadID    string          `json:"thread_id,omitempty"`
	Text        *string         `json:"text,omitempty"`
	Data        json.RawMessage `json:"data,omitempty"`
	E2EE        json.RawMessage `json:"e2ee,omitempty"`
	EditedAt    *time.Time      `json:"edited_at,omitempty"`
	Deleted     bool            `json:"deleted,omitempty"`
}

// Publish is what a client sends to post a message: the body of the
// WebSocket `publish` frame, of POST /api/v1/channels/{id}/messages and of an
// MQTT PUBLISH to unhidra/channels/C/messages (where Channel comes from the
// topic). Exactly one of Text, Data and E2EE must be set.
type Publish struct {
	Channel     string          `json:"channel"`
	ClientMsgID string          `json:"client_msg_id,omitempty"`
	ThreadID    string          `json:"thread_id,omitempty"`
	Text        *string         `json:"text,omitempty"`
	Data        json.RawMessage `json:"data,omitempty"`
	E2EE        json.RawMessage `json:"e2ee,omitempty"`
}

// Ack confirms that a published message is durably stored.
type Ack struct {
	Channel   string `json:"channel"`
	MessageID string `json:"message_id"`
	Offset    int64  `json:"offset"`
}

// Limits on message content, shared by every transport.
const (
	MaxTextBytes       = 16 << 10 // 16 KiB of UTF-8 text
	MaxDataBytes       = 32 << 10 // 32 KiB of JSON data or e2ee envelope
	MaxClientMsgIDLen  = 128
	MaxChannelIDLen    = 128
	MaxFrameBytes      = 64 << 10 // inbound WebSocket text frame
	MaxMQTTPacketBytes = 64 << 10
)
