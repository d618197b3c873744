package e2ee

import (
	"fmt"
	"sync"

	"maunium.net/go/mautrix/crypto/goolm/message"
	"maunium.net/go/mautrix/crypto/goolm/session"

	"github.com/unhidra/unhidra/wire/e2eekeys"
)

// MaxSkip is how many messages a group message may skip — past the highest
// index decrypted, or past the first index of the room key when none was —
// and still be decrypted. Megolm could derive any later key, but a
// message claiming to be thousands ahead is either a bug or an attempt to
// make us skip; refusing it keeps the accepted window explicit.
const MaxSkip = 1000

// RoomKey is the plaintext of a room-key share: what a member needs to
// decrypt one sender's group session.
type RoomKey struct {
	Type         string `json:"type"` // "room_key"
	Channel      string `json:"channel"`
	SessionID    string `json:"session_id"`
	SessionKey   string `json:"session_key"`
	SenderUser   string `json:"sender_user"`
	SenderDevice string `json:"sender_device"`
}

// OutboundGroup is this device's Megolm session for one channel: every
// message it sends there is encrypted with it, and its key goes to each
// member device in a room-key share. Rotate it (a new OutboundGroup, shared
// again) whenever a member leaves, so a removed member's key stops at the
// messages sent before. Safe for concurrent use.
type OutboundGroup struct {
	channel string

	mu sync.Mutex
	s  *session.MegolmOutboundSession
}

// NewOutboundGroup starts a fresh group session for channel.
func NewOutboundGroup(channel string) (*OutboundGroup, error) {
	if channel == "" {
		return nil, fmt.Errorf("%w: empty channel", ErrEnvelope)
	}
	s, err := session.NewMegolmOutboundSession()
	if err != nil {
		return nil, fmt.Errorf("e2ee: new group session: %w", err)
	}
	return &OutboundGroup{channel: channel, s: s}, nil
}

// Channel is the channel the session encrypts for.
func (g *OutboundGroup) Channel() string { return g.channel }

// SessionID identifies the session (its public signing key).
func (g *OutboundGroup) SessionID() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return string(g.s.ID())
}

// MessageIndex is the index the next message will carry.
func (g *OutboundGroup) MessageIndex() uint32 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return uint32(g.s.MessageIndex())
}

// RoomKey is the share for the session at its current index: members who
// receive it can read messages from now on, not those sent before.
func (g *OutboundGroup) RoomKey(senderUser, senderDevice string) RoomKey {
	g.mu.Lock()
	defer g.mu.Unlock()
	return RoomKey{
		Type: "room_key", Channel: g.channel,
		SessionID: string(g.s.ID()), SessionKey: g.s.Key(),
		SenderUser: senderUser, SenderDevice: senderDevice,
	}
}

// Encrypt seals plaintext and advances the ratchet.
func (g *OutboundGroup) Encrypt(plaintext []byte) (string, error) {
	if len(plaintext) == 0 {
		return "", fmt.Errorf("e2ee: encrypt: empty plaintext")
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	ct, err := g.s.Encrypt(plaintext)
	if err != nil {
		return "", fmt.Errorf("e2ee: group encrypt: %w", err)
	}
	return string(ct), nil
}

func (g *OutboundGroup) pickle() []byte {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.s.PickleLibOlm()
}

// InboundGroup decrypts one sender's group session in one channel. It
// refuses a message index it already decrypted (replay) and one that would
// skip more than MaxSkip messages; a failed Decrypt changes nothing. Safe for
// concurrent use.
type InboundGroup struct {
	channel, senderKey, senderUser, senderDevice string

	mu      sync.Mutex
	s       *session.MegolmInboundSession
	seen    map[uint32]struct{}
	highest uint32 // highest index decrypted, when any is set
	any     bool
}

// NewInboundGroup builds the receiving side from a room key that arrived
// over a 1:1 session with the device whose identity key is senderKey. The
// caller has checked that the share was posted in rk.Channel.
func NewInboundGroup(rk RoomKey, senderKey string) (*InboundGroup, error) {
	if rk.Type != "room_key" || rk.Channel == "" {
		return nil, fmt.Errorf("%w: not a room key", ErrEnvelope)
	}
	if err := checkSenderKey(senderKey); err != nil {
		return nil, err
	}
	s, err := session.NewMegolmInboundSession([]byte(rk.SessionKey))
	if err != nil {
		return nil, fmt.Errorf("%w: room key: %v", ErrEnvelope, err)
	}
	if string(s.ID()) != rk.SessionID {
		return nil, fmt.Errorf("%w: room key's session id does not match its key", ErrEnvelope)
	}
	return &InboundGroup{
		channel: rk.Channel, senderKey: senderKey,
		senderUser: rk.SenderUser, senderDevice: rk.SenderDevice,
		s: s, seen: map[uint32]struct{}{},
	}, nil
}

// Channel is the channel the session belongs to.
func (g *InboundGroup) Channel() string { return g.channel }

// SenderKey is the Curve25519 identity key of the sending device.
func (g *InboundGroup) SenderKey() string { return g.senderKey }

// Sender is the user and device the room key named as its sender.
func (g *InboundGroup) Sender() (user, device string) { return g.senderUser, g.senderDevice }

// SessionID identifies the session.
func (g *InboundGroup) SessionID() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return string(g.s.ID())
}

// FirstKnownIndex is the first message index this session can decrypt.
func (g *InboundGroup) FirstKnownIndex() uint32 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.s.FirstKnownIndex()
}

// Decrypt opens a group message and returns its plaintext and index.
func (g *InboundGroup) Decrypt(ciphertext string) ([]byte, uint32, error) {
	ct, err := canonical(ciphertext)
	if err != nil {
		return nil, 0, err
	}
	raw, _ := e2eekeys.B64.DecodeString(ct)
	var msg message.GroupMessage
	if err := msg.Decode(raw); err != nil || !msg.HasMessageIndex {
		return nil, 0, fmt.Errorf("%w: malformed group message", ErrDecrypt)
	}
	idx := msg.MessageIndex

	g.mu.Lock()
	defer g.mu.Unlock()
	// Both checks come before any cryptography: they only refuse, and a
	// message is marked seen only once it authenticated and decrypted.
	if _, dup := g.seen[idx]; dup {
		return nil, 0, fmt.Errorf("%w: session %s index %d", ErrReplay, g.s.ID(), idx)
	}
	next := g.s.FirstKnownIndex()
	if g.any {
		next = g.highest + 1
	}
	if idx > next && idx-next > MaxSkip {
		return nil, 0, fmt.Errorf("%w: index %d would skip %d messages after %d (at most %d)", ErrTooFarAhead, idx, idx-next, next, MaxSkip)
	}
	// goolm advances its latest ratchet once the signature verified, even
	// if decryption then fails: restore it so a failure changes nothing.
	snapshot := g.s.PickleLibOlm()
	pt, got, err := g.s.Decrypt([]byte(ct))
	if err != nil {
		restored := &session.MegolmInboundSession{}
		if rerr := restored.UnpickleLibOlm(snapshot); rerr != nil {
			return nil, 0, fmt.Errorf("e2ee: restoring group session after a failed decrypt: %w", rerr)
		}
		g.s = restored
		return nil, 0, fmt.Errorf("%w: %v", ErrDecrypt, err)
	}
	if uint32(got) != idx {
		return nil, 0, fmt.Errorf("%w: index mismatch", ErrDecrypt)
	}
	g.seen[idx] = struct{}{}
	if !g.any || idx > g.highest {
		g.highest, g.any = idx, true
	}
	return pt, idx, nil
}
