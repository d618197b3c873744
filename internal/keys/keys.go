// Package keys is the end-to-end encryption key directory: each client
// device of a user publishes its identity keys (Curve25519 for agreement,
// Ed25519 for signing), signed one-time keys and a signed fallback key;
// other users list a user's devices and claim a device's keys to start an
// Olm session with it (docs: the E2EE contract, /api/v1/keys/…).
//
// The server never holds a private key and cannot forge a bundle: every key
// is signed by the device's Ed25519 identity key over a message that names
// the user and device, and Service checks those signatures, the key lengths
// and that no Curve25519 key is a low-order point before anything is stored.
// Clients check the signatures again; the server's checks keep garbage and
// other users' keys out of the directory.
//
// Service is safe for concurrent use. A Store must hand each one-time key
// out exactly once however many claims race (one transaction per claim);
// implementations pass the conformance suite storetest.Keys.
package keys

import (
	"context"
	"time"

	"github.com/unhidra/unhidra/wire/e2eekeys"
)

// Limits of the directory.
const (
	// MaxOneTimeKeys is the most one-time keys stored per device (and
	// accepted in one upload).
	MaxOneTimeKeys = 100
	// MaxDevices is the most client devices with keys per user.
	MaxDevices = 10
	// LowKeys is the count under which a device should upload more
	// one-time keys (the "low" flag of the count).
	LowKeys = 10
	// ClaimsPerMinute bounds the claims of one requester on one target
	// user, so nobody drains another's one-time keys quickly.
	ClaimsPerMinute = 60
)

// ActionKeyChange is the audit action of an identity-key change or a
// device's keys deleted (by the user, or because the user was disabled).
// Target is the user; Details name the device and the change.
const ActionKeyChange = "e2ee.key_change"

// The contract's shapes (wire/e2eekeys), shared with the SDK.
type (
	IdentityKeys = e2eekeys.IdentityKeys
	SignedKey    = e2eekeys.SignedKey
	Upload       = e2eekeys.Upload
)

// Device is a device's published identity and how many one-time keys it
// has left.
type Device struct {
	User              string       `json:"-"`
	DeviceID          string       `json:"device_id"`
	Identity          IdentityKeys `json:"identity"`
	IdentitySignature string       `json:"identity_signature"`
	OneTimeKeyCount   int          `json:"one_time_key_count"`
	CreatedAt         time.Time    `json:"-"`
	UpdatedAt         time.Time    `json:"-"`
}

// Bundle is what a claim returns: the device's identity, one one-time key
// (nil when none is left) and its fallback key (nil when it has none).
type Bundle struct {
	User              string       `json:"user"`
	DeviceID          string       `json:"device_id"`
	Identity          IdentityKeys `json:"identity"`
	IdentitySignature string       `json:"identity_signature"`
	OneTimeKey        *SignedKey   `json:"one_time_key"`
	FallbackKey       *SignedKey   `json:"fallback_key"`
}

// Put is one validated upload for Store.PutKeys.
type Put struct {
	User              string
	DeviceID          string
	Identity          IdentityKeys
	IdentitySignature string
	OneTimeKeys       []SignedKey
	FallbackKey       *SignedKey // nil: keep the stored one
	At                time.Time
	// MaxKeys and MaxDevices are the limits the store enforces inside its
	// transaction (so that concurrent uploads cannot pass them together).
	MaxKeys, MaxDevices int
}

// PutResult is what Store.PutKeys did.
type PutResult struct {
	// OneTimeKeyCount is the device's one-time keys after the upload.
	OneTimeKeyCount int
	// Created is true for a device that had no keys before.
	Created bool
	// Replaced is true when the device had another identity: its old
	// one-time and fallback keys were dropped (an identity-key change).
	Replaced bool
}

// Store keeps the directory.
//
//   - PutKeys stores p in one transaction. A new device beyond MaxDevices
//     is a conflict. A different identity for a stored device replaces it
//     and drops its old keys. One-time keys whose id the device already
//     holds are skipped; more than MaxKeys held after the upload is invalid
//     and stores nothing.
//   - Claim takes one one-time key of the device (the oldest) and removes
//     it, atomically: concurrent claims never get the same key. not_found
//     for an unknown device.
//   - Device, Count and DeleteDevice answer not_found for an unknown
//     device; Devices lists a user's devices by id (empty for none).
//   - DeleteUser removes every device of user with its keys, in one
//     transaction, and returns their ids in order (empty for none).
type Store interface {
	PutKeys(ctx context.Context, p Put) (PutResult, error)
	Device(ctx context.Context, user, deviceID string) (Device, error)
	Devices(ctx context.Context, user string) ([]Device, error)
	Claim(ctx context.Context, user, deviceID string) (Bundle, error)
	Count(ctx context.Context, user, deviceID string) (int, error)
	DeleteDevice(ctx context.Context, user, deviceID string) error
	DeleteUser(ctx context.Context, user string) ([]string, error)
}
