package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/chat"
)

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
