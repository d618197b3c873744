package gateway

import (
	"bytes"
	"encoding/json"
	"sync"
	"time"

	"github.com/unhidra/unhidra/internal/broker"
	"github.com/unhidra/unhidra/wire"
)

// hub holds ONE broker subscription per topic for the whole node,
// refcounted by the local connections subscribed to it, and fans each event
// out to them: the same payload bytes go into every connection's bounded
// outbound queue, and the event's offset is parsed once, not per
// connection.
//
// Lock order: broker (inmem holds its lock while calling handlers) →
// topic.mu → conn.mu. hub.mu is never held while calling the broker.
type hub struct {
	b   broker.Broker
	met *metrics

	mu     sync.Mutex
	topics map[string]*topic
}

type topic struct {
	name  string
	ready chan struct{} // closed once the broker subscription exists
	unsub func()
	err   error
	refs  int

	mu   sync.RWMutex
	subs map[*conn]*sub
}

// event is one broker payload with its offset (0 for frames without one).
// removed and deleted are set for the frames that end subscriptions: a
// user who may no longer read the channel, or the channel's deletion.
type event struct {
	payload []byte
	offset  int64
	removed string
	deleted bool
}

func newHub(b broker.Broker, met *metrics) *hub {
	return &hub{b: b, met: met, topics: make(map[string]*topic)}
}

// add registers s of c on topic name, subscribing the node to the broker
// topic when c is its first local subscriber. Events that arrive before add
// returns are delivered to s (buffered while s.buffering).
func (h *hub) add(name string, c *conn, s *sub) error {
	h.mu.Lock()
	t := h.topics[name]
	creator := false
	if t == nil {
		t = &topic{name: name, ready: make(chan struct{}), subs: make(map[*conn]*sub)}
		h.topics[name] = t
		creator = true
	}
	t.refs++
	h.mu.Unlock()

	t.mu.Lock()
	t.subs[c] = s
	t.mu.Unlock()

	if creator {
		unsub, err := h.b.Subscribe(name, func(p []byte) { h.deliver(t, p) })
		h.mu.Lock()
		t.unsub, t.err = unsub, err
		h.mu.Unlock()
		close(t.ready)
	} else {
		<-t.ready
	}
	h.mu.Lock()
	err := t.err
	h.mu.Unlock()
	if err != nil {
		h.remove(name, c)
		return err
	}
	return nil
}

// remove unregisters c from topic name and drops the node's broker
// subscription when c was the last local subscriber.
func (h *hub) remove(name string, c *conn) {
	h.mu.Lock()
	t := h.topics[name]
	if t == nil {
		h.mu.Unlock()
		return
	}
	t.mu.Lock()
	_, had := t.subs[c]
	delete(t.subs, c)
	t.mu.Unlock()
	if !had {
		h.mu.Unlock()
		return
	}
	t.refs--
	last := t.refs == 0
	if last {
		delete(h.topics, name)
	}
	h.mu.Unlock()
	if last {
		<-t.ready
		h.mu.Lock()
		unsub := t.unsub
		h.mu.Unlock()
		if unsub != nil {
			unsub()
		}
	}
}

// topics returns the number of topics the node is subscribed to.
func (h *hub) topicCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.topics)
}

// deliver fans one broker event out to the topic's local subscribers. It
// runs on the broker's goroutine and never blocks on a connection.
func (h *hub) deliver(t *topic, payload []byte) {
	start := time.Now()
	ev := event{payload: payload, offset: eventOffset(payload)}
	ev.removed, ev.deleted = eventAccessEnd(payload)
	t.mu.RLock()
	for c, s := range t.subs {
		c.deliver(s, ev)
	}
	t.mu.RUnlock()
	h.met.fanout.Observe(time.Since(start).Seconds())
}

// eventOffset returns the top-level offset of a `message` frame, or 0.
// Frames encoded from wire.MessageFrame put "offset" before the nested
// message, so the fast path reads it without decoding the message; anything
// else is decoded properly.
func eventOffset(payload []byte) int64 {
	const prefix = `{"type":"message","channel":"`
	if !bytes.HasPrefix(payload, []byte(`{"type":"message",`)) {
		return 0
	}
	if bytes.HasPrefix(payload, []byte(prefix)) {
		rest := payload[len(prefix):]
		i := bytes.IndexByte(rest, '"')
		if i >= 0 && bytes.IndexByte(rest[:i], '\\') < 0 && bytes.HasPrefix(rest[i:], []byte(`","offset":`)) {
			rest = rest[i+len(`","offset":`):]
			var n int64
			digits := 0
			for digits < len(rest) && digits < 18 && rest[digits] >= '0' && rest[digits] <= '9' {
				n = n*10 + int64(rest[digits]-'0')
				digits++
			}
			if digits > 0 && digits < len(rest) && rest[digits] == ',' {
				return n
			}
		}
	}
	var head struct {
		Type   string `json:"type"`
		Offset int64  `json:"offset"`
	}
	if json.Unmarshal(payload, &head) != nil || head.Type != "message" {
		return 0
	}
	return head.Offset
}

// eventAccessEnd decodes the frames that end subscriptions to a channel:
// member_removed (the user it names) and channel_deleted. Other frames are
// recognised by their prefix without decoding.
func eventAccessEnd(payload []byte) (removed string, deleted bool) {
	if !bytes.HasPrefix(payload, []byte(`{"type":"member_removed"`)) && !bytes.HasPrefix(payload, []byte(`{"type":"channel_deleted"`)) {
		return "", false
	}
	var head struct {
		Type string `json:"type"`
		User string `json:"user"`
	}
	if json.Unmarshal(payload, &head) != nil {
		return "", false
	}
	switch head.Type {
	case wire.TypeMemberRemoved:
		return head.User, false
	case wire.TypeChannelDeleted:
		return "", true
	}
	return "", false
}

// subscribers returns the number of local subscribers of topic name.
func (h *hub) subscribers(name string) int {
	h.mu.Lock()
	t := h.topics[name]
	h.mu.Unlock()
	if t == nil {
		return 0
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.subs)
}
