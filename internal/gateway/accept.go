package gateway

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/netip"
	"strconv"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/audit"
	"github.com/unhidra/unhidra/internal/httpx"
	"github.com/unhidra/unhidra/internal/redact"
	"github.com/unhidra/unhidra/wire"
)

// refuse answers a handshake before the upgrade, counts it and reports it
// (ctx carries the handshake's audit Source).
func (s *Server) refuse(ctx context.Context, w http.ResponseWriter, ip netip.Addr, reason string, who wire.Principal, err error) {
	s.met.refused.WithLabelValues(reason).Inc()
	s.auditRefused(ctx, ip, reason, who)
	s.log.Debug("websocket handshake refused", "reason", reason, "ip", ip.String(), "request_id", audit.SourceOf(ctx).RequestID)
	code := unhidra.ErrorCode(err)
	if ra := unhidra.RetryAfter(err); ra > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(ra))
	}
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	body.Error.Code = code
	body.Error.Message = unhidra.ErrorMessage(err)
	status := unhidra.HTTPStatus(code)
	switch reason {
	case "version":
		w.Header().Set("Sec-WebSocket-Version", "13")
		status = http.StatusUpgradeRequired
	}
	httpx.WriteJSON(w, status, body)
}

// auditReasons are the refusals that are security events (an audit event
// each, audit.ActionConnectionRefused), by the audit reason they have; the
// others (not a WebSocket handshake, a draining or failing server) are not.
var auditReasons = map[string]string{
	"unauthorized": audit.RefusedAuth,
	"origin":       audit.RefusedOrigin,
	"ip_rate":      audit.RefusedLimit,
	"user_limit":   audit.RefusedLimit,
}

func (s *Server) auditRefused(ctx context.Context, ip netip.Addr, reason string, who wire.Principal) {
	r, ok := auditReasons[reason]
	if !ok {
		return
	}
	e := audit.Event{Action: audit.ActionConnectionRefused, Actor: who, Outcome: audit.Failure, Reason: r,
		Details: map[string]string{"transport": "websocket", "cause": reason}}
	if ip.IsValid() {
		e.IP = ip.String()
	}
	s.audit.Audit(context.WithoutCancel(ctx), e)
}

var errInvalidToken = unhidra.Errorf(unhidra.EUNAUTHORIZED, "invalid token")

// serveWS runs the handshake (docs/protocol.md#handshake): every refusal is answered before
// the upgrade; an accepted connection is hijacked and handed to its own
// reader goroutine so that this handler goroutine and net/http's buffers go.
func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	ip := httpx.ClientIP(r, s.cfg.TrustedProxies)
	var nobody wire.Principal
	// The handshake's Source: the request id httpx.WithSource gave the
	// upgrade request (the client's valid X-Request-ID, else a new one),
	// kept by the connection for every event it causes.
	src := audit.SourceOf(r.Context())
	if src.RequestID == "" {
		src.RequestID = httpx.RequestIDOf(r)
		w.Header().Set(httpx.RequestIDHeader, src.RequestID)
	}
	src.Transport = audit.TransportWebSocket
	src.IP = ""
	if ip.IsValid() {
		src.IP = ip.String()
	}
	ctx := audit.WithSource(r.Context(), src)
	if ok, retry := s.ipLimit.allow(ip); !ok {
		e := unhidra.Errorf(unhidra.ERATELIMITED, "too many connection attempts")
		e.RetryAfter = retry
		s.refuse(ctx, w, ip, "ip_rate", nobody, e)
		return
	}
	if !headerHasToken(r.Header, "Upgrade", "websocket") || !headerHasToken(r.Header, "Connection", "upgrade") {
		s.refuse(ctx, w, ip, "not_websocket", nobody, unhidra.Errorf(unhidra.EINVALID, "not a WebSocket handshake"))
		return
	}
	if r.Header.Get("Sec-WebSocket-Version") != "13" {
		s.refuse(ctx, w, ip, "version", nobody, unhidra.Errorf(unhidra.EINVALID, "unsupported WebSocket version; use 13"))
		return
	}
	key := r.Header.Get("Sec-WebSocket-Key")
	if !validKey(key) {
		s.refuse(ctx, w, ip, "bad_key", nobody, unhidra.Errorf(unhidra.EINVALID, "missing or malformed Sec-WebSocket-Key"))
		return
	}
	if !s.origins.check(r.Header.Values("Origin"), r.Host) {
		s.refuse(ctx, w, ip, "origin", nobody, unhidra.Errorf(unhidra.EFORBIDDEN, "origin not allowed"))
		return
	}
	if s.Draining() {
		s.refuse(ctx, w, ip, "draining", nobody, unhidra.Errorf(unhidra.EUNAVAILABLE, "server is shutting down"))
		return
	}
	cred, ok := parseCredential(r.Header.Values("Sec-WebSocket-Protocol"), r.URL.RawQuery)
	if !ok || cred.kind == credNone {
		s.refuse(ctx, w, ip, "unauthorized", nobody, errInvalidToken)
		return
	}
	var id unhidra.Identity
	var err error
	switch cred.kind {
	case credToken:
		id, err = s.deps.Tokens.AuthenticateToken(ctx, cred.secret)
		if err == nil && id.IsDevice() {
			err = errInvalidToken
		}
	case credDeviceKey:
		if s.deps.DeviceKeys == nil {
			err = errInvalidToken
		} else {
			id, err = s.deps.DeviceKeys.AuthenticateDeviceKey(ctx, cred.secret)
			if err == nil && !id.IsDevice() {
				err = errInvalidToken
			}
		}
	}
	if err == nil && s.expired(id) {
		err = errInvalidToken
	}
	if err != nil {
		switch unhidra.ErrorCode(err) {
		case unhidra.EUNAVAILABLE, unhidra.EINTERNAL:
			s.log.Error("websocket authentication failed", "ip", ip.String(), "err", redact.Scrub(err.Error()))
			s.refuse(ctx, w, ip, "unavailable", nobody, unhidra.Errorf(unhidra.EUNAVAILABLE, "authentication is unavailable"))
		default:
			s.refuse(ctx, w, ip, "unauthorized", nobody, errInvalidToken)
		}
		return
	}
	if !s.reserve(id.Principal) {
		e := unhidra.Errorf(unhidra.ERATELIMITED, "too many open connections")
		e.RetryAfter = 5
		s.refuse(ctx, w, ip, "user_limit", id.Principal, e)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		s.release(id.Principal)
		s.refuse(ctx, w, ip, "internal", id.Principal, unhidra.Errorf(unhidra.EINTERNAL, "connection cannot be upgraded"))
		return
	}
	nc, brw, err := hj.Hijack()
	if err != nil {
		s.release(id.Principal)
		s.log.Warn("websocket hijack failed", "err", err)
		return
	}
	if s.cfg.SocketWriteBuffer > 0 {
		raw := nc
		if tc, ok := raw.(*tls.Conn); ok {
			raw = tc.NetConn()
		}
		if tc, ok := raw.(*net.TCPConn); ok {
			_ = tc.SetWriteBuffer(s.cfg.SocketWriteBuffer)
		}
	}
	// Bytes a client sent right after its handshake sit in net/http's
	// reader; keep them, then drop the reader.
	var early []byte
	if n := brw.Reader.Buffered(); n > 0 {
		early = make([]byte, n)
		_, _ = brw.Reader.Read(early)
	}
	c := newConn(s, nc, early, id, ip)
	c.src = src
	if !s.register(c) {
		s.release(id.Principal)
		_ = nc.Close()
		return
	}
	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + acceptKey(key) + "\r\n" +
		httpx.RequestIDHeader + ": " + src.RequestID + "\r\n"
	if cred.protocol != "" {
		resp += "Sec-WebSocket-Protocol: " + cred.protocol + "\r\n"
	}
	resp += "\r\n"
	c.start([]byte(resp))
}
