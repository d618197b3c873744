package chat_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/chat"
)

func TestUserChannelsListsEveryChannelOfTheUserAndNoOther(t *testing.T) {
	e := newEnv(t, chat.Options{})
	ctx := context.Background()
	at := time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		id, kind string
		members  []string
	}{
		// Public channels bob is not in sort before and after his own.
		{"a-open", chat.KindPublic, []string{"alice"}},
		{"b-pub", chat.KindPublic, []string{"alice", "bob"}},
		{"c-priv", chat.KindPrivate, []string{"bob"}},
		{"d-other", chat.KindPrivate, []string{"alice"}},
		{"e-left", chat.KindPrivate, []string{"alice", "bob"}},
		{"z-open", chat.KindPublic, []string{"alice"}},
	} {
		var ms []chat.Member
		for _, u := range c.members {
			ms = append(ms, chat.Member{User: u, Role: chat.RoleOwner, JoinedAt: at})
		}
		if err := e.st.CreateChannel(ctx, chat.Channel{ID: c.id, Name: c.id, Kind: c.kind, CreatedBy: c.members[0], CreatedAt: at}, "", ms); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.st.RemoveMember(ctx, "e-left", "bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.EnsureDeviceChannel(ctx, "d1", "bob"); err != nil {
		t.Fatal(err)
	}
	got, err := e.svc.UserChannels(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"b-pub", "c-priv", chat.DeviceChannelID("d1")}; !slices.Equal(got, want) {
		t.Errorf("UserChannels(bob) = %v, want %v", got, want)
	}
	if got, err := e.svc.UserChannels(ctx, "nobody"); err != nil || got == nil || len(got) != 0 {
		t.Errorf("UserChannels(nobody) = %#v, %v; want an empty list", got, err)
	}
}
