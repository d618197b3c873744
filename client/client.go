package client

// This file holds the Client, its options and errors, and the reconnect
// loop (Run); the connection is in session.go, the read loop in
// dispatch.go, the application calls in calls.go.

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/unhidra/unhidra/wire"
)

// Subprotocol is the WebSocket subprotocol of Unhidra's frame protocol.
const Subprotocol = "unhidra.v1"

// Errors returned by the client.
var (
	// ErrUnauthorized means the server answered the handshake with 401: the
	// device key was revoked or is wrong, or the access token expired. Run
	// stops retrying.
	ErrUnauthorized = errors.New("the server refused the credential (HTTP 401): the device key is revoked or wrong, or the access token is invalid or expired; not retrying")
	// ErrForbidden means the server answered the handshake with 403 (an
	// Origin that is not allowed). Run stops retrying.
	ErrForbidden = errors.New("the server refused the connection (HTTP 403): origin not allowed; not retrying")
	// ErrDropped is returned for a frame pushed out of the full offline buffer.
	ErrDropped = errors.New("dropped from the full offline buffer")
	// ErrClosed is returned for frames still waiting when Run ends.
	ErrClosed = errors.New("client stopped")
	// ErrNotConnected is returned by calls that need a live connection.
	ErrNotConnected = errors.New("not connected")
)

// ServerError is an `error` frame from the server: Code is one of the codes
// of docs/protocol.md#error-codes (invalid, forbidden, rate_limited, …).
type ServerError struct {
	Code    string
	Message string
}

func (e *ServerError) Error() string { return "server: " + e.Code + ": " + e.Message }

// FatalError wraps an error after which Run does not retry (a refused
// credential or a certificate that cannot be verified).
type FatalError struct{ Err error }

func (e *FatalError) Error() string { return e.Err.Error() }
func (e *FatalError) Unwrap() error { return e.Err }

// Command is a command sent to a device.
type Command struct {
	ID     string
	Name   string
	Params json.RawMessage
}

// CommandHandler runs a command and returns its result (any JSON value) or
// an error, which is reported with status "error". It runs on its own
// goroutine; ctx ends when the client stops.
type CommandHandler func(ctx context.Context, cmd Command) (result any, err error)

// Telemetry is one telemetry point.
type Telemetry struct {
	Data any       // a JSON object
	TS   time.Time // zero: the server's receive time
	Seq  int64     // optional sequence number (0: omitted)
}

// Options configures a Client. URL and one of APIKey and Token are required;
// every other field has a default.
type Options struct {
	// URL is the gateway's WebSocket endpoint, ws://host:9000/ws or wss://….
	URL string
	// APIKey authenticates a device (`unhidra.v1, apikey.<key>`).
	APIKey string
	// Token authenticates a user or bot (`unhidra.v1, bearer.<token>`).
	Token string

	// CAFile names a PEM file of extra trusted roots, added to the system pool.
	CAFile string
	// InsecureSkipVerify turns certificate verification off (a warning is
	// logged). Never use it in production.
	InsecureSkipVerify bool
	// TLSConfig, when set, is used as is instead of CAFile/InsecureSkipVerify.
	TLSConfig *tls.Config
	// DialContext dials the TCP connection (e.g. to bind a local address).
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// Header adds HTTP headers to the handshake (e.g. Origin).
	Header http.Header

	Logger *slog.Logger

	PingInterval      time.Duration // default 30s
	PingTimeout       time.Duration // default 10s
	HeartbeatInterval time.Duration // default 60s; devices only; negative disables
	HandshakeTimeout  time.Duration // default 10s (dial plus welcome)
	WriteTimeout      time.Duration // default 10s

	// Reconnect backoff: BackoffMin doubling to BackoffMax with full jitter,
	// reset once a connection stayed up StableAfter.
	BackoffMin  time.Duration // default 1s
	BackoffMax  time.Duration // default 60s
	StableAfter time.Duration // default 1m
	// Rand returns a float in [0,1) for the jitter; nil: math/rand/v2.
	Rand func() float64

	// BufferSize bounds the frames (publishes, telemetry, command results)
	// kept while offline or waiting for an ack; the oldest unsent is dropped
	// first. Default 1000.
	BufferSize int
	// Window bounds the frames sent but not yet acked. Default 32.
	Window int

	// Heartbeat returns extra heartbeat fields (e.g. free_heap); device_id
	// and ts are filled in.
	Heartbeat func() map[string]any

	OnConnect    func(wire.Welcome)
	OnDisconnect func(err error)
	// OnMessage receives channel messages, in offset order per channel, with
	// duplicates (after a reconnect) dropped. It runs on the read loop: keep
	// it short.
	OnMessage func(wire.MessageFrame)
	// OnGap is called when a resubscription could not recover every missed
	// message (recovered:false); fetch the messages after since via REST.
	OnGap func(channel string, since, now int64)
	// OnCommand handles commands (devices). Without it every command is
	// answered with status "error".
	OnCommand CommandHandler
	// OnFrame receives every other server frame (presence, typing,
	// message_updated, …) as raw JSON.
	OnFrame func(typ string, raw []byte)

	Now func() time.Time
}

// Stats are the client's counters.
type Stats struct {
	Connected  bool
	Connects   uint64 // successful connections
	Failures   uint64 // failed connection attempts and dropped connections
	Sent       uint64 // frames written from the outbox
	Acked      uint64 // acks received
	Errors     uint64 // error frames received
	Dropped    uint64 // frames dropped from the full buffer
	Queued     int    // frames waiting to be sent
	InFlight   int    // frames sent and waiting for an ack
	Duplicates uint64 // duplicate messages dropped after a resubscription
	Messages   uint64 // messages delivered to OnMessage
}

// Client is a connection to an Unhidra gateway that survives disconnects.
// Its methods are safe for concurrent use; Run must be called exactly once.
type Client struct {
	opts Options
	log  *slog.Logger
	out  *outbox
	http *http.Client

	mu      sync.Mutex
	token   string
	subs    map[string]*subState
	sess    *session
	welcome wire.Welcome
	live    chan struct{} // closed while a session is live

	connects, failures, sent, acked, errs, dups, msgs atomic.Uint64
	gen                                               atomic.Uint64
	runCtx                                            context.Context
}

type subState struct {
	last  int64 // last offset delivered; 0 when unknown
	known bool
	// sess is the connection the subscribe was sent on, so Subscribe and the
	// resubscription after a reconnect never both send it on one
	// connection (a second `subscribed` would move the offset past live
	// messages still on their way).
	sess *session
}

// New checks opts and returns a Client; call Run to connect.
func New(opts Options) (*Client, error) {
	u, err := url.Parse(opts.URL)
	if err != nil || (u.Scheme != "ws" && u.Scheme != "wss" && u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("client: URL %q must be ws://host/ws or wss://host/ws", opts.URL)
	}
	if (opts.APIKey == "") == (opts.Token == "") {
		return nil, errors.New("client: exactly one of APIKey and Token is needed")
	}
	if u.Query().Get("token") != "" || strings.Contains(opts.URL, opts.credential()) {
		return nil, errors.New("client: credentials never go in the URL")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&opts.PingInterval, 30*time.Second)
	def(&opts.PingTimeout, 10*time.Second)
	def(&opts.HeartbeatInterval, 60*time.Second)
	def(&opts.HandshakeTimeout, 10*time.Second)
	def(&opts.WriteTimeout, 10*time.Second)
	def(&opts.BackoffMin, time.Second)
	def(&opts.BackoffMax, 60*time.Second)
	def(&opts.StableAfter, time.Minute)
	if opts.BufferSize <= 0 {
		opts.BufferSize = 1000
	}
	if opts.Window <= 0 {
		opts.Window = 32
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	tcfg := opts.TLSConfig
	if tcfg == nil && (u.Scheme == "wss" || u.Scheme == "https") {
		tcfg, err = TLSConfig(opts.CAFile, opts.InsecureSkipVerify, opts.Logger)
		if err != nil {
			return nil, fmt.Errorf("client: %w", err)
		}
	}
	tr := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		TLSClientConfig:     tcfg,
		TLSHandshakeTimeout: opts.HandshakeTimeout,
		DisableKeepAlives:   true,
	}
	if opts.DialContext != nil {
		tr.DialContext = opts.DialContext
	} else {
		tr.DialContext = (&net.Dialer{Timeout: opts.HandshakeTimeout, KeepAlive: 30 * time.Second}).DialContext
	}
	c := &Client{
		opts:  opts,
		log:   opts.Logger,
		out:   newOutbox(opts.BufferSize),
		http:  &http.Client{Transport: tr},
		token: opts.Token,
		subs:  map[string]*subState{},
		live:  make(chan struct{}),
	}
	return c, nil
}

func (o *Options) credential() string {
	if o.APIKey != "" {
		return o.APIKey
	}
	return o.Token
}

// Run connects and keeps reconnecting until ctx ends (it returns nil) or the
// server refuses the credential or the certificate cannot be verified (it
// returns a *FatalError). Frames still buffered when it returns fail with
// ErrClosed or the fatal error.
func (c *Client) Run(ctx context.Context) error {
	c.mu.Lock()
	c.runCtx = ctx
	c.mu.Unlock()
	bo := &Backoff{Min: c.opts.BackoffMin, Max: c.opts.BackoffMax, Rand: c.opts.Rand}
	for {
		start := c.opts.Now()
		err := c.connectOnce(ctx)
		if ctx.Err() != nil {
			c.out.failAll(ErrClosed)
			return nil
		}
		var fe *FatalError
		if errors.As(err, &fe) {
			c.log.Error("connection refused; not retrying", "err", err)
			c.out.failAll(err)
			return err
		}
		c.failures.Add(1)
		if c.opts.Now().Sub(start) >= c.opts.StableAfter {
			bo.Reset()
		}
		d := bo.Next()
		var ra retryAfterError
		if errors.As(err, &ra) && time.Duration(ra) > d {
			d = time.Duration(ra)
		}
		c.log.Warn("disconnected; reconnecting", "err", err, "in", d.Round(time.Millisecond), "attempt", bo.Attempt())
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			c.out.failAll(ErrClosed)
			return nil
		case <-t.C:
		}
	}
}

// current returns the live session, or nil.
func (c *Client) current() *session {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sess
}

// WaitConnected blocks until a connection is live or ctx ends.
func (c *Client) WaitConnected(ctx context.Context) error {
	c.mu.Lock()
	live := c.live
	c.mu.Unlock()
	select {
	case <-live:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Welcome returns the welcome of the live connection.
func (c *Client) Welcome() (wire.Welcome, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.welcome, c.sess != nil
}

// Stats returns the client's counters.
func (c *Client) Stats() Stats {
	q, inf, dropped := c.out.stats()
	return Stats{
		Connected:  c.current() != nil,
		Connects:   c.connects.Load(),
		Failures:   c.failures.Load(),
		Sent:       c.sent.Load(),
		Acked:      c.acked.Load(),
		Errors:     c.errs.Load(),
		Dropped:    dropped,
		Queued:     q,
		InFlight:   inf,
		Duplicates: c.dups.Load(),
		Messages:   c.msgs.Load(),
	}
}
