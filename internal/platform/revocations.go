package platform

import (
	"context"
	"log/slog"
	"time"

	"github.com/unhidra/unhidra/internal/broker"
)

// revocationFeed carries revocations written by other processes (the
// `unhidra user disable`, `user set-password` and `device revoke` commands
// beside a running server) to this process's transports: every interval it
// reads the sessions and devices revoked within the last window and
// publishes each one it has not published yet on the broker's revocations
// topic, so their live WebSocket and MQTT sessions close. Revocations made
// by this process are published again at most once; the transports close
// a session only once.
type revocationFeed struct {
	recent func(ctx context.Context, since time.Time) ([]broker.Revocation, error)
	pub    broker.Broker
	log    *slog.Logger
	every  time.Duration
	window time.Duration
	now    func() time.Time
	seen   map[broker.Revocation]time.Time
}

func (f *revocationFeed) Name() string { return "revocation feed" }

// Run polls until ctx ends.
func (f *revocationFeed) Run(ctx context.Context) error {
	t := time.NewTicker(f.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			f.poll(ctx)
		}
	}
}

func (f *revocationFeed) poll(ctx context.Context) {
	now := f.now()
	revs, err := f.recent(ctx, now.Add(-f.window))
	if err != nil {
		if ctx.Err() == nil {
			f.log.Warn("revocation feed", "err", err)
		}
		return
	}
	for _, r := range revs {
		if _, done := f.seen[r]; done {
			continue
		}
		f.seen[r] = now
		if err := f.pub.Publish(ctx, broker.RevocationTopic, broker.RevocationEvent(r)); err != nil {
			f.log.Warn("revocation feed publish", "err", err)
		}
	}
	for r, at := range f.seen {
		if now.Sub(at) > 2*f.window {
			delete(f.seen, r)
		}
	}
}
