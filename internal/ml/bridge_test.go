package ml

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/unhidra/unhidra"
)

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestClientRoundTrip(t *testing.T) {
	w := startFake(t, "normal")
	c := NewClient(w.path, 2*time.Second, 2)
	defer c.Close()
	in := ScoreRequest{Readings: []Reading{{Device: "d1", Metric: "t", Value: 5}, {Device: "d1", Metric: "t", Value: 500}}}
	for range 3 { // the pooled connection is reused
		resp, err := c.Do(context.Background(), DefaultModel, in)
		if err != nil {
			t.Fatal(err)
		}
		res, err := DecodeScores(resp.Result, 2)
		if err != nil || res.Scores[0].Anomaly || !res.Scores[1].Anomaly || *res.Scores[1].Score != 50 {
			t.Fatalf("%+v %v", res, err)
		}
	}
	if n := len(w.readings()); n != 6 {
		t.Fatalf("worker saw %d readings, want 6", n)
	}
}

func TestClientRefusesASocketThatIsNotPrivate(t *testing.T) {
	w := startFake(t, "normal")
	if err := os.Chmod(w.path, 0o666); err != nil {
		t.Fatal(err)
	}
	c := NewClient(w.path, time.Second, 1)
	if _, err := c.Do(context.Background(), DefaultModel, ScoreRequest{}); err == nil || errors.Is(err, ErrUnavailable) {
		t.Fatalf("a world-writable socket: %v, want a refusal", err)
	}
	if w.reqs.Load() != 0 {
		t.Fatal("a request reached a socket open to other users")
	}
	file := filepath.Join(shortDir(t), "file")
	os.WriteFile(file, nil, 0o600)
	if _, err := NewClient(file, time.Second, 1).Do(context.Background(), DefaultModel, ScoreRequest{}); err == nil {
		t.Fatal("a regular file accepted as the socket")
	}
	if _, err := NewClient(file+".none", time.Second, 1).Do(context.Background(), DefaultModel, ScoreRequest{}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("no socket: %v, want unavailable", err)
	}
}

// TestClientSurvivesBadWorkers: each way a worker can break the protocol
// ends in an error of the right kind, and the next request, once the
// worker behaves, succeeds on a fresh connection.
func TestClientSurvivesBadWorkers(t *testing.T) {
	w := startFake(t, "normal")
	c := NewClient(w.path, 300*time.Millisecond, 2)
	defer c.Close()
	in := ScoreRequest{Readings: []Reading{{Device: "d", Metric: "m", Value: 1}}}
	var pe *ProtocolError
	var we *WorkerError
	cases := []struct {
		mode string
		want func(error) bool
	}{
		{"garbage", func(err error) bool { return errors.As(err, &pe) }},
		{"huge", func(err error) bool { return errors.As(err, &pe) }},
		{"wrong-id", func(err error) bool { return errors.As(err, &pe) }},
		{"silent", func(err error) bool { return errors.Is(err, ErrTimeout) }},
		{"hangup", func(err error) bool { return errors.Is(err, ErrUnavailable) }},
		{"refuse", func(err error) bool { return errors.As(err, &we) && we.Code == "bad_request" }},
	}
	for _, tc := range cases {
		w.mode.Store(tc.mode)
		_, err := c.Do(context.Background(), DefaultModel, in)
		if !tc.want(err) {
			t.Errorf("%s: %v", tc.mode, err)
		}
		w.mode.Store("normal")
		if _, err := c.Do(context.Background(), DefaultModel, in); err != nil {
			t.Errorf("after %s: %v", tc.mode, err)
		}
	}
}

type alertLog struct {
	mu sync.Mutex
	a  []string
}

func (l *alertLog) post(_ context.Context, device string, a Alert) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.a = append(l.a, fmt.Sprintf("%s %s %g %g %s %s", device, a.Metric, a.Value, a.Score, a.Label, a.TS))
	return nil
}

func (l *alertLog) list() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.a...)
}

func runBridge(t *testing.T, o Options) *Bridge {
	t.Helper()
	b := New(o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { b.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return b
}

func pt(device string, i int, data string) unhidra.TelemetryPoint {
	return unhidra.TelemetryPoint{DeviceID: device, TS: time.Unix(1_700_000_000+int64(i), 0).UTC(), Data: json.RawMessage(data)}
}

// TestBridgeScoresInOrderAndAlerts: every numeric metric is scored, the
// readings of each device reach the worker in ingestion order, an
// anomalous reading becomes one alert with its metric, value, score and
// time, and of five in a row of one series the first three are posted, the
// others counted (the burst of the alert gate).
func TestBridgeScoresInOrderAndAlerts(t *testing.T) {
	w := startFake(t, "normal")
	var alerts alertLog
	reg := prometheus.NewRegistry()
	b := runBridge(t, Options{Client: NewClient(w.path, 2*time.Second, 4), Alert: alerts.post, Registerer: reg, AlertEvery: time.Hour})
	const n = 300
	for i := range n {
		for _, d := range []string{"a", "b", "c"} {
			b.Observe(pt(d, i, fmt.Sprintf(`{"v":%d,"on":true,"name":"x","env":{"h":1}}`, i%50)))
		}
	}
	for i := range 5 {
		b.Observe(pt("a", n+i, fmt.Sprintf(`{"v":%d}`, 150+i)))
	}
	eventually(t, "every reading scored", func() bool { return b.Health().Scored == 3*n*2+5 })
	last := map[string]int{}
	for _, r := range w.readings() {
		k := r.Device + "/" + r.Metric
		ts, _ := time.Parse(time.RFC3339, r.TS)
		i := int(ts.Unix() - 1_700_000_000)
		if prev, ok := last[k]; ok && i != prev+1 {
			t.Fatalf("%s: reading %d after %d", k, i, prev)
		}
		last[k] = i
		if r.Metric != "v" && r.Metric != "env.h" {
			t.Fatalf("metric %q scored (only numbers are)", r.Metric)
		}
	}
	got := alerts.list()
	if len(got) != 3 || got[0] != "a v 150 15 anomaly 2023-11-14T22:18:20Z" || got[2] != "a v 152 15.2 anomaly 2023-11-14T22:18:22Z" {
		t.Fatalf("alerts %q", got)
	}
	h := b.Health()
	if h.Status != "up" || h.Alerts != 3 || h.Failed != 0 || h.Dropped != 0 || h.Version != "fake-1" {
		t.Fatalf("health %+v", h)
	}
	if v := counterValue(t, reg, "unhidra_ml_alerts_total", "suppressed"); v != 2 {
		t.Fatalf("suppressed alerts %v, want 2", v)
	}
}

// TestBridgeNeverBlocksIngestion: a worker that never answers costs
// timeouts and drops, counted and visible in the health, while Observe
// keeps returning at once; once the worker answers again, scoring resumes
// and the health is up.
func TestBridgeNeverBlocksIngestion(t *testing.T) {
	w := startFake(t, "silent")
	b := runBridge(t, Options{Client: NewClient(w.path, 200*time.Millisecond, 2), Lanes: 2, QueueSize: 64, PingEvery: 100 * time.Millisecond})
	done := make(chan struct{})
	go func() {
		for i := range 20000 {
			b.Observe(pt(fmt.Sprint("d", i%10), i, `{"v":1}`))
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Observe blocked behind a silent worker")
	}
	eventually(t, "timeouts counted", func() bool { return b.Health().Timeouts > 0 })
	h := b.Health()
	if h.Dropped == 0 || h.Status != "down" || h.LastError == nil {
		t.Fatalf("health with a silent worker: %+v", h)
	}
	w.mode.Store("normal")
	before := b.Health().Scored
	b.Observe(pt("d1", 1, `{"v":2}`))
	eventually(t, "scoring to resume", func() bool { return b.Health().Scored > before })
	eventually(t, "health up again", func() bool { return b.Health().Status == "up" })
}

// TestBridgeHoldsItsBatchWhileTheWorkerRestarts: readings that arrive
// while no worker listens are scored once one does, none lost.
func TestBridgeHoldsItsBatchWhileTheWorkerRestarts(t *testing.T) {
	path := filepath.Join(shortDir(t), "w.sock")
	b := runBridge(t, Options{Client: NewClient(path, time.Second, 2), MaxHold: 20 * time.Second})
	for i := range 100 {
		b.Observe(pt("d", i, `{"v":1}`))
	}
	time.Sleep(300 * time.Millisecond) // the lane is retrying by now
	if h := b.Health(); h.Status != "down" || h.Scored != 0 {
		t.Fatalf("health with no worker: %+v", h)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.Close() // frees the path; the fake below binds it again
	os.Remove(path)
	w := &fakeWorker{path: path}
	w.mode.Store("normal")
	w.ln, err = net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o600)
	t.Cleanup(func() { w.ln.Close() })
	go func() {
		for {
			c, err := w.ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); w.serve(c) }()
		}
	}()
	eventually(t, "the held readings scored", func() bool { return b.Health().Scored == 100 })
	if h := b.Health(); h.Failed != 0 || h.Dropped != 0 {
		t.Fatalf("readings lost over the restart: %+v", h)
	}
}

func TestAppendReadings(t *testing.T) {
	got := appendReadings(nil, point{device: "d", data: json.RawMessage(
		`{"z":1,"a":-2.5e3,"b":true,"s":"9","n":null,"arr":[1],"o":{"y":2,"x":{"deep":1},"w":"t"},"big":1e400}`)})
	want := []string{"a=-2500", "o.y=2", "z=1"}
	if len(got) != len(want) {
		t.Fatalf("%+v", got)
	}
	for i, r := range got {
		if fmt.Sprintf("%s=%g", r.Metric, r.Value) != want[i] {
			t.Fatalf("%d: %+v, want %s", i, r, want[i])
		}
	}
	many := "{"
	for i := range 100 {
		many += fmt.Sprintf(`"m%03d":%d,`, i, i)
	}
	many = many[:len(many)-1] + "}"
	if n := len(appendReadings(nil, point{device: "d", data: json.RawMessage(many)})); n != MaxMetricsPerPoint {
		t.Fatalf("%d metrics of one point scored, want %d", n, MaxMetricsPerPoint)
	}
	if n := len(appendReadings(nil, point{device: "d", data: json.RawMessage(`not json`)})); n != 0 {
		t.Fatal("readings from a body that is not JSON")
	}
}

func counterValue(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetValue() == label {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s{%s}", name, label)
	return 0
}

// TestBridgeSurvivesBrokenWorkers: a worker that answers garbage or
// announces a 2^31-byte frame costs its batches, counted as protocol
// errors in the metrics and the health, which says down with the reason;
// once it answers properly again the bridge is up and scoring.
func TestBridgeSurvivesBrokenWorkers(t *testing.T) {
	for _, mode := range []string{"garbage", "huge", "wrong-id"} {
		t.Run(mode, func(t *testing.T) {
			w := startFake(t, mode)
			reg := prometheus.NewRegistry()
			b := runBridge(t, Options{Client: NewClient(w.path, time.Second, 2), Registerer: reg, PingEvery: time.Hour})
			b.Observe(pt("d", 0, `{"v":1}`))
			eventually(t, "the error counted", func() bool { return b.Health().Errors > 0 })
			h := b.Health()
			if h.Status != "down" || h.LastError == nil || !strings.Contains(*h.LastError, "protocol") || h.Failed != 1 {
				t.Fatalf("health after %s: %+v", mode, h)
			}
			if v := counterValue(t, reg, "unhidra_ml_requests_total", "protocol"); v < 1 {
				t.Fatalf("protocol errors counted %v", v)
			}
			w.mode.Store("normal")
			b.Observe(pt("d", 1, `{"v":1}`))
			eventually(t, "scoring again", func() bool { h := b.Health(); return h.Scored == 1 && h.Status == "up" })
		})
	}
}
