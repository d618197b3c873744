// Package client is Unhidra's public SDK for devices, bots and people: a
// WebSocket connection to the gateway (docs/protocol.md#connection) that survives disconnects.
//
// It authenticates with a device API key (`Sec-WebSocket-Protocol:
// unhidra.v1, apikey.<key>`) or an access token (`unhidra.v1,
// bearer.<token>`), never putting a credential in the URL. Once connected it
// pings every 30 s and, for devices, sends a heartbeat every 60 s. When the
// connection drops it reconnects with exponential backoff (1 s doubling to
// 60 s) and full jitter, reset after a connection stayed up a minute; a 401
// at the handshake (a revoked key) ends Run with ErrUnauthorized instead.
//
// Publishes, telemetry and command results go through a bounded offline
// buffer: frames produced while disconnected wait (the oldest is dropped
// first when it is full, and counted) and are sent in order after the next
// reconnect; frames sent but not acknowledged when a connection fails are
// sent again, publishes with the same client_msg_id so the server stores
// them once. Subscriptions are renewed after a reconnect with `since` set to
// the last offset seen, and duplicate messages are dropped.
//
// TLS: wss:// URLs verify the server's certificate against the system roots
// plus Options.CAFile. Verification is only turned off by
// Options.InsecureSkipVerify, which logs a warning.
//
// Concurrency: a Client's methods are safe for concurrent use; Run is called
// once and owns the connection. Callbacks (OnMessage, OnConnect, OnFrame)
// run on the client's goroutines and must not block for long; OnCommand runs
// on its own goroutine per command.
//
// The package depends only on the standard library, the wire types and
// github.com/coder/websocket, so firmware authors and bot writers can use it
// outside the server's module.
package client
