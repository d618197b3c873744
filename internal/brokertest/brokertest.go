// Package brokertest is the conformance suite of the broker contract
// (internal/broker), run against every implementation: the in-process
// broker now, Redis Streams later. It also has the helpers tests use to see
// events as clients do.
package brokertest

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/broker"
	"github.com/unhidra/unhidra/wire"
)

// FrameJSON returns the WebSocket frame a client receives for ev (nil for
// an event without one), for tests that assert on frames.
func FrameJSON(ev *broker.Event) []byte {
	f := ev.Frame()
	if f == nil {
		return nil
	}
	b, err := json.Marshal(f)
	if err != nil {
		panic(fmt.Sprintf("brokertest: encode %v: %v", ev.Kind, err))
	}
	return b
}

// Open returns a broker to test, or two handles on one bus (as two nodes
// would see it) when nodes is 2; a single-process implementation returns
// the same broker twice. The suite closes nothing: Open registers cleanup.
type Open func(t *testing.T) (a, b broker.Broker)

// Run runs the conformance suite.
func Run(t *testing.T, open Open) {
	t.Run("DeliversEveryKindUnchanged", func(t *testing.T) { deliversEveryKind(t, open) })
	t.Run("EverySubscriberOfTheTopicAndNoOther", func(t *testing.T) { everySubscriber(t, open) })
	t.Run("OnePublishersOrderPerTopic", func(t *testing.T) { publishOrder(t, open) })
	t.Run("UnsubscribeStopsDeliveryAndIsIdempotent", func(t *testing.T) { unsubscribe(t, open) })
	t.Run("AcrossHandles", func(t *testing.T) { acrossHandles(t, open) })
	t.Run("ConcurrentPublishersAndSubscribers", func(t *testing.T) { concurrent(t, open) })
	t.Run("ACanceledPublishIsRefused", func(t *testing.T) { canceled(t, open) })
}

// Samples returns one event of every kind, with every field its kind uses.
func Samples() []*broker.Event {
	at := time.Date(2026, 12, 7, 8, 9, 10, 11_000, time.UTC)
	text := "hello"
	msg := &wire.Message{ID: "m1", Channel: "room", Sender: wire.Principal{Kind: wire.KindUser, ID: "alice"}, Offset: 7, CreatedAt: at, Text: &text}
	return []*broker.Event{
		{Kind: broker.Message, Channel: "room", Offset: 7, Message: msg},
		{Kind: broker.MessageUpdated, Channel: "room", Message: msg},
		{Kind: broker.MessageDeleted, Channel: "room", Message: msg},
		{Kind: broker.Typing, Channel: "room", User: "alice"},
		{Kind: broker.Presence, Channel: "room", User: "alice", Status: wire.StatusOffline, LastSeen: &at},
		{Kind: broker.MemberRemoved, Channel: "room", User: "bob"},
		{Kind: broker.ChannelDeleted, Channel: "room"},
		{Kind: broker.Command, Command: &broker.DeviceCommand{ID: "c1", Name: "reboot", Params: json.RawMessage(`{"delay":5}`)}},
		broker.RevocationEvent(broker.Revocation{Kind: broker.RevokeUserExcept, ID: "alice", Except: "s1"}),
	}
}

// collector gathers what a handler receives.
type collector struct {
	mu  sync.Mutex
	got []*broker.Event
	ch  chan struct{}
}

func newCollector() *collector { return &collector{ch: make(chan struct{}, 1<<16)} }

func (c *collector) handle(ev *broker.Event) {
	c.mu.Lock()
	c.got = append(c.got, ev)
	c.mu.Unlock()
	c.ch <- struct{}{}
}

func (c *collector) all() []*broker.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*broker.Event(nil), c.got...)
}

// wait waits for n events in all, failing after 10 s.
func (c *collector) wait(t *testing.T, n int) []*broker.Event {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for len(c.all()) < n {
		select {
		case <-c.ch:
		case <-deadline:
			t.Fatalf("got %d events, want %d", len(c.all()), n)
		}
	}
	return c.all()
}

func subscribe(t *testing.T, b broker.Broker, topic string, h func(*broker.Event)) func() {
	t.Helper()
	unsub, err := b.Subscribe(topic, h)
	if err != nil {
		t.Fatalf("subscribe %s: %v", topic, err)
	}
	t.Cleanup(unsub)
	return unsub
}

func publish(t *testing.T, b broker.Broker, topic string, ev *broker.Event) {
	t.Helper()
	if err := b.Publish(context.Background(), topic, ev); err != nil {
		t.Fatalf("publish %s %v: %v", topic, ev.Kind, err)
	}
}

func deliversEveryKind(t *testing.T, open Open) {
	a, _ := open(t)
	c := newCollector()
	subscribe(t, a, "t.kinds", c.handle)
	want := Samples()
	for _, ev := range want {
		publish(t, a, "t.kinds", ev)
	}
	got := c.wait(t, len(want))
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("event %d (%v): got %+v, want %+v", i, want[i].Kind, got[i], want[i])
		}
		if want[i].Kind != broker.Revoke && want[i].Frame() == nil {
			t.Errorf("%v has no frame", want[i].Kind)
		}
	}
}

func everySubscriber(t *testing.T, open Open) {
	a, _ := open(t)
	c1, c2, other := newCollector(), newCollector(), newCollector()
	subscribe(t, a, "t.room", c1.handle)
	subscribe(t, a, "t.room", c2.handle)
	subscribe(t, a, "t.other", other.handle)
	publish(t, a, "t.room", &broker.Event{Kind: broker.Typing, Channel: "room", User: "u"})
	c1.wait(t, 1)
	c2.wait(t, 1)
	// A marker on the other topic, published after: once it arrives, the
	// room event would have too.
	publish(t, a, "t.other", &broker.Event{Kind: broker.ChannelDeleted, Channel: "other"})
	got := other.wait(t, 1)
	if len(got) != 1 || got[0].Channel != "other" {
		t.Fatalf("the other topic's subscriber got %+v, want only its own event", got)
	}
}

func publishOrder(t *testing.T, open Open) {
	a, _ := open(t)
	c := newCollector()
	subscribe(t, a, "t.order", c.handle)
	const n = 2000
	for i := 1; i <= n; i++ {
		publish(t, a, "t.order", &broker.Event{Kind: broker.Message, Channel: "order", Offset: int64(i), Message: &wire.Message{ID: fmt.Sprint(i), Channel: "order", Offset: int64(i)}})
	}
	got := c.wait(t, n)
	for i, ev := range got {
		if ev.Offset != int64(i+1) {
			t.Fatalf("event %d has offset %d: delivered out of publish order", i, ev.Offset)
		}
	}
}

func unsubscribe(t *testing.T, open Open) {
	a, _ := open(t)
	gone, kept := newCollector(), newCollector()
	unsub := subscribe(t, a, "t.unsub", gone.handle)
	subscribe(t, a, "t.unsub", kept.handle)
	publish(t, a, "t.unsub", &broker.Event{Kind: broker.Typing, Channel: "unsub", User: "1"})
	gone.wait(t, 1)
	kept.wait(t, 1)
	unsub()
	unsub() // a second call is harmless
	publish(t, a, "t.unsub", &broker.Event{Kind: broker.Typing, Channel: "unsub", User: "2"})
	kept.wait(t, 2)
	if got := gone.all(); len(got) != 1 {
		t.Fatalf("an unsubscribed handler got %d events, want 1", len(got))
	}
	// Subscribing again after the topic emptied works.
	again := newCollector()
	subscribe(t, a, "t.unsub", again.handle)
	publish(t, a, "t.unsub", &broker.Event{Kind: broker.Typing, Channel: "unsub", User: "3"})
	if got := again.wait(t, 1); got[0].User != "3" {
		t.Fatalf("resubscribed handler got %+v", got[0])
	}
}

func acrossHandles(t *testing.T, open Open) {
	a, b := open(t)
	ca, cb := newCollector(), newCollector()
	subscribe(t, a, "t.nodes", ca.handle)
	subscribe(t, b, "t.nodes", cb.handle)
	ev := broker.RevocationEvent(broker.Revocation{Kind: broker.RevokeDevice, ID: "d1"})
	publish(t, a, "t.nodes", ev)
	publish(t, b, "t.nodes", ev)
	for name, c := range map[string]*collector{"a": ca, "b": cb} {
		for _, got := range c.wait(t, 2) {
			if !reflect.DeepEqual(got, ev) {
				t.Errorf("handle %s got %+v, want %+v", name, got, ev)
			}
		}
	}
}

func concurrent(t *testing.T, open Open) {
	a, _ := open(t)
	const pubs, each = 8, 250
	c := newCollector()
	subscribe(t, a, "t.many", c.handle)
	var wg sync.WaitGroup
	for p := range pubs {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := 1; i <= each; i++ {
				publish(t, a, "t.many", &broker.Event{Kind: broker.Typing, Channel: "many", User: fmt.Sprint(p), Offset: int64(i)})
			}
		}()
		go func() { // subscribers coming and going meanwhile
			defer wg.Done()
			for range 50 {
				unsub, err := a.Subscribe("t.many", func(*broker.Event) {})
				if err != nil {
					t.Error(err)
					return
				}
				unsub()
			}
		}()
	}
	wg.Wait()
	got := c.wait(t, pubs*each)
	last := map[string]int64{}
	for _, ev := range got {
		if ev.Offset <= last[ev.User] {
			t.Fatalf("publisher %s: %d after %d", ev.User, ev.Offset, last[ev.User])
		}
		last[ev.User] = ev.Offset
	}
}

func canceled(t *testing.T, open Open) {
	a, _ := open(t)
	c := newCollector()
	subscribe(t, a, "t.ctx", c.handle)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.Publish(ctx, "t.ctx", &broker.Event{Kind: broker.Typing, Channel: "ctx"}); err == nil {
		t.Fatal("a publish with an ended context succeeded")
	}
	publish(t, a, "t.ctx", &broker.Event{Kind: broker.Typing, Channel: "ctx", User: "after"})
	if got := c.wait(t, 1); len(got) != 1 || got[0].User != "after" {
		t.Fatalf("got %+v, want only the event published with a live context", got)
	}
}
