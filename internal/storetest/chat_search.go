package storetest

import (
	"context"
	"testing"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/chat"
	"github.com/unhidra/unhidra/wire"
)

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
