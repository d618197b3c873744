package client

// This file holds the read loop: parsing frames into envelopes and routing
// them to waiting requests, message handlers and the command runner.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/coder/websocket"

	"github.com/unhidra/unhidra/wire"
)

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
