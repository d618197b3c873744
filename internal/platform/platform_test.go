package platform_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/audit"
	"github.com/unhidra/unhidra/internal/auth"
	"github.com/unhidra/unhidra/internal/broker"
	"github.com/unhidra/unhidra/internal/config"
	"github.com/unhidra/unhidra/internal/device"
	"github.com/unhidra/unhidra/internal/platform"
	"github.com/unhidra/unhidra/wire"
)

func testConfig(t *testing.T, env map[string]string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	base := map[string]string{"UNHIDRA_DATA_DIR": dir, "JWT_SECRET": strings.Repeat("s", 32)}
	for k, v := range env {
		base[k] = v
	}
	cfg, err := config.Load(nil, func(k string) string { return base[k] })
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// The store is chosen from DATABASE_URL's scheme and the broker from
// REDIS_URL; what this build cannot open is refused by name before
// anything is written.
func TestTheBackendIsChosenFromTheConfiguration(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"DATABASE_URL": "postgres://u@localhost/db"}, "PostgreSQL is not supported yet"},
		{map[string]string{"DATABASE_URL": "postgresql://u@localhost/db"}, "PostgreSQL is not supported yet"},
		{map[string]string{"REDIS_URL": "redis://localhost:6379"}, "Redis Streams broker is not supported yet"},
		{map[string]string{"DATABASE_URL": "mysql://x"}, "DATABASE_URL"},
	} {
		cfg := testConfig(t, tc.env)
		if err := platform.Check(cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: Check = %v, want %q", tc.env, err, tc.want)
		}
		if b, err := platform.OpenBackend(ctx, cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			if b != nil {
				b.Close()
			}
			t.Errorf("%v: OpenBackend = %v, want %q", tc.env, err, tc.want)
		}
	}

	path := filepath.Join(t.TempDir(), "x.db")
	cfg := testConfig(t, map[string]string{"DATABASE_URL": "sqlite://" + path})
	b, err := platform.OpenBackend(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.Name != "sqlite" || b.Location != path || b.Broker == nil || b.Auth == nil || b.Chat == nil || b.Fleet == nil || b.Devices == nil || b.Presence == nil || b.Revocations == nil {
		t.Fatalf("backend %+v is incomplete", b)
	}
	if n, err := b.SchemaVersion(ctx); err != nil || n == 0 {
		t.Fatalf("schema version %d (%v): not migrated", n, err)
	}
	if err := b.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

type recorder struct{ got []audit.Event }

func (r *recorder) Audit(_ context.Context, e audit.Event) { r.got = append(r.got, e) }

// NewServices builds services that work together on the backend, report to
// the one audit recorder they are given, and apply revocations published on
// the backend's broker.
func TestServicesShareTheBackendAndTheAuditSeam(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t, nil)
	b, err := platform.OpenBackend(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	rec := &recorder{}
	s, err := platform.NewServices(ctx, cfg, b, platform.Options{Audit: rec, HashParams: auth.Params{MemoryKiB: 64, Iterations: 1, Parallelism: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Auth.Register(ctx, auth.RegisterInput{Username: "alice", Password: "alice password 1"}); err != nil {
		t.Fatal(err)
	}
	pair, err := s.Auth.Login(ctx, auth.LoginInput{Username: "alice", Password: "alice password 1"})
	if err != nil {
		t.Fatal(err)
	}
	who, err := s.Auth.AuthenticateToken(ctx, pair.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	d, _, err := s.Devices.Register(ctx, who, device.RegisterInput{Name: "sensor 1", ID: "sensor-1"})
	if err != nil {
		t.Fatal(err)
	}
	// The device's channel exists: the registry called chat.
	if _, err := s.Chat.Subscribe(ctx, who, wire.DeviceChannel(d.ID), nil); err != nil {
		t.Fatalf("the owner cannot read the new device's channel: %v", err)
	}
	actions := map[string]int{}
	for _, e := range rec.got {
		actions[e.Action]++
	}
	for _, a := range []string{audit.ActionRegister, audit.ActionLogin, audit.ActionDeviceRegister} {
		if actions[a] != 1 {
			t.Errorf("%s recorded %d times, want once (got %v)", a, actions[a], actions)
		}
	}
	// A revocation from another node reaches this node's session cache.
	if err := b.Broker.Publish(ctx, broker.RevocationTopic, broker.RevocationEvent(broker.Revocation{Kind: broker.RevokeSession, ID: who.SessionID})); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Auth.AuthenticateToken(ctx, pair.AccessToken); unhidra.ErrorCode(err) != unhidra.EUNAUTHORIZED {
		// The session row is live, so only the broker event can have ended it.
		t.Fatalf("token after a published revocation: %v, want unauthorized", err)
	}
}
