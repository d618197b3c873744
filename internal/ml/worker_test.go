package ml

// Tests against the shipped worker, scripts/inference_worker.py, run by
// the supervisor as `serve` runs it.

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/load"
	"github.com/unhidra/unhidra/internal/ml/mltest"
)

// startWorker runs the shipped worker under a supervisor until the test
// ends and returns its socket once it answers.
func startWorker(t testing.TB, flags ...string) string {
	t.Helper()
	socket := mltest.Socket(t)
	sup, err := NewSupervisor(SupervisorOptions{Command: mltest.Command(t, flags...), Socket: socket})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { sup.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	c := NewClient(socket, 2*time.Second, 1)
	defer c.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := c.Do(context.Background(), "ping", struct{}{}); err == nil {
			return socket
		} else if time.Now().After(deadline) {
			t.Fatalf("the worker did not answer: %v (%+v)", err, sup.State())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestWorkerRoundTrip(t *testing.T) {
	socket := startWorker(t, "--test-models")
	c := NewClient(socket, 5*time.Second, 2)
	defer c.Close()
	data := map[string]any{"text": "héllo ✓ \u2028 \"quoted\"", "n": 1.5, "list": []any{1, "two", nil}}
	resp, err := c.Do(context.Background(), "echo", data)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(resp.Result, &back); err != nil || fmt.Sprint(back) != fmt.Sprint(data) {
		t.Fatalf("echo: %s, %v", resp.Result, err)
	}
	readings := []Reading{{Device: "d", Metric: "t", Value: 1}, {Device: "d", Metric: "t", Value: math.MaxFloat64}, {Device: "", Metric: "t", Value: 1}}
	resp, err = c.Do(context.Background(), DefaultModel, ScoreRequest{Readings: readings})
	if err != nil {
		t.Fatal(err)
	}
	res, err := DecodeScores(resp.Result, len(readings))
	if err != nil || res.Model != DefaultModel || res.Version == "" || res.Scores[2].Label != "invalid" || res.Scores[2].Score != nil {
		t.Fatalf("scores %s: %v", resp.Result, err)
	}
	var we *WorkerError
	if _, err := c.Do(context.Background(), "no-such-model", struct{}{}); !errors.As(err, &we) || we.Code != "unknown_model" {
		t.Fatalf("unknown model: %v", err)
	}
	if _, err := c.Do(context.Background(), DefaultModel, ScoreRequest{Readings: make([]Reading, MaxReadings+1)}); !errors.As(err, &we) || we.Code != "bad_request" {
		t.Fatalf("%d readings: %v", MaxReadings+1, err)
	}
}

// TestWorkerSlowModelHitsTheTimeout: a request the model takes too long
// over ends in ErrTimeout at the timeout, while requests on other
// connections are answered meanwhile, and the client goes on.
func TestWorkerSlowModelHitsTheTimeout(t *testing.T) {
	socket := startWorker(t, "--test-models")
	slow := NewClient(socket, 300*time.Millisecond, 1)
	defer slow.Close()
	fast := NewClient(socket, 5*time.Second, 1)
	defer fast.Close()
	errc := make(chan error, 1)
	go func() {
		_, err := slow.Do(context.Background(), "sleep", map[string]any{"ms": 3000})
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond)
	for i := range 5 {
		if _, err := fast.Do(context.Background(), DefaultModel, ScoreRequest{Readings: []Reading{{Device: "d", Metric: "m", Value: float64(i)}}}); err != nil {
			t.Fatalf("a request beside the slow one: %v", err)
		}
	}
	select {
	case err := <-errc:
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("slow model: %v, want a timeout", err)
		}
	case <-time.After(2500 * time.Millisecond):
		t.Fatal("the slow request was not cut off at its timeout")
	}
	if _, err := slow.Do(context.Background(), "ping", struct{}{}); err != nil {
		t.Fatalf("after the timeout: %v", err)
	}
}

// TestWorkerRefusesMalformedFrames: what a broken client sends gets an
// error frame from the worker: a length of 2^31 (then the connection is
// closed), JSON that is not JSON (and the connection goes on).
func TestWorkerRefusesMalformedFrames(t *testing.T) {
	socket := startWorker(t)
	raw := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("unix", socket)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		return c, bufio.NewReader(c)
	}
	c, r := raw()
	c.Write(binary.BigEndian.AppendUint32(nil, 1<<31))
	resp := readResponse(t, r)
	if resp.RequestID != nil || resp.Error == nil || resp.Error.Code != "frame_too_large" {
		t.Fatalf("2^31: %+v", resp)
	}
	if _, err := ReadFrame(r, 0); err == nil {
		t.Fatal("the connection stayed open after a frame it cannot skip")
	}

	c, r = raw()
	for _, body := range []string{`{"request_id":`, `[1,2]`, `{"request_id":5,"data":{}}`} {
		WriteFrame(c, []byte(body))
		resp := readResponse(t, r)
		if resp.Error == nil || (resp.Error.Code != "invalid_json" && resp.Error.Code != "bad_request") {
			t.Fatalf("%s: %+v", body, resp)
		}
	}
	WriteFrame(c, []byte(`{"request_id":"ok","model_id":"ping","data":{}}`))
	if resp := readResponse(t, r); resp.Error != nil || *resp.RequestID != "ok" {
		t.Fatalf("after the bad frames: %+v", resp)
	}
}

func readResponse(t *testing.T, r *bufio.Reader) Response {
	t.Helper()
	b, err := ReadFrame(r, 0)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := DecodeResponse(b)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestDetectionQuality recomputes the README's detection figures: the
// default model on the device simulator's streams (sine + noise + spikes,
// the spikes known), 100 devices × 3 seeds × 600 readings, sent through
// the worker the way the bridge sends them (each request holds the latest
// readings of every device). It must flag ≥ 95 % of the spikes at the
// spike or the reading after it, ≤ 1 % of normal readings, and, after a
// level shift of three amplitudes, flag nothing past 50 readings later.
func TestDetectionQuality(t *testing.T) {
	socket := startWorker(t)
	c := NewClient(socket, 10*time.Second, 1)
	defer c.Close()
	const devices, steps, shiftAt = 100, 600, 300
	var mu sync.Mutex
	var lat []time.Duration
	score := func(ctx context.Context, rs []Reading) []Score {
		t0 := time.Now()
		resp, err := c.Do(ctx, DefaultModel, ScoreRequest{Readings: rs})
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		lat = append(lat, time.Since(t0))
		mu.Unlock()
		res, err := DecodeScores(resp.Result, len(rs))
		if err != nil {
			t.Fatal(err)
		}
		return res.Scores
	}
	amp := map[string]float64{"temp_c": 4, "humidity": 10}
	var spikes, caught, normal, falsePos, readings int
	worstAdapt := 0
	start := time.Now()
	for _, seed := range []uint64{1, 1000, 1_000_000} {
		for _, shift := range []bool{false, true} {
			streams := make([][][2]load.SimReading, devices)
			for d := range streams {
				streams[d] = load.SimStream(seed+uint64(d), 0.01, 5*time.Second, steps)
			}
			prefix := fmt.Sprintf("s%d-%t-", seed, shift)
			flags := make([][]bool, devices*2)
			for i := range flags {
				flags[i] = make([]bool, steps)
			}
			for step := range steps {
				rs := make([]Reading, 0, devices*2)
				for d := range devices {
					for _, r := range streams[d][step] {
						v := r.Value
						if shift && step >= shiftAt {
							v += 3 * amp[r.Metric]
						}
						rs = append(rs, Reading{Device: prefix + fmt.Sprint(d), Metric: r.Metric, Value: v})
					}
				}
				for i, s := range score(context.Background(), rs) {
					flags[i][step] = s.Anomaly
				}
				readings += len(rs)
			}
			for d := range devices {
				for m := range 2 {
					f := flags[2*d+m]
					for step := range steps {
						r := streams[d][step][m]
						after := step > 0 && streams[d][step-1][m].Spike
						nearShift := shift && step >= shiftAt && step < shiftAt+50
						switch {
						case r.Spike:
							spikes++
							if f[step] || (step+1 < steps && f[step+1]) {
								caught++
							}
						case after || nearShift:
						default:
							normal++
							if f[step] {
								falsePos++
							}
						}
						if shift && step >= shiftAt && f[step] && !r.Spike && !after {
							worstAdapt = max(worstAdapt, step-shiftAt)
						}
					}
				}
			}
		}
	}
	elapsed := time.Since(start)
	slices.Sort(lat)
	recall := float64(caught) / float64(spikes)
	fpr := float64(falsePos) / float64(normal)
	t.Logf("spikes flagged %.2f%% (%d/%d); normal readings flagged %.4f%% (%d/%d); worst adaptation to a level shift %d readings",
		100*recall, caught, spikes, 100*fpr, falsePos, normal, worstAdapt)
	t.Logf("%d readings in %v through the socket: %.0f readings/s; request of %d readings p50 %v p99 %v",
		readings, elapsed.Round(time.Millisecond), float64(readings)/elapsed.Seconds(), devices*2, lat[len(lat)/2], lat[len(lat)*99/100])
	if spikes < 500 {
		t.Fatalf("only %d spikes in the streams: the measure means little", spikes)
	}
	if recall < 0.95 || fpr > 0.01 || worstAdapt > 50 {
		t.Fatalf("detection below its goals (≥ 95%% flagged, ≤ 1%% false, adapted within 50)")
	}
}

// BenchmarkBridgeThroughput: telemetry points of two metrics from 1,000
// devices through the bridge and the shipped worker, from Observe until
// scored; it reports readings scored per second and the requests' p99.
// Run: go test -run '^$' -bench BridgeThroughput -benchtime 200000x ./internal/ml/
func BenchmarkBridgeThroughput(b *testing.B) {
	socket := startWorker(b)
	br := New(Options{Client: NewClient(socket, 10*time.Second, 8), QueueSize: 1 << 20})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { br.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	points := make([]json.RawMessage, 64)
	for i := range points {
		points[i] = json.RawMessage(fmt.Sprintf(`{"temp_c":%.2f,"humidity":%.2f}`, 21+0.1*float64(i%7), 45+0.2*float64(i%5)))
	}
	devices := make([]string, 1000)
	for i := range devices {
		devices[i] = fmt.Sprintf("dev-%04d", i)
	}
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		br.Observe(pt(devices[i%len(devices)], i, string(points[i%len(points)])))
	}
	want := uint64(2 * b.N)
	for br.Health().Scored+2*br.Health().Dropped < want {
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	h := br.Health()
	b.ReportMetric(float64(h.Scored)/elapsed.Seconds(), "readings/s")
	b.ReportMetric(h.LatencyP99MS, "p99-ms")
	b.ReportMetric(float64(h.Dropped), "dropped")
}
