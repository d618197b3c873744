package main

// Browser tests of the web client's device views against the real stack
// and a real device (the Go SDK in client/): the devices list with each
// device's state as text, live telemetry in a device page's chart, a
// command sent from the form that the device runs and whose result
// appears, and device names that are script payloads rendered as text in
// the list, the device page and the admin's devices table.

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/unhidra/unhidra/client"
	"github.com/unhidra/unhidra/internal/browsertest"
	"github.com/unhidra/unhidra/internal/e2etest"
)

// devJS defines window.__d in the page: lookups of the device views' parts
// by role and accessible name.
const devJS = `window.__d || (window.__d = {
  // row is the table row whose link is named name (null if none).
  row(name) { const a = __t.all("link", name, document.querySelector("main")).find((a) => a.closest("tr")); return a ? a.closest("tr") : null; },
  state(name) { const r = this.row(name); return r ? r.querySelector("[data-state]").textContent.trim() : null; },
  chart(metric) { return __t.all("figure", metric)[0] || null; },
  summary(metric) { const f = this.chart(metric); return f ? f.querySelector(".chart-summary").textContent : null; },
  points(metric) { const f = this.chart(metric); return f ? Number(f.dataset.points) : -1; },
  list(name) { return __t.all("ul", undefined).find((u) => u.getAttribute("aria-label") === name) || null; },
  items(name) { const l = this.list(name); return l ? __t.all("listitem", undefined, l).map((li) => __t.norm(li.textContent)) : []; },
})`

func djs(p *webPage, expr string) json.RawMessage {
	p.t.Helper()
	return p.js(devJS + ";\n" + expr)
}

func dwait(p *webPage, expr, want string) {
	p.t.Helper()
	p.wait(devJS+";\n"+expr, want)
}

func dwaitTrue(p *webPage, expr string) {
	p.t.Helper()
	p.wait(devJS+";\n!!("+expr+")", "true")
}

// clickWithin clicks the element of role named name inside the element
// root (a JavaScript expression).
func clickWithin(p *webPage, root, role, name string) {
	p.t.Helper()
	q := strconv.Quote
	dwaitTrue(p, `(() => { const r = `+root+`; return r && __t.all(`+q(role)+`, `+q(name)+`, r).length })()`)
	djs(p, `(__t.one(`+q(role)+`, `+q(name)+`, `+root+`).click(), 1)`)
}

// registered is a device registered over the auth API.
type registered struct {
	ID, Name, Key string
}

func (s *stack) registerDevice(t *testing.T, token, name string) registered {
	t.Helper()
	r := s.authAPI(t, "POST", "/devices", token, map[string]string{"name": name})
	e2etest.WantStatus(t, r, 201, "register device "+name)
	var d struct {
		ID     string `json:"device_id"`
		Name   string `json:"name"`
		APIKey string `json:"api_key"`
	}
	r.JSON(t, &d)
	if d.ID == "" || d.APIKey == "" || d.Name != name {
		t.Fatalf("register answer %s", r.Body)
	}
	return registered{ID: d.ID, Name: d.Name, Key: e2etest.Secret("device API key", d.APIKey)}
}

// sdkDevice is a device connected with the Go SDK that answers commands.
type sdkDevice struct {
	c      *client.Client
	cancel context.CancelFunc
	done   chan struct{}

	mu   sync.Mutex
	cmds []client.Command
}

func startSDKDevice(t *testing.T, s *stack, key string) *sdkDevice {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d := &sdkDevice{cancel: cancel, done: make(chan struct{})}
	c, err := client.New(client.Options{
		URL: s.wsURL, APIKey: key, BackoffMin: 50 * time.Millisecond, BackoffMax: 500 * time.Millisecond,
		OnCommand: func(ctx context.Context, cmd client.Command) (any, error) {
			d.mu.Lock()
			d.cmds = append(d.cmds, cmd)
			d.mu.Unlock()
			return map[string]any{"pong": true, "echo": cmd.Params}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	d.c = c
	go func() { defer close(d.done); c.Run(ctx) }()
	t.Cleanup(d.stop)
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := c.WaitConnected(wctx); err != nil {
		t.Fatal(err)
	}
	return d
}

func (d *sdkDevice) stop() {
	d.cancel()
	<-d.done
}

func (d *sdkDevice) telemetry(t *testing.T, data map[string]any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := d.c.Telemetry(ctx, client.Telemetry{Data: data}); err != nil {
		t.Fatalf("telemetry %v: %v", data, err)
	}
}

func (d *sdkDevice) commands() []client.Command {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]client.Command(nil), d.cmds...)
}

func TestWebDeviceLiveTelemetryAndCommand(t *testing.T) {
	browsertest.Require(t)
	s := startStack(t, nil)
	alice, pw := s.user(t, "alice")
	dev := s.registerDevice(t, alice, "Greenhouse sensor")
	sdk := startSDKDevice(t, s, dev.Key)
	for _, v := range []float64{20.5, 21, 21.5} {
		sdk.telemetry(t, map[string]any{"temp": v, "humidity": 40 + v, "label": "not a number"})
	}

	p := openWeb(t, s.gwURL)
	p.signIn("alice", pw)
	p.click("link", "Devices")
	p.waitTrue(`__t.all("heading", "Devices").length`)

	t.Run("the list shows the device by name, online, with its latest values", func(t *testing.T) {
		dwait(p, `__d.state("Greenhouse sensor")`, `"online"`)
		dwaitTrue(p, `__d.row("Greenhouse sensor").textContent.includes("temp 21.5")`)
		if txt := string(djs(p, `__d.row("Greenhouse sensor").textContent`)); !strings.Contains(txt, "humidity 61.5") || !strings.Contains(txt, "ago") && !strings.Contains(txt, "just now") {
			t.Errorf("the device's row reads %s, want its latest humidity and when it was last seen", txt)
		}
		p.shot("devices-list")
	})

	t.Run("the device page charts temp and appends a live reading", func(t *testing.T) {
		clickWithin(p, `document.querySelector("main")`, "link", "Greenhouse sensor")
		p.waitTrue(`__t.all("heading", "Greenhouse sensor").length`)
		dwait(p, `__d.points("temp")`, `3`)
		dwaitTrue(p, `__d.summary("temp").startsWith("Latest: 21.5 ")`)
		if sum := string(djs(p, `__d.summary("temp")`)); !strings.Contains(sum, "Min 20.5, max 21.5, 3 readings") {
			t.Errorf("temp's text alternative %s, want min, max and the count", sum)
		}
		if n := string(djs(p, `__t.all("figure").length`)); n != "2" {
			t.Errorf("%s charts, want 2 (temp, humidity; label is not numeric)", n)
		}
		// uPlot drew the three points: its canvas is there.
		dwaitTrue(p, `__d.chart("temp").querySelector("canvas")`)
		sdk.telemetry(t, map[string]any{"temp": 23.25, "humidity": 39})
		dwait(p, `__d.points("temp")`, `4`)
		dwaitTrue(p, `__d.summary("temp").startsWith("Latest: 23.25 ")`)
		dwaitTrue(p, `__d.summary("humidity").startsWith("Latest: 39 ")`)
	})

	t.Run("parameters that are not JSON are refused before sending", func(t *testing.T) {
		p.fill("Command", "ping")
		p.fill("Parameters (JSON)", `{"n": 1,`)
		p.click("button", "Send command")
		p.waitTrue(`__t.all("alert").some((a) => a.textContent.startsWith("Parameters must be valid JSON"))`)
		time.Sleep(300 * time.Millisecond) // proving nothing is sent
		if n := len(sdk.commands()); n != 0 {
			t.Fatalf("the device received %d commands from an invalid form", n)
		}
	})

	t.Run("a command from the form runs on the device and its result appears", func(t *testing.T) {
		p.fill("Command", "ping")
		p.fill("Parameters (JSON)", `{"n": 7}`)
		p.click("button", "Send command")
		dwaitTrue(p, `__d.items("Commands").some((x) => x.startsWith("ping ok") && x.includes('"pong":true') && x.includes('"n":7'))`)
		cmds := sdk.commands()
		if len(cmds) != 1 || cmds[0].Name != "ping" || !strings.Contains(string(cmds[0].Params), `"n":7`) {
			t.Fatalf("the device received %+v, want one ping {n:7}", cmds)
		}
		if !strings.Contains(string(djs(p, `__d.items("Recent events").join("\n")`)), "Command ping: ok") {
			t.Errorf("recent events %s, want the command's result", djs(p, `__d.items("Recent events")`))
		}
		p.js(`(document.activeElement.blur(), document.querySelector("main").scrollTo(0, 0), 1)`)
		p.shot("device-page")
	})

	t.Run("the device page and the list fit a phone", func(t *testing.T) {
		p.viewport(360, 740)
		fits := `(() => { const m = document.querySelector("main"); return m.scrollWidth <= m.clientWidth + 1 })()`
		p.waitTrue(fits)
		p.shot("device-page-phone")
		clickWithin(p, `document.querySelector("main")`, "link", "Devices")
		dwait(p, `__d.state("Greenhouse sensor")`, `"online"`)
		p.waitTrue(fits)
	})

	t.Run("the list shows the device offline once it disconnects", func(t *testing.T) {
		if !strings.Contains(string(p.js(`location.hash`)), "#/devices") {
			clickWithin(p, `document.querySelector("main")`, "link", "Devices")
		}
		dwait(p, `__d.state("Greenhouse sensor")`, `"online"`)
		sdk.stop()
		dwait(p, `__d.state("Greenhouse sensor")`, `"offline"`)
	})
}

// xssNames are device names that run script if set as HTML.
var xssNames = []string{`<img src=x onerror="window.__xss=1">`, `<svg onload="window.__xss=1"></svg>`}

func TestWebDeviceNamesRenderAsText(t *testing.T) {
	browsertest.Require(t)
	s := startStack(t, nil)
	admin := s.admin(t)
	var devs []registered
	for _, n := range xssNames {
		devs = append(devs, s.registerDevice(t, admin, n))
	}
	p := openWeb(t, s.gwURL)
	p.signIn("admin", s.adminPW)
	noScript := func(t *testing.T) {
		t.Helper()
		if v := string(p.js(`typeof window.__xss`)); v != `"undefined"` {
			t.Fatalf("window.__xss is %s: a device name ran as HTML", v)
		}
		if n := string(p.js(`document.querySelectorAll("main img, main svg[onload], [onerror], [onload]").length`)); n != "0" {
			t.Fatalf("%s elements made from a device name", n)
		}
	}
	q := strconv.Quote

	p.click("link", "Devices")
	for _, n := range xssNames {
		dwaitTrue(p, `__d.row(`+q(n)+`)`)
		if got := string(djs(p, `__t.one("link", `+q(n)+`).textContent`)); got != q(n) {
			t.Errorf("the list's link reads %s, want %s", got, q(n))
		}
	}
	noScript(t)
	for i, n := range xssNames {
		p.js(`location.hash = "#/devices/" + encodeURIComponent(` + q(devs[i].ID) + `)`)
		p.waitTrue(`__t.all("heading", ` + q(n) + `).length`)
		if got := string(p.js(`__t.one("heading", ` + q(n) + `).textContent`)); got != q(n) {
			t.Errorf("the page's heading reads %s, want %s", got, q(n))
		}
		noScript(t)
	}
	p.js(`location.hash = "#/admin/devices"`)
	for _, n := range xssNames {
		dwaitTrue(p, `__d.row(`+q(n)+`)`)
		p.waitTrue(`__t.all("button", "Revoke " + ` + q(n) + `).length`)
	}
	noScript(t)
}
