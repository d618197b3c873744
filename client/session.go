package client

// This file holds one connection's life: the handshake (dial, welcome),
// the session and its request/response matching, keepalive and heartbeats,
// and the send loop that drains the outbox.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/unhidra/unhidra/wire"
)

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
