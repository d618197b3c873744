package keys_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/audit"
	"github.com/unhidra/unhidra/internal/broker"
	"github.com/unhidra/unhidra/internal/chat"
	"github.com/unhidra/unhidra/internal/inmem"
	"github.com/unhidra/unhidra/internal/keys"
	"github.com/unhidra/unhidra/internal/sqlite"
	"github.com/unhidra/unhidra/internal/sqlitetest"
	"github.com/unhidra/unhidra/wire"
	"github.com/unhidra/unhidra/wire/e2eekeys"
)

var b64 = base64.RawStdEncoding

type recorder struct {
	mu     sync.Mutex
	events []audit.Event
}

func (r *recorder) Audit(_ context.Context, e audit.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func user(name string) unhidra.Identity {
	return unhidra.Identity{Principal: wire.Principal{Kind: wire.KindUser, ID: name}}
}

func upload(t *testing.T, who, dev string) keys.Upload {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	c := make([]byte, 32)
	rand.Read(c)
	curve := b64.EncodeToString(c)
	return keys.Upload{
		Identity:          keys.IdentityKeys{Curve25519: curve, Ed25519: b64.EncodeToString(priv.Public().(ed25519.PublicKey))},
		IdentitySignature: b64.EncodeToString(ed25519.Sign(priv, e2eekeys.IdentityMessage(who, dev, curve))),
	}
}

type env struct {
	svc *keys.Service
	rec *recorder
	bus *inmem.Broker
}

func newEnv(t *testing.T) env {
	t.Helper()
	ctx := context.Background()
	db := sqlitetest.Open(t)
	cs, err := sqlite.NewChatStore(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	at := time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC)
	for _, id := range []string{"general", "secret"} {
		ms := []chat.Member{{User: "alice", Role: chat.RoleOwner, JoinedAt: at}, {User: "bob", Role: chat.RoleMember, JoinedAt: at}}
		if err := cs.CreateChannel(ctx, chat.Channel{ID: id, Name: id, Kind: chat.KindPrivate, CreatedBy: "alice", CreatedAt: at}, "", ms); err != nil {
			t.Fatal(err)
		}
	}
	e := env{rec: &recorder{}, bus: inmem.NewBroker()}
	chats := chat.NewService(cs, e.bus, chat.Options{})
	t.Cleanup(chats.Wait)
	e.svc = keys.NewService(keys.Deps{Store: sqlite.NewKeyStore(db), Broker: e.bus, Channels: chats, Audit: e.rec})
	return e
}

func TestOnlyUsersHaveKeys(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	dev := unhidra.Identity{Principal: wire.Principal{Kind: wire.KindDevice, ID: "sensor"}}
	for name, err := range map[string]error{
		"Upload":  func() error { _, err := e.svc.Upload(ctx, dev, "d", upload(t, "sensor", "d")); return err }(),
		"Devices": func() error { _, err := e.svc.Devices(ctx, dev, "alice"); return err }(),
		"Claim":   func() error { _, err := e.svc.Claim(ctx, dev, "alice", "d"); return err }(),
		"Count":   func() error { _, err := e.svc.Count(ctx, dev, "d"); return err }(),
		"Delete":  e.svc.Delete(ctx, dev, "d"),
		"Operator": func() error {
			_, err := e.svc.Upload(ctx, unhidra.Operator, "d", upload(t, "cli", "d"))
			return err
		}(),
	} {
		if unhidra.ErrorCode(err) != unhidra.EFORBIDDEN {
			t.Errorf("%s by a device: %v, want forbidden", name, err)
		}
	}
}

func TestOnlyTheOwnerManagesADevice(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.svc.Upload(ctx, user("alice"), "phone", upload(t, "alice", "phone")); err != nil {
		t.Fatal(err)
	}
	// Bob's calls name his own namespace: alice's phone is not his.
	if _, err := e.svc.Count(ctx, user("bob"), "phone"); unhidra.ErrorCode(err) != unhidra.ENOTFOUND {
		t.Errorf("bob counting alice's phone: %v, want not_found", err)
	}
	if err := e.svc.Delete(ctx, user("bob"), "phone"); unhidra.ErrorCode(err) != unhidra.ENOTFOUND {
		t.Errorf("bob deleting alice's phone: %v, want not_found", err)
	}
	// Keys signed for alice's device do not verify as bob's.
	if _, err := e.svc.Upload(ctx, user("bob"), "phone", upload(t, "alice", "phone")); unhidra.ErrorCode(err) != unhidra.EINVALID {
		t.Errorf("bob uploading alice's signed keys: %v, want invalid", err)
	}
	if n, err := e.svc.Count(ctx, user("alice"), "phone"); err != nil || n != 0 {
		t.Errorf("alice's count = %d, %v", n, err)
	}
}

func TestClaimsAreLimitedPerRequesterAndTarget(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for _, u := range []string{"alice", "carol"} {
		if _, err := e.svc.Upload(ctx, user(u), "d", upload(t, u, "d")); err != nil {
			t.Fatal(err)
		}
	}
	for i := range keys.ClaimsPerMinute {
		if _, err := e.svc.Claim(ctx, user("bob"), "alice", "d"); err != nil {
			t.Fatalf("claim %d: %v", i, err)
		}
	}
	_, err := e.svc.Claim(ctx, user("bob"), "alice", "d")
	var ue *unhidra.Error
	if unhidra.ErrorCode(err) != unhidra.ERATELIMITED || !errors.As(err, &ue) || ue.RetryAfter < 1 {
		t.Errorf("claim %d: %v, want rate_limited with a Retry-After", keys.ClaimsPerMinute+1, err)
	}
	if _, err := e.svc.Claim(ctx, user("bob"), "carol", "d"); err != nil {
		t.Errorf("bob claiming carol's keys: %v, want another target's own budget", err)
	}
	if _, err := e.svc.Claim(ctx, user("dave"), "alice", "d"); err != nil {
		t.Errorf("dave claiming alice's keys: %v, want another requester's own budget", err)
	}
}

func TestAnIdentityChangeIsAuditedAndAnnounced(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	got := make(chan *broker.Event, 8)
	for _, ch := range []string{"general", "secret"} {
		unsub, err := e.bus.Subscribe(broker.ChannelTopic(ch), func(ev *broker.Event) { got <- ev })
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(unsub)
	}
	if _, err := e.svc.Upload(ctx, user("alice"), "phone", upload(t, "alice", "phone")); err != nil {
		t.Fatal(err)
	}
	if len(e.rec.events) != 0 || len(got) != 0 {
		t.Fatalf("a first upload recorded %v and published %d events, want none", e.rec.events, len(got))
	}
	if _, err := e.svc.Upload(ctx, user("alice"), "phone", upload(t, "alice", "phone")); err != nil {
		t.Fatal(err)
	}
	if len(e.rec.events) != 1 {
		t.Fatalf("audit events = %v, want one", e.rec.events)
	}
	ev := e.rec.events[0]
	if ev.Action != keys.ActionKeyChange || ev.Actor.ID != "alice" || ev.Target != "alice" || ev.Details["device_id"] != "phone" || ev.Outcome != audit.Success {
		t.Errorf("audit event = %+v", ev)
	}
	channels := map[string]bool{}
	for range 2 {
		select {
		case ev := <-got:
			if ev.Kind != broker.KeyChange || ev.User != "alice" || ev.DeviceID != "phone" {
				t.Errorf("event = %+v", ev)
			}
			f, ok := ev.Frame().(wire.KeyChangeFrame)
			if !ok || f.Type != "key_change" || f.Channel != ev.Channel {
				t.Errorf("frame = %#v", ev.Frame())
			}
			channels[ev.Channel] = true
		case <-time.After(10 * time.Second):
			t.Fatal("no key_change event")
		}
	}
	if !channels["general"] || !channels["secret"] {
		t.Errorf("key_change reached %v, want both of alice's channels", channels)
	}
	if err := e.svc.Delete(ctx, user("alice"), "phone"); err != nil {
		t.Fatal(err)
	}
	if len(e.rec.events) != 2 || e.rec.events[1].Details["change"] != "device_deleted" {
		t.Errorf("audit after delete = %+v", e.rec.events)
	}
}

func TestADisabledUsersDevicesLeaveTheDirectory(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for _, dev := range []string{"laptop", "phone"} {
		if _, err := e.svc.Upload(ctx, user("bob"), dev, upload(t, "bob", dev)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.svc.Upload(ctx, user("alice"), "phone", upload(t, "alice", "phone")); err != nil {
		t.Fatal(err)
	}
	got := make(chan *broker.Event, 8)
	unsub, err := e.bus.Subscribe(broker.ChannelTopic("general"), func(ev *broker.Event) { got <- ev })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(unsub)
	if err := e.svc.UserDisabled(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if devs, err := e.svc.Devices(ctx, user("alice"), "bob"); err != nil || len(devs) != 0 {
		t.Errorf("bob's devices after the disable = %+v, %v; want none", devs, err)
	}
	if _, err := e.svc.Claim(ctx, user("alice"), "bob", "phone"); unhidra.ErrorCode(err) != unhidra.ENOTFOUND {
		t.Errorf("claim of a disabled user's device: %v, want not_found", err)
	}
	if devs, err := e.svc.Devices(ctx, user("bob"), "alice"); err != nil || len(devs) != 1 {
		t.Errorf("alice's devices = %+v, %v; want hers kept", devs, err)
	}
	announced := map[string]bool{}
	for range 2 {
		select {
		case ev := <-got:
			if ev.Kind != broker.KeyChange || ev.User != "bob" || ev.Channel != "general" {
				t.Errorf("event = %+v", ev)
			}
			announced[ev.DeviceID] = true
		case <-time.After(10 * time.Second):
			t.Fatal("no key_change for a device of the disabled user")
		}
	}
	if !announced["laptop"] || !announced["phone"] {
		t.Errorf("key_change announced for %v, want laptop and phone", announced)
	}
	if len(e.rec.events) != 2 {
		t.Fatalf("audit events = %+v, want one per device", e.rec.events)
	}
	for _, ev := range e.rec.events {
		if ev.Action != keys.ActionKeyChange || ev.Target != "bob" || ev.Details["change"] != "user_disabled" || ev.Actor.Kind != "system" {
			t.Errorf("audit event = %+v", ev)
		}
	}
	// Again (another node, a revocation seen twice): nothing more.
	if err := e.svc.UserDisabled(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if len(e.rec.events) != 2 {
		t.Errorf("a second disable recorded %d events, want none more", len(e.rec.events)-2)
	}
}
