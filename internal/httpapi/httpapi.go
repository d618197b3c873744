// Package httpapi is Unhidra's HTTP transport: the auth API (AUTH_PORT) and
// the REST API under /api/v1 on the gateway port. Handlers only translate:
// decode and bound the request, call one domain service method, and encode
// the answer. Errors are mapped to HTTP in exactly one place, writeError.
//
// Handlers are safe for concurrent use; all state lives in the services.
package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/audit"
	"github.com/unhidra/unhidra/internal/httpx"
	"github.com/unhidra/unhidra/internal/redact"
	"github.com/unhidra/unhidra/wire"
)

// MaxJSONBody is the cap on JSON request bodies (docs/protocol.md#conventions).
const MaxJSONBody = 64 << 10

// MaxJSONDepth bounds the nesting of every value of a JSON request body
// (message `data` included): each field of the body may nest this many
// levels of objects and arrays, as on every other transport.
const MaxJSONDepth = wire.MaxDepth

// errorBody is the error shape of docs/protocol.md#error-codes.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// WriteJSON writes v as JSON with the given status (httpx.WriteJSON).
func WriteJSON(w http.ResponseWriter, status int, v any) { httpx.WriteJSON(w, status, v) }

// WriteError maps err to its HTTP status and the body of docs/protocol.md#error-codes. Internal
// errors are logged (with their cause) and answered with a generic message.
func WriteError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	code := unhidra.ErrorCode(err)
	if code == unhidra.EINTERNAL && log != nil {
		log.Error("internal error", "method", r.Method, "route", r.Pattern, "request_id", audit.SourceOf(r.Context()).RequestID, "err", redact.Scrub(err.Error()))
	}
	if ra := unhidra.RetryAfter(err); ra > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(ra))
	} else if code == unhidra.ERATELIMITED {
		w.Header().Set("Retry-After", "1")
	}
	var body errorBody
	body.Error.Code = code
	body.Error.Message = unhidra.ErrorMessage(err)
	WriteJSON(w, unhidra.HTTPStatus(code), body)
}

// DecodeJSON decodes the request body into v. It requires a JSON content
// type, caps the body at limit bytes (413 beyond), refuses invalid UTF-8 and
// nesting deeper than MaxJSONDepth (400, before decoding), ignores unknown
// fields and refuses trailing data. Every JSON body of the auth API and the
// REST API goes through it.
func DecodeJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
		return unhidra.Errorf(unhidra.EINVALID, "Content-Type must be application/json")
	}
	if r.ContentLength > limit {
		return unhidra.Errorf(unhidra.ETOOLARGE, "request body is larger than %d bytes", limit)
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return unhidra.Errorf(unhidra.ETOOLARGE, "request body is larger than %d bytes", limit)
		}
		return unhidra.Errorf(unhidra.EINVALID, "request body could not be read")
	}
	// One check for every transport: invalid UTF-8 or a lone surrogate
	// escape (which encoding/json would silently replace with U+FFFD) and
	// nesting deeper than MaxJSONDepth below the body are refused before
	// decoding; syntax errors get the decoder's more precise messages.
	var je *wire.JSONError
	if err := wire.CheckJSONBody(b); errors.As(err, &je) && je.Reason != wire.JSONSyntax {
		return unhidra.Errorf(unhidra.EINVALID, "request body: %s", je.Error())
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return unhidra.Errorf(unhidra.EINVALID, "request body is empty")
		}
		return unhidra.Errorf(unhidra.EINVALID, "request body is not valid JSON")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return unhidra.Errorf(unhidra.EINVALID, "request body has data after the JSON value")
	}
	return nil
}

// BearerToken returns the credential of an "Authorization: Bearer …" header,
// or "".
func BearerToken(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// ClientIP returns the client address of r (httpx.ClientIP).
func ClientIP(r *http.Request, trusted []netip.Prefix) netip.Addr { return httpx.ClientIP(r, trusted) }
