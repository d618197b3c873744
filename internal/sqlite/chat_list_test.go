package sqlite_test

import (
	"context"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/chat"
)

// GET /api/v1/channels is capped (chat.MaxListedChannels). Anyone can make
// public channels, so they must not push the caller's own channels out of
// the capped list: the caller's channels come first, then public ones.
func TestListChannelsPutsTheCallersChannelsBeforePublicOnes(t *testing.T) {
	ctx := context.Background()
	_, st := chatTestDB(t)
	now := time.Now().UTC()
	mk := func(id, kind, owner string) {
		t.Helper()
		ch := chat.Channel{ID: id, Name: id, Kind: kind, CreatedBy: owner, CreatedAt: now}
		if err := st.CreateChannel(ctx, ch, "", []chat.Member{{User: owner, Role: chat.RoleOwner, JoinedAt: now}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"a1", "a2", "a3"} {
		mk(id, chat.KindPublic, "mallory")
	}
	mk("z8", chat.KindPublic, "alice")
	mk("z9", chat.KindPrivate, "alice")
	mk("device:zz", chat.KindDevice, "bob")

	ids := func(user string, admin bool, limit int) []string {
		t.Helper()
		chs, err := st.ListChannels(ctx, user, admin, limit)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, c := range chs {
			out = append(out, c.ID)
		}
		return out
	}
	tests := []struct {
		name  string
		user  string
		admin bool
		limit int
		want  []string
	}{
		{"a member's channels fill a short list first", "alice", false, 2, []string{"z8", "z9"}},
		{"public channels follow the member's own", "alice", false, 4, []string{"z8", "z9", "a1", "a2"}},
		{"an admin sees device channels before public ones", "root", true, 2, []string{"device:zz", "a1"}},
		{"a stranger sees public channels by id", "carol", false, 10, []string{"a1", "a2", "a3", "z8"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := ids(tc.user, tc.admin, tc.limit)
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
			}
		})
	}
}
