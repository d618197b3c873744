// Package wstest is a raw-frame WebSocket client for tests. It uses no
// WebSocket library: the handshake is written by hand with any headers, and
// frames are built byte by byte, so tests can send what a real client never
// would (unmasked frames, bad opcodes, RSV bits, oversized control frames,
// lying lengths, broken fragmentation) and read exactly what the server
// answers, close codes included.
//
// A Conn is meant for one goroutine at a time, except that Close and
// NetConn may be called from any goroutine.
package wstest

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Opcodes.
const (
	OpContinuation = 0x0
	OpText         = 0x1
	OpBinary       = 0x2
	OpClose        = 0x8
	OpPing         = 0x9
	OpPong         = 0xA
)

// Options shape the handshake.
type Options struct {
	// Header is added to the handshake request (Origin,
	// Sec-WebSocket-Protocol, …). It overrides the defaults for Upgrade,
	// Connection, Sec-WebSocket-Key and Sec-WebSocket-Version.
	Header http.Header
	// Omit lists default headers to leave out (e.g. "Sec-WebSocket-Key").
	Omit []string
	// TLS, when set, dials with TLS (wss:// URLs need it).
	TLS *tls.Config
	// LocalAddr is the source IP to dial from (e.g. "127.0.0.2").
	LocalAddr string
	// ReadBuffer, when positive, sets the socket receive buffer (to make a
	// client fall behind quickly).
	ReadBuffer int
}

// ErrHandshake is returned when the server does not answer 101.
var ErrHandshake = errors.New("wstest: handshake refused")

// CloseError is a close frame received from the server.
type CloseError struct {
	Code   int
	Reason string
}

func (e *CloseError) Error() string {
	return fmt.Sprintf("wstest: closed by server: %d %q", e.Code, e.Reason)
}

// Frame is one WebSocket frame as sent or received.
type Frame struct {
	Fin     bool
	RSV     byte // three bits, 0..7
	Op      byte
	Payload []byte
	// Unmasked sends the frame without a mask (a protocol error from a client).
	Unmasked bool
	// Length, when non-zero, is written as the payload length instead of
	// len(Payload) (a lying header).
	Length uint64
	// Masked reports, for a received frame, whether it carried a mask.
	Masked bool
}

// Conn is a raw client connection.
type Conn struct {
	nc net.Conn
	br *bufio.Reader
	// Response is the server's 101 response.
	Response *http.Response
	// AutoPong answers pings while reading messages (default true).
	AutoPong bool
}

// Dial connects to a ws:// or wss:// URL and performs the handshake. When
// the server answers anything but 101 it returns ErrHandshake together with
// the response, whose body has been read and can be read again.
func Dial(ctx context.Context, rawURL string, opt Options) (*Conn, *http.Response, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, nil, err
	}
	d := net.Dialer{Timeout: 10 * time.Second}
	if opt.LocalAddr != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(opt.LocalAddr)}
	}
	nc, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return nil, nil, err
	}
	if opt.ReadBuffer > 0 {
		if tc, ok := nc.(*net.TCPConn); ok {
			_ = tc.SetReadBuffer(opt.ReadBuffer)
		}
	}
	if u.Scheme == "wss" || u.Scheme == "https" {
		cfg := opt.TLS
		if cfg == nil {
			cfg = &tls.Config{}
		}
		cfg = cfg.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName = u.Hostname()
		}
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, nil, err
		}
		nc = tc
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	var kb [16]byte
	_, _ = rand.Read(kb[:])
	key := base64.StdEncoding.EncodeToString(kb[:])
	h := http.Header{}
	h.Set("Upgrade", "websocket")
	h.Set("Connection", "Upgrade")
	h.Set("Sec-WebSocket-Key", key)
	h.Set("Sec-WebSocket-Version", "13")
	for k, vs := range opt.Header {
		h[http.CanonicalHeaderKey(k)] = vs
	}
	for _, k := range opt.Omit {
		h.Del(k)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\n", u.RequestURI(), u.Host)
	for k, vs := range h {
		for _, v := range vs {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(nc, b.String()); err != nil {
		nc.Close()
		return nil, nil, err
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body = io.NopCloser(strings.NewReader(string(body)))
		nc.Close()
		return nil, resp, fmt.Errorf("%w: %s", ErrHandshake, resp.Status)
	}
	if want := accept(h.Get("Sec-WebSocket-Key")); resp.Header.Get("Sec-WebSocket-Accept") != want {
		nc.Close()
		return nil, resp, fmt.Errorf("wstest: bad Sec-WebSocket-Accept %q", resp.Header.Get("Sec-WebSocket-Accept"))
	}
	_ = nc.SetDeadline(time.Time{})
	return &Conn{nc: nc, br: br, Response: resp, AutoPong: true}, resp, nil
}

func accept(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

// NetConn returns the underlying connection.
func (c *Conn) NetConn() net.Conn { return c.nc }

// SetDeadline sets the read and write deadline.
func (c *Conn) SetDeadline(t time.Time) error { return c.nc.SetDeadline(t) }

// Close closes the TCP connection without a close handshake.
func (c *Conn) Close() error { return c.nc.Close() }

// AppendFrame encodes f as a client would (masked unless f.Unmasked).
func AppendFrame(dst []byte, f Frame) []byte {
	b0 := f.Op & 0x0F
	if f.Fin {
		b0 |= 0x80
	}
	b0 |= (f.RSV & 0x7) << 4
	n := uint64(len(f.Payload))
	if f.Length != 0 {
		n = f.Length
	}
	var mbit byte
	if !f.Unmasked {
		mbit = 0x80
	}
	switch {
	case n <= 125:
		dst = append(dst, b0, mbit|byte(n))
	case n <= 0xFFFF:
		dst = append(dst, b0, mbit|126, byte(n>>8), byte(n))
	default:
		dst = append(dst, b0, mbit|127)
		dst = binary.BigEndian.AppendUint64(dst, n)
	}
	if f.Unmasked {
		return append(dst, f.Payload...)
	}
	var key [4]byte
	_, _ = rand.Read(key[:])
	dst = append(dst, key[:]...)
	start := len(dst)
	dst = append(dst, f.Payload...)
	for i := range dst[start:] {
		dst[start+i] ^= key[i&3]
	}
	return dst
}

// WriteFrame sends one frame.
func (c *Conn) WriteFrame(f Frame) error {
	_, err := c.nc.Write(AppendFrame(nil, f))
	return err
}

// WriteRaw sends bytes as they are.
func (c *Conn) WriteRaw(b []byte) error {
	_, err := c.nc.Write(b)
	return err
}

// WriteText sends s as one masked text frame.
func (c *Conn) WriteText(s string) error {
	return c.WriteFrame(Frame{Fin: true, Op: OpText, Payload: []byte(s)})
}

// WriteJSON sends v as one text frame.
func (c *Conn) WriteJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.WriteFrame(Frame{Fin: true, Op: OpText, Payload: b})
}

// WriteClose sends a close frame with code and reason.
func (c *Conn) WriteClose(code int, reason string) error {
	p := binary.BigEndian.AppendUint16(nil, uint16(code))
	return c.WriteFrame(Frame{Fin: true, Op: OpClose, Payload: append(p, reason...)})
}

// ReadFrame reads one frame as it is, with no handling of control frames.
func (c *Conn) ReadFrame() (Frame, error) {
	var f Frame
	var h [2]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		return f, err
	}
	f.Fin = h[0]&0x80 != 0
	f.RSV = (h[0] >> 4) & 7
	f.Op = h[0] & 0x0F
	f.Masked = h[1]&0x80 != 0
	n := uint64(h[1] & 0x7F)
	switch n {
	case 126:
		var e [2]byte
		if _, err := io.ReadFull(c.br, e[:]); err != nil {
			return f, err
		}
		n = uint64(binary.BigEndian.Uint16(e[:]))
	case 127:
		var e [8]byte
		if _, err := io.ReadFull(c.br, e[:]); err != nil {
			return f, err
		}
		n = binary.BigEndian.Uint64(e[:])
	}
	if n > 16<<20 {
		return f, fmt.Errorf("wstest: frame of %d bytes", n)
	}
	var key [4]byte
	if f.Masked {
		if _, err := io.ReadFull(c.br, key[:]); err != nil {
			return f, err
		}
	}
	f.Payload = make([]byte, n)
	if _, err := io.ReadFull(c.br, f.Payload); err != nil {
		return f, err
	}
	if f.Masked {
		for i := range f.Payload {
			f.Payload[i] ^= key[i&3]
		}
	}
	return f, nil
}

// ReadMessage reads the next data message, assembling fragments. Pings are
// answered when AutoPong is set; pongs are skipped; a close frame ends the
// read with a *CloseError.
func (c *Conn) ReadMessage() (op byte, msg []byte, err error) {
	for {
		f, err := c.ReadFrame()
		if err != nil {
			return 0, nil, err
		}
		switch f.Op {
		case OpPing:
			if c.AutoPong {
				if err := c.WriteFrame(Frame{Fin: true, Op: OpPong, Payload: f.Payload}); err != nil {
					return 0, nil, err
				}
			}
		case OpPong:
		case OpClose:
			return OpClose, f.Payload, closeError(f.Payload)
		case OpText, OpBinary:
			op, msg = f.Op, f.Payload
			for !f.Fin {
				if f, err = c.ReadFrame(); err != nil {
					return 0, nil, err
				}
				msg = append(msg, f.Payload...)
			}
			return op, msg, nil
		default:
			return 0, nil, fmt.Errorf("wstest: unexpected opcode %#x", f.Op)
		}
	}
}

func closeError(p []byte) *CloseError {
	if len(p) < 2 {
		return &CloseError{Code: 1005}
	}
	return &CloseError{Code: int(binary.BigEndian.Uint16(p)), Reason: string(p[2:])}
}

// ReadJSON reads the next text message into v and returns its "type".
func (c *Conn) ReadJSON(v any) (string, error) {
	_, msg, err := c.ReadMessage()
	if err != nil {
		return "", err
	}
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(msg, &head); err != nil {
		return "", fmt.Errorf("wstest: not JSON: %q", msg)
	}
	if v != nil {
		if err := json.Unmarshal(msg, v); err != nil {
			return head.Type, err
		}
	}
	return head.Type, nil
}

// ReadUntil reads messages until one of type typ arrives and decodes it into
// v. Other messages are skipped.
func (c *Conn) ReadUntil(typ string, v any) error {
	for {
		_, msg, err := c.ReadMessage()
		if err != nil {
			return err
		}
		var head struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(msg, &head) == nil && head.Type == typ {
			if v == nil {
				return nil
			}
			return json.Unmarshal(msg, v)
		}
	}
}

// ExpectClose reads until the server's close frame and returns its code and
// reason, skipping data. It fails if the connection ends without one.
func (c *Conn) ExpectClose() (code int, reason string, err error) {
	for {
		_, _, err := c.ReadMessage()
		var ce *CloseError
		if errors.As(err, &ce) {
			return ce.Code, ce.Reason, nil
		}
		if err != nil {
			return 0, "", err
		}
	}
}
