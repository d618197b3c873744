package client

// This file holds the calls applications make: subscriptions, token
// refresh, publishing and telemetry.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"time"

	"github.com/unhidra/unhidra/wire"
)

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
