// Package storetest is the conformance suite of chat.Store: every
// implementation (SQLite now, PostgreSQL later) runs the same tests with
// Run. Each subtest gets a fresh, empty, migrated store from newStore; the
// suite uses only the Store interface. Subtests do not run in parallel.
package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/chat"
	"github.com/unhidra/unhidra/wire"
)

// Run runs the chat.Store conformance suite.
func Run(t *testing.T, newStore func(t *testing.T) chat.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s chat.Store)
	}{
		{"channels are created, read, listed, updated and deleted", testChannels},
		{"a duplicate channel id or direct pair is a conflict", testChannelConflicts},
		{"membership is added, changed, listed and removed", testMembers},
		{"offsets start at 1 and grow by exactly 1 across batches", testOffsets},
		{"offsets are gapless under concurrent batches", testConcurrentOffsets},
		{"a repeated client_msg_id stores once and returns the first message", testIdempotency},
		{"per-append errors do not consume offsets or fail the batch", testAppendErrors},
		{"history pages run newest first, or oldest first after an offset", testHistory},
		{"edits replace the body and tombstones clear it but keep the offset", testEditDelete},
		{"threads list replies in order and replies to replies join the root", testThreads},
		{"search finds readable text and skips e2ee, deleted and foreign messages", testSearch},
		{"search treats FTS syntax as plain text", testSearchSyntax},
		{"deleting a channel removes its messages and members", testDeleteChannel},
		{"accepted_at is stored, kept on a role change and set once", testAccept},
		{"presence travels only through accepted channels and never across a block", testPresenceConsent},
		{"blocks are added once, listed, tested both ways and removed", testBlocks},
		{"channel creations are counted for the quota, deleted ones too", testCreations},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newStore(t))
		})
	}
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func user(id string) wire.Principal { return wire.Principal{Kind: wire.KindUser, ID: id} }

func mkChannel(t *testing.T, s chat.Store, kind string, e2ee bool, members ...string) chat.Channel {
	t.Helper()
	ch := chat.Channel{ID: ulid.Make().String(), Name: "ch-" + kind, Kind: kind, E2EE: e2ee, CreatedBy: "alice", CreatedAt: t0}
	var ms []chat.Member
	for i, m := range members {
		role := chat.RoleMember
		if i == 0 {
			role = chat.RoleOwner
		}
		ms = append(ms, chat.Member{User: m, Role: role, JoinedAt: t0, AcceptedAt: &t0})
	}
	if err := s.CreateChannel(context.Background(), ch, "", ms); err != nil {
		t.Fatalf("CreateChannel: %v", err)
	}
	return ch
}

func text(s string) *string { return &s }

func msg(ch string, from wire.Principal, body string) wire.Message {
	return wire.Message{ID: ulid.Make().String(), Channel: ch, Sender: from, CreatedAt: t0, Text: text(body)}
}

func appendOne(t *testing.T, s chat.Store, m wire.Message) chat.AppendResult {
	t.Helper()
	rs, err := s.AppendMessages(context.Background(), []chat.Append{{Msg: m, Index: m.Text != nil}})
	if err != nil {
		t.Fatalf("AppendMessages: %v", err)
	}
	if len(rs) != 1 {
		t.Fatalf("AppendMessages returned %d results, want 1", len(rs))
	}
	return rs[0]
}

func appendN(t *testing.T, s chat.Store, ch string, n int) []wire.Message {
	t.Helper()
	var out []wire.Message
	for i := 0; i < n; i++ {
		r := appendOne(t, s, msg(ch, user("alice"), fmt.Sprintf("message %d", i+1)))
		if r.Err != nil {
			t.Fatalf("append %d: %v", i, r.Err)
		}
		out = append(out, r.Msg)
	}
	return out
}

func code(err error) string { return unhidra.ErrorCode(err) }

func testChannels(t *testing.T, s chat.Store) {
	ctx := context.Background()
	pub := mkChannel(t, s, chat.KindPublic, false, "alice")
	priv := mkChannel(t, s, chat.KindPrivate, true, "alice", "bob")
	other := mkChannel(t, s, chat.KindPrivate, false, "carol")
	dev := chat.Channel{ID: chat.DeviceChannelID("d1"), Name: "d1", Kind: chat.KindDevice, CreatedBy: "carol", CreatedAt: t0}
	if err := s.CreateChannel(ctx, dev, "", []chat.Member{{User: "carol", Role: chat.RoleOwner, JoinedAt: t0}}); err != nil {
		t.Fatal(err)
	}

	got, err := s.GetChannel(ctx, priv.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != priv.Name || got.Kind != chat.KindPrivate || !got.E2EE || !got.CreatedAt.Equal(t0) || got.LastOffset != 0 {
		t.Errorf("GetChannel = %+v, want %+v", got, priv)
	}
	if _, err := s.GetChannel(ctx, "nope"); code(err) != unhidra.ENOTFOUND {
		t.Errorf("GetChannel(missing) error = %v, want not_found", err)
	}
	for _, tc := range []struct{ user, role string }{{"alice", chat.RoleOwner}, {"bob", chat.RoleMember}, {"carol", ""}, {"", ""}} {
		c, m, err := s.ChannelAccess(ctx, priv.ID, tc.user)
		if err != nil || c.ID != priv.ID || !c.E2EE || m.Role != tc.role {
			t.Errorf("ChannelAccess(%q) = %s role %q, %v; want role %q", tc.user, c.ID, m.Role, err, tc.role)
		}
		if tc.role != "" && (m.User != tc.user || !m.JoinedAt.Equal(t0) || m.AcceptedAt == nil || !m.AcceptedAt.Equal(t0)) {
			t.Errorf("ChannelAccess(%q) membership = %+v, want joined and accepted at %v", tc.user, m, t0)
		}
	}
	if _, _, err := s.ChannelAccess(ctx, "nope", "alice"); code(err) != unhidra.ENOTFOUND {
		t.Errorf("ChannelAccess(missing) error = %v, want not_found", err)
	}

	ids := func(cs []chat.Channel) []string {
		var out []string
		for _, c := range cs {
			out = append(out, c.ID)
		}
		sort.Strings(out)
		return out
	}
	want := []string{pub.ID, priv.ID}
	sort.Strings(want)
	list, err := s.ListChannels(ctx, "bob", false, 100)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(ids(list)) != fmt.Sprint(want) {
		t.Errorf("ListChannels(bob) = %v, want %v (public + member of)", ids(list), want)
	}
	list, err = s.ListChannels(ctx, "zed", true, 100)
	if err != nil {
		t.Fatal(err)
	}
	want = []string{pub.ID, dev.ID}
	sort.Strings(want)
	if fmt.Sprint(ids(list)) != fmt.Sprint(want) {
		t.Errorf("ListChannels(admin zed) = %v, want %v (public + device)", ids(list), want)
	}
	_ = other

	up, err := s.UpdateChannel(ctx, pub.ID, "renamed", "a topic")
	if err != nil {
		t.Fatal(err)
	}
	if up.Name != "renamed" || up.Topic != "a topic" {
		t.Errorf("UpdateChannel = %+v", up)
	}
	if _, err := s.UpdateChannel(ctx, "nope", "x", ""); code(err) != unhidra.ENOTFOUND {
		t.Errorf("UpdateChannel(missing) error = %v, want not_found", err)
	}
	pc, err := s.PresenceChannels(ctx, "alice", 10)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(pc) != fmt.Sprint([]string{priv.ID}) {
		t.Errorf("PresenceChannels(alice) = %v, want only the private channel %s", pc, priv.ID)
	}
}

func testChannelConflicts(t *testing.T, s chat.Store) {
	ctx := context.Background()
	ch := mkChannel(t, s, chat.KindPublic, false, "alice")
	if err := s.CreateChannel(ctx, ch, "", nil); code(err) != unhidra.ECONFLICT {
		t.Errorf("second create with the same id: error = %v, want conflict", err)
	}
	d1 := chat.Channel{ID: ulid.Make().String(), Name: "a, b", Kind: chat.KindDirect, CreatedBy: "a", CreatedAt: t0}
	d2 := d1
	d2.ID = ulid.Make().String()
	if err := s.CreateChannel(ctx, d1, "a\nb", nil); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateChannel(ctx, d2, "a\nb", nil); code(err) != unhidra.ECONFLICT {
		t.Errorf("second direct channel for one pair: error = %v, want conflict", err)
	}
	got, err := s.FindDirect(ctx, "a\nb")
	if err != nil || got.ID != d1.ID {
		t.Errorf("FindDirect = %v, %v; want %s", got.ID, err, d1.ID)
	}
	if _, err := s.FindDirect(ctx, "a\nc"); code(err) != unhidra.ENOTFOUND {
		t.Errorf("FindDirect(unknown pair) error = %v, want not_found", err)
	}
}

func testMembers(t *testing.T, s chat.Store) {
	ctx := context.Background()
	ch := mkChannel(t, s, chat.KindPrivate, false, "alice")
	added, err := s.PutMember(ctx, ch.ID, chat.Member{User: "bob", Role: chat.RoleMember, JoinedAt: t0})
	if err != nil || !added {
		t.Fatalf("PutMember(bob) = %v, %v; want added", added, err)
	}
	added, err = s.PutMember(ctx, ch.ID, chat.Member{User: "bob", Role: chat.RoleAdmin, JoinedAt: t0})
	if err != nil || added {
		t.Fatalf("PutMember(bob, admin) = %v, %v; want a role change", added, err)
	}
	m, err := s.GetMember(ctx, ch.ID, "bob")
	if err != nil || m.Role != chat.RoleAdmin {
		t.Errorf("GetMember(bob) = %+v, %v; want admin", m, err)
	}
	ms, err := s.Members(ctx, ch.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || ms[0].User != "alice" || ms[0].Role != chat.RoleOwner || ms[1].User != "bob" {
		t.Errorf("Members = %+v, want alice(owner), bob", ms)
	}
	if err := s.RemoveMember(ctx, ch.ID, "bob"); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveMember(ctx, ch.ID, "bob"); code(err) != unhidra.ENOTFOUND {
		t.Errorf("RemoveMember twice: error = %v, want not_found", err)
	}
	if _, err := s.GetMember(ctx, ch.ID, "bob"); code(err) != unhidra.ENOTFOUND {
		t.Errorf("GetMember after removal: error = %v, want not_found", err)
	}
	if _, err := s.PutMember(ctx, "missing", chat.Member{User: "bob", Role: chat.RoleMember, JoinedAt: t0}); code(err) != unhidra.ENOTFOUND {
		t.Errorf("PutMember on a missing channel: error = %v, want not_found", err)
	}
}

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

func testSearch(t *testing.T, s chat.Store) {
	ctx := context.Background()
	pub := mkChannel(t, s, chat.KindPublic, false, "alice")
	priv := mkChannel(t, s, chat.KindPrivate, false, "alice", "bob")
	secret := mkChannel(t, s, chat.KindPrivate, true, "alice")
	dev := chat.Channel{ID: chat.DeviceChannelID("d9"), Name: "d9", Kind: chat.KindDevice, CreatedBy: "carol", CreatedAt: t0}
	if err := s.CreateChannel(ctx, dev, "", []chat.Member{{User: "carol", Role: chat.RoleOwner, JoinedAt: t0}}); err != nil {
		t.Fatal(err)
	}
	appendOne(t, s, msg(pub.ID, user("alice"), "the zebra crossing"))
	appendOne(t, s, msg(priv.ID, user("bob"), "a zebra in private"))
	// An e2ee channel never holds indexed text: even if a store were handed
	// a text body there (Index false), it must not be found.
	rs, err := s.AppendMessages(ctx, []chat.Append{{Msg: msg(secret.ID, user("alice"), "zebra secret"), Index: false}})
	if err != nil || rs[0].Err != nil {
		t.Fatal(err, rs[0].Err)
	}
	appendOne(t, s, msg(dev.ID, wire.Principal{Kind: wire.KindDevice, ID: "d9"}, "zebra sensor"))
	appendOne(t, s, msg(pub.ID, user("alice"), "Zébras with diacritics"))

	count := func(q chat.SearchQuery) int {
		t.Helper()
		q.Limit = 50
		got, err := s.Search(ctx, q)
		if err != nil {
			t.Fatalf("Search(%+v): %v", q, err)
		}
		return len(got)
	}
	tests := []struct {
		name string
		q    chat.SearchQuery
		want int
	}{
		{"a stranger sees only public channels", chat.SearchQuery{Match: `"zebra"`, Reader: chat.Reader{User: "zed"}}, 1},
		{"a member also sees their private channel", chat.SearchQuery{Match: `"zebra"`, Reader: chat.Reader{User: "bob"}}, 2},
		{"an admin also sees device channels", chat.SearchQuery{Match: `"zebra"`, Reader: chat.Reader{User: "zed", Admin: true}}, 2},
		{"the device owner sees its device channel", chat.SearchQuery{Match: `"zebra"`, Reader: chat.Reader{User: "carol"}}, 2},
		{"a device sees only its own channel", chat.SearchQuery{Match: `"zebra"`, Reader: chat.Reader{Device: "d9"}}, 1},
		{"e2ee channels are never searched", chat.SearchQuery{Match: `"secret"`, Reader: chat.Reader{User: "alice"}}, 0},
		{"a channel filter narrows the search", chat.SearchQuery{Match: `"zebra"`, Reader: chat.Reader{User: "bob"}, Channel: priv.ID}, 1},
		{"a prefix query matches word starts", chat.SearchQuery{Match: `"zeb"*`, Reader: chat.Reader{User: "zed"}}, 2},
		{"diacritics are folded", chat.SearchQuery{Match: `"zebras"`, Reader: chat.Reader{User: "zed"}}, 1},
		{"only device channels when e2ee is enforced", chat.SearchQuery{Match: `"zebra"`, Reader: chat.Reader{User: "carol"}, OnlyDeviceChannels: true}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := count(tc.q); got != tc.want {
				t.Errorf("hits = %d, want %d", got, tc.want)
			}
		})
	}
}

func testSearchSyntax(t *testing.T, s chat.Store) {
	ctx := context.Background()
	ch := mkChannel(t, s, chat.KindPublic, false, "alice")
	appendOne(t, s, msg(ch.ID, user("alice"), `she said "NEAR(" and OR * AND`))
	for _, raw := range []string{`"`, `*`, `NEAR(`, `a OR b`, `col:x`, `(((`, `"unbalanced`, `-x`, `^start`, `AND`, `said"`} {
		t.Run(raw, func(t *testing.T) {
			q, err := chat.SanitizeQuery(raw)
			if err != nil {
				if code(err) != unhidra.EINVALID {
					t.Fatalf("SanitizeQuery(%q) = %v, want invalid", raw, err)
				}
				return
			}
			if _, err := s.Search(ctx, chat.SearchQuery{Match: q, Reader: chat.Reader{User: "alice"}, Limit: 5}); err != nil {
				t.Errorf("Search(%q → %q) = %v, want no error", raw, q, err)
			}
		})
	}
	q, _ := chat.SanitizeQuery(`NEAR(`)
	got, err := s.Search(ctx, chat.SearchQuery{Match: q, Reader: chat.Reader{User: "alice"}, Limit: 5})
	if err != nil || len(got) != 1 {
		t.Errorf("searching the literal word NEAR: %d hits, %v; want 1", len(got), err)
	}
}

func testDeleteChannel(t *testing.T, s chat.Store) {
	ctx := context.Background()
	ch := mkChannel(t, s, chat.KindPublic, false, "alice", "bob")
	appendOne(t, s, msg(ch.ID, user("alice"), "searchable gone"))
	if err := s.DeleteChannel(ctx, ch.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetChannel(ctx, ch.ID); code(err) != unhidra.ENOTFOUND {
		t.Errorf("GetChannel after delete: %v, want not_found", err)
	}
	if ms, _ := s.MessagesAfter(ctx, ch.ID, 0, 10); len(ms) != 0 {
		t.Errorf("%d messages survive the channel", len(ms))
	}
	if ms, _ := s.Members(ctx, ch.ID); len(ms) != 0 {
		t.Errorf("%d members survive the channel", len(ms))
	}
	if got, _ := s.Search(ctx, chat.SearchQuery{Match: `"searchable"`, Reader: chat.Reader{User: "alice"}, Limit: 5}); len(got) != 0 {
		t.Errorf("search finds a deleted channel's message")
	}
	if err := s.DeleteChannel(ctx, ch.ID); code(err) != unhidra.ENOTFOUND {
		t.Errorf("second delete: %v, want not_found", err)
	}
}

func testAccept(t *testing.T, s chat.Store) {
	ctx := context.Background()
	ch := mkChannel(t, s, chat.KindPrivate, false, "alice")
	if _, err := s.PutMember(ctx, ch.ID, chat.Member{User: "bob", Role: chat.RoleMember, JoinedAt: t0}); err != nil {
		t.Fatal(err)
	}
	m, err := s.GetMember(ctx, ch.ID, "bob")
	if err != nil || m.AcceptedAt != nil {
		t.Fatalf("GetMember(bob) = %+v, %v; want pending (no accepted_at)", m, err)
	}
	if _, m, err = s.ChannelAccess(ctx, ch.ID, "bob"); err != nil || m.Role != chat.RoleMember || m.AcceptedAt != nil {
		t.Fatalf("ChannelAccess(bob) membership = %+v, %v; want a pending member", m, err)
	}
	t1, t2 := t0.Add(time.Minute), t0.Add(time.Hour)
	m, err = s.AcceptMember(ctx, ch.ID, "bob", t1)
	if err != nil || m.AcceptedAt == nil || !m.AcceptedAt.Equal(t1) || m.Role != chat.RoleMember {
		t.Fatalf("AcceptMember = %+v, %v; want accepted at %v", m, err, t1)
	}
	if m, err = s.AcceptMember(ctx, ch.ID, "bob", t2); err != nil || !m.AcceptedAt.Equal(t1) {
		t.Errorf("AcceptMember again = %+v, %v; want the first accepted_at kept", m, err)
	}
	if _, err := s.PutMember(ctx, ch.ID, chat.Member{User: "bob", Role: chat.RoleAdmin, JoinedAt: t2}); err != nil {
		t.Fatal(err)
	}
	ms, err := s.Members(ctx, ch.ID)
	if err != nil || len(ms) != 2 || ms[1].Role != chat.RoleAdmin || ms[1].AcceptedAt == nil || !ms[1].AcceptedAt.Equal(t1) || !ms[1].JoinedAt.Equal(t0) {
		t.Errorf("Members after a role change = %+v, %v; want bob admin, joined %v, accepted %v", ms, err, t0, t1)
	}
	if _, err := s.AcceptMember(ctx, ch.ID, "carol", t1); code(err) != unhidra.ENOTFOUND {
		t.Errorf("AcceptMember(non-member) error = %v, want not_found", err)
	}
}

// direct stores a direct channel between a and b; only those in accepted
// have accepted it.
func direct(t *testing.T, s chat.Store, a, b string, accepted ...string) chat.Channel {
	t.Helper()
	key := a + "\n" + b
	if b < a {
		key = b + "\n" + a
	}
	ch := chat.Channel{ID: ulid.Make().String(), Name: a + ", " + b, Kind: chat.KindDirect, CreatedBy: a, CreatedAt: t0}
	var ms []chat.Member
	for _, u := range []string{a, b} {
		m := chat.Member{User: u, Role: chat.RoleMember, JoinedAt: t0}
		for _, v := range accepted {
			if v == u {
				m.AcceptedAt = &t0
			}
		}
		ms = append(ms, m)
	}
	if err := s.CreateChannel(context.Background(), ch, key, ms); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetChannel(context.Background(), ch.ID)
	if err != nil || got.DirectKey != key {
		t.Fatalf("GetChannel(direct) = %+v, %v; want DirectKey %q", got, err, key)
	}
	return got
}

func testPresenceConsent(t *testing.T, s chat.Store) {
	ctx := context.Background()
	presence := func(u string) string {
		t.Helper()
		ids, err := s.PresenceChannels(ctx, u, 100)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(ids)
	}
	shares := func(viewer, target string) bool {
		t.Helper()
		ok, err := s.SharesChannel(ctx, viewer, target)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	// alice opened a direct channel with bob, who has not accepted it.
	dm := direct(t, s, "alice", "bob", "alice")
	if got := presence("alice"); got != "[]" {
		t.Errorf("PresenceChannels(alice) with bob pending = %s, want none", got)
	}
	if got := presence("bob"); got != "[]" {
		t.Errorf("PresenceChannels(bob) while pending = %s, want none", got)
	}
	if shares("alice", "bob") || shares("bob", "alice") {
		t.Errorf("SharesChannel across a pending direct channel = true, want false both ways")
	}
	if _, err := s.AcceptMember(ctx, dm.ID, "bob", t0); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprint([]string{dm.ID})
	if got := presence("alice"); got != want {
		t.Errorf("PresenceChannels(alice) after bob accepted = %s, want %s", got, want)
	}
	if got := presence("bob"); got != want {
		t.Errorf("PresenceChannels(bob) after accepting = %s, want %s", got, want)
	}
	if !shares("alice", "bob") || !shares("bob", "alice") {
		t.Errorf("SharesChannel across an accepted direct channel = false, want true both ways")
	}

	// carol put dave into a private channel: carol's presence goes there,
	// dave's does not until he accepts.
	priv := mkChannel(t, s, chat.KindPrivate, false, "carol")
	if _, err := s.PutMember(ctx, priv.ID, chat.Member{User: "dave", Role: chat.RoleMember, JoinedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if got, want := presence("carol"), fmt.Sprint([]string{priv.ID}); got != want {
		t.Errorf("PresenceChannels(carol) = %s, want %s", got, want)
	}
	if got := presence("dave"); got != "[]" {
		t.Errorf("PresenceChannels(dave) while pending = %s, want none", got)
	}
	if shares("carol", "dave") {
		t.Errorf("SharesChannel(carol sees pending dave) = true, want false")
	}
	if !shares("dave", "carol") {
		t.Errorf("SharesChannel(dave sees carol, who accepted) = false, want true")
	}

	// A block in either direction stops presence between the two, in the
	// direct channel and in a private channel they share.
	if _, err := s.PutMember(ctx, priv.ID, chat.Member{User: "bob", Role: chat.RoleMember, JoinedAt: t0, AcceptedAt: &t0}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Block(ctx, "bob", "carol", t0); err != nil {
		t.Fatal(err)
	}
	if got := presence("carol"); got != "[]" {
		t.Errorf("PresenceChannels(carol) beside bob who blocks her = %s, want none", got)
	}
	if got := presence("bob"); got != want {
		t.Errorf("PresenceChannels(bob) = %s, want only the direct channel %s", got, want)
	}
	if shares("bob", "carol") || shares("carol", "bob") {
		t.Errorf("SharesChannel across a block = true, want false both ways")
	}
	if _, err := s.Block(ctx, "alice", "bob", t0); err != nil {
		t.Fatal(err)
	}
	if got := presence("bob"); got != "[]" {
		t.Errorf("PresenceChannels(bob) blocked by alice = %s, want none", got)
	}
	if shares("alice", "bob") || shares("bob", "alice") {
		t.Errorf("SharesChannel across a blocked direct channel = true, want false")
	}
}

func testBlocks(t *testing.T, s chat.Store) {
	ctx := context.Background()
	between := func(a, b string) string {
		t.Helper()
		ab, ba, err := s.BlockBetween(ctx, a, b)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(ab, ba)
	}
	if got := between("alice", "bob"); got != "false false" {
		t.Errorf("BlockBetween before any block = %s", got)
	}
	added, err := s.Block(ctx, "alice", "bob", t0)
	if err != nil || !added {
		t.Fatalf("Block = %v, %v; want added", added, err)
	}
	if added, err = s.Block(ctx, "alice", "bob", t0.Add(time.Hour)); err != nil || added {
		t.Errorf("Block again = %v, %v; want not added", added, err)
	}
	if _, err := s.Block(ctx, "alice", "carol", t0); err != nil {
		t.Fatal(err)
	}
	if got := between("alice", "bob"); got != "true false" {
		t.Errorf("BlockBetween(alice, bob) = %s, want true false", got)
	}
	if got := between("bob", "alice"); got != "false true" {
		t.Errorf("BlockBetween(bob, alice) = %s, want false true", got)
	}
	bs, err := s.Blocks(ctx, "alice", 10)
	if err != nil || len(bs) != 2 || bs[0].User != "bob" || !bs[0].CreatedAt.Equal(t0) || bs[1].User != "carol" {
		t.Errorf("Blocks(alice) = %+v, %v; want bob (first time kept), carol", bs, err)
	}
	if bs, err := s.Blocks(ctx, "bob", 10); err != nil || len(bs) != 0 {
		t.Errorf("Blocks(bob) = %+v, %v; want none", bs, err)
	}
	removed, err := s.Unblock(ctx, "alice", "bob")
	if err != nil || !removed {
		t.Errorf("Unblock = %v, %v; want removed", removed, err)
	}
	if removed, err = s.Unblock(ctx, "alice", "bob"); err != nil || removed {
		t.Errorf("Unblock again = %v, %v; want nothing removed", removed, err)
	}
	if got := between("alice", "bob"); got != "false false" {
		t.Errorf("BlockBetween after unblock = %s", got)
	}
}

func testCreations(t *testing.T, s chat.Store) {
	ctx := context.Background()
	mk := func(kind string, at time.Time) chat.Channel {
		t.Helper()
		ch := chat.Channel{ID: ulid.Make().String(), Name: kind, Kind: kind, CreatedBy: "alice", CreatedAt: at}
		if kind == chat.KindDevice {
			ch.ID = chat.DeviceChannelID(ulid.Make().String())
		}
		if err := s.CreateChannel(ctx, ch, "", []chat.Member{{User: "alice", Role: chat.RoleOwner, JoinedAt: at, AcceptedAt: &at}}); err != nil {
			t.Fatal(err)
		}
		return ch
	}
	old := mk(chat.KindPrivate, t0.Add(-2*time.Hour))
	pub := mk(chat.KindPublic, t0)
	mk(chat.KindPrivate, t0.Add(time.Minute))
	mk(chat.KindDevice, t0.Add(time.Minute))
	direct(t, s, "alice", "bob", "alice")
	count := func(since time.Time) (int, time.Time) {
		t.Helper()
		n, oldest, err := s.CreationsSince(ctx, "alice", since)
		if err != nil {
			t.Fatal(err)
		}
		return n, oldest
	}
	// direct() creates at t0.
	if n, oldest := count(t0.Add(-time.Hour)); n != 3 || !oldest.Equal(t0) {
		t.Errorf("CreationsSince(t0-1h) = %d, oldest %v; want 3 (public, private, direct; not device), oldest %v", n, oldest, t0)
	}
	if n, oldest := count(t0.Add(-3 * time.Hour)); n != 4 || !oldest.Equal(old.CreatedAt) {
		t.Errorf("CreationsSince(t0-3h) = %d, oldest %v; want 4, oldest %v", n, oldest, old.CreatedAt)
	}
	if err := s.DeleteChannel(ctx, pub.ID); err != nil {
		t.Fatal(err)
	}
	if n, _ := count(t0.Add(-3 * time.Hour)); n != 4 {
		t.Errorf("CreationsSince after a delete = %d, want 4 (deleting does not give the quota back)", n)
	}
	if n, oldest := count(t0.Add(time.Hour)); n != 0 || !oldest.IsZero() {
		t.Errorf("CreationsSince(later) = %d, %v; want 0 and the zero time", n, oldest)
	}
	if n, _ := count(t0.Add(time.Minute)); n != 0 {
		t.Errorf("CreationsSince(the time of the newest) = %d, want 0 (strictly after)", n)
	}
	if n, err := s.CreatedChannels(ctx, "alice"); err != nil || n != 2 {
		t.Errorf("CreatedChannels(alice) = %d, %v; want 2 (the existing public and private ones)", n, err)
	}
	if n, err := s.CreatedChannels(ctx, "bob"); err != nil || n != 0 {
		t.Errorf("CreatedChannels(bob) = %d, %v; want 0", n, err)
	}
}
