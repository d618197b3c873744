package device_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/audit"
	"github.com/unhidra/unhidra/internal/device"
	"github.com/unhidra/unhidra/internal/sqlite"
	"github.com/unhidra/unhidra/wire"
)

type auditLog struct {
	mu  sync.Mutex
	evs []audit.Event
}

func (a *auditLog) Audit(_ context.Context, e audit.Event) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.evs = append(a.evs, e)
}

// Every registration, revocation and key rotation is one audit event with
// its outcome: success when done, failure when refused for want of
// permission or for a device that is not the caller's (answered
// not_found); bad input is not a security event.
func TestRegistryChangesAreAuditedOnceWithTheirOutcome(t *testing.T) {
	ctx := context.Background()
	r := newRegEnv(t)
	rec := &auditLog{}
	svc, err := device.NewService(device.Config{Secret: regSecret}, device.Deps{Store: sqlite.NewDeviceStore(r.db), Users: r.users, Publisher: r.bus, Auditor: rec})
	if err != nil {
		t.Fatal(err)
	}
	alice, bob := asUser("alice", false), asUser("bob", false)
	dev := unhidra.Identity{Principal: wire.Principal{Kind: wire.KindDevice, ID: "x"}}
	if _, _, err := svc.Register(ctx, alice, device.RegisterInput{Name: "a", ID: "a-1"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := svc.Register(ctx, dev, device.RegisterInput{Name: "b", ID: "b-1"}); unhidra.ErrorCode(err) != unhidra.EFORBIDDEN {
		t.Fatalf("a device registering a device: %v, want forbidden", err)
	}
	if _, _, err := svc.Register(ctx, alice, device.RegisterInput{Name: "c", ID: "not valid!"}); unhidra.ErrorCode(err) != unhidra.EINVALID {
		t.Fatalf("an invalid id: %v, want invalid", err)
	}
	if _, err := svc.RotateKey(ctx, bob, "a-1"); err == nil {
		t.Fatal("bob rotated alice's key")
	}
	if _, err := svc.RotateKey(ctx, alice, "a-1"); err != nil {
		t.Fatal(err)
	}
	if err := svc.Revoke(ctx, bob, "a-1"); err == nil {
		t.Fatal("bob revoked alice's device")
	}
	if err := svc.Revoke(ctx, alice, "a-1"); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range rec.evs {
		got = append(got, fmt.Sprintf("%s %s %s %s", e.Action, e.Actor, e.Target, e.Outcome))
	}
	want := []string{
		"device_register user:alice a-1 success",
		"device_register device:x b-1 failure",
		"device_rotate_key user:bob a-1 failure",
		"device_rotate_key user:alice a-1 success",
		"device_revoke user:bob a-1 failure",
		"device_revoke user:alice a-1 success",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("audit events:\n%q\nwant\n%q", got, want)
	}
}
