package sqlite_test

import (
	"context"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/chat"
	"github.com/unhidra/unhidra/internal/keys"
	"github.com/unhidra/unhidra/internal/sqlite"
	"github.com/unhidra/unhidra/internal/sqlitetest"
	"github.com/unhidra/unhidra/internal/storetest"
)

func TestKeyStoreConformance(t *testing.T) {
	storetest.Keys(t, func(t *testing.T) keys.Store { return sqlite.NewKeyStore(sqlitetest.Open(t)) })
}

func TestKeyStoreMemberChannels(t *testing.T) {
	ctx := context.Background()
	db := sqlitetest.Open(t)
	cs, err := sqlite.NewChatStore(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	at := time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		id, kind string
		members  []string
	}{{"pub", chat.KindPublic, []string{"alice", "bob"}}, {"priv", chat.KindPrivate, []string{"alice"}}, {"other", chat.KindPrivate, []string{"bob"}}} {
		var ms []chat.Member
		for _, u := range c.members {
			ms = append(ms, chat.Member{User: u, Role: chat.RoleOwner, JoinedAt: at})
		}
		if err := cs.CreateChannel(ctx, chat.Channel{ID: c.id, Name: c.id, Kind: c.kind, CreatedBy: c.members[0], CreatedAt: at}, "", ms); err != nil {
			t.Fatal(err)
		}
	}
	got, err := sqlite.NewKeyStore(db).MemberChannels(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != "priv" || got[1] != "pub" {
		t.Errorf("MemberChannels(alice) = %v, want [priv pub]", got)
	}
}
