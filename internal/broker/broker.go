// Package broker is the contract of Unhidra's message bus: topics carrying
// opaque payloads between the services of one node and, later, across nodes
// (Redis Streams). The in-process implementation is internal/inmem.
//
// Contract for every implementation:
//   - Publish delivers to every current subscriber of the topic on every node,
//     in publish order per topic as seen from one publisher.
//   - Handlers run on the broker's own goroutine(s); they must not block
//     (enqueue and return). A handler must not call Subscribe or the
//     unsubscribe function of the same topic synchronously.
//   - Payloads are shared between subscribers and must not be modified.
//
// Topics are named by the functions below so that every package agrees.
package broker

import "context"

// Broker publishes payloads on topics and delivers them to subscribers.
type Broker interface {
	Publish(ctx context.Context, topic string, payload []byte) error
	// Subscribe registers h for topic and returns a function that removes it.
	Subscribe(topic string, h func(payload []byte)) (unsubscribe func(), err error)
}

// ChannelTopic carries ready-to-send server frames (JSON) for channel id:
// message, message_updated, message_deleted, typing and presence frames.
// Gateways fan them out unchanged to local subscribers.
func ChannelTopic(channelID string) string { return "chan." + channelID }

// DeviceCommandTopic carries `command` frames (JSON) for one device, to
// whichever transport it is connected on.
func DeviceCommandTopic(deviceID string) string { return "devcmd." + deviceID }

// RevocationTopic carries Revocation events (JSON) from the auth and device
// services to every transport, which close the affected live sessions
// (WebSocket 4003, MQTT disconnect) within 5 s.
const RevocationTopic = "revocations"

// Revocation kinds.
const (
	RevokeSession    = "session"     // ID is a session id (logout)
	RevokeUser       = "user"        // ID is a username: every session of the user (disable)
	RevokeUserExcept = "user_except" // ID is a username, Except a session id to keep (password change)
	RevokeDevice     = "device"      // ID is a device id (revocation, key rotation)
)

// Revocation is the payload of RevocationTopic.
type Revocation struct {
	Kind   string `json:"kind"`
	ID     string `json:"id"`
	Except string `json:"except,omitempty"`
}
