package storetest

import (
	"context"
	"fmt"
	"sort"
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
