// Package e2ee is the client side of Unhidra's end-to-end encrypted
// channels: device identity keys and prekeys for the key directory
// (/api/v1/keys), 1:1 Olm sessions (an X3DH-style prekey handshake, then
// the Double Ratchet), Megolm group sessions for channels, the channel
// envelopes that carry them, and a passphrase-sealed store for all of it.
//
// The cryptography is not ours: Olm and Megolm come from goolm
// (maunium.net/go/mautrix/crypto/goolm, pure Go, interoperable with
// libolm — interop_test.go runs libolm itself against this package), the
// store uses Argon2id and XChaCha20-Poly1305 from golang.org/x/crypto.
// This package adds the checks around them: bundle signatures (refused
// unless both the identity and the prekey signature verify), low-order
// keys, canonical base64, replay and MaxSkip for group messages, and
// state that a failed decryption leaves untouched.
//
// Trust model. The server relays and stores only ciphertext: it sees who
// sends to which channel, when, and how large, but no plaintext and no
// session key. It does hold the directory of public keys, so it could hand
// out a key of its own; a device's identity is therefore trusted only once
// its ed25519 key's Fingerprint was compared out of band (read aloud, or
// scanned) — everything else the device publishes is signed by that key
// and checked here. Each sender encrypts a channel with its own Megolm
// session, whose key goes to each member device over 1:1 sessions; a
// member who receives a key at index n can read messages from n on, never
// earlier ones. When a member leaves, senders start a new session and share
// it with the remaining devices only, so the removed member cannot read
// anything sent after its removal (it keeps what it could already read).
// Compromise of a device exposes what it can decrypt until its sessions
// rotate; 1:1 sessions heal by the Double Ratchet's fresh Diffie-Hellman
// steps, group sessions by rotation.
//
// Concurrency: Account, Session, OutboundGroup and InboundGroup are safe
// for concurrent use; State is a plain value to persist and restore.
package e2ee
