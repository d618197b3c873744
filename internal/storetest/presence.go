package storetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/presence"
	"github.com/unhidra/unhidra/wire"
)

// Presence runs the presence.Store conformance suite (last_seen per
// principal). open returns an empty, migrated store.
func Presence(t *testing.T, open func(t *testing.T) presence.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s presence.Store)
	}{
		{"last_seen is recorded and read back for the ids that have one", testLastSeenRoundTrip},
		{"users and devices keep separate last_seen", testLastSeenKinds},
		{"last_seen moves forward and never back", testLastSeenForward},
		{"concurrent writes all land and the newest time wins", testLastSeenConcurrent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, open(t))
		})
	}
}

var presT0 = time.Date(2026, 3, 1, 10, 0, 0, 7000, time.UTC)

func lastSeenOf(t *testing.T, s presence.Store, kind string, ids ...string) map[string]time.Time {
	t.Helper()
	got, err := s.LastSeen(context.Background(), kind, ids)
	if err != nil {
		t.Fatalf("LastSeen(%s, %v): %v", kind, ids, err)
	}
	return got
}

func setLastSeen(t *testing.T, s presence.Store, kind, id string, at time.Time) {
	t.Helper()
	if err := s.SetLastSeen(context.Background(), kind, id, at); err != nil {
		t.Fatalf("SetLastSeen(%s, %s): %v", kind, id, err)
	}
}

func testLastSeenRoundTrip(t *testing.T, s presence.Store) {
	if got := lastSeenOf(t, s, wire.KindUser, "alice"); len(got) != 0 {
		t.Errorf("LastSeen on an empty store = %v, want none", got)
	}
	setLastSeen(t, s, wire.KindUser, "alice", presT0)
	setLastSeen(t, s, wire.KindUser, "carol", presT0.Add(time.Minute))
	got := lastSeenOf(t, s, wire.KindUser, "alice", "bob", "carol")
	if len(got) != 2 || !got["alice"].Equal(presT0) || !got["carol"].Equal(presT0.Add(time.Minute)) {
		t.Errorf("LastSeen = %v, want alice at %v and carol at %v", got, presT0, presT0.Add(time.Minute))
	}
	if _, ok := got["bob"]; ok {
		t.Error("bob, never seen, has a last_seen")
	}
	if got := lastSeenOf(t, s, wire.KindUser); len(got) != 0 {
		t.Errorf("LastSeen of no ids = %v, want none", got)
	}
}

func testLastSeenKinds(t *testing.T, s presence.Store) {
	setLastSeen(t, s, wire.KindUser, "x1", presT0)
	setLastSeen(t, s, wire.KindDevice, "x1", presT0.Add(time.Hour))
	if got := lastSeenOf(t, s, wire.KindUser, "x1"); !got["x1"].Equal(presT0) {
		t.Errorf("user x1 = %v, want %v", got["x1"], presT0)
	}
	if got := lastSeenOf(t, s, wire.KindDevice, "x1"); !got["x1"].Equal(presT0.Add(time.Hour)) {
		t.Errorf("device x1 = %v, want %v", got["x1"], presT0.Add(time.Hour))
	}
	if got := lastSeenOf(t, s, wire.KindDevice, "x2"); len(got) != 0 {
		t.Errorf("device x2 = %v, want none", got)
	}
}

func testLastSeenForward(t *testing.T, s presence.Store) {
	steps := []struct {
		name string
		at   time.Time
		want time.Time
	}{
		{"the first time is kept", presT0, presT0},
		{"an older time leaves it", presT0.Add(-time.Hour), presT0},
		{"the same time leaves it", presT0, presT0},
		{"a newer time moves it", presT0.Add(time.Second), presT0.Add(time.Second)},
	}
	for _, st := range steps {
		setLastSeen(t, s, wire.KindUser, "alice", st.at)
		if got := lastSeenOf(t, s, wire.KindUser, "alice")["alice"]; !got.Equal(st.want) {
			t.Errorf("%s: last_seen = %v, want %v", st.name, got, st.want)
		}
	}
}

func testLastSeenConcurrent(t *testing.T, s presence.Store) {
	const writers, per = 8, 10
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			for i := 0; i < per; i++ {
				// Everyone writes "shared" in another order; each writes its own id once.
				at := presT0.Add(time.Duration((w*7+i*3)%(writers*per)) * time.Second)
				if err := s.SetLastSeen(ctx, wire.KindUser, "shared", at); err != nil {
					errs <- err
					return
				}
			}
			if err := s.SetLastSeen(ctx, wire.KindUser, fmt.Sprintf("u%d", w), presT0); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent SetLastSeen: %v", err)
	}
	ids := []string{"shared"}
	for w := 0; w < writers; w++ {
		ids = append(ids, fmt.Sprintf("u%d", w))
	}
	got := lastSeenOf(t, s, wire.KindUser, ids...)
	if len(got) != writers+1 {
		t.Errorf("LastSeen = %d entries, want %d", len(got), writers+1)
	}
	var newest time.Time
	for w := 0; w < writers; w++ {
		for i := 0; i < per; i++ {
			if at := presT0.Add(time.Duration((w*7+i*3)%(writers*per)) * time.Second); at.After(newest) {
				newest = at
			}
		}
	}
	if !got["shared"].Equal(newest) {
		t.Errorf("shared last_seen = %v, want the newest written, %v", got["shared"], newest)
	}
}
