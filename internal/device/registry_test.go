package device_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"testing"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/auth"
	"github.com/unhidra/unhidra/internal/broker"
	"github.com/unhidra/unhidra/internal/device"
	"github.com/unhidra/unhidra/internal/inmem"
	"github.com/unhidra/unhidra/internal/sqlite"
	"github.com/unhidra/unhidra/wire"
)

const (
	regSecret  = "device-test-secret-0123456789abcdefgh"
	prevSecret = "device-test-previous-0123456789abcdef"
)

type regEnv struct {
	svc   *device.Service
	users *auth.Service
	db    *sqlite.DB
	path  string
	bus   *inmem.Broker
	mu    sync.Mutex
	revs  []broker.Revocation
}

func newRegEnv(t *testing.T) *regEnv {
	t.Helper()
	r := &regEnv{path: filepath.Join(t.TempDir(), "unhidra.db")}
	db, err := sqlite.Open(context.Background(), r.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.db = db
	b := inmem.NewBroker()
	b.Subscribe(broker.RevocationTopic, func(ev *broker.Event) {
		var rv broker.Revocation
		if ev.Revocation != nil {
			rv = *ev.Revocation
		}
		r.mu.Lock()
		r.revs = append(r.revs, rv)
		r.mu.Unlock()
	})
	r.users, err = auth.New(auth.Config{Secret: regSecret, Params: auth.Params{MemoryKiB: 64, Iterations: 1, Parallelism: 1}}, auth.Deps{Store: sqlite.NewAuthStore(db)})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []auth.CreateUserInput{{Username: "alice", Password: "alice password"}, {Username: "bob", Password: "bob password"}, {Username: "root", Password: "root password", Admin: true}} {
		if _, err := r.users.CreateUser(context.Background(), u); err != nil {
			t.Fatal(err)
		}
	}
	r.bus = b
	r.svc = r.withSecrets(t, regSecret, "", b)
	return r
}

func (r *regEnv) withSecrets(t *testing.T, secret, previous string, pub device.Publisher) *device.Service {
	t.Helper()
	s, err := device.NewService(device.Config{Secret: secret, PreviousSecret: previous}, device.Deps{Store: sqlite.NewDeviceStore(r.db), Users: r.users, Publisher: pub})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func regUser(name string, admin bool) unhidra.Identity {
	id := unhidra.Identity{Principal: wire.Principal{Kind: wire.KindUser, ID: name}, SessionID: "s-" + name}
	if admin {
		id.Roles = []string{unhidra.RoleAdmin}
	}
	return id
}

var (
	regAlice = regUser("alice", false)
	regBob   = regUser("bob", false)
	regRoot  = regUser("root", true)
	regCtx   = context.Background()
)

func regCode(err error) string { return unhidra.ErrorCode(err) }

var regKeyShape = regexp.MustCompile(`^unhidra_dk_[A-Za-z0-9_-]{43}$`)

func TestRegisteredKeysAuthenticateTheirDevice(t *testing.T) {
	r := newRegEnv(t)
	d, key, err := r.svc.Register(regCtx, regAlice, device.RegisterInput{Name: "greenhouse sensor", ID: "gh-1"})
	if err != nil {
		t.Fatal(err)
	}
	if d.Owner != "alice" || d.ID != "gh-1" || d.Revoked || d.Online {
		t.Errorf("device %+v", d)
	}
	if !regKeyShape.MatchString(key) {
		t.Fatalf("key %q does not match %s (256 random bits, URL-safe)", key, regKeyShape)
	}
	id, err := r.svc.AuthenticateDeviceKey(regCtx, key)
	if err != nil {
		t.Fatal(err)
	}
	if id.Principal != (wire.Principal{Kind: wire.KindDevice, ID: "gh-1"}) || id.Roles != nil || id.SessionID != "" {
		t.Errorf("identity %+v", id)
	}
	_, key2, _ := r.svc.Register(regCtx, regAlice, device.RegisterInput{Name: "second"})
	if key2 == key {
		t.Fatal("two devices got the same key")
	}
	for name, k := range map[string]string{
		"a key with one character changed":            key[:len(key)-1] + string(key[len(key)-1]^1),
		"a key without its prefix":                    key[len(device.KeyPrefix):],
		"the prefix alone":                            device.KeyPrefix,
		"a key with a character outside the alphabet": key[:20] + "+" + key[21:],
		"an empty key":                                "",
		"a huge key":                                  device.KeyPrefix + string(bytes.Repeat([]byte("A"), 1<<16)),
	} {
		if _, err := r.svc.AuthenticateDeviceKey(regCtx, k); regCode(err) != unhidra.EUNAUTHORIZED {
			t.Errorf("%s: %v, want unauthorized", name, err)
		}
	}
}

func TestOnlyAHashOfTheKeyIsStored(t *testing.T) {
	r := newRegEnv(t)
	_, key, err := r.svc.Register(regCtx, regAlice, device.RegisterInput{Name: "sensor", ID: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	var stored []byte
	if err := r.db.Reader().QueryRow(`SELECT key_hash FROM devices WHERE id = 's1'`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if len(stored) != 32 || bytes.Contains(stored, []byte(key)) {
		t.Fatalf("stored key column is %d bytes; want a 32-byte hash", len(stored))
	}
	r.db.Close() // flush the WAL into the file
	for _, f := range []string{r.path, r.path + "-wal"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if bytes.Contains(b, []byte(key)) || bytes.Contains(b, []byte(key[len(device.KeyPrefix):])) {
			t.Fatalf("the API key appears in %s", filepath.Base(f))
		}
	}
}

func TestOwnersAndAdminsManageDevices(t *testing.T) {
	r := newRegEnv(t)
	if _, _, err := r.svc.Register(regCtx, regAlice, device.RegisterInput{Name: "a", ID: "a1"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.svc.Register(regCtx, regBob, device.RegisterInput{Name: "b", ID: "b1"}); err != nil {
		t.Fatal(err)
	}
	t.Run("a taken device id is a conflict", func(t *testing.T) {
		if _, _, err := r.svc.Register(regCtx, regBob, device.RegisterInput{Name: "again", ID: "a1"}); regCode(err) != unhidra.ECONFLICT {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("a regUser may not register for someone else", func(t *testing.T) {
		if _, _, err := r.svc.Register(regCtx, regAlice, device.RegisterInput{Name: "x", Owner: "bob"}); regCode(err) != unhidra.EFORBIDDEN {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("an admin may register for someone else", func(t *testing.T) {
		d, _, err := r.svc.Register(regCtx, regRoot, device.RegisterInput{Name: "x", ID: "x1", Owner: "bob"})
		if err != nil || d.Owner != "bob" {
			t.Fatalf("got %+v %v", d, err)
		}
	})
	t.Run("an unknown owner is refused", func(t *testing.T) {
		if _, _, err := r.svc.Register(regCtx, regRoot, device.RegisterInput{Name: "x", Owner: "nobody"}); regCode(err) != unhidra.EINVALID {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("bad names and ids are refused", func(t *testing.T) {
		for _, in := range []device.RegisterInput{{Name: ""}, {Name: "a\x00b"}, {Name: string(bytes.Repeat([]byte("n"), 65))}, {Name: "ok", ID: "a/b"}, {Name: "ok", ID: "+"}, {Name: "ok", ID: ".hidden"}, {Name: "ok", ID: string(bytes.Repeat([]byte("i"), 65))}} {
			if _, _, err := r.svc.Register(regCtx, regAlice, in); regCode(err) != unhidra.EINVALID {
				t.Errorf("%+.20v: %v, want invalid", in, err)
			}
		}
	})
	t.Run("users list their own devices, admins all", func(t *testing.T) {
		ds, _ := r.svc.List(regCtx, regAlice)
		if len(ds) != 1 || ds[0].ID != "a1" {
			t.Errorf("alice sees %v", ds)
		}
		ds, _ = r.svc.List(regCtx, regRoot)
		if len(ds) != 3 {
			t.Errorf("root sees %d devices, want 3", len(ds))
		}
	})
	t.Run("another regUser's device does not exist for you", func(t *testing.T) {
		if _, err := r.svc.Get(regCtx, regAlice, "b1"); regCode(err) != unhidra.ENOTFOUND {
			t.Errorf("get: %v", err)
		}
		if err := r.svc.Revoke(regCtx, regAlice, "b1"); regCode(err) != unhidra.ENOTFOUND {
			t.Errorf("revoke: %v", err)
		}
		if _, err := r.svc.RotateKey(regCtx, regAlice, "b1"); regCode(err) != unhidra.ENOTFOUND {
			t.Errorf("rotate: %v", err)
		}
		if _, err := r.svc.Get(regCtx, regRoot, "b1"); err != nil {
			t.Errorf("admin get: %v", err)
		}
	})
	t.Run("DeviceOwner names the owner", func(t *testing.T) {
		if o, err := r.svc.DeviceOwner(regCtx, "b1"); err != nil || o != "bob" {
			t.Errorf("got %q %v", o, err)
		}
		if _, err := r.svc.DeviceOwner(regCtx, "nope"); regCode(err) != unhidra.ENOTFOUND {
			t.Errorf("unknown: %v", err)
		}
	})
}

func TestRevocationAndRotationStopTheOldKeyAtOnce(t *testing.T) {
	r := newRegEnv(t)
	_, key, _ := r.svc.Register(regCtx, regAlice, device.RegisterInput{Name: "a", ID: "a1"})
	newKey, err := r.svc.RotateKey(regCtx, regAlice, "a1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.svc.AuthenticateDeviceKey(regCtx, key); regCode(err) != unhidra.EUNAUTHORIZED {
		t.Errorf("the rotated-out key: %v", err)
	}
	if _, err := r.svc.AuthenticateDeviceKey(regCtx, newKey); err != nil {
		t.Errorf("the new key: %v", err)
	}
	dev, _ := r.svc.AuthenticateDeviceKey(regCtx, newKey)
	if err := r.svc.Revoke(regCtx, dev, "a1"); regCode(err) != unhidra.EFORBIDDEN {
		t.Errorf("a device revoked itself: %v", err)
	}
	if err := r.svc.Revoke(regCtx, regAlice, "a1"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.svc.AuthenticateDeviceKey(regCtx, newKey); regCode(err) != unhidra.EUNAUTHORIZED {
		t.Errorf("a revoked device's key: %v", err)
	}
	d, _ := r.svc.Get(regCtx, regAlice, "a1")
	if !d.Revoked || d.RevokedAt == nil {
		t.Errorf("device after revoke %+v", d)
	}
	if _, err := r.svc.RotateKey(regCtx, regAlice, "a1"); regCode(err) != unhidra.ECONFLICT {
		t.Errorf("rotating a revoked device: %v", err)
	}
	want := []broker.Revocation{{Kind: broker.RevokeDevice, ID: "a1"}, {Kind: broker.RevokeDevice, ID: "a1"}}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.revs) != 2 || r.revs[0] != want[0] || r.revs[1] != want[1] {
		t.Errorf("revocations %+v, want %+v", r.revs, want)
	}
}

func TestKeysSurviveAJWTSecretRotation(t *testing.T) {
	r := newRegEnv(t)
	_, key, _ := r.svc.Register(regCtx, regAlice, device.RegisterInput{Name: "a", ID: "a1"})
	rotated := r.withSecrets(t, prevSecret, regSecret, nil)
	if _, err := rotated.AuthenticateDeviceKey(regCtx, key); err != nil {
		t.Fatalf("after rotation with the old secret as previous: %v", err)
	}
	// The first use rehashed the key under the new secret alone.
	alone := r.withSecrets(t, prevSecret, "", nil)
	if _, err := alone.AuthenticateDeviceKey(regCtx, key); err != nil {
		t.Fatalf("after the previous secret was dropped: %v", err)
	}
	if _, err := r.svc.AuthenticateDeviceKey(regCtx, key); regCode(err) != unhidra.EUNAUTHORIZED {
		t.Errorf("the key still hashes under the old secret: %v", err)
	}
}

func FuzzLooksLikeKey(f *testing.F) {
	f.Add("unhidra_dk_abc")
	f.Add("unhidra_dk_")
	f.Add("unhidra_dk_a+b")
	f.Fuzz(func(t *testing.T, s string) {
		if !device.LooksLikeKey(s) {
			return
		}
		if len(s) > device.MaxKeyLen || !regexp.MustCompile(`^unhidra_dk_[A-Za-z0-9_-]+$`).MatchString(s) {
			t.Fatalf("LooksLikeKey accepted %q", s)
		}
	})
}

func FuzzCheckID(f *testing.F) {
	f.Add("gh-1")
	f.Add("a/b")
	f.Fuzz(func(t *testing.T, s string) {
		if device.CheckID(s) != nil {
			return
		}
		if !regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$`).MatchString(s) {
			t.Fatalf("CheckID accepted %q", s)
		}
	})
}
