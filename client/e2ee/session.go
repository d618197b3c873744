package e2ee

import (
	"fmt"
	"sync"

	"maunium.net/go/mautrix/crypto/goolm/session"
	"maunium.net/go/mautrix/id"
)

// Olm message types, as in the room-key share's {"type": 0|1}.
const (
	// MsgPreKey carries the handshake keys; sent until the peer replied.
	MsgPreKey = 0
	// MsgNormal is a Double Ratchet message of an established session.
	MsgNormal = 1
)

// Out-of-order limits of 1:1 sessions. They are libolm's, so that both
// implementations accept the same messages: a message may skip at most
// MaxOlmGap messages of its chain, and the keys of the OlmSkippedKeys most
// recent skipped messages are kept for late arrivals; older ones are
// refused. 1:1 sessions carry room keys, a handful of messages, so the
// small window is no limit in practice.
const (
	MaxOlmGap      = 2000
	OlmSkippedKeys = 40
)

// OlmMessage is a 1:1 ciphertext as it travels in a room-key share.
type OlmMessage struct {
	Type int    `json:"type"`
	Body string `json:"body"`
}

// Session is a 1:1 Olm session (X3DH-style handshake, then the Double
// Ratchet) with one peer device. Safe for concurrent use.
//
// A Decrypt that fails leaves the session exactly as it was: the state is
// snapshotted before and restored after a failure, whatever the failing
// check, so a forged or corrupted message cannot desynchronise a session.
type Session struct {
	theirKey string

	mu sync.Mutex
	s  *session.OlmSession
}

func newSession(s *session.OlmSession, theirKey string) *Session {
	return &Session{s: s, theirKey: theirKey}
}

// ID identifies the session (the same on both ends).
func (s *Session) ID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.s.ID())
}

// TheirIdentityKey is the peer device's Curve25519 identity key.
func (s *Session) TheirIdentityKey() string { return s.theirKey }

// Encrypt seals plaintext for the peer.
func (s *Session) Encrypt(plaintext []byte) (OlmMessage, error) {
	if len(plaintext) == 0 {
		return OlmMessage{}, fmt.Errorf("e2ee: encrypt: empty plaintext")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, body, err := s.s.Encrypt(plaintext)
	if err != nil {
		return OlmMessage{}, fmt.Errorf("e2ee: encrypt: %w", err)
	}
	return OlmMessage{Type: int(t), Body: string(body)}, nil
}

// Decrypt opens a message from the peer. A replayed message is refused
// (its key was used and deleted), as is any message that fails the MAC.
func (s *Session) Decrypt(m OlmMessage) ([]byte, error) {
	if m.Type != MsgPreKey && m.Type != MsgNormal {
		return nil, fmt.Errorf("%w: unknown message type %d", ErrDecrypt, m.Type)
	}
	body, err := canonical(m.Body)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if m.Type == MsgPreKey {
		// The handshake keys outside the ratchet message are not covered
		// by its MAC: insist they are this session's own, so no altered
		// prekey message is accepted.
		ok, err := s.s.MatchesInboundSessionFrom(s.theirKey, body)
		if err != nil || !ok {
			return nil, fmt.Errorf("%w: prekey message does not belong to this session", ErrDecrypt)
		}
	}
	snapshot := s.s.PickleLibOlm()
	pt, err := s.s.Decrypt(body, id.OlmMsgType(m.Type))
	if err != nil {
		restored := session.NewOlmSession()
		if rerr := restored.UnpickleLibOlm(snapshot); rerr != nil {
			return nil, fmt.Errorf("e2ee: restoring session after a failed decrypt: %w", rerr)
		}
		s.s = restored
		return nil, fmt.Errorf("%w: %v", ErrDecrypt, err)
	}
	return pt, nil
}

func (s *Session) matchesPreKey(body string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ok, err := s.s.MatchesInboundSessionFrom(s.theirKey, body)
	return err == nil && ok
}

func (s *Session) pickle() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.s.PickleLibOlm()
}

func unpickleSession(theirKey string, p []byte) (*Session, error) {
	os := session.NewOlmSession()
	if err := os.UnpickleLibOlm(p); err != nil {
		return nil, fmt.Errorf("e2ee: session: %w", err)
	}
	return newSession(os, theirKey), nil
}
