// Package ml is the bridge between telemetry and the ML worker of SPEC §8:
// the supervisor of the worker process (supervisor.go), the framing and
// messages of its Unix socket (frame.go, protocol.go), a pooled client
// (client.go), and the Bridge, which scores every numeric metric of the
// telemetry this node ingests and turns anomalous readings into alert
// messages in the device's channel.
//
// Design. Ingestion never waits on the model: Observe hands a point to a
// bounded queue and returns at once, dropping (and counting) the point
// when the queue is full. The queue is split into lanes by device, each
// lane one goroutine sending one request at a time, so the readings of one
// device reach the worker in the order they were ingested — the model is a
// streaming one and its state per series depends on that order — while
// lanes for different devices run side by side on the pooled connections.
// A lane batches what has queued while its previous request was out (up to
// BatchMax readings per request), so the cost per reading falls as load
// rises. A worker that is down (restarting) makes a lane hold its batch and
// retry for up to MaxHold, so a restart within it loses no reading; a
// worker that does not answer within the timeout costs that batch only
// (counted), never a blocked lane.
package ml

import (
	"context"
	"encoding/json"
	"errors"
	"hash/fnv"
	"log/slog"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/unhidra/unhidra"
)

// Alert is the data of the message an anomalous reading becomes in
// device:<id> (SPEC §8), posted as the device.
type Alert struct {
	Alert  string  `json:"alert"` // "anomaly"
	Metric string  `json:"metric"`
	Value  float64 `json:"value"`
	Score  float64 `json:"score"`
	Model  string  `json:"model"`
	// Label is the model's label: "anomaly", or "shift" for a level shift.
	Label string `json:"label"`
	// TS is the reading's time (RFC 3339).
	TS string `json:"ts,omitempty"`
}

// Options configures a Bridge. Client is required.
type Options struct {
	Client *Client
	// Supervisor, when set, is the worker process the health reports on.
	Supervisor *Supervisor
	// Alert posts an alert in the device's channel. Nil: alerts are only
	// counted.
	Alert func(ctx context.Context, deviceID string, a Alert) error
	// Model is the model_id asked for (default DefaultModel).
	Model string
	// Lanes is how many requests may be out at once (default 4).
	Lanes int
	// QueueSize bounds the points waiting for the model (default 16,384).
	QueueSize int
	// BatchMax bounds the readings of one request (default 500).
	BatchMax int
	// AlertEvery paces the alerts of one series (device and metric): after
	// a burst of three, one per AlertEvery; the others are counted, not
	// posted (default 5 s). A flapping sensor cannot flood its channel.
	AlertEvery time.Duration
	// MaxHold is how long a batch waits for an unavailable worker (a
	// restart) before it is dropped (default 10 s).
	MaxHold time.Duration
	// PingEvery is how often the worker is asked whether it is alive
	// (default 5 s).
	PingEvery  time.Duration
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// MaxMetricsPerPoint bounds the metrics of one point that are scored.
const MaxMetricsPerPoint = 64

// Bridge scores telemetry. Create it with New and run it with Run.
type Bridge struct {
	o      Options
	lanes  []chan point
	met    *metrics
	counts counts

	healthy  atomic.Bool
	series   atomic.Int64 // series the worker tracks, from its last ping
	version  atomic.Value // string: the model's version, from the last answer
	errMu    sync.Mutex
	lastErr  string
	latMu    sync.Mutex
	lat      [1024]float64 // the latest request latencies, ms (a ring)
	latN     int
	running  atomic.Bool
	logLimit atomic.Int64 // unix second of the last logged request failure
}

type point struct {
	device string
	ts     time.Time
	data   json.RawMessage
}

// New returns a bridge.
func New(o Options) *Bridge {
	if o.Model == "" {
		o.Model = DefaultModel
	}
	if o.Lanes <= 0 {
		o.Lanes = 4
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 16384
	}
	if o.BatchMax <= 0 || o.BatchMax > MaxReadings {
		o.BatchMax = 500
	}
	if o.AlertEvery <= 0 {
		o.AlertEvery = 5 * time.Second
	}
	if o.MaxHold <= 0 {
		o.MaxHold = 10 * time.Second
	}
	if o.PingEvery <= 0 {
		o.PingEvery = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	b := &Bridge{o: o, lanes: make([]chan point, o.Lanes)}
	for i := range b.lanes {
		b.lanes[i] = make(chan point, max(1, o.QueueSize/o.Lanes))
	}
	b.version.Store("")
	b.met = newMetrics(o.Registerer, b)
	return b
}

// queued is how many points wait in the lanes.
func (b *Bridge) queued() int64 {
	n := 0
	for _, ch := range b.lanes {
		n += len(ch)
	}
	return int64(n)
}

// Observe queues a telemetry point for scoring and returns at once; a full
// queue drops the point (unhidra_ml_points_dropped_total). It is the
// fleet's telemetry observer and never blocks ingestion.
func (b *Bridge) Observe(p unhidra.TelemetryPoint) {
	h := fnv.New32a()
	h.Write([]byte(p.DeviceID))
	select {
	case b.lanes[h.Sum32()%uint32(len(b.lanes))] <- point{device: p.DeviceID, ts: p.TS, data: p.Data}:
	default:
		b.met.dropped.Inc()
		b.counts.dropped.Add(1)
	}
}

// Run runs the lanes and the liveness pings until ctx ends.
func (b *Bridge) Run(ctx context.Context) error {
	b.running.Store(true)
	defer b.running.Store(false)
	defer b.o.Client.Close()
	var wg sync.WaitGroup
	for _, ch := range b.lanes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.lane(ctx, ch)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		b.pings(ctx)
	}()
	wg.Wait()
	return nil
}

// lane scores the points of its devices in order, a batch per request.
func (b *Bridge) lane(ctx context.Context, ch chan point) {
	var readings []Reading
	alerts := alertGate{every: b.o.AlertEvery, last: map[string]gateState{}}
	for {
		var p point
		select {
		case <-ctx.Done():
			return
		case p = <-ch:
		}
		readings = appendReadings(readings[:0], p)
	more:
		for len(readings) < b.o.BatchMax {
			select {
			case p = <-ch:
				readings = appendReadings(readings, p)
			default:
				break more
			}
		}
		if len(readings) == 0 {
			continue
		}
		b.score(ctx, readings, &alerts)
	}
}

// score sends one batch and posts the alerts of its answer.
func (b *Bridge) score(ctx context.Context, readings []Reading, alerts *alertGate) {
	start := time.Now()
	wait := 50 * time.Millisecond
	for {
		t0 := time.Now()
		resp, err := b.o.Client.Do(ctx, b.o.Model, ScoreRequest{Readings: readings})
		if err == nil {
			var res ScoreResult
			if res, err = DecodeScores(resp.Result, len(readings)); err == nil {
				b.answered(time.Since(t0))
				b.met.requests.WithLabelValues("ok").Inc()
				b.version.Store(res.Version)
				b.alert(ctx, readings, res, alerts)
				return
			}
		}
		var we *WorkerError
		var pe *ProtocolError
		switch {
		case errors.As(err, &we):
			b.answered(time.Since(t0)) // the worker is alive; the request was refused
			b.failed("error", len(readings), err)
			return
		case errors.As(err, &pe):
			b.down(err)
			b.failed("protocol", len(readings), err)
			return
		case errors.Is(err, ErrTimeout):
			b.down(err)
			b.failed("timeout", len(readings), err)
			return
		}
		// Unavailable: the worker is (re)starting. Hold the batch.
		b.down(err)
		if ctx.Err() != nil || time.Since(start)+wait > b.o.MaxHold {
			b.failed("unavailable", len(readings), err)
			return
		}
		select {
		case <-ctx.Done():
			b.failed("unavailable", len(readings), err)
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// alert posts the anomalous readings of a scored batch.
func (b *Bridge) alert(ctx context.Context, readings []Reading, res ScoreResult, gate *alertGate) {
	b.met.scored.Add(float64(len(readings)))
	b.counts.scored.Add(uint64(len(readings)))
	for i, s := range res.Scores {
		if s.Label == "invalid" {
			b.met.invalid.Inc()
		}
		if !s.Anomaly || s.Score == nil || math.IsNaN(*s.Score) || math.IsInf(*s.Score, 0) {
			continue
		}
		r := readings[i]
		if !gate.allow(r.Device+"\x00"+r.Metric, time.Now()) {
			b.met.alerts.WithLabelValues("suppressed").Inc()
			continue
		}
		label := s.Label
		if label != "shift" {
			label = "anomaly"
		}
		a := Alert{Alert: "anomaly", Metric: r.Metric, Value: r.Value, Score: math.Round(*s.Score*1000) / 1000,
			Model: b.o.Model, Label: label, TS: r.TS}
		if b.o.Alert == nil {
			b.met.alerts.WithLabelValues("posted").Inc()
			b.counts.alerts.Add(1)
			continue
		}
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := b.o.Alert(actx, r.Device, a)
		cancel()
		if err != nil {
			b.met.alerts.WithLabelValues("failed").Inc()
			b.o.Logger.Warn("ml alert not posted", "device", r.Device, "metric", r.Metric, "err", err)
			continue
		}
		b.met.alerts.WithLabelValues("posted").Inc()
		b.counts.alerts.Add(1)
	}
}

// pings asks the worker every PingEvery whether it is alive and how many
// series it tracks, so /internal/ml/health is true of an idle or a hung
// worker too.
func (b *Bridge) pings(ctx context.Context) {
	t := time.NewTicker(b.o.PingEvery)
	defer t.Stop()
	for {
		b.ping(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (b *Bridge) ping(ctx context.Context) {
	t0 := time.Now()
	resp, err := b.o.Client.Do(ctx, "ping", struct{}{})
	if err != nil {
		if ctx.Err() == nil {
			b.down(err)
		}
		return
	}
	b.answered(time.Since(t0))
	var r struct {
		Series int64 `json:"series"`
	}
	if json.Unmarshal(resp.Result, &r) == nil {
		b.series.Store(r.Series)
	}
}

func (b *Bridge) answered(d time.Duration) {
	if !b.healthy.Swap(true) {
		// Back up: the error that took it down is history (a restart's
		// cause stays in the supervisor's last error).
		b.errMu.Lock()
		b.lastErr = ""
		b.errMu.Unlock()
	}
	b.met.latency.Observe(d.Seconds())
	b.latMu.Lock()
	b.lat[b.latN%len(b.lat)] = float64(d.Microseconds()) / 1000
	b.latN++
	b.latMu.Unlock()
}

func (b *Bridge) down(err error) {
	b.healthy.Store(false)
	b.errMu.Lock()
	b.lastErr = err.Error()
	b.errMu.Unlock()
}

// failed counts a request that scored nothing, and logs it (at most once a
// second: a dead worker under load is one problem, not thousands).
func (b *Bridge) failed(outcome string, readings int, err error) {
	b.met.requests.WithLabelValues(outcome).Inc()
	b.met.failed.Add(float64(readings))
	b.counts.failed.Add(uint64(readings))
	switch outcome {
	case "timeout":
		b.counts.timeouts.Add(1)
	case "error", "protocol":
		b.counts.errors.Add(1)
	}
	if outcome == "error" {
		b.errMu.Lock()
		b.lastErr = err.Error()
		b.errMu.Unlock()
	}
	now := time.Now().Unix()
	if last := b.logLimit.Load(); now != last && b.logLimit.CompareAndSwap(last, now) {
		b.o.Logger.Warn("ml request failed; its readings are not scored", "outcome", outcome, "readings", readings, "err", err)
	}
}

// appendReadings appends the numeric metrics of p's data: its top-level
// numbers, and the numbers of objects one level down as "outer.inner", in
// name order, at most MaxMetricsPerPoint. Booleans, strings, arrays and
// deeper values are not scored.
func appendReadings(dst []Reading, p point) []Reading {
	var top map[string]json.RawMessage
	if json.Unmarshal(p.data, &top) != nil {
		return dst
	}
	ts := ""
	if !p.ts.IsZero() {
		ts = p.ts.UTC().Format(time.RFC3339Nano)
	}
	names := make([]string, 0, len(top))
	for k := range top {
		names = append(names, k)
	}
	sort.Strings(names)
	n := 0
	add := func(metric string, raw json.RawMessage) bool {
		v, ok := number(raw)
		if !ok || len(metric) > 128 || metric == "" {
			return true
		}
		if n >= MaxMetricsPerPoint {
			return false
		}
		n++
		dst = append(dst, Reading{Device: p.device, Metric: metric, Value: v, TS: ts})
		return true
	}
	for _, k := range names {
		raw := top[k]
		if len(raw) > 0 && raw[0] == '{' {
			var inner map[string]json.RawMessage
			if json.Unmarshal(raw, &inner) != nil {
				continue
			}
			keys := make([]string, 0, len(inner))
			for ik := range inner {
				keys = append(keys, ik)
			}
			slices.Sort(keys)
			for _, ik := range keys {
				if !add(k+"."+ik, inner[ik]) {
					return dst
				}
			}
			continue
		}
		if !add(k, raw) {
			return dst
		}
	}
	return dst
}

// number parses a JSON number; anything else (or a non-finite one) is not.
func number(raw json.RawMessage) (float64, bool) {
	s := strings.TrimSpace(string(raw))
	if s == "" || (s[0] != '-' && (s[0] < '0' || s[0] > '9')) {
		return 0, false
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, false
	}
	return v, true
}

// alertGate is a token bucket per series: a burst of alertBurst alerts
// (a spike, or the few readings a level shift takes to be learned), then
// one per period. Each lane has its own (a device's series all go to one
// lane), so no lock.
type alertGate struct {
	every time.Duration
	last  map[string]gateState
}

type gateState struct {
	tokens float64
	at     time.Time
}

const alertBurst = 3

func (g *alertGate) allow(key string, now time.Time) bool {
	st, ok := g.last[key]
	if !ok {
		if len(g.last) >= 10000 {
			for k, s := range g.last {
				if now.Sub(s.at) >= alertBurst*g.every {
					delete(g.last, k)
				}
			}
		}
		st = gateState{tokens: alertBurst, at: now}
	}
	st.tokens = min(alertBurst, st.tokens+float64(now.Sub(st.at))/float64(g.every))
	st.at = now
	if st.tokens < 1 {
		g.last[key] = st
		return false
	}
	st.tokens--
	g.last[key] = st
	return true
}
