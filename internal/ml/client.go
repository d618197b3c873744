package ml

// Client is the server's side of the socket: a small pool of connections
// to the worker, one request at a time on each (responses on a connection
// come in request order, so an idle connection is always in sync), every
// request bounded by the timeout. A connection that fails in any way —
// timeout, broken stream, a frame that breaks the protocol — is closed,
// never reused: a late answer must not be read as the next request's.

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"
)

// ErrTimeout is a request the worker did not answer within the timeout.
var ErrTimeout = errors.New("ml: worker did not answer in time")

// ErrUnavailable wraps a failure to reach the worker (no socket, refused,
// the connection broken before the answer): the request may be retried.
var ErrUnavailable = errors.New("ml: worker unavailable")

// Client sends requests to the worker on the Unix socket Path. It is safe
// for concurrent use.
type Client struct {
	path    string
	timeout time.Duration
	idle    chan *conn
}

// NewClient returns a client of the worker at path keeping at most pool
// idle connections, each request bounded by timeout.
func NewClient(path string, timeout time.Duration, pool int) *Client {
	if pool <= 0 {
		pool = 1
	}
	return &Client{path: path, timeout: timeout, idle: make(chan *conn, pool)}
}

// Do sends one request for model with data and returns the response: the
// worker's error as a *WorkerError, ErrTimeout, an error wrapping
// ErrUnavailable, or a *ProtocolError.
func (c *Client) Do(ctx context.Context, model string, data any) (Response, error) {
	id := newRequestID()
	body, err := json.Marshal(Request{RequestID: id, ModelID: model, Data: data})
	if err != nil {
		return Response{}, fmt.Errorf("ml: encode request: %w", err)
	}
	if len(body) > MaxFrame {
		return Response{}, fmt.Errorf("%w: request of %d bytes", ErrFrameTooLarge, len(body))
	}
	cn, err := c.get(ctx)
	if err != nil {
		return Response{}, err
	}
	resp, err := cn.roundTrip(ctx, c.timeout, id, body)
	if err != nil {
		cn.close()
		return Response{}, err
	}
	c.put(cn)
	if resp.Error != nil {
		return resp, resp.Error
	}
	return resp, nil
}

// Close closes the idle connections.
func (c *Client) Close() {
	for {
		select {
		case cn := <-c.idle:
			cn.close()
		default:
			return
		}
	}
}

func (c *Client) get(ctx context.Context) (*conn, error) {
	select {
	case cn := <-c.idle:
		return cn, nil
	default:
	}
	return dial(ctx, c.path, c.timeout)
}

func (c *Client) put(cn *conn) {
	select {
	case c.idle <- cn:
	default:
		cn.close()
	}
}

// CheckSocket refuses a socket the server must not talk to: not a socket,
// open to other users, or owned by another user (who could have put it
// there to read our telemetry or forge scores).
func CheckSocket(path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("ml: %s is not a socket", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("ml: socket %s is open to other users (mode %04o); refused", path, perm)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("ml: socket %s belongs to uid %d, not to this process; refused", path, st.Uid)
	}
	return nil
}

// conn is one connection to the worker.
type conn struct {
	c   net.Conn
	r   *bufio.Reader
	buf []byte
}

func dial(ctx context.Context, path string, timeout time.Duration) (*conn, error) {
	if err := CheckSocket(path); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return &conn{c: c, r: bufio.NewReaderSize(c, 64<<10)}, nil
}

func (cn *conn) close() { cn.c.Close() }

// roundTrip writes one request and reads its response within timeout (or
// ctx's deadline, when earlier).
func (cn *conn) roundTrip(ctx context.Context, timeout time.Duration, id string, body []byte) (Response, error) {
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := cn.c.SetDeadline(deadline); err != nil {
		return Response{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	var err error
	if cn.buf, err = AppendFrame(cn.buf[:0], body); err != nil {
		return Response{}, err
	}
	if _, err := cn.c.Write(cn.buf); err != nil {
		return Response{}, classify(err)
	}
	if cap(cn.buf) > 1<<20 {
		cn.buf = nil // do not keep a large request's buffer per connection
	}
	frame, err := ReadFrame(cn.r, MaxFrame)
	switch {
	case errors.Is(err, ErrFrameTooLarge), errors.Is(err, ErrEmptyFrame), errors.Is(err, ErrNotUTF8):
		return Response{}, &ProtocolError{err.Error()}
	case err != nil:
		return Response{}, classify(err)
	}
	resp, err := DecodeResponse(frame)
	if err != nil {
		return Response{}, err
	}
	if resp.RequestID == nil {
		// A frame-level refusal (the worker found our frame bad) ends the
		// connection on the worker's side.
		return Response{}, &ProtocolError{"the worker refused the frame: " + resp.Error.Code + ": " + resp.Error.Message}
	}
	if *resp.RequestID != id {
		return Response{}, &ProtocolError{"response for another request"}
	}
	return resp, nil
}

func classify(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ErrTimeout
	}
	return fmt.Errorf("%w: %v", ErrUnavailable, err)
}

func newRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
