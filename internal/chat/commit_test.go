package chat_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/broker"
	"github.com/unhidra/unhidra/internal/chat"
	"github.com/unhidra/unhidra/internal/inmem"
	"github.com/unhidra/unhidra/internal/sqlite"
	"github.com/unhidra/unhidra/internal/sqlitetest"
	"github.com/unhidra/unhidra/wire"
)

// The two-stage group commit with a chat.DeferredStore (commit.go): the
// commit loop writes batches, its delivery stage makes them durable with
// one Sync, then publishes their events and answers their waiters. These
// tests run it on the real SQLite store, wrapped at its storage edge so
// that a Sync can fail on demand and every Sync is accounted for.

// edgeStore is the SQLite chat store with a fault switch on Sync and a
// ledger: which deferred append batch each message was written in, and up
// to which batch a successful Sync has made them durable.
type edgeStore struct {
	*sqlite.ChatStore
	failSync atomic.Bool
	syncs    atomic.Int64 // Sync calls
	failures atomic.Int64 // Syncs that failed

	mu      sync.Mutex
	batches int64            // deferred append batches returned so far
	batchOf map[string]int64 // message id → its batch
	durable int64            // every batch ≤ durable is covered by a successful Sync
}

var _ chat.DeferredStore = (*edgeStore)(nil)

func (s *edgeStore) AppendMessagesDeferred(ctx context.Context, batch []chat.Append) ([]chat.AppendResult, error) {
	res, err := s.ChatStore.AppendMessagesDeferred(ctx, batch)
	if err == nil {
		s.mu.Lock()
		s.batches++
		for _, a := range batch {
			s.batchOf[a.Msg.ID] = s.batches
		}
		s.mu.Unlock()
	}
	return res, err
}

func (s *edgeStore) Sync(ctx context.Context) error {
	s.syncs.Add(1)
	s.mu.Lock()
	covers := s.batches // a Sync covers what was returned before it began
	s.mu.Unlock()
	if s.failSync.Load() {
		s.failures.Add(1)
		return unhidra.Errorf(unhidra.EUNAVAILABLE, "injected: the disk refused the flush")
	}
	if err := s.ChatStore.Sync(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	s.durable = max(s.durable, covers)
	s.mu.Unlock()
	return nil
}

// isDurable reports whether message id was written in a batch a
// successful Sync has covered.
func (s *edgeStore) isDurable(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.batchOf[id]
	return ok && b <= s.durable
}

type edgeEnv struct {
	svc *chat.Service
	st  *edgeStore
	bus *inmem.Broker
}

func newEdgeEnv(t *testing.T) *edgeEnv {
	t.Helper()
	ctx := context.Background()
	db := sqlitetest.Open(t)
	cs, err := sqlite.NewChatStore(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	st := &edgeStore{ChatStore: cs, batchOf: map[string]int64{}}
	bus := inmem.NewBroker()
	svc := chat.NewService(st, bus, chat.Options{Audit: &recorder{}})
	t.Cleanup(func() {
		svc.Wait()
		cs.Close()
		db.Close()
	})
	return &edgeEnv{svc: svc, st: st, bus: bus}
}

// seen is what a broker subscriber of one channel received, each event
// checked against the store's ledger when it arrived.
type seen struct {
	mu      sync.Mutex
	offsets []int64
	ids     []string
	early   []string // events of messages not yet durable
}

func (e *edgeEnv) subscribe(t *testing.T, channel string) *seen {
	t.Helper()
	s := &seen{}
	unsub, err := e.bus.Subscribe(broker.ChannelTopic(channel), func(ev *broker.Event) {
		if ev.Kind != broker.Message || ev.Message == nil {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		s.offsets = append(s.offsets, ev.Offset)
		s.ids = append(s.ids, ev.Message.ID)
		if !e.st.isDurable(ev.Message.ID) {
			s.early = append(s.early, ev.Message.ID)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(unsub)
	return s
}

func (s *seen) snapshot() (offsets []int64, ids []string, early []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int64(nil), s.offsets...), append([]string(nil), s.ids...), append([]string(nil), s.early...)
}

// TestAFailedSyncAcknowledgesNothingAndPublishesNothing: while the
// store's flush to disk fails, every publish of the batches it covers —
// one alone, several concurrent — is answered unavailable and no
// subscriber sees its event; once the flush works again, later publishes
// are acknowledged, each only after a Sync covered it, and delivered in
// offset order; a retry of a refused publish (same client_msg_id) is
// answered with the message the failed batch wrote, without a second copy
// and without an event.
func TestAFailedSyncAcknowledgesNothingAndPublishesNothing(t *testing.T) {
	ctx := context.Background()
	e := newEdgeEnv(t)
	ch, _, err := e.svc.CreateChannel(ctx, alice, chat.CreateChannel{Name: "ops", Kind: chat.KindPrivate})
	if err != nil {
		t.Fatal(err)
	}
	sub := e.subscribe(t, ch.ID)

	e.st.failSync.Store(true)
	if _, err := e.svc.Publish(ctx, alice, wire.Publish{Channel: ch.ID, ClientMsgID: "lost-0", Text: txt("lost")}); code(err) != unhidra.EUNAVAILABLE {
		t.Fatalf("publish while the flush fails: %v, want unavailable", err)
	}
	const k = 8
	var wg sync.WaitGroup
	errs := make([]error, k)
	for i := range k {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = e.svc.Publish(ctx, alice, wire.Publish{Channel: ch.ID, ClientMsgID: fmt.Sprint("lost-", i+1), Text: txt("lost")})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if code(err) != unhidra.EUNAVAILABLE {
			t.Errorf("concurrent publish %d while the flush fails: %v, want unavailable", i, err)
		}
	}
	if e.st.failures.Load() == 0 {
		t.Fatal("no Sync was attempted: the deferred path is not in use")
	}
	if offs, _, _ := sub.snapshot(); len(offs) != 0 {
		t.Fatalf("subscriber saw events %v of messages whose flush failed", offs)
	}

	e.st.failSync.Store(false)
	var acks []wire.Ack
	for i := range 5 {
		ack, err := e.svc.Publish(ctx, alice, wire.Publish{Channel: ch.ID, ClientMsgID: fmt.Sprint("ok-", i), Text: txt(fmt.Sprint("ok ", i))})
		if err != nil {
			t.Fatalf("publish %d after the flush works again: %v", i, err)
		}
		if !e.st.isDurable(ack.MessageID) {
			t.Fatalf("ack %+v came before a Sync covered its message", ack)
		}
		if len(acks) > 0 && ack.Offset != acks[len(acks)-1].Offset+1 {
			t.Fatalf("ack offset %d after %d: gap", ack.Offset, acks[len(acks)-1].Offset)
		}
		acks = append(acks, ack)
	}
	offs, ids, early := sub.snapshot()
	if len(early) != 0 {
		t.Errorf("events of messages not yet durable: %v", early)
	}
	if len(offs) != len(acks) {
		t.Fatalf("subscriber saw %d events %v, want the %d acknowledged ones", len(offs), offs, len(acks))
	}
	for i, a := range acks {
		if offs[i] != a.Offset || ids[i] != a.MessageID {
			t.Errorf("event %d: offset %d id %s, want the ack's %d %s", i, offs[i], ids[i], a.Offset, a.MessageID)
		}
	}

	// The refused messages were written by their (then undurable) batch:
	// a retry gets that message back, flushed now, once.
	ack, err := e.svc.Publish(ctx, alice, wire.Publish{Channel: ch.ID, ClientMsgID: "lost-0", Text: txt("lost")})
	if err != nil {
		t.Fatalf("retry of a refused publish: %v", err)
	}
	if ack.Offset >= acks[0].Offset {
		t.Errorf("retry answered at offset %d, want the earlier offset of the refused message (before %d)", ack.Offset, acks[0].Offset)
	}
	if offs, _, _ := sub.snapshot(); len(offs) != len(acks) {
		t.Errorf("the retry published an event: %v", offs)
	}
	msgs, err := e.st.MessagesAfter(ctx, ch.ID, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != k+1+len(acks) {
		t.Errorf("%d messages stored, want %d (each written once)", len(msgs), k+1+len(acks))
	}
	for i, m := range msgs {
		if m.Offset != int64(i+1) {
			t.Fatalf("stored offset %d at %d: gap", m.Offset, i)
		}
	}
}

// TestConcurrentPublishersOnTwoChannelsThroughTheDeferredPath: 16
// publishers on each of two channels: every ack's offset is unique and
// the acks of a channel cover 1..N with no gap; each channel's subscribers
// see its events in offset order, each the message its ack named, and
// none before a Sync covered it; and the flushes were shared (fewer Syncs
// than messages).
func TestConcurrentPublishersOnTwoChannelsThroughTheDeferredPath(t *testing.T) {
	ctx := context.Background()
	e := newEdgeEnv(t)
	const publishers, each = 16, 40
	chans := make([]chat.Channel, 2)
	for c := range chans {
		ch, _, err := e.svc.CreateChannel(ctx, alice, chat.CreateChannel{Name: fmt.Sprint("room ", c), Kind: chat.KindPublic})
		if err != nil {
			t.Fatal(err)
		}
		chans[c] = ch
	}
	ids := make([]unhidra.Identity, publishers)
	for p := range ids {
		ids[p] = usr(fmt.Sprintf("p%02d", p))
		for _, ch := range chans {
			if _, err := e.svc.Join(ctx, ids[p], ch.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	subs := make([][]*seen, len(chans))
	for c, ch := range chans {
		subs[c] = []*seen{e.subscribe(t, ch.ID), e.subscribe(t, ch.ID)}
	}
	syncs0 := e.st.syncs.Load()

	type result struct {
		ack wire.Ack
		err error
	}
	results := make([][]result, len(chans)*publishers)
	var wg sync.WaitGroup
	for c := range chans {
		for p := range publishers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := &results[c*publishers+p]
				for i := range each {
					ack, err := e.svc.Publish(ctx, ids[p], wire.Publish{Channel: chans[c].ID, ClientMsgID: fmt.Sprint(i), Text: txt(fmt.Sprint(p, "/", i))})
					if err == nil && !e.st.isDurable(ack.MessageID) {
						err = fmt.Errorf("ack %+v came before a Sync covered its message", ack)
					}
					*r = append(*r, result{ack, err})
					if err != nil {
						return
					}
				}
			}()
		}
	}
	wg.Wait()

	n := publishers * each
	for c, ch := range chans {
		byOffset := make([]string, n+1)
		for p := range publishers {
			last := int64(0)
			for _, r := range results[c*publishers+p] {
				if r.err != nil {
					t.Fatalf("publisher %d on %s: %v", p, ch.ID, r.err)
				}
				o := r.ack.Offset
				if r.ack.Channel != ch.ID || o < 1 || o > int64(n) || byOffset[o] != "" {
					t.Fatalf("ack %+v: wrong channel, out of 1..%d or offset acked twice", r.ack, n)
				}
				if o <= last {
					t.Fatalf("publisher %d got offset %d after %d", p, o, last)
				}
				byOffset[o], last = r.ack.MessageID, o
			}
		}
		for o := 1; o <= n; o++ {
			if byOffset[o] == "" {
				t.Fatalf("%s: no ack for offset %d: gap", ch.ID, o)
			}
		}
		for s, sub := range subs[c] {
			offs, msgIDs, early := sub.snapshot()
			if len(early) != 0 {
				t.Errorf("%s subscriber %d: %d events before their Sync", ch.ID, s, len(early))
			}
			if len(offs) != n {
				t.Fatalf("%s subscriber %d saw %d events, want %d", ch.ID, s, len(offs), n)
			}
			for i := range offs {
				if offs[i] != int64(i+1) || msgIDs[i] != byOffset[i+1] {
					t.Fatalf("%s subscriber %d event %d: offset %d id %s, want offset %d id %s (the ack's)", ch.ID, s, i, offs[i], msgIDs[i], i+1, byOffset[i+1])
				}
			}
		}
		msgs, err := e.st.MessagesAfter(ctx, ch.ID, 0, n+10)
		if err != nil || len(msgs) != n {
			t.Fatalf("%s: stored %d (%v), want %d", ch.ID, len(msgs), err, n)
		}
		for i, m := range msgs {
			if m.Offset != int64(i+1) || m.ID != byOffset[i+1] {
				t.Fatalf("%s: stored message %d is %s at offset %d, want %s", ch.ID, i, m.ID, m.Offset, byOffset[i+1])
			}
		}
	}
	if d := e.st.syncs.Load() - syncs0; d == 0 || d >= int64(2*n) {
		t.Errorf("%d Syncs for %d messages: want at least one, shared by several messages", d, 2*n)
	}
	t.Logf("%d messages, %d Syncs", 2*n, e.st.syncs.Load()-syncs0)
}
