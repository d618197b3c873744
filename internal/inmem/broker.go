// Package inmem holds the in-process implementations used when Unhidra runs
// as a single node: the message broker.
package inmem

import (
	"context"
	"sync"

	"github.com/unhidra/unhidra/internal/broker"
)

var _ broker.Broker = (*Broker)(nil)

// Broker is an in-process broker.Broker. Publish calls the handlers of the
// topic synchronously on the publisher's goroutine, so a single publisher's
// events reach every subscriber in publish order; publishers that need one
// order across goroutines (chat offsets) serialise their own publishes. It is
// safe for concurrent use.
type Broker struct {
	mu     sync.RWMutex
	next   uint64
	topics map[string]map[uint64]func(*broker.Event)
}

// NewBroker returns an empty broker.
func NewBroker() *Broker {
	return &Broker{topics: make(map[string]map[uint64]func(*broker.Event))}
}

// Publish delivers ev to the current subscribers of topic.
func (b *Broker) Publish(ctx context.Context, topic string, ev *broker.Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	for _, h := range b.topics[topic] {
		h(ev)
	}
	return nil
}

// Subscribe registers h for topic.
func (b *Broker) Subscribe(topic string, h func(*broker.Event)) (func(), error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.next++
	id := b.next
	subs := b.topics[topic]
	if subs == nil {
		subs = make(map[uint64]func(*broker.Event))
		b.topics[topic] = subs
	}
	subs[id] = h
	var once sync.Once
	return func() {
		once.Do(func() {
			b.mu.Lock()
			defer b.mu.Unlock()
			delete(b.topics[topic], id)
			if len(b.topics[topic]) == 0 {
				delete(b.topics, topic)
			}
		})
	}, nil
}

// Topics returns the number of topics with at least one subscriber.
func (b *Broker) Topics() int {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return len(b.topics)
}
