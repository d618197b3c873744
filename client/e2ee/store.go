package e2ee

import (
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/chacha20poly1305"
	"maunium.net/go/mautrix/crypto/goolm/session"
)

// ErrSealed: a sealed store did not open — wrong passphrase, or the bytes
// were altered (the two cannot be told apart, by design).
var ErrSealed = errors.New("e2ee: wrong passphrase or corrupted key store")

// KDFParams are the Argon2id costs of the passphrase-derived key. They are
// written in the sealed blob, so stores sealed with other costs still open.
type KDFParams struct {
	Time      uint32 // passes
	MemoryKiB uint32
	Threads   uint8
}

// DefaultKDF follows RFC 9106's second recommended option (64 MiB, three
// passes), sized for a phone or a laptop unlocking once per start.
var DefaultKDF = KDFParams{Time: 3, MemoryKiB: 64 * 1024, Threads: 4}

// Bounds on costs read from a blob: a tampered header must not make Open
// allocate gigabytes or spin for minutes before the tag check refuses it.
const (
	maxKDFTime      = 16
	maxKDFMemoryKiB = 1 << 20 // 1 GiB
	minKDFMemoryKiB = 8
)

var sealMagic = [5]byte{'U', 'H', 'K', 'S', 1}

const (
	saltLen   = 16
	headerLen = len(sealMagic) + 4 + 4 + 1 + saltLen + chacha20poly1305.NonceSizeX
)

// Seal encrypts plaintext under a key derived from passphrase with
// Argon2id (fresh random salt) and XChaCha20-Poly1305 (fresh random
// nonce). The header — version, costs, salt, nonce — is authenticated as
// additional data, so no byte of the result can change unnoticed.
func Seal(passphrase, plaintext []byte, p KDFParams) ([]byte, error) {
	if p.Time == 0 || p.Time > maxKDFTime || p.MemoryKiB < minKDFMemoryKiB || p.MemoryKiB > maxKDFMemoryKiB || p.Threads == 0 {
		return nil, fmt.Errorf("e2ee: KDF costs out of range: %+v", p)
	}
	hdr := make([]byte, headerLen, headerLen+len(plaintext)+chacha20poly1305.Overhead)
	n := copy(hdr, sealMagic[:])
	binary.BigEndian.PutUint32(hdr[n:], p.Time)
	binary.BigEndian.PutUint32(hdr[n+4:], p.MemoryKiB)
	hdr[n+8] = p.Threads
	if _, err := rand.Read(hdr[n+9:]); err != nil { // salt and nonce
		return nil, err
	}
	aead, nonce, err := sealer(passphrase, hdr, p)
	if err != nil {
		return nil, err
	}
	return aead.Seal(hdr, nonce, plaintext, hdr), nil
}

// sealer derives the AEAD of a sealed blob from the passphrase and the
// blob's header (magic, costs, salt, nonce) and returns it with the nonce.
func sealer(passphrase, hdr []byte, p KDFParams) (cipher.AEAD, []byte, error) {
	n := len(sealMagic)
	salt := hdr[n+9 : n+9+saltLen]
	key := argon2.IDKey(passphrase, salt, p.Time, p.MemoryKiB, p.Threads, chacha20poly1305.KeySize)
	defer clear(key)
	aead, err := chacha20poly1305.NewX(key)
	return aead, hdr[n+9+saltLen:], err
}

// Open reverses Seal. Any wrong passphrase or altered byte gives ErrSealed.
func Open(passphrase, sealed []byte) ([]byte, error) {
	if len(sealed) < headerLen+chacha20poly1305.Overhead || string(sealed[:len(sealMagic)]) != string(sealMagic[:]) {
		return nil, ErrSealed
	}
	n := len(sealMagic)
	p := KDFParams{
		Time:      binary.BigEndian.Uint32(sealed[n:]),
		MemoryKiB: binary.BigEndian.Uint32(sealed[n+4:]),
		Threads:   sealed[n+8],
	}
	if p.Time == 0 || p.Time > maxKDFTime || p.MemoryKiB < minKDFMemoryKiB || p.MemoryKiB > maxKDFMemoryKiB || p.Threads == 0 {
		return nil, ErrSealed
	}
	hdr := sealed[:headerLen]
	aead, nonce, err := sealer(passphrase, hdr, p)
	if err != nil {
		return nil, err
	}
	pt, err := aead.Open(nil, nonce, sealed[headerLen:], hdr)
	if err != nil {
		return nil, ErrSealed
	}
	return pt, nil
}

// State is everything a device must keep between runs: its account and
// every session. Persist it (SealState) after each change — above all
// after NewInboundSession, which consumed a one-time key.
type State struct {
	Account  *Account
	Sessions []*Session
	Outbound []*OutboundGroup
	Inbound  []*InboundGroup
}

type stateJSON struct {
	User     string         `json:"user"`
	DeviceID string         `json:"device_id"`
	Account  []byte         `json:"account"`
	Sessions []sessionJSON  `json:"sessions"`
	Outbound []outboundJSON `json:"outbound"`
	Inbound  []inboundJSON  `json:"inbound"`
}

type sessionJSON struct {
	TheirKey string `json:"their_key"`
	Pickle   []byte `json:"pickle"`
}

type outboundJSON struct {
	Channel string `json:"channel"`
	Pickle  []byte `json:"pickle"`
}

type inboundJSON struct {
	Channel      string   `json:"channel"`
	SenderKey    string   `json:"sender_key"`
	SenderUser   string   `json:"sender_user"`
	SenderDevice string   `json:"sender_device"`
	Pickle       []byte   `json:"pickle"`
	Seen         []uint32 `json:"seen"`
	Highest      uint32   `json:"highest"`
	Any          bool     `json:"any"`
}

// SealState pickles st (goolm's libolm-format pickles, unencrypted, inside
// one AEAD layer we control) and seals it with passphrase.
func SealState(passphrase []byte, st *State, p KDFParams) ([]byte, error) {
	if st == nil || st.Account == nil {
		return nil, fmt.Errorf("e2ee: seal: no account")
	}
	j := stateJSON{User: st.Account.user, DeviceID: st.Account.deviceID, Account: st.Account.pickle()}
	for _, s := range st.Sessions {
		j.Sessions = append(j.Sessions, sessionJSON{TheirKey: s.theirKey, Pickle: s.pickle()})
	}
	for _, g := range st.Outbound {
		j.Outbound = append(j.Outbound, outboundJSON{Channel: g.channel, Pickle: g.pickle()})
	}
	for _, g := range st.Inbound {
		g.mu.Lock()
		ij := inboundJSON{
			Channel: g.channel, SenderKey: g.senderKey, SenderUser: g.senderUser, SenderDevice: g.senderDevice,
			Pickle: g.s.PickleLibOlm(), Highest: g.highest, Any: g.any,
		}
		for idx := range g.seen {
			ij.Seen = append(ij.Seen, idx)
		}
		g.mu.Unlock()
		j.Inbound = append(j.Inbound, ij)
	}
	pt, err := json.Marshal(j)
	if err != nil {
		return nil, err
	}
	defer clear(pt)
	return Seal(passphrase, pt, p)
}

// OpenState opens a blob written by SealState.
func OpenState(passphrase, sealed []byte) (*State, error) {
	pt, err := Open(passphrase, sealed)
	if err != nil {
		return nil, err
	}
	defer clear(pt)
	var j stateJSON
	if err := json.Unmarshal(pt, &j); err != nil {
		return nil, fmt.Errorf("e2ee: key store: %w", err)
	}
	acct, err := unpickleAccount(j.User, j.DeviceID, j.Account)
	if err != nil {
		return nil, err
	}
	st := &State{Account: acct}
	for _, sj := range j.Sessions {
		s, err := unpickleSession(sj.TheirKey, sj.Pickle)
		if err != nil {
			return nil, err
		}
		st.Sessions = append(st.Sessions, s)
	}
	for _, oj := range j.Outbound {
		s := &session.MegolmOutboundSession{}
		if err := s.UnpickleLibOlm(oj.Pickle); err != nil {
			return nil, fmt.Errorf("e2ee: outbound group session: %w", err)
		}
		st.Outbound = append(st.Outbound, &OutboundGroup{channel: oj.Channel, s: s})
	}
	for _, ij := range j.Inbound {
		s := &session.MegolmInboundSession{}
		if err := s.UnpickleLibOlm(ij.Pickle); err != nil {
			return nil, fmt.Errorf("e2ee: inbound group session: %w", err)
		}
		g := &InboundGroup{
			channel: ij.Channel, senderKey: ij.SenderKey, senderUser: ij.SenderUser, senderDevice: ij.SenderDevice,
			s: s, seen: make(map[uint32]struct{}, len(ij.Seen)), highest: ij.Highest, any: ij.Any,
		}
		for _, idx := range ij.Seen {
			g.seen[idx] = struct{}{}
		}
		st.Inbound = append(st.Inbound, g)
	}
	return st, nil
}
