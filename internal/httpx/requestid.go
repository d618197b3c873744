package httpx

// Request ids and the audit Source of HTTP requests: every request of the
// auth API and of the gateway's port (REST, WebSocket handshakes) gets one
// id, echoed in X-Request-ID and carried by the request's context, so the
// audit events the services report while serving it name their edge
// (docs/protocol.md#conventions).

import (
	"crypto/rand"
	"encoding/base32"
	"net/http"
	"net/netip"

	"github.com/unhidra/unhidra/internal/audit"
)

// RequestIDHeader carries a request's id, in the request (the client's,
// when valid) and in every answer.
const RequestIDHeader = "X-Request-ID"

// MaxRequestIDLen bounds a client's request id.
const MaxRequestIDLen = 64

// ValidRequestID reports whether id may be taken from a client: 1 to
// MaxRequestIDLen of [A-Za-z0-9._-] (nothing that could break a log line or
// a header).
func ValidRequestID(id string) bool {
	if len(id) == 0 || len(id) > MaxRequestIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

var requestIDEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewRequestID returns a new random request id (128 bits, 26 characters of
// base32).
func NewRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return requestIDEncoding.EncodeToString(b[:])
}

// RequestIDOf returns the request's id: the client's X-Request-ID when
// there is exactly one and it is valid, else a new one.
func RequestIDOf(r *http.Request) string {
	if vs := r.Header.Values(RequestIDHeader); len(vs) == 1 && ValidRequestID(vs[0]) {
		return vs[0]
	}
	return NewRequestID()
}

// WithSource gives every request its id (RequestIDOf), answers it in the
// X-Request-ID header and puts the audit Source (transport, the id, the
// client IP as ClientIP computes it with trusted) into the request's
// context. It wraps a server's whole handler, outside its logging.
func WithSource(transport string, trusted []netip.Prefix, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := RequestIDOf(r)
		w.Header().Set(RequestIDHeader, id)
		src := audit.Source{Transport: transport, RequestID: id}
		if ip := ClientIP(r, trusted); ip.IsValid() {
			src.IP = ip.String()
		}
		next.ServeHTTP(w, r.WithContext(audit.WithSource(r.Context(), src)))
	})
}
