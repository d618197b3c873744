package gateway

import (
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/unhidra/unhidra/internal/broker"
)

// hub holds ONE broker subscription per topic for the whole node,
// refcounted by the local connections subscribed to it, and fans each event
// out to them: the event's frame is encoded once per node and the same bytes
// go into every connection's bounded outbound queue.
//
// Lock order: broker (inmem holds its lock while calling handlers) →
// topic.mu → conn.mu. hub.mu is never held while calling the broker.
type hub struct {
	b   broker.Broker
	met *metrics
	log *slog.Logger

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

// event is one broker event as connections queue it: its encoded frame and
// its offset (0 for frames without one).
// removed and deleted are set for the frames that end subscriptions: a
// user who may no longer read the channel, or the channel's deletion.
type event struct {
	payload []byte
	offset  int64
	removed string
	deleted bool
	src     *broker.Event
}

func newHub(b broker.Broker, met *metrics, log *slog.Logger) *hub {
	return &hub{b: b, met: met, log: log, topics: make(map[string]*topic)}
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
		unsub, err := h.b.Subscribe(name, func(ev *broker.Event) { h.deliver(t, ev) })
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

// deliver fans one broker event out to the topic's local subscribers: its
// frame is encoded once here and the same bytes go to every connection. It
// runs on the broker's goroutine and never blocks on a connection.
func (h *hub) deliver(t *topic, src *broker.Event) {
	start := time.Now()
	ev, ok := h.encode(src)
	if !ok {
		return
	}
	t.mu.RLock()
	for c, s := range t.subs {
		c.deliver(s, ev)
	}
	t.mu.RUnlock()
	h.met.fanout.Observe(time.Since(start).Seconds())
}

// encode turns a broker event into what connections queue: the frame's
// bytes, its offset, and whether it ends subscriptions.
func (h *hub) encode(src *broker.Event) (event, bool) {
	frame := src.Frame()
	if frame == nil {
		return event{}, false
	}
	payload, err := json.Marshal(frame)
	if err != nil {
		h.log.Error("gateway: encode event", "kind", src.Kind, "channel", src.Channel, "err", err)
		return event{}, false
	}
	ev := event{payload: payload, src: src}
	switch src.Kind {
	case broker.Message:
		ev.offset = src.Offset
	case broker.MemberRemoved:
		ev.removed = src.User
	case broker.ChannelDeleted:
		ev.deleted = true
	}
	return ev, true
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
