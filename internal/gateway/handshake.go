package gateway

import (
	"crypto/sha1"
	"encoding/base64"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/unhidra/unhidra/wire"
)

// Subprotocol names (docs/protocol.md#handshake).
const (
	protoV1     = "unhidra.v1"
	protoBearer = "bearer"
	// deviceKeyPrefix marks a device API key.
	deviceKeyPrefix = wire.DeviceKeyPrefix
)

// Bounds on the Sec-WebSocket-Protocol header.
const (
	maxProtocolHeader  = 8 << 10
	maxProtocolEntries = 16
)

// credKind says which authenticator a credential goes to.
type credKind int

const (
	credNone credKind = iota
	credToken
	credDeviceKey
)

// credential is what a handshake presented, and the subprotocol to answer.
type credential struct {
	kind     credKind
	secret   string
	protocol string // "" means answer no Sec-WebSocket-Protocol
	// fromQuery is set for the deprecated ?token= form.
	fromQuery bool
}

// parseCredential extracts the credential of a handshake (docs/protocol.md#handshake), in this
// order: "unhidra.v1, bearer.<token>" / "unhidra.v1, apikey.<key>"; the seed's
// "bearer, <token-or-key>"; the deprecated ?token=<access token>. A device
// key in the query is refused (ok false), as is a malformed header. A
// handshake without any credential yields kind credNone and ok true.
func parseCredential(protocols []string, query string) (c credential, ok bool) {
	entries, ok := splitProtocols(protocols)
	if !ok {
		return credential{}, false
	}
	hasV1 := false
	for _, e := range entries {
		if e == protoV1 {
			hasV1 = true
		}
	}
	if hasV1 {
		for _, e := range entries {
			switch {
			case strings.HasPrefix(e, "bearer."):
				c = credential{kind: credToken, secret: e[len("bearer."):], protocol: protoV1}
			case strings.HasPrefix(e, "apikey."):
				c = credential{kind: credDeviceKey, secret: e[len("apikey."):], protocol: protoV1}
			default:
				continue
			}
			if c.secret == "" {
				return credential{}, false
			}
			if strings.HasPrefix(c.secret, deviceKeyPrefix) {
				c.kind = credDeviceKey
			}
			return c, true
		}
	}
	if len(entries) >= 2 && entries[0] == protoBearer {
		c = credential{kind: credToken, secret: entries[1], protocol: protoBearer}
		if strings.HasPrefix(c.secret, deviceKeyPrefix) {
			c.kind = credDeviceKey
		}
		return c, true
	}
	answer := ""
	if hasV1 {
		answer = protoV1
	}
	if query != "" {
		vals, err := url.ParseQuery(query)
		if err != nil {
			return credential{}, false
		}
		if tok := vals.Get("token"); tok != "" {
			if strings.HasPrefix(tok, deviceKeyPrefix) {
				// Device keys are never accepted in a URL (docs/protocol.md#identifiers).
				return credential{}, false
			}
			return credential{kind: credToken, secret: tok, protocol: answer, fromQuery: true}, true
		}
	}
	return credential{kind: credNone, protocol: answer}, true
}

// splitProtocols splits Sec-WebSocket-Protocol header values into their
// comma-separated entries, bounded in size and count. Entries must be
// RFC 7230 tokens.
func splitProtocols(values []string) ([]string, bool) {
	total := 0
	var out []string
	for _, v := range values {
		total += len(v)
		if total > maxProtocolHeader {
			return nil, false
		}
		for _, e := range strings.Split(v, ",") {
			e = strings.TrimSpace(e)
			if e == "" {
				continue
			}
			if !isToken(e) {
				return nil, false
			}
			out = append(out, e)
			if len(out) > maxProtocolEntries {
				return nil, false
			}
		}
	}
	return out, true
}

// isToken reports whether s is an RFC 7230 token.
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return len(s) > 0
}

// originPolicy decides which browser origins may open a socket (docs/protocol.md#handshake).
type originPolicy struct {
	allowed []string
	// tls is true when the gateway itself serves TLS; proxyTLS when TLS is
	// terminated by a trusted proxy. They select the scheme a same-origin
	// page must have.
	tls      bool
	proxyTLS bool
}

// check applies the Origin rule to the request's Origin header values and
// Host: no Origin header is allowed (devices, bots); a present one must equal
// an allowed entry exactly or, with the list empty, name the request's own
// scheme, host and port.
func (p originPolicy) check(origins []string, host string) bool {
	if len(origins) == 0 {
		return true
	}
	if len(origins) != 1 {
		return false
	}
	origin := origins[0]
	if len(p.allowed) > 0 {
		for _, a := range p.allowed {
			if origin == a {
				return true
			}
		}
		return false
	}
	_, rest, found := strings.Cut(origin, "://")
	if !found || !isHostPort(rest) {
		return false
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || u.User != nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return false
	}
	switch u.Scheme {
	case "https":
		if !p.tls && !p.proxyTLS {
			return false
		}
	case "http":
		if p.tls {
			return false
		}
	default:
		return false
	}
	oh, op := splitHostPortDefault(u.Host, u.Scheme)
	hh, hp := splitHostPortDefault(host, u.Scheme)
	if oh == "" || hh == "" {
		return false
	}
	return strings.EqualFold(oh, hh) && op == hp
}

// isHostPort reports whether s has only the characters of a host[:port]
// (names, IPv4, bracketed IPv6): no path, query, fragment or userinfo.
func isHostPort(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.', c == '-', c == ':', c == '[', c == ']':
		default:
			return false
		}
	}
	return true
}

// splitHostPortDefault splits host[:port], filling in the scheme's default
// port. It returns "" for a malformed value.
func splitHostPortDefault(hostport, scheme string) (host, port string) {
	if hostport == "" {
		return "", ""
	}
	h, p, err := net.SplitHostPort(hostport)
	if err != nil {
		// No port (or malformed): the whole value is the host.
		if strings.ContainsAny(hostport, "/@ ") || strings.Count(hostport, ":") > 0 && !strings.HasPrefix(hostport, "[") {
			return "", ""
		}
		h = strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]")
		p = ""
	}
	if p == "" {
		if scheme == "https" {
			p = "443"
		} else {
			p = "80"
		}
	}
	return h, p
}

// acceptKey computes Sec-WebSocket-Accept for a client key.
func acceptKey(key string) string {
	h := sha1.New()
	h.Write([]byte(key))
	h.Write([]byte("258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

// validKey reports whether key is a base64 encoding of 16 bytes.
func validKey(key string) bool {
	if len(key) != 24 {
		return false
	}
	b, err := base64.StdEncoding.DecodeString(key)
	return err == nil && len(b) == 16
}

// headerHasToken reports whether a comma-separated header contains token,
// case-insensitively (Connection: keep-alive, Upgrade).
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, e := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(e), token) {
				return true
			}
		}
	}
	return false
}
