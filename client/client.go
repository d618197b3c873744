package client

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

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
// of SPEC §3 (invalid, forbidden, rate_limited, …).
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

type retryAfterError time.Duration

func (e retryAfterError) Error() string {
	return fmt.Sprintf("the server is busy (HTTP 429), retry after %s", time.Duration(e))
}

// subprotocols returns the Sec-WebSocket-Protocol entries for a handshake.
func (c *Client) subprotocols() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.opts.APIKey != "" {
		return []string{Subprotocol, "apikey." + c.opts.APIKey}
	}
	return []string{Subprotocol, "bearer." + c.token}
}

// dial performs the handshake and classifies a failure.
func (c *Client) dial(ctx context.Context) (*websocket.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, c.opts.HandshakeTimeout)
	defer cancel()
	conn, resp, err := websocket.Dial(dctx, c.opts.URL, &websocket.DialOptions{
		HTTPClient:   c.http,
		HTTPHeader:   c.opts.Header,
		Subprotocols: c.subprotocols(),
	})
	if err == nil {
		if conn.Subprotocol() != Subprotocol {
			conn.CloseNow()
			return nil, fmt.Errorf("the server did not agree to subprotocol %s", Subprotocol)
		}
		return conn, nil
	}
	if resp != nil {
		if resp.Body != nil {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
		}
		switch resp.StatusCode {
		case http.StatusUnauthorized:
			return nil, &FatalError{ErrUnauthorized}
		case http.StatusForbidden:
			return nil, &FatalError{ErrForbidden}
		case http.StatusTooManyRequests:
			ra, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
			if ra < 1 {
				ra = 1
			}
			return nil, retryAfterError(time.Duration(ra) * time.Second)
		}
		return nil, fmt.Errorf("handshake: HTTP %d", resp.StatusCode)
	}
	if why, ok := certError(err); ok {
		return nil, &FatalError{fmt.Errorf("TLS: %s", why)}
	}
	return nil, err
}

// session is one live WebSocket connection.
type session struct {
	c      *Client
	conn   *websocket.Conn
	gen    uint64
	ctx    context.Context
	cancel context.CancelCauseFunc

	mu    sync.Mutex
	items map[string]uint64        // frame id → outbox seq
	reqs  map[string]chan envelope // frame id → waiting request
	n     uint64
}

func (s *session) nextID(prefix string) string {
	s.mu.Lock()
	s.n++
	n := s.n
	s.mu.Unlock()
	return prefix + strconv.FormatUint(s.gen, 10) + "." + strconv.FormatUint(n, 10)
}

func (s *session) write(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.c.opts.WriteTimeout)
	defer cancel()
	if err := s.conn.Write(ctx, websocket.MessageText, b); err != nil {
		s.cancel(fmt.Errorf("write: %w", err))
		return err
	}
	return nil
}

// request sends a frame with a fresh id and waits for the reply with that id.
func (s *session) request(ctx context.Context, frame map[string]any) (envelope, error) {
	id := s.nextID("r")
	ch := make(chan envelope, 1)
	s.mu.Lock()
	s.reqs[id] = ch
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.reqs, id)
		s.mu.Unlock()
	}()
	frame["id"] = id
	if err := s.write(frame); err != nil {
		return envelope{}, err
	}
	select {
	case env := <-ch:
		if env.Type == wire.TypeError {
			return env, &ServerError{Code: env.Code, Message: env.errText}
		}
		return env, nil
	case <-ctx.Done():
		return envelope{}, ctx.Err()
	case <-s.ctx.Done():
		return envelope{}, ErrNotConnected
	}
}

func (c *Client) connectOnce(ctx context.Context) error {
	conn, err := c.dial(ctx)
	if err != nil {
		return err
	}
	conn.SetReadLimit(1 << 20)
	wctx, cancel := context.WithTimeout(ctx, c.opts.HandshakeTimeout)
	typ, raw, err := conn.Read(wctx)
	cancel()
	if err != nil {
		conn.CloseNow()
		return fmt.Errorf("waiting for welcome: %w", err)
	}
	var w wire.Welcome
	if typ != websocket.MessageText || json.Unmarshal(raw, &w) != nil || w.Type != wire.TypeWelcome {
		conn.Close(websocket.StatusProtocolError, "expected welcome")
		return errors.New("the server's first frame was not a welcome")
	}
	sctx, scancel := context.WithCancelCause(ctx)
	s := &session{c: c, conn: conn, gen: c.gen.Add(1), ctx: sctx, cancel: scancel,
		items: map[string]uint64{}, reqs: map[string]chan envelope{}}
	c.mu.Lock()
	c.sess = s
	c.welcome = w
	close(c.live)
	c.mu.Unlock()
	c.connects.Add(1)
	c.log.Info("connected", "principal", w.Principal.String(), "session", w.SessionID)
	if c.opts.OnConnect != nil {
		c.opts.OnConnect(w)
	}

	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); c.readLoop(s) }()
	go func() { defer wg.Done(); c.sendLoop(s) }()
	go func() { defer wg.Done(); c.keepalive(s, w) }()
	<-sctx.Done()
	cause := context.Cause(sctx)
	code := websocket.StatusNormalClosure
	if ctx.Err() != nil {
		code = websocket.StatusGoingAway
	}
	closeDone := make(chan struct{})
	go func() {
		conn.Close(code, "")
		close(closeDone)
	}()
	select {
	case <-closeDone:
	case <-time.After(2 * time.Second):
		conn.CloseNow()
	}
	wg.Wait()
	c.mu.Lock()
	c.sess = nil
	c.live = make(chan struct{})
	c.mu.Unlock()
	c.out.requeue()
	if c.opts.OnDisconnect != nil {
		c.opts.OnDisconnect(cause)
	}
	if cs := websocket.CloseStatus(cause); cs == 4003 {
		c.log.Warn("the server ended the session (credential revoked)")
	}
	return cause
}

// keepalive pings and, for devices, sends heartbeats.
func (c *Client) keepalive(s *session, w wire.Welcome) {
	ping := time.NewTicker(c.opts.PingInterval)
	defer ping.Stop()
	var hb <-chan time.Time
	if w.Principal.IsDevice() && c.opts.HeartbeatInterval > 0 {
		t := time.NewTicker(c.opts.HeartbeatInterval)
		defer t.Stop()
		hb = t.C
		c.sendHeartbeat(s, w)
	}
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-ping.C:
			ctx, cancel := context.WithTimeout(s.ctx, c.opts.PingTimeout)
			err := s.conn.Ping(ctx)
			cancel()
			if err != nil && s.ctx.Err() == nil {
				s.cancel(fmt.Errorf("ping: no pong within %s: %w", c.opts.PingTimeout, err))
				return
			}
		case <-hb:
			c.sendHeartbeat(s, w)
		}
	}
}

func (c *Client) sendHeartbeat(s *session, w wire.Welcome) {
	f := map[string]any{}
	if c.opts.Heartbeat != nil {
		for k, v := range c.opts.Heartbeat() {
			f[k] = v
		}
	}
	f["type"] = wire.TypeHeartbeat
	f["id"] = s.nextID("h")
	f["device_id"] = w.Principal.ID
	f["ts"] = c.opts.Now().UTC().Format(time.RFC3339Nano)
	_ = s.write(f)
}

// sendLoop resubscribes, then writes outbox frames in order.
func (c *Client) sendLoop(s *session) {
	c.mu.Lock()
	chans := make([]string, 0, len(c.subs))
	for ch := range c.subs {
		chans = append(chans, ch)
	}
	c.mu.Unlock()
	for _, ch := range chans {
		if err := c.subscribeOn(s, s.ctx, ch); err != nil {
			if s.ctx.Err() != nil {
				return
			}
			c.log.Warn("resubscribe failed", "channel", ch, "err", err)
			var se *ServerError
			if errors.As(err, &se) && (se.Code == "forbidden" || se.Code == "not_found") {
				c.mu.Lock()
				delete(c.subs, ch)
				c.mu.Unlock()
			}
		}
	}
	for {
		it, wait := c.out.take(c.opts.Window)
		if it == nil {
			select {
			case <-s.ctx.Done():
				return
			case <-wait:
				continue
			}
		}
		if s.ctx.Err() != nil {
			// Put it back: the connection is gone.
			c.out.pushFront(it)
			return
		}
		id := s.nextID("o")
		frame := make(map[string]any, len(it.body)+2)
		for k, v := range it.body {
			frame[k] = v
		}
		frame["type"] = it.typ
		if it.needAck {
			frame["id"] = id
			s.mu.Lock()
			s.items[id] = it.seq
			s.mu.Unlock()
		}
		if err := s.write(frame); err != nil {
			if !it.needAck {
				c.out.pushFront(it)
			}
			return
		}
		c.sent.Add(1)
		if !it.needAck {
			it.finish(result{})
		}
	}
}

// envelope holds the fields the read loop routes on.
type envelope struct {
	Type      string          `json:"type"`
	RawID     json.RawMessage `json:"id"`
	Channel   string          `json:"channel"`
	Offset    int64           `json:"offset"`
	Recovered bool            `json:"recovered"`
	Code      string          `json:"code"`
	Message   json.RawMessage `json:"message"`
	MessageID string          `json:"message_id"`
	CommandID string          `json:"command_id"`
	Name      string          `json:"name"`
	Params    json.RawMessage `json:"params"`
	ExpiresAt time.Time       `json:"expires_at"`
	errText   string          // the message of an error frame
	raw       []byte
}

// parseEnvelope decodes a server frame far enough to route it.
func parseEnvelope(raw []byte) (envelope, error) {
	var env envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		return env, fmt.Errorf("bad frame from server: %w", err)
	}
	if env.Type == "" {
		return env, errors.New("bad frame from server: no type")
	}
	if env.Type == wire.TypeError {
		// In error frames "message" is a string.
		_ = json.Unmarshal(env.Message, &env.errText)
		env.Message = nil
	}
	env.raw = raw
	return env, nil
}

// id returns the frame id as a string ("" when absent).
func (e *envelope) id() string {
	if len(e.RawID) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(e.RawID, &s) == nil {
		return s
	}
	return string(e.RawID)
}

func (c *Client) readLoop(s *session) {
	for {
		typ, raw, err := s.conn.Read(s.ctx)
		if err != nil {
			s.cancel(fmt.Errorf("read: %w", err))
			return
		}
		if typ != websocket.MessageText {
			continue
		}
		env, err := parseEnvelope(raw)
		if err != nil {
			c.log.Warn("ignoring frame", "err", err)
			continue
		}
		c.dispatch(s, env)
	}
}

func (c *Client) dispatch(s *session, env envelope) {
	id := env.id()
	if id != "" {
		s.mu.Lock()
		seq, isItem := s.items[id]
		req, isReq := s.reqs[id]
		if isItem {
			delete(s.items, id)
		}
		s.mu.Unlock()
		if isItem {
			it, ok := c.out.complete(seq)
			if !ok {
				return
			}
			switch env.Type {
			case wire.TypeAck:
				c.acked.Add(1)
				it.finish(result{ack: wire.Ack{Channel: env.Channel, MessageID: env.MessageID, Offset: env.Offset}})
			case wire.TypeError:
				c.errs.Add(1)
				it.finish(result{err: &ServerError{Code: env.Code, Message: env.errText}})
			default:
				it.finish(result{err: fmt.Errorf("unexpected reply %q", env.Type)})
			}
			return
		}
		if isReq {
			if env.Type == wire.TypeSubscribed {
				c.onSubscribed(env)
			}
			if env.Type == wire.TypeError {
				c.errs.Add(1)
			}
			req <- env
			return
		}
	}
	switch env.Type {
	case wire.TypeMessage:
		var mf wire.MessageFrame
		if err := json.Unmarshal(env.raw, &mf); err != nil {
			c.log.Warn("ignoring message frame", "err", err)
			return
		}
		if !c.accept(mf.Channel, mf.Offset) {
			c.dups.Add(1)
			return
		}
		c.msgs.Add(1)
		if c.opts.OnMessage != nil {
			c.opts.OnMessage(mf)
		}
	case wire.TypeCommand:
		cmd := Command{ID: env.CommandID, Name: env.Name, Params: env.Params}
		go c.runCommand(s, cmd)
	case wire.TypeError:
		c.errs.Add(1)
		c.log.Warn("error from server", "code", env.Code, "message", env.errText)
	case wire.TypeHeartbeatAck:
	case wire.TypeUnsubscribed:
		// Unasked: the server ended the subscription (removed from the
		// channel, or it was deleted). Do not renew it after a reconnect.
		c.mu.Lock()
		delete(c.subs, env.Channel)
		c.mu.Unlock()
		if c.opts.OnFrame != nil {
			c.opts.OnFrame(env.Type, env.raw)
		}
	default:
		if c.opts.OnFrame != nil {
			c.opts.OnFrame(env.Type, env.raw)
		}
	}
}

// onSubscribed updates the channel's offset from a subscribed reply. It runs
// on the read loop, before any message that follows the reply.
func (c *Client) onSubscribed(env envelope) {
	c.mu.Lock()
	st := c.subs[env.Channel]
	if st == nil {
		c.mu.Unlock()
		return
	}
	var gap bool
	since := st.last
	switch {
	case !st.known:
		st.last, st.known = env.Offset, true
	case env.Recovered:
		// the missed messages follow in order and advance st.last
	default:
		gap = env.Offset > st.last
		if env.Offset > st.last {
			st.last = env.Offset
		}
	}
	c.mu.Unlock()
	if gap && c.opts.OnGap != nil {
		c.opts.OnGap(env.Channel, since, env.Offset)
	}
}

// accept records a message's offset and reports whether it is new.
func (c *Client) accept(channel string, offset int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.subs[channel]
	if st == nil {
		return true
	}
	if st.known && offset <= st.last {
		return false
	}
	st.last, st.known = offset, true
	return true
}

func (c *Client) runCommand(s *session, cmd Command) {
	status, res := "ok", any(nil)
	if c.opts.OnCommand == nil {
		status, res = "error", map[string]any{"error": "this client does not handle commands"}
	} else {
		c.mu.Lock()
		ctx := c.runCtx
		c.mu.Unlock()
		r, err := safeRun(ctx, c.opts.OnCommand, cmd)
		if err != nil {
			status, res = "error", map[string]any{"error": err.Error()}
		} else {
			res = r
		}
	}
	body := map[string]any{"command_id": cmd.ID, "status": status}
	if res != nil {
		body["result"] = res
	}
	c.out.push(&outItem{typ: wire.TypeCommandResult, body: body})
}

func safeRun(ctx context.Context, h CommandHandler, cmd Command) (res any, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("command handler panicked: %v", r)
		}
	}()
	return h(ctx, cmd)
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

// Subscribe subscribes to a channel now (when connected) and again, with
// `since`, after every reconnect. When offline it returns nil and subscribes
// on the next connection.
func (c *Client) Subscribe(ctx context.Context, channel string) error {
	if channel == "" || len(channel) > wire.MaxChannelIDLen {
		return errors.New("client: bad channel id")
	}
	c.mu.Lock()
	if _, ok := c.subs[channel]; !ok {
		c.subs[channel] = &subState{}
	}
	s := c.sess
	c.mu.Unlock()
	if s == nil {
		return nil
	}
	err := c.subscribeOn(s, ctx, channel)
	var se *ServerError
	if errors.As(err, &se) {
		c.mu.Lock()
		delete(c.subs, channel)
		c.mu.Unlock()
	}
	if errors.Is(err, ErrNotConnected) {
		return nil
	}
	return err
}

func (c *Client) subscribeOn(s *session, ctx context.Context, channel string) error {
	c.mu.Lock()
	st := c.subs[channel]
	if st != nil && st.sess == s {
		c.mu.Unlock()
		return nil // already subscribed on this connection
	}
	frame := map[string]any{"type": wire.TypeSubscribe, "channel": channel}
	if st != nil {
		if st.known {
			frame["since"] = st.last
		}
		st.sess = s
	}
	c.mu.Unlock()
	_, err := s.request(ctx, frame)
	if err != nil {
		c.mu.Lock()
		if st := c.subs[channel]; st != nil && st.sess == s {
			st.sess = nil
		}
		c.mu.Unlock()
	}
	return err
}

// Unsubscribe leaves a channel.
func (c *Client) Unsubscribe(ctx context.Context, channel string) error {
	c.mu.Lock()
	delete(c.subs, channel)
	s := c.sess
	c.mu.Unlock()
	if s == nil {
		return nil
	}
	_, err := s.request(ctx, map[string]any{"type": wire.TypeUnsubscribe, "channel": channel})
	if errors.Is(err, ErrNotConnected) {
		return nil
	}
	return err
}

// Refresh hands the server a new access token before the current one
// expires, and uses it for later reconnects. When offline it only keeps it.
func (c *Client) Refresh(ctx context.Context, token string) (time.Time, error) {
	if c.opts.APIKey != "" {
		return time.Time{}, errors.New("client: devices have no token to refresh")
	}
	c.mu.Lock()
	c.token = token
	s := c.sess
	c.mu.Unlock()
	if s == nil {
		return time.Time{}, nil
	}
	env, err := s.request(ctx, map[string]any{"type": wire.TypeRefresh, "token": token})
	if err != nil {
		return time.Time{}, err
	}
	return env.ExpiresAt, nil
}

func newClientMsgID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func publishBody(p *wire.Publish) (map[string]any, error) {
	if p.Channel == "" {
		return nil, errors.New("client: publish needs a channel")
	}
	n := 0
	body := map[string]any{"channel": p.Channel}
	if p.Text != nil {
		n++
		body["text"] = *p.Text
	}
	if p.Data != nil {
		n++
		body["data"] = p.Data
	}
	if p.E2EE != nil {
		n++
		body["e2ee"] = p.E2EE
	}
	if n != 1 {
		return nil, errors.New("client: publish needs exactly one of text, data and e2ee")
	}
	if p.ClientMsgID == "" {
		p.ClientMsgID = newClientMsgID()
	}
	body["client_msg_id"] = p.ClientMsgID
	if p.ThreadID != "" {
		body["thread_id"] = p.ThreadID
	}
	return body, nil
}

// Publish posts a message and waits for its ack (the message is stored).
// Offline, the message waits in the buffer. A client_msg_id is generated when
// p has none, so a resend after a reconnect is stored once.
func (c *Client) Publish(ctx context.Context, p wire.Publish) (wire.Ack, error) {
	body, err := publishBody(&p)
	if err != nil {
		return wire.Ack{}, err
	}
	return c.wait(ctx, &outItem{typ: wire.TypePublish, body: body, needAck: true, done: make(chan result, 1)})
}

// QueuePublish buffers a message without waiting for its ack.
func (c *Client) QueuePublish(p wire.Publish) error {
	body, err := publishBody(&p)
	if err != nil {
		return err
	}
	c.out.push(&outItem{typ: wire.TypePublish, body: body, needAck: true})
	return nil
}

func telemetryBody(t Telemetry) map[string]any {
	body := map[string]any{"data": t.Data}
	if !t.TS.IsZero() {
		body["ts"] = t.TS.UTC().Format(time.RFC3339Nano)
	}
	if t.Seq != 0 {
		body["seq"] = t.Seq
	}
	return body
}

// Telemetry sends a telemetry point (devices) and waits for its ack.
func (c *Client) Telemetry(ctx context.Context, t Telemetry) (wire.Ack, error) {
	return c.wait(ctx, &outItem{typ: wire.TypeTelemetry, body: telemetryBody(t), needAck: true, done: make(chan result, 1)})
}

// QueueTelemetry buffers a telemetry point without waiting: it is sent in
// order, now or after the next reconnect.
func (c *Client) QueueTelemetry(t Telemetry) {
	c.out.push(&outItem{typ: wire.TypeTelemetry, body: telemetryBody(t), needAck: true})
}

func (c *Client) wait(ctx context.Context, it *outItem) (wire.Ack, error) {
	c.out.push(it)
	select {
	case r := <-it.done:
		return r.ack, r.err
	case <-ctx.Done():
		return wire.Ack{}, ctx.Err()
	}
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
