package httpapi_test

// The device routes over HTTP against the real services on a real SQLite
// database: the auth API (register, get, revoke) and the gateway's REST API
// (telemetry, commands) share one registry and one fleet, as in `unhidra
// serve`.

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/unhidra/unhidra/internal/auth"
	"github.com/unhidra/unhidra/internal/chat"
	"github.com/unhidra/unhidra/internal/device"
	"github.com/unhidra/unhidra/internal/httpapi"
	"github.com/unhidra/unhidra/internal/inmem"
	"github.com/unhidra/unhidra/internal/presence"
	"github.com/unhidra/unhidra/internal/sqlite"
	"github.com/unhidra/unhidra/internal/sqlitetest"
)

type deviceHTTPEnv struct {
	auth  *authEnv // the auth API: /login, /devices…
	api   *apiEnv  // the gateway's REST API: /api/v1/devices/{id}/…
	fleet *device.Fleet
	reg   *prometheus.Registry
	root  string // an admin's access token
	alice string
}

func newDeviceHTTPEnv(t *testing.T) *deviceHTTPEnv {
	t.Helper()
	ctx := context.Background()
	db := sqlitetest.Open(t)
	reg := prometheus.NewRegistry()
	authSvc, err := auth.New(auth.Config{Secret: authTestSecret, LoginPerMinute: 1000, Params: auth.Params{MemoryKiB: 64, Iterations: 1, Parallelism: 1}},
		auth.Deps{Store: sqlite.NewAuthStore(db)})
	if err != nil {
		t.Fatal(err)
	}
	bus := inmem.NewBroker()
	devices, err := device.NewService(device.Config{Secret: authTestSecret}, device.Deps{Store: sqlite.NewDeviceStore(db), Users: authSvc, Publisher: bus})
	if err != nil {
		t.Fatal(err)
	}
	fleet := device.NewFleet(device.FleetOptions{Store: sqlite.NewFleetStore(db), Broker: bus, Owners: devices, Registerer: reg})
	st, err := sqlite.NewChatStore(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	chatSvc := chat.NewService(st, bus, chat.Options{})
	pres := presence.NewService(presence.Options{Store: st, Channels: st, Publisher: bus, Peers: st})

	ae := &authEnv{authSvc: authSvc, devices: devices}
	ae.api = &httpapi.AuthAPI{Auth: authSvc, Devices: devices, GatewayPort: 9000, Health: db.Ping, Draining: ae.draining.Load}
	ae.srv = httptest.NewServer(ae.api.Handler())
	t.Cleanup(ae.srv.Close)

	h := httpapi.NewAPI(httpapi.APIDeps{Chat: chatSvc, Presence: pres, Users: authSvc, Devices: devices, Routes: httpapi.DeviceRoutes(fleet, nil)})
	srv := httptest.NewServer(h)
	t.Cleanup(func() { srv.Close(); chatSvc.Wait() })

	for _, u := range []auth.CreateUserInput{{Username: "root", Password: "root password", Admin: true}, {Username: "alice", Password: "alice password"}} {
		if _, err := authSvc.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	e := &deviceHTTPEnv{auth: ae, api: &apiEnv{t: t, srv: srv, chat: chatSvc, pres: pres}, fleet: fleet, reg: reg}
	e.root = ae.login(t, "root", "root password").AccessToken
	e.alice = ae.login(t, "alice", "alice password").AccessToken
	return e
}

// register registers a device for alice and returns the reply.
func (e *deviceHTTPEnv) register(t *testing.T, id string) authResp {
	t.Helper()
	return e.auth.do(t, "POST", "/devices", map[string]string{"name": "sensor " + id, "device_id": id}, "Authorization", "Bearer "+e.alice)
}

func (e *deviceHTTPEnv) registered(t *testing.T, id string) (canonical, key string) {
	t.Helper()
	r := e.register(t, id)
	if r.status != http.StatusCreated {
		t.Fatalf("register %s: %d %s", id, r.status, r.body)
	}
	var out struct {
		DeviceID string `json:"device_id"`
		APIKey   string `json:"api_key"`
	}
	json.Unmarshal(r.body, &out)
	return out.DeviceID, out.APIKey
}

func TestDeviceIDsAreCaseInsensitiveOverHTTP(t *testing.T) {
	e := newDeviceHTTPEnv(t)
	ctx := context.Background()
	id, key := e.registered(t, "gh-1")
	if id != "gh-1" {
		t.Fatalf("device_id = %q", id)
	}

	t.Run("an id differing only in case is taken", func(t *testing.T) {
		for _, other := range []string{"GH-1", "Gh-1"} {
			if r := e.register(t, other); r.status != http.StatusConflict || r.errorCode() != "conflict" {
				t.Errorf("register %s after gh-1: %d %s, want 409 conflict", other, r.status, r.body)
			}
		}
	})
	t.Run("a new id is stored in lower case", func(t *testing.T) {
		if got, _ := e.registered(t, "Kitchen-Sensor.2"); got != "kitchen-sensor.2" {
			t.Errorf("device_id = %q, want kitchen-sensor.2", got)
		}
	})
	t.Run("the registry finds it in any case", func(t *testing.T) {
		r := e.auth.do(t, "GET", "/devices/GH-1", nil, "Authorization", "Bearer "+e.alice)
		var d device.Device
		json.Unmarshal(r.body, &d)
		if r.status != 200 || d.ID != "gh-1" {
			t.Fatalf("GET /devices/GH-1: %d %s", r.status, r.body)
		}
	})

	// A point stored by the device, authenticated by its key.
	who, err := e.auth.devices.AuthenticateDeviceKey(ctx, key)
	if err != nil || who.Principal.ID != "gh-1" {
		t.Fatalf("key auth: %+v %v", who, err)
	}
	if _, err := e.fleet.Telemetry(ctx, who, device.TelemetryPoint{Data: json.RawMessage(`{"t":1}`)}); err != nil {
		t.Fatal(err)
	}

	t.Run("REST paths name the device in any case", func(t *testing.T) {
		for _, tok := range []string{e.alice, key} { // the owner, and the device itself by its key
			var out struct{ Points []device.TelemetryPoint }
			r := e.api.do("GET", "/api/v1/devices/GH-1/telemetry", tok, nil)
			r.decode(t, &out)
			if r.status != 200 || len(out.Points) != 1 {
				t.Errorf("telemetry of GH-1: %d %s, want gh-1's point", r.status, r.body)
			}
		}
		r := e.api.do("POST", "/api/v1/devices/GH-1/commands", e.alice, map[string]any{"name": "ping"})
		var c device.Command
		r.decode(t, &c)
		if r.status != http.StatusAccepted || c.DeviceID != "gh-1" {
			t.Fatalf("command to GH-1: %d %s", r.status, r.body)
		}
		// The device gets it under its own id.
		pending, err := e.fleet.PendingCommands(ctx, "gh-1")
		if err != nil || len(pending) != 1 || pending[0].ID != c.ID {
			t.Errorf("gh-1's pending commands = %v, %v; want the one sent to GH-1", pending, err)
		}
		if r := e.api.do("GET", "/api/v1/devices/gH-1/commands/"+c.ID, key, nil); r.status != 200 {
			t.Errorf("the device reading its command by gH-1: %d %s", r.status, r.body)
		}
	})
	t.Run("revoking by another case revokes the device", func(t *testing.T) {
		if r := e.auth.do(t, "DELETE", "/devices/GH-1", nil, "Authorization", "Bearer "+e.alice); r.status != http.StatusNoContent {
			t.Fatalf("revoke GH-1: %d %s", r.status, r.body)
		}
		if _, err := e.auth.devices.AuthenticateDeviceKey(ctx, key); err == nil {
			t.Error("gh-1's key still works after revoking GH-1")
		}
	})
}

func TestCommandsToARevokedDeviceAreAConflict(t *testing.T) {
	e := newDeviceHTTPEnv(t)
	id, _ := e.registered(t, "boiler")
	if r := e.api.do("POST", "/api/v1/devices/"+id+"/commands", e.alice, map[string]any{"name": "ping"}); r.status != http.StatusAccepted {
		t.Fatalf("command before revocation: %d %s", r.status, r.body)
	}
	if r := e.auth.do(t, "DELETE", "/devices/"+id, nil, "Authorization", "Bearer "+e.alice); r.status != http.StatusNoContent {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	for _, tok := range []string{e.alice, e.root} {
		r := e.api.do("POST", "/api/v1/devices/"+id+"/commands", tok, map[string]any{"name": "ping"})
		if r.status != http.StatusConflict || r.code() != "conflict" {
			t.Errorf("command to a revoked device: %d %s, want 409 conflict", r.status, r.body)
		}
	}
	// Reading what it sent before stays allowed.
	if r := e.api.do("GET", "/api/v1/devices/"+id+"/telemetry", e.alice, nil); r.status != 200 {
		t.Errorf("telemetry of a revoked device: %d %s", r.status, r.body)
	}
	if got := commandsCounter(t, e.reg, "pending"); got != 1 {
		t.Errorf("commands pending counter = %v, want 1 (the refused ones are not counted)", got)
	}
}

// commandsCounter gathers unhidra_device_commands_total{status} from reg.
func commandsCounter(t *testing.T, reg *prometheus.Registry, status string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "unhidra_device_commands_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "status" && l.GetValue() == status {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no unhidra_device_commands_total{status=%q}", status)
	return 0
}
