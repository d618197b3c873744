package httpx_test

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/unhidra/unhidra/internal/audit"
	"github.com/unhidra/unhidra/internal/httpx"
)

// A client's request id is kept when it is 1 to 64 of [A-Za-z0-9._-] and
// sent once; anything else (too long, CR/LF, spaces, other bytes, two
// values) is replaced by a new random id. Either way it is answered in
// X-Request-ID and is the request id of the context's audit Source, with
// the transport and the client IP (X-Forwarded-For from a trusted proxy).
func TestRequestIDsAreTheClientsOnlyWhenValid(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	for _, tc := range []struct {
		name string
		sent []string
		keep bool
	}{
		{"a valid id is kept", []string{"abc-DEF_0.9"}, true},
		{"64 characters are kept", []string{strings.Repeat("a", 64)}, true},
		{"none gets a new one", nil, false},
		{"an empty one is replaced", []string{""}, false},
		{"65 characters are replaced", []string{strings.Repeat("a", 65)}, false},
		{"CR LF is replaced", []string{"abc\r\nSet-Cookie: x=1"}, false},
		{"a space is replaced", []string{"abc def"}, false},
		{"a slash is replaced", []string{"abc/def"}, false},
		{"non-ASCII is replaced", []string{"abcé"}, false},
		{"two values are replaced", []string{"abc", "def"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var src audit.Source
			h := httpx.WithSource(audit.TransportHTTP, trusted, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				src = audit.SourceOf(r.Context())
			}))
			req := httptest.NewRequest("GET", "/x", nil)
			req.RemoteAddr = "127.0.0.1:5555"
			req.Header.Set("X-Forwarded-For", "203.0.113.5")
			for _, v := range tc.sent {
				req.Header.Add(httpx.RequestIDHeader, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			got := rec.Header().Get(httpx.RequestIDHeader)
			if !httpx.ValidRequestID(got) {
				t.Fatalf("answered request id %q is not valid", got)
			}
			if tc.keep != (len(tc.sent) > 0 && got == tc.sent[0]) {
				t.Fatalf("sent %q, answered %q (kept: want %v)", tc.sent, got, tc.keep)
			}
			if src != (audit.Source{Transport: audit.TransportHTTP, RequestID: got, IP: "203.0.113.5"}) {
				t.Fatalf("audit source %+v, want http, %q, 203.0.113.5", src, got)
			}
		})
	}
	a, b := httpx.NewRequestID(), httpx.NewRequestID()
	if a == b || len(a) != 26 || !httpx.ValidRequestID(a) {
		t.Fatalf("new request ids %q, %q: want distinct valid 26-character ids", a, b)
	}
}
