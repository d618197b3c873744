package device

// This file holds the device registry: devices, their owners and their API
// keys (docs/protocol.md#identifiers). Service authorizes every call (owner or admin) so each
// transport gets the rules for free.
//
// API keys are "unhidra_dk_" followed by 32 random bytes in base64url, so
// they travel as a WebSocket subprotocol token or an MQTT password. They are
// stored only as HMAC-SHA256(server key, api key): a fast keyed hash (the key
// carries 256 bits of randomness, so Argon2 per connect would buy nothing),
// looked up by hash and compared in constant time. The server key is derived
// from JWT_SECRET, which every node already shares; after a secret rotation
// keys hashed under JWT_SECRET_PREVIOUS still work and are rehashed under the
// new secret on first use.

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"log/slog"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/oklog/ulid/v2"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/audit"
	"github.com/unhidra/unhidra/internal/broker"
	"github.com/unhidra/unhidra/wire"
)

// KeyPrefix starts every device API key.
const KeyPrefix = wire.DeviceKeyPrefix

const (
	keyRandomBytes = 32
	// MaxKeyLen bounds a presented key before any work.
	MaxKeyLen = 128
	// MaxNameLen bounds a device name (runes); MaxIDLen a device id.
	MaxNameLen = 64
	MaxIDLen   = wire.MaxDeviceIDLen
)

// Device is a registered device.
type Device struct {
	ID        string     `json:"device_id"`
	Name      string     `json:"name"`
	Owner     string     `json:"owner"`
	CreatedAt time.Time  `json:"created_at"`
	Revoked   bool       `json:"revoked"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	Online    bool       `json:"online"`
	LastSeen  *time.Time `json:"last_seen"`
}

// Store keeps the device registry. Errors use the root vocabulary:
// ENOTFOUND for an unknown device or key, ECONFLICT for a taken id. Ids are
// case-insensitive: an id taken in another letter case is taken, and every
// call naming a device by id finds it in any case (Device returns it with
// its id as stored). A Store is safe for concurrent use; implementations
// pass the conformance suite storetest.Device.
type Store interface {
	// CreateDevice stores d with its key hash. The owner must be an
	// existing account (anything else is an error and stores nothing).
	CreateDevice(ctx context.Context, d Device, keyHash []byte) error
	Device(ctx context.Context, id string) (Device, error)
	// Devices lists devices by id; owner "" lists all.
	Devices(ctx context.Context, owner string) ([]Device, error)
	// DeviceByKeyHash returns the device whose key hashes to hash, with the
	// stored hash for the constant-time comparison. A revoked device is
	// returned too, with Revoked set: the caller refuses it.
	DeviceByKeyHash(ctx context.Context, hash []byte) (Device, []byte, error)
	// RevokeDevice marks the device revoked at at and offline; revoking
	// again is no error and keeps the first time.
	RevokeDevice(ctx context.Context, id string, at time.Time) error
	// SetKeyHash replaces the key hash of a device that is not revoked
	// (ENOTFOUND for a revoked one).
	SetKeyHash(ctx context.Context, id string, hash []byte) error
}

// Users answers whether an account may own devices: *auth.Service.
type Users interface {
	UserActive(ctx context.Context, username string) (bool, error)
}

// Publisher publishes revocation events; *inmem.Broker satisfies it.
type Publisher = broker.Publisher

// Config configures the registry.
type Config struct {
	// Secret and PreviousSecret are JWT_SECRET and JWT_SECRET_PREVIOUS; the
	// key-hashing key is derived from them.
	Secret         string
	PreviousSecret string
	Now            func() time.Time
}

// Deps are the registry's collaborators. Store and Users are required.
type Deps struct {
	Store     Store
	Users     Users
	Publisher Publisher
	Auditor   audit.Recorder
	Log       *slog.Logger
	// Channels, when set, creates each new device's channel device:<id>
	// at registration, so its owner can subscribe before the first reading.
	Channels DeviceChannels
}

// DeviceChannels creates device channels: the chat service, adapted by the
// composition root.
type DeviceChannels interface {
	EnsureDeviceChannel(ctx context.Context, deviceID, owner string) error
}

// Service is the device registry service. It is safe for concurrent use.
type Service struct {
	store    Store
	users    Users
	pub      Publisher
	channels DeviceChannels
	audit    audit.Recorder
	log      *slog.Logger
	now      func() time.Time
	hashKey  []byte
	prevKey  []byte
}

// NewService returns the registry service.
func NewService(cfg Config, d Deps) (*Service, error) {
	if d.Store == nil || d.Users == nil {
		return nil, errors.New("device: Store and Users are required")
	}
	if len(cfg.Secret) < 32 {
		return nil, errors.New("device: the server secret must be at least 32 bytes")
	}
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return time.Now().UTC() }
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Auditor == nil {
		d.Auditor = audit.Slog{Log: d.Log}
	}
	s := &Service{store: d.Store, users: d.Users, pub: d.Publisher, channels: d.Channels, audit: d.Auditor, log: d.Log, now: cfg.Now, hashKey: deriveKey(cfg.Secret)}
	if cfg.PreviousSecret != "" {
		s.prevKey = deriveKey(cfg.PreviousSecret)
	}
	return s, nil
}

func deriveKey(secret string) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("unhidra/device-api-key/v1"))
	return m.Sum(nil)
}

func keyHash(k []byte, key string) []byte {
	m := hmac.New(sha256.New, k)
	m.Write([]byte(key))
	return m.Sum(nil)
}

// newKey returns a fresh API key.
func newKey() (string, error) {
	b := make([]byte, keyRandomBytes)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return KeyPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// LooksLikeKey reports whether s has the shape of a device API key: the
// prefix and then only [A-Za-z0-9_-]. Transports use it to tell a device key
// from an access token, and to refuse keys found in URLs.
func LooksLikeKey(s string) bool {
	if !strings.HasPrefix(s, KeyPrefix) || len(s) > MaxKeyLen || len(s) == len(KeyPrefix) {
		return false
	}
	for i := len(KeyPrefix); i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

var errBadKey = unhidra.Errorf(unhidra.EUNAUTHORIZED, "invalid token")

// AuthenticateDeviceKey returns the identity of the device holding key. A
// malformed, unknown or revoked key is "unauthorized" with the same message
// as a bad access token.
func (s *Service) AuthenticateDeviceKey(ctx context.Context, key string) (unhidra.Identity, error) {
	if !LooksLikeKey(key) {
		return unhidra.Identity{}, errBadKey
	}
	h := keyHash(s.hashKey, key)
	d, stored, err := s.store.DeviceByKeyHash(ctx, h)
	if unhidra.ErrorCode(err) == unhidra.ENOTFOUND && s.prevKey != nil {
		h = keyHash(s.prevKey, key)
		d, stored, err = s.store.DeviceByKeyHash(ctx, h)
		if err == nil && !d.Revoked {
			if err := s.store.SetKeyHash(ctx, d.ID, keyHash(s.hashKey, key)); err != nil {
				s.log.Warn("rehash device key under the current secret", "device", d.ID, "err", err)
			}
		}
	}
	if unhidra.ErrorCode(err) == unhidra.ENOTFOUND {
		return unhidra.Identity{}, errBadKey
	}
	if err != nil {
		return unhidra.Identity{}, err
	}
	if subtle.ConstantTimeCompare(h, stored) != 1 || d.Revoked {
		return unhidra.Identity{}, errBadKey
	}
	return unhidra.Identity{Principal: wire.Principal{Kind: wire.KindDevice, ID: d.ID}}, nil
}

// RegisterInput registers a device. Owner defaults to the caller; only
// administrators (and the operator) may name another owner.
type RegisterInput struct {
	Name  string
	ID    string
	Owner string
}

// CheckID validates a device id (wire.ValidDeviceID: 1–64 of [A-Za-z0-9._-],
// not starting with '.' or '-'), so it fits MQTT topics, channel names and URLs unescaped.
//
// Device ids are case-insensitive, like usernames: "GH-1" and "gh-1" name
// one device. Register stores a new id in lower case (CanonicalID), and the
// store finds an id in any case and returns the device with its id as
// stored, the canonical one every other call then uses. (Ids registered
// before ids were case-insensitive keep the case they were stored in.)
func CheckID(id string) error {
	if !wire.ValidDeviceID(id) {
		return unhidra.Errorf(unhidra.EINVALID, "device_id must be 1 to %d of A-Z, a-z, 0-9, '.', '_' and '-', not starting with '.' or '-'", MaxIDLen)
	}
	return nil
}

// CanonicalID returns the form in which a new device id is stored: lower
// case.
func CanonicalID(id string) string { return strings.ToLower(id) }

// SameID reports whether two device ids name the same device.
func SameID(a, b string) bool { return strings.EqualFold(a, b) }

func checkName(name string) (string, error) {
	if len(name) > MaxNameLen*4 || !utf8.ValidString(name) {
		return "", unhidra.Errorf(unhidra.EINVALID, "name must be valid UTF-8 of at most %d characters", MaxNameLen)
	}
	name = strings.TrimSpace(name)
	if name == "" || utf8.RuneCountInString(name) > MaxNameLen {
		return "", unhidra.Errorf(unhidra.EINVALID, "name must be 1 to %d characters", MaxNameLen)
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return "", unhidra.Errorf(unhidra.EINVALID, "name must not contain control characters")
		}
	}
	return name, nil
}

func isAdmin(who unhidra.Identity) bool {
	return unhidra.IsOperator(who) || (who.Principal.Kind == wire.KindUser && who.IsAdmin())
}

func requireUser(who unhidra.Identity) error {
	if unhidra.IsOperator(who) || (who.Principal.Kind == wire.KindUser && who.Principal.ID != "") {
		return nil
	}
	return unhidra.Errorf(unhidra.EFORBIDDEN, "this route needs a user's access token")
}

// Register creates a device and returns it with its API key, which is shown
// only here.
func (s *Service) Register(ctx context.Context, who unhidra.Identity, in RegisterInput) (Device, string, error) {
	d, key, err := s.register(ctx, who, in)
	s.refused(ctx, audit.ActionDeviceRegister, who, in.ID, err)
	return d, key, err
}

func (s *Service) register(ctx context.Context, who unhidra.Identity, in RegisterInput) (Device, string, error) {
	if err := requireUser(who); err != nil {
		return Device{}, "", err
	}
	name, err := checkName(in.Name)
	if err != nil {
		return Device{}, "", err
	}
	id := in.ID
	if id == "" {
		id = strings.ToLower(ulid.Make().String())
	} else if err := CheckID(id); err != nil {
		return Device{}, "", err
	} else {
		id = CanonicalID(id)
	}
	owner := in.Owner
	switch {
	case owner == "" && unhidra.IsOperator(who):
		return Device{}, "", unhidra.Errorf(unhidra.EINVALID, "an owner is required")
	case owner == "":
		owner = who.Principal.ID
	default:
		owner = strings.ToLower(owner)
		if owner != who.Principal.ID && !isAdmin(who) {
			return Device{}, "", unhidra.Errorf(unhidra.EFORBIDDEN, "only administrators may register devices for someone else")
		}
	}
	active, err := s.users.UserActive(ctx, owner)
	if err != nil {
		return Device{}, "", err
	}
	if !active {
		return Device{}, "", unhidra.Errorf(unhidra.EINVALID, "owner %q is not an active user", owner)
	}
	key, err := newKey()
	if err != nil {
		return Device{}, "", err
	}
	d := Device{ID: id, Name: name, Owner: owner, CreatedAt: s.now()}
	if err := s.store.CreateDevice(ctx, d, keyHash(s.hashKey, key)); err != nil {
		return Device{}, "", err
	}
	if s.channels != nil {
		// The device exists either way; its channel is also made on its
		// first post, so a failure here is logged, not returned.
		if err := s.channels.EnsureDeviceChannel(ctx, d.ID, d.Owner); err != nil {
			s.log.Warn("create device channel", "device", d.ID, "err", err)
		}
	}
	s.audit.Audit(ctx, audit.Event{Action: audit.ActionDeviceRegister, Actor: who.Principal, Target: d.ID, Outcome: "success"})
	return d, key, nil
}

// List returns the caller's devices, or every device for administrators.
func (s *Service) List(ctx context.Context, who unhidra.Identity) ([]Device, error) {
	if err := requireUser(who); err != nil {
		return nil, err
	}
	owner := who.Principal.ID
	if isAdmin(who) {
		owner = ""
	}
	return s.store.Devices(ctx, owner)
}

// Get returns one device to its owner or an administrator; to anyone else
// it does not exist. id may be in any letter case.
func (s *Service) Get(ctx context.Context, who unhidra.Identity, id string) (Device, error) {
	if who.Principal.Kind == wire.KindDevice && SameID(who.Principal.ID, id) {
		return s.store.Device(ctx, who.Principal.ID)
	}
	if err := requireUser(who); err != nil {
		return Device{}, err
	}
	if CheckID(id) != nil {
		return Device{}, unhidra.Errorf(unhidra.ENOTFOUND, "device not found")
	}
	d, err := s.store.Device(ctx, id)
	if err != nil {
		return Device{}, err
	}
	if !strings.EqualFold(d.Owner, who.Principal.ID) && !isAdmin(who) {
		return Device{}, unhidra.Errorf(unhidra.ENOTFOUND, "device not found")
	}
	return d, nil
}

// DeviceOwner returns the owner of a device (for other services; no
// authorization).
func (s *Service) DeviceOwner(ctx context.Context, id string) (string, error) {
	d, err := s.LookupDevice(ctx, id)
	if err != nil {
		return "", err
	}
	return d.Owner, nil
}

// LookupDevice returns the device named by id in any letter case, with its
// canonical id and whether it is revoked (for other services; no
// authorization). It is the Fleet's DeviceLookup.
func (s *Service) LookupDevice(ctx context.Context, id string) (Device, error) {
	if CheckID(id) != nil {
		return Device{}, unhidra.Errorf(unhidra.ENOTFOUND, "device not found")
	}
	return s.store.Device(ctx, id)
}

// Revoke revokes a device: its key stops working at once and transports
// close its live sessions.
func (s *Service) Revoke(ctx context.Context, who unhidra.Identity, id string) error {
	err := s.revoke(ctx, who, id)
	s.refused(ctx, audit.ActionDeviceRevoke, who, id, err)
	return err
}

func (s *Service) revoke(ctx context.Context, who unhidra.Identity, id string) error {
	d, err := s.Get(ctx, who, id)
	if err != nil {
		return err
	}
	if who.IsDevice() {
		return unhidra.Errorf(unhidra.EFORBIDDEN, "this route needs a user's access token")
	}
	if !d.Revoked {
		if err := s.store.RevokeDevice(ctx, d.ID, s.now()); err != nil {
			return err
		}
	}
	// The canonical id: transports match it against their sessions.
	s.publishRevocation(ctx, d.ID)
	s.audit.Audit(ctx, audit.Event{Action: audit.ActionDeviceRevoke, Actor: who.Principal, Target: d.ID, Outcome: "success"})
	return nil
}

// RotateKey gives a device a new key; the old one stops working at once and
// sessions opened with it are closed.
func (s *Service) RotateKey(ctx context.Context, who unhidra.Identity, id string) (string, error) {
	key, err := s.rotateKey(ctx, who, id)
	s.refused(ctx, audit.ActionDeviceRotate, who, id, err)
	return key, err
}

func (s *Service) rotateKey(ctx context.Context, who unhidra.Identity, id string) (string, error) {
	d, err := s.Get(ctx, who, id)
	if err != nil {
		return "", err
	}
	if who.IsDevice() {
		return "", unhidra.Errorf(unhidra.EFORBIDDEN, "this route needs a user's access token")
	}
	if d.Revoked {
		return "", unhidra.Errorf(unhidra.ECONFLICT, "device is revoked")
	}
	key, err := newKey()
	if err != nil {
		return "", err
	}
	if err := s.store.SetKeyHash(ctx, d.ID, keyHash(s.hashKey, key)); err != nil {
		return "", err
	}
	s.publishRevocation(ctx, d.ID)
	s.audit.Audit(ctx, audit.Event{Action: audit.ActionDeviceRotate, Actor: who.Principal, Target: d.ID, Outcome: "success"})
	return key, nil
}

func (s *Service) publishRevocation(ctx context.Context, id string) {
	if s.pub == nil {
		return
	}
	ev := broker.RevocationEvent(broker.Revocation{Kind: broker.RevokeDevice, ID: id})
	if err := s.pub.Publish(context.WithoutCancel(ctx), broker.RevocationTopic, ev); err != nil {
		s.log.Warn("publish device revocation", "device", id, "err", err)
	}
}

// refused records a registry change refused for want of permission (an
// audit event with outcome failure), once, from the exported method. A
// device of another owner is answered not_found, so that is recorded too
// (an attempt on somebody's device); bad input is not a security event.
func (s *Service) refused(ctx context.Context, action string, who unhidra.Identity, id string, err error) {
	switch unhidra.ErrorCode(err) {
	case unhidra.EFORBIDDEN, unhidra.EUNAUTHORIZED, unhidra.ENOTFOUND:
	default:
		return
	}
	s.audit.Audit(context.WithoutCancel(ctx), audit.Event{Action: action, Actor: who.Principal, Target: id, Outcome: audit.Failure, Reason: unhidra.ErrorMessage(err)})
}
