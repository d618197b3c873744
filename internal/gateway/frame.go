package gateway

import (
	"encoding/binary"
	"errors"
	"io"
	"unicode/utf8"
)

// RFC 6455 opcodes.
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// Close codes (RFC 6455 §7.4 and docs/protocol.md#close-codes).
const (
	CloseNormal          = 1000
	CloseGoingAway       = 1001
	CloseProtocolError   = 1002
	CloseUnsupportedData = 1003
	CloseNoStatus        = 1005
	CloseInvalidPayload  = 1007
	ClosePolicyViolation = 1008
	CloseTooLarge        = 1009
	CloseInternalError   = 1011
	CloseTokenExpired    = 4001
	CloseRevoked         = 4003
	CloseSlowConsumer    = 4008
)

// maxControlPayload is the RFC 6455 limit on control frame payloads.
const maxControlPayload = 125

// frameHeader is a decoded frame header.
type frameHeader struct {
	fin    bool
	rsv    byte // the three RSV bits, shifted down
	op     byte
	masked bool
	length int64
	mask   [4]byte
}

// errProtocol is a framing violation: the connection closes with 1002.
var errProtocol = errors.New("websocket protocol error")

// readHeader reads one client frame header from r into buf (which must hold
// at least 14 bytes, so the caller can keep one small buffer per connection
// instead of a bufio.Reader). It reports a framing violation as errProtocol:
// RSV bits set, an unknown opcode, an unmasked frame, a fragmented or
// oversized control frame, or a 64-bit length with the top bit set.
func readHeader(r io.Reader, buf []byte) (frameHeader, error) {
	var h frameHeader
	if _, err := io.ReadFull(r, buf[:2]); err != nil {
		return h, err
	}
	h.fin = buf[0]&0x80 != 0
	h.rsv = (buf[0] >> 4) & 0x7
	h.op = buf[0] & 0x0F
	h.masked = buf[1]&0x80 != 0
	n := int64(buf[1] & 0x7F)
	extra := 0
	switch n {
	case 126:
		extra = 2
	case 127:
		extra = 8
	}
	need := extra
	if h.masked {
		need += 4
	}
	if need > 0 {
		if _, err := io.ReadFull(r, buf[2:2+need]); err != nil {
			return h, err
		}
	}
	switch extra {
	case 2:
		n = int64(binary.BigEndian.Uint16(buf[2:4]))
	case 8:
		u := binary.BigEndian.Uint64(buf[2:10])
		if u>>63 != 0 {
			return h, errProtocol
		}
		n = int64(u)
	}
	h.length = n
	if h.masked {
		copy(h.mask[:], buf[2+extra:2+extra+4])
	}
	if err := h.check(); err != nil {
		return h, err
	}
	return h, nil
}

// check applies the header rules a server enforces on client frames.
func (h frameHeader) check() error {
	if h.rsv != 0 || !h.masked {
		return errProtocol
	}
	switch h.op {
	case opContinuation, opText, opBinary:
	case opClose, opPing, opPong:
		if !h.fin || h.length > maxControlPayload {
			return errProtocol
		}
	default:
		return errProtocol
	}
	return nil
}

// maskBytes XORs b with the mask key starting at key position pos and
// returns the next position.
func maskBytes(key [4]byte, pos int, b []byte) int {
	for i := range b {
		b[i] ^= key[(pos+i)&3]
	}
	return (pos + len(b)) & 3
}

// putHeader encodes an unmasked, final server frame header for a payload of
// n bytes into dst and returns its length (2, 4 or 10).
func putHeader(dst *[10]byte, op byte, n int) int {
	dst[0] = 0x80 | op
	switch {
	case n <= 125:
		dst[1] = byte(n)
		return 2
	case n <= 0xFFFF:
		dst[1] = 126
		binary.BigEndian.PutUint16(dst[2:4], uint16(n))
		return 4
	default:
		dst[1] = 127
		binary.BigEndian.PutUint64(dst[2:10], uint64(n))
		return 10
	}
}

// closePayload builds a close frame body: the code and a reason trimmed to
// fit the control frame limit.
func closePayload(code int, reason string) []byte {
	if len(reason) > maxControlPayload-2 {
		reason = reason[:maxControlPayload-2]
	}
	b := make([]byte, 2+len(reason))
	binary.BigEndian.PutUint16(b, uint16(code))
	copy(b[2:], reason)
	return b
}

// parseClosePayload validates a received close frame body (RFC 6455 §5.5.1,
// §7.4). It returns the code to echo (1000 when the body is empty) or the
// close code that the violation calls for.
func parseClosePayload(p []byte) (code int, violation int) {
	switch {
	case len(p) == 0:
		return CloseNormal, 0
	case len(p) == 1:
		return 0, CloseProtocolError
	}
	code = int(binary.BigEndian.Uint16(p))
	if !validCloseCode(code) {
		return 0, CloseProtocolError
	}
	if !utf8.Valid(p[2:]) {
		return 0, CloseInvalidPayload
	}
	return code, 0
}

// validCloseCode reports whether a peer may send code in a close frame.
func validCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1011:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}
