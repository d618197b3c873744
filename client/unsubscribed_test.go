package client

import (
	"context"
	"testing"
	"time"

	"github.com/unhidra/unhidra/wire"
)

// When the server ends a subscription itself (the user was removed from
// the channel, or it was deleted), the client forgets the channel instead
// of subscribing to it again after every reconnect.
func TestAServerEndedSubscriptionIsNotRenewedAfterAReconnect(t *testing.T) {
	g := newFakeGateway(t, false)
	o := testOptions(g.url(), "unhidra_dk_good")
	c, _ := New(o)
	runClient(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	for _, ch := range []string{"general", "secret"} {
		if err := c.Subscribe(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
	g.broadcast(wire.Unsubscribed{Type: wire.TypeUnsubscribed, Channel: "secret", Reason: wire.UnsubscribedRemoved})
	eventually(t, "the client forgot the channel", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		_, ok := c.subs["secret"]
		return !ok
	})
	g.mu.Lock()
	before := len(g.subscribes)
	g.mu.Unlock()
	g.kill()
	eventually(t, "general was subscribed again", func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return len(g.subscribes) > before
	})
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // let any further resubscribe arrive
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, f := range g.subscribes[before:] {
		if f["channel"] == "secret" {
			t.Errorf("the client subscribed again to a channel the server ended: %v", f)
		}
	}
}
