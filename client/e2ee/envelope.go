package e2ee

import (
	"encoding/json"
	"fmt"
)

// Envelope algorithms, the "alg" of a channel message's e2ee object.
const (
	AlgMegolm = "megolm.v1"
	AlgOlm    = "olm.v1"
)

// GroupEnvelope is the e2ee object of a group message in a channel.
type GroupEnvelope struct {
	V          int    `json:"v"`
	Alg        string `json:"alg"`
	SenderKey  string `json:"sender_key"`
	DeviceID   string `json:"device_id"`
	SessionID  string `json:"session_id"`
	Ciphertext string `json:"ciphertext"`
}

// KeyShareEnvelope is the e2ee object of a room-key share: one 1:1
// ciphertext per recipient device, keyed by its Curve25519 identity key.
type KeyShareEnvelope struct {
	V          int                   `json:"v"`
	Alg        string                `json:"alg"`
	SenderKey  string                `json:"sender_key"`
	DeviceID   string                `json:"device_id"`
	Ciphertext map[string]OlmMessage `json:"ciphertext"`
}

// EnvelopeAlg reads the "alg" of an e2ee object, to choose between
// OpenGroupMessage and OpenRoomKeyShare.
func EnvelopeAlg(raw []byte) (string, error) {
	var head struct {
		V   int    `json:"v"`
		Alg string `json:"alg"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return "", fmt.Errorf("%w: %v", ErrEnvelope, err)
	}
	if head.V != 1 || (head.Alg != AlgMegolm && head.Alg != AlgOlm) {
		return "", fmt.Errorf("%w: v %d alg %q", ErrEnvelope, head.V, head.Alg)
	}
	return head.Alg, nil
}

// SealGroupMessage encrypts plaintext (the JSON content: text or file) with
// this device's group session for its channel.
func (a *Account) SealGroupMessage(g *OutboundGroup, plaintext []byte) (GroupEnvelope, error) {
	ct, err := g.Encrypt(plaintext)
	if err != nil {
		return GroupEnvelope{}, err
	}
	return GroupEnvelope{
		V: 1, Alg: AlgMegolm, SenderKey: a.Identity().Curve25519, DeviceID: a.deviceID,
		SessionID: g.SessionID(), Ciphertext: ct,
	}, nil
}

// OpenGroupMessage decrypts a group envelope with the inbound session the
// caller looked up by (env.SenderKey, env.SessionID); it refuses an
// envelope that names another sender or session than g.
func OpenGroupMessage(env GroupEnvelope, g *InboundGroup) ([]byte, uint32, error) {
	if env.V != 1 || env.Alg != AlgMegolm {
		return nil, 0, fmt.Errorf("%w: v %d alg %q", ErrEnvelope, env.V, env.Alg)
	}
	if env.SenderKey != g.SenderKey() || env.SessionID != g.SessionID() {
		return nil, 0, fmt.Errorf("%w: sender or session does not match the group session", ErrEnvelope)
	}
	if _, dev := g.Sender(); dev != env.DeviceID {
		return nil, 0, fmt.Errorf("%w: device %q is not the session's sender %q", ErrEnvelope, env.DeviceID, dev)
	}
	return g.Decrypt(env.Ciphertext)
}

// ShareRoomKey builds the room-key share of g for every device in to, each
// entry encrypted over that device's 1:1 session. Post it in g's channel
// before the first message the recipients should read.
func (a *Account) ShareRoomKey(g *OutboundGroup, to []*Session) (KeyShareEnvelope, error) {
	pt, err := json.Marshal(g.RoomKey(a.user, a.deviceID))
	if err != nil {
		return KeyShareEnvelope{}, err
	}
	env := KeyShareEnvelope{
		V: 1, Alg: AlgOlm, SenderKey: a.Identity().Curve25519, DeviceID: a.deviceID,
		Ciphertext: make(map[string]OlmMessage, len(to)),
	}
	for _, s := range to {
		m, err := s.Encrypt(pt)
		if err != nil {
			return KeyShareEnvelope{}, err
		}
		env.Ciphertext[s.TheirIdentityKey()] = m
	}
	return env, nil
}

// OpenRoomKeyShare reads this device's entry of a room-key share posted in
// channel. existing is the 1:1 session with env.SenderKey, or nil: then the
// entry must be a prekey message and a new inbound session is made and
// returned (persist it and the account), as it is when the entry is a
// prekey message of a session other than existing. The share is refused unless it
// names channel and the envelope's device as its sender.
func (a *Account) OpenRoomKeyShare(env KeyShareEnvelope, channel string, existing *Session) (*InboundGroup, *Session, error) {
	if env.V != 1 || env.Alg != AlgOlm {
		return nil, nil, fmt.Errorf("%w: v %d alg %q", ErrEnvelope, env.V, env.Alg)
	}
	m, ok := env.Ciphertext[a.Identity().Curve25519]
	if !ok {
		return nil, nil, fmt.Errorf("%w: the share has no entry for this device", ErrEnvelope)
	}
	var (
		s   = existing
		pt  []byte
		err error
	)
	if s != nil && s.TheirIdentityKey() != env.SenderKey {
		return nil, nil, fmt.Errorf("%w: the session given is not with the share's sender", ErrEnvelope)
	}
	if s != nil && m.Type == MsgPreKey && !s.matchesPreKey(m.Body) {
		// The sender started a new session (it lost its state, or two
		// sessions crossed): this prekey message opens that one.
		s = nil
	}
	if s == nil {
		s, pt, err = a.NewInboundSession(env.SenderKey, m)
	} else {
		pt, err = s.Decrypt(m)
	}
	if err != nil {
		return nil, nil, err
	}
	var rk RoomKey
	if err := json.Unmarshal(pt, &rk); err != nil {
		return nil, nil, fmt.Errorf("%w: room key: %v", ErrEnvelope, err)
	}
	if rk.Channel != channel || rk.SenderDevice != env.DeviceID {
		return nil, nil, fmt.Errorf("%w: room key for channel %q from %q posted in %q by %q",
			ErrEnvelope, rk.Channel, rk.SenderDevice, channel, env.DeviceID)
	}
	g, err := NewInboundGroup(rk, env.SenderKey)
	if err != nil {
		return nil, nil, err
	}
	return g, s, nil
}
