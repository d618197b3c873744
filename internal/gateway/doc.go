// Package gateway is Unhidra's WebSocket transport on the gateway port: the
// handshake (credentials, Origin, limits, all refused before the upgrade),
// the RFC 6455 framing, one connection object per socket, the hub that fans
// broker events out to local sockets, and the drain on shutdown. It also
// owns the gateway port's http.Server (/ws, /health, /ready, /metrics, and
// the REST API and web client handlers it is given).
//
// The gateway only translates: every frame ends in one call of the chat,
// presence, device or auth service, which hold the rules.
//
// # Concurrency
//
// Server methods are safe for concurrent use. Each connection has exactly
// one permanent goroutine, its reader; the writer and the frame handler are
// short-lived goroutines started when their queue becomes non-empty and
// ended when it is empty again. A connection's mutable state is guarded by
// its mutex; the hub's by its own locks (order: broker → topic → conn). The
// broker calls the hub on its own goroutine and the hub never blocks there:
// a connection that cannot keep up is closed (4008), never waited for.
//
// See DESIGN.md for the memory model and backpressure.
package gateway
