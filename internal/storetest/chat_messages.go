package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/chat"
	"github.com/unhidra/unhidra/wire"
)

func testOffsets(t *testing.T, s chat.Store) {
	ctx := context.Background()
	a := mkChannel(t, s, chat.KindPublic, false, "alice")
	b := mkChannel(t, s, chat.KindPublic, false, "alice")
	for round := 0; round < 3; round++ {
		var batch []chat.Append
		for i := 0; i < 5; i++ {
			batch = append(batch, chat.Append{Msg: msg(a.ID, user("alice"), "x"), Index: true})
			batch = append(batch, chat.Append{Msg: msg(b.ID, user("alice"), "y"), Index: true})
		}
		rs, err := s.AppendMessages(ctx, batch)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range rs {
			want := int64(round*5 + i/2 + 1)
			if r.Err != nil || r.Duplicate || r.Msg.Offset != want {
				t.Fatalf("round %d item %d: offset %d err %v dup %v; want offset %d", round, i, r.Msg.Offset, r.Err, r.Duplicate, want)
			}
		}
	}
	for _, ch := range []chat.Channel{a, b} {
		got, err := s.GetChannel(ctx, ch.ID)
		if err != nil || got.LastOffset != 15 {
			t.Errorf("LastOffset = %d, %v; want 15", got.LastOffset, err)
		}
		msgs, err := s.MessagesAfter(ctx, ch.ID, 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range msgs {
			if m.Offset != int64(i+1) {
				t.Fatalf("MessagesAfter[%d].Offset = %d, want %d", i, m.Offset, i+1)
			}
		}
	}
}

func testConcurrentOffsets(t *testing.T, s chat.Store) {
	ctx := context.Background()
	ch := mkChannel(t, s, chat.KindPublic, false, "alice")
	const workers, per = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				if _, err := s.AppendMessages(ctx, []chat.Append{{Msg: msg(ch.ID, user("alice"), "c")}, {Msg: msg(ch.ID, user("alice"), "d")}}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent append: %v", err)
	}
	msgs, err := s.MessagesAfter(ctx, ch.ID, 0, workers*per*2+10)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != workers*per*2 {
		t.Fatalf("stored %d messages, want %d", len(msgs), workers*per*2)
	}
	for i, m := range msgs {
		if m.Offset != int64(i+1) {
			t.Fatalf("offset %d at position %d: gap or duplicate", m.Offset, i)
		}
	}
}

func testIdempotency(t *testing.T, s chat.Store) {
	ctx := context.Background()
	ch := mkChannel(t, s, chat.KindPublic, false, "alice")
	m := msg(ch.ID, user("alice"), "once")
	m.ClientMsgID = "c-1"
	first := appendOne(t, s, m)
	if first.Err != nil || first.Duplicate || first.Msg.Offset != 1 {
		t.Fatalf("first append = %+v", first)
	}
	// Again, in a later batch and twice within one batch, with another id
	// and body: the first message comes back.
	again := msg(ch.ID, user("alice"), "different body")
	again.ClientMsgID = "c-1"
	rs, err := s.AppendMessages(ctx, []chat.Append{{Msg: again}, {Msg: again}})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rs {
		if r.Err != nil || !r.Duplicate || r.Msg.ID != first.Msg.ID || r.Msg.Offset != 1 || *r.Msg.Text != "once" {
			t.Errorf("repeat %d = %+v, want the first message as a duplicate", i, r)
		}
	}
	// Within one batch, first occurrence stores and the second repeats it.
	n1 := msg(ch.ID, user("alice"), "two")
	n1.ClientMsgID = "c-2"
	n2 := msg(ch.ID, user("alice"), "two again")
	n2.ClientMsgID = "c-2"
	rs, err = s.AppendMessages(ctx, []chat.Append{{Msg: n1}, {Msg: n2}})
	if err != nil {
		t.Fatal(err)
	}
	if rs[0].Duplicate || rs[0].Msg.Offset != 2 || !rs[1].Duplicate || rs[1].Msg.ID != rs[0].Msg.ID {
		t.Errorf("same id twice in one batch = %+v / %+v", rs[0], rs[1])
	}
	// The same client_msg_id from another sender or channel is independent.
	other := msg(ch.ID, user("bob"), "bob's")
	other.ClientMsgID = "c-1"
	if r := appendOne(t, s, other); r.Duplicate || r.Msg.Offset != 3 {
		t.Errorf("another sender's c-1 = %+v, want a new message at offset 3", r)
	}
	all, _ := s.MessagesAfter(ctx, ch.ID, 0, 10)
	if len(all) != 3 {
		t.Errorf("stored %d messages, want 3", len(all))
	}
}

func testAppendErrors(t *testing.T, s chat.Store) {
	ctx := context.Background()
	ch := mkChannel(t, s, chat.KindPublic, false, "alice")
	other := mkChannel(t, s, chat.KindPublic, false, "alice")
	foreign := appendOne(t, s, msg(other.ID, user("alice"), "elsewhere"))
	bad := msg(ch.ID, user("alice"), "reply")
	bad.ThreadID = foreign.Msg.ID
	missing := msg(ch.ID, user("alice"), "reply")
	missing.ThreadID = ulid.Make().String()
	gone := msg("no-such-channel", user("alice"), "x")
	rs, err := s.AppendMessages(ctx, []chat.Append{{Msg: bad}, {Msg: missing}, {Msg: gone}, {Msg: msg(ch.ID, user("alice"), "ok")}})
	if err != nil {
		t.Fatal(err)
	}
	if code(rs[0].Err) != unhidra.EINVALID || code(rs[1].Err) != unhidra.EINVALID {
		t.Errorf("thread root in another channel / missing: errors %v, %v; want invalid", rs[0].Err, rs[1].Err)
	}
	if code(rs[2].Err) != unhidra.ENOTFOUND {
		t.Errorf("unknown channel: error %v, want not_found", rs[2].Err)
	}
	if rs[3].Err != nil || rs[3].Msg.Offset != 1 {
		t.Errorf("good append after failures = %+v, want offset 1", rs[3])
	}
}

func testHistory(t *testing.T, s chat.Store) {
	ctx := context.Background()
	ch := mkChannel(t, s, chat.KindPublic, false, "alice")
	appendN(t, s, ch.ID, 10)
	offs := func(ms []wire.Message) []int64 {
		var out []int64
		for _, m := range ms {
			out = append(out, m.Offset)
		}
		return out
	}
	tests := []struct {
		name string
		p    chat.Page
		want []int64
		more bool
	}{
		{"the newest page comes first", chat.Page{Limit: 3}, []int64{10, 9, 8}, true},
		{"before pages backwards", chat.Page{Before: 8, Limit: 3}, []int64{7, 6, 5}, true},
		{"the last page backwards has no more", chat.Page{Before: 3, Limit: 5}, []int64{2, 1}, false},
		{"after pages forwards, oldest first", chat.Page{After: 4, Limit: 3}, []int64{5, 6, 7}, true},
		{"after near the end has no more", chat.Page{After: 8, Limit: 5}, []int64{9, 10}, false},
		{"a range is newest first", chat.Page{Before: 6, After: 2, Limit: 10}, []int64{5, 4, 3}, false},
		{"after the last offset is empty", chat.Page{After: 10, Limit: 5}, nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, more, err := s.History(ctx, ch.ID, tc.p)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(offs(got)) != fmt.Sprint(tc.want) || more != tc.more {
				t.Errorf("History(%+v) = %v more=%v, want %v more=%v", tc.p, offs(got), more, tc.want, tc.more)
			}
		})
	}
}

func testEditDelete(t *testing.T, s chat.Store) {
	ctx := context.Background()
	ch := mkChannel(t, s, chat.KindPublic, false, "alice")
	m := appendOne(t, s, msg(ch.ID, user("alice"), "original words")).Msg
	edited, err := s.EditMessage(ctx, ch.ID, m.ID, chat.Body{Text: text("edited words")}, t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if *edited.Text != "edited words" || edited.EditedAt == nil || !edited.EditedAt.Equal(t0.Add(time.Minute)) || edited.Offset != 1 {
		t.Errorf("edited = %+v", edited)
	}
	if got, _ := s.Search(ctx, chat.SearchQuery{Match: `"original"`, Reader: chat.Reader{User: "alice"}, Limit: 10}); len(got) != 0 {
		t.Errorf("search finds the pre-edit text: %d hits", len(got))
	}
	if got, _ := s.Search(ctx, chat.SearchQuery{Match: `"edited"`, Reader: chat.Reader{User: "alice"}, Limit: 10}); len(got) != 1 {
		t.Errorf("search for the edited text: %d hits, want 1", len(got))
	}
	data := appendOne(t, s, wire.Message{ID: ulid.Make().String(), Channel: ch.ID, Sender: user("alice"), CreatedAt: t0, Data: json.RawMessage(`{"t":21.5}`)}).Msg
	if string(data.Data) != `{"t":21.5}` || data.Text != nil {
		t.Errorf("data message = %+v", data)
	}
	tomb, err := s.DeleteMessage(ctx, ch.ID, m.ID, t0.Add(2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if !tomb.Deleted || tomb.Text != nil || tomb.Data != nil || tomb.E2EE != nil || tomb.Offset != 1 || tomb.ID != m.ID {
		t.Errorf("tombstone = %+v", tomb)
	}
	if got, _ := s.Search(ctx, chat.SearchQuery{Match: `"edited"`, Reader: chat.Reader{User: "alice"}, Limit: 10}); len(got) != 0 {
		t.Errorf("search finds a deleted message: %d hits", len(got))
	}
	if _, err := s.EditMessage(ctx, ch.ID, m.ID, chat.Body{Text: text("x")}, t0); code(err) != unhidra.ECONFLICT {
		t.Errorf("editing a tombstone: error = %v, want conflict", err)
	}
	hist, _, _ := s.History(ctx, ch.ID, chat.Page{Limit: 10})
	if len(hist) != 2 || !hist[1].Deleted || hist[1].Offset != 1 {
		t.Errorf("history after delete = %+v, want the tombstone kept at offset 1", hist)
	}
	if _, err := s.GetMessage(ctx, ch.ID, "01ARZ3NDEKTSV4RRFFQ69G5FAV"); code(err) != unhidra.ENOTFOUND {
		t.Errorf("GetMessage(missing) = %v, want not_found", err)
	}
	if _, err := s.DeleteMessage(ctx, "other", m.ID, t0); code(err) != unhidra.ENOTFOUND {
		t.Errorf("DeleteMessage via another channel = %v, want not_found", err)
	}
}

func testThreads(t *testing.T, s chat.Store) {
	ctx := context.Background()
	ch := mkChannel(t, s, chat.KindPublic, false, "alice")
	root := appendOne(t, s, msg(ch.ID, user("alice"), "root")).Msg
	var replies []wire.Message
	for i := 0; i < 4; i++ {
		r := msg(ch.ID, user("bob"), fmt.Sprintf("reply %d", i))
		r.ThreadID = root.ID
		if i == 3 {
			r.ThreadID = replies[0].ID // reply to a reply
		}
		res := appendOne(t, s, r)
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		replies = append(replies, res.Msg)
		appendOne(t, s, msg(ch.ID, user("carol"), "noise"))
	}
	if replies[3].ThreadID != root.ID {
		t.Errorf("a reply to a reply has thread_id %s, want the root %s", replies[3].ThreadID, root.ID)
	}
	got, more, err := s.Thread(ctx, ch.ID, root.ID, 0, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || !more || got[0].ID != replies[0].ID || got[2].ID != replies[2].ID {
		t.Errorf("Thread page 1 = %d msgs more=%v", len(got), more)
	}
	got, more, err = s.Thread(ctx, ch.ID, root.ID, got[2].Offset, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || more || got[0].ID != replies[3].ID {
		t.Errorf("Thread page 2 = %+v more=%v, want the last reply", got, more)
	}
}
