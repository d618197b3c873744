package e2etest

// The raw-frame WebSocket client of the suites (internal/wstest), as a
// client sees the gateway: the welcome first, then JSON frames.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/wstest"
	"github.com/unhidra/unhidra/wire"
)

// WSConn is a raw-frame WebSocket client that has read its welcome.
type WSConn struct {
	*wstest.Conn
	Welcome wire.Welcome
}

// DialWS connects with the given Sec-WebSocket-Protocol (empty: none) and
// reads the welcome frame.
func DialWS(t testing.TB, url, protocol string) *WSConn {
	t.Helper()
	c, err := TryWS(url, protocol)
	if err != nil {
		t.Fatalf("dial %s: %v", strings.SplitN(url, "?", 2)[0], err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TryWS is DialWS returning the error.
func TryWS(url, protocol string) (*WSConn, error) {
	h := http.Header{}
	if protocol != "" {
		h.Set("Sec-WebSocket-Protocol", protocol)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, res, err := wstest.Dial(ctx, url, wstest.Options{Header: h})
	if err != nil {
		if res != nil {
			b, _ := io.ReadAll(res.Body)
			return nil, fmt.Errorf("%w: %d %s", err, res.StatusCode, b)
		}
		return nil, err
	}
	w := &WSConn{Conn: c}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	typ, err := c.ReadJSON(&w.Welcome)
	_ = c.SetDeadline(time.Time{})
	if err != nil || typ != wire.TypeWelcome {
		c.Close()
		return nil, fmt.Errorf("first frame %q: %v", typ, err)
	}
	return w, nil
}

// Frame is any server frame, decoded loosely.
type Frame struct {
	Type      string          `json:"type"`
	ID        json.RawMessage `json:"id"`
	Channel   string          `json:"channel"`
	Offset    int64           `json:"offset"`
	Recovered bool            `json:"recovered"`
	MessageID string          `json:"message_id"`
	Message   json.RawMessage `json:"message"` // a Message object, or an error frame's text
	Code      string          `json:"code"`
	CommandID string          `json:"command_id"`
	Name      string          `json:"name"`
	Params    json.RawMessage `json:"params"`
	Raw       []byte          // the frame as it came
}

// Msg decodes the Message a message, message_updated or message_deleted
// frame carries.
func (f Frame) Msg(t testing.TB) wire.Message {
	t.Helper()
	var m wire.Message
	if err := json.Unmarshal(f.Message, &m); err != nil {
		t.Fatalf("%s frame without a message: %s", f.Type, f.Raw)
	}
	return m
}

// Read reads the next server frame within d.
func (c *WSConn) Read(t testing.TB, d time.Duration) Frame {
	t.Helper()
	f, err := c.TryRead(d)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return f
}

func (c *WSConn) TryRead(d time.Duration) (Frame, error) {
	_ = c.SetDeadline(time.Now().Add(d))
	defer c.SetDeadline(time.Time{})
	_, msg, err := c.ReadMessage()
	if err != nil {
		return Frame{}, err
	}
	var f Frame
	if err := json.Unmarshal(msg, &f); err != nil {
		return Frame{}, fmt.Errorf("not JSON: %q", msg)
	}
	f.Raw = msg
	return f, nil
}

// Until reads frames until one of type typ arrives (within d in total).
func (c *WSConn) Until(t testing.TB, typ string, d time.Duration) Frame {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("no %q frame within %s", typ, d)
		}
		f, err := c.TryRead(left)
		if err != nil {
			t.Fatalf("waiting for %q: %v", typ, err)
		}
		if f.Type == typ {
			return f
		}
	}
}

// Send writes one frame.
func (c *WSConn) Send(t testing.TB, v any) {
	t.Helper()
	if err := c.WriteJSON(v); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// CloseCode waits up to d for the server's close frame and returns its code
// (0 when the connection ended without one).
func (c *WSConn) CloseCode(d time.Duration) (int, error) {
	_ = c.SetDeadline(time.Now().Add(d))
	code, _, err := c.ExpectClose()
	return code, err
}
