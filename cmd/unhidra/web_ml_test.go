package main

// Browser test of the ML alerts on a device page: the alerts the ML bridge
// posts in device:<id> as the device (here the device itself publishes
// them with the Go SDK, in the bridge's shape) are listed under
// "Anomalies", from the channel's history and live, and the latest one's
// score is shown by its metric's chart; an alert-shaped message the owner
// posts in the channel is not taken for the model's, and its text is
// rendered as text.

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/unhidra/unhidra/client"
	"github.com/unhidra/unhidra/internal/browsertest"
	"github.com/unhidra/unhidra/internal/e2etest"
	"github.com/unhidra/unhidra/wire"
)

// mlJS adds the Anomalies list and a chart's score label to window.__d.
const mlJS = `window.__ml || (window.__ml = {
  region() { return __t.all("region", "Anomalies")[0] || null; },
  alerts() { return __d.items("Anomalies"); },
  score(metric) { const f = __d.chart(metric); const s = f && f.querySelector(".chart-score"); return s ? __t.norm(s.textContent) : null; },
})`

func mjs(p *webPage, expr string) json.RawMessage {
	p.t.Helper()
	return djs(p, mlJS+";\n"+expr)
}

func mwaitTrue(p *webPage, expr string) {
	p.t.Helper()
	dwaitTrue(p, "("+mlJS+", ("+expr+"))")
}

// alert publishes an alert in the ML bridge's shape in the device's own
// channel, as the device.
func (d *sdkDevice) alert(t *testing.T, devID string, data map[string]any) {
	t.Helper()
	b, err := json.Marshal(data)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := d.c.Publish(ctx, wire.Publish{Channel: "device:" + devID, Data: b}); err != nil {
		t.Fatalf("alert %s: %v", b, err)
	}
}

func TestWebMLAnomaliesOnTheDevicePage(t *testing.T) {
	browsertest.Require(t)
	s := startStack(t, nil)
	alice, pw := s.user(t, "alice")
	dev := s.registerDevice(t, alice, "Boiler")
	sdk := startSDKDevice(t, s, dev.Key)

	// Readings a minute ago, the last one anomalous and alerted on before
	// the page opens.
	t0 := time.Now().Add(-time.Minute).UTC().Truncate(time.Second)
	for i, v := range []float64{20.5, 21, 41.7} {
		ts := t0.Add(time.Duration(i) * 10 * time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := sdk.c.Telemetry(ctx, client.Telemetry{Data: map[string]any{"temp_c": v, "rpm": 1200 + i}, TS: ts})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	first := t0.Add(20 * time.Second)
	sdk.alert(t, dev.ID, map[string]any{"alert": "anomaly", "metric": "temp_c", "value": 41.7, "score": 63.2, "model": "anomaly", "label": "anomaly", "ts": first.Format(time.RFC3339)})

	p := openWeb(t, s.gwURL)
	p.signIn("alice", pw)
	p.js(`location.hash = "#/devices/" + encodeURIComponent(` + strconv.Quote(dev.ID) + `)`)
	p.waitTrue(`__t.all("heading", "Boiler").length`)

	t.Run("an alert from before the page opened is listed from history with its score", func(t *testing.T) {
		mwaitTrue(p, `__ml.region()`)
		mwaitTrue(p, `__ml.alerts().length === 1 && __ml.alerts()[0].includes("temp_c 41.7, score 63.2")`)
		var got string
		if err := json.Unmarshal(mjs(p, `__ml.alerts()[0]`), &got); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(got, "Anomaly: temp_c 41.7, score 63.2 model anomaly · ") {
			t.Errorf("the alert reads %s, want it named an anomaly with its model and time", got)
		}
		mwaitTrue(p, `(__ml.score("temp_c") || "").includes("score 63.2 · ")`)
		if got := string(mjs(p, `__ml.score("rpm")`)); got != "null" {
			t.Errorf("rpm's chart shows the score %s, want none (no alert on rpm)", got)
		}
		// The chart is still found by its metric's name alone.
		dwait(p, `__d.points("temp_c")`, `3`)
		// The score is part of the chart's description for screen readers.
		desc := string(mjs(p, `__d.chart("temp_c").getAttribute("aria-describedby").split(" ").map((id) => document.getElementById(id).textContent).join(" ")`))
		if !strings.Contains(desc, "Latest anomaly: score 63.2") {
			t.Errorf("temp_c's chart is described as %s, want its latest anomaly's score", desc)
		}
	})

	t.Run("a live alert is listed first and updates the chart's score", func(t *testing.T) {
		now := time.Now().UTC().Truncate(time.Second)
		sdk.telemetry(t, map[string]any{"temp_c": 45.25, "rpm": 1300})
		sdk.alert(t, dev.ID, map[string]any{"alert": "anomaly", "metric": "temp_c", "value": 45.25, "score": 88.04, "model": "anomaly", "label": "shift", "ts": now.Format(time.RFC3339)})
		mwaitTrue(p, `__ml.alerts().length === 2`)
		items := string(mjs(p, `__ml.alerts()`))
		var got []string
		if err := json.Unmarshal([]byte(items), &got); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(got[0], "Level shift: temp_c 45.25, score 88.0 ") || !strings.Contains(got[1], "score 63.2") {
			t.Errorf("the alerts read %q, want the live level shift first, then the one from history", got)
		}
		mwaitTrue(p, `(__ml.score("temp_c") || "").includes("score 88.0 · ")`)
		if n := string(mjs(p, `__t.all("listitem", undefined, __d.list("Recent events")).filter((li) => li.textContent.includes("Anomaly")).length`)); n != "2" {
			t.Errorf("%s anomalies among the recent events, want 2", n)
		}
	})

	t.Run("an alert the owner posts is not the model's and is rendered as text", func(t *testing.T) {
		payload := `<img src=x onerror="window.__xss=1">`
		r := s.api(t, "POST", "/api/v1/channels/"+"device:"+dev.ID+"/messages", alice, map[string]any{
			"data": map[string]any{"alert": "anomaly", "metric": payload, "value": 1, "score": 99.9, "model": "anomaly"},
		})
		e2etest.WantStatus(t, r, 201, "the owner posts an alert")
		mwaitTrue(p, `__ml.alerts().length === 3`)
		var got []string
		if err := json.Unmarshal(mjs(p, `__ml.alerts()`), &got); err != nil {
			t.Fatal(err)
		}
		want := "Not from the model: posted by alice, " + payload + " 1, score 99.9 "
		if !strings.HasPrefix(got[0], want) {
			t.Errorf("the owner's alert reads %q, want it to start %q", got[0], want)
		}
		if got := string(mjs(p, `__ml.score("temp_c")`)); !strings.Contains(got, "score 88.0") {
			t.Errorf("temp_c's score reads %s after the owner's alert, want the model's 88.0", got)
		}
		if n := string(mjs(p, `__t.all("figure").length`)); n != "2" {
			t.Errorf("%s charts, want 2: the owner's alert is no metric", n)
		}
		dwaitTrue(p, `__d.items("Recent events").some((x) => x.includes("Alert posted by alice, not from the model"))`)
		if v := string(p.js(`typeof window.__xss`)); v != `"undefined"` {
			t.Fatalf("window.__xss is %s: an alert's metric ran as HTML", v)
		}
		if n := string(p.js(`document.querySelectorAll("main img").length`)); n != "0" {
			t.Fatalf("%s images made from an alert's metric", n)
		}
	})

	t.Run("the alerts survive a reload and fit a phone", func(t *testing.T) {
		p.reload()
		mwaitTrue(p, `__ml.alerts().length === 3`)
		mwaitTrue(p, `(__ml.score("temp_c") || "").includes("score 88.0 · ")`)
		p.js(`(document.activeElement.blur(), __ml.region().scrollIntoView(), 1)`)
		p.shot("device-anomalies")
		p.viewport(360, 740)
		p.waitTrue(`(() => { const m = document.querySelector("main"); return m.scrollWidth <= m.clientWidth + 1 })()`)
		if w := string(mjs(p, `Math.round(__ml.region().getBoundingClientRect().right) <= innerWidth`)); w != "true" {
			t.Errorf("the Anomalies region overflows a 360 px screen")
		}
		p.js(`(__ml.region().scrollIntoView(), 1)`)
		p.shot("device-anomalies-phone")
	})
}
