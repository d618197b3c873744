package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/device"
)

// Telemetry runs the conformance suite of device.FleetStore's telemetry:
// what a stored point reads back as (QueryTelemetry), pruning, and the
// devices' last_seen moved by the points. Each subtest starts with user
// alice and her devices d1 and d2 in the registry.
//
// Points are written only through storePoints, the one place to change
// when the write path does.
func Telemetry(t *testing.T, open func(t *testing.T) DeviceStores) {
	tests := []struct {
		name string
		fn   func(t *testing.T, st DeviceStores)
	}{
		{"a point reads back with every field", testTelemetryRoundTrip},
		{"a query covers since to until, half open, oldest first, at most limit", testTelemetryRange},
		{"points of one timestamp read back in the order they were stored", testTelemetryTies},
		{"a query sees only its device's points", testTelemetryPerDevice},
		{"points move their device's last_seen forward, never back", testTelemetryLastSeen},
		{"pruning deletes the points before the cutoff and counts them", testTelemetryPrune},
		{"concurrent writes all land and readers see whole batches", testTelemetryConcurrent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := open(t)
			mkUsers(t, st.Users, "alice")
			mkDevice(t, st.Registry, "d1", "alice", 1)
			mkDevice(t, st.Registry, "d2", "alice", 2)
			tc.fn(t, st)
		})
	}
}

// storePoints writes points in one batch.
func storePoints(t *testing.T, st DeviceStores, points ...device.TelemetryPoint) {
	t.Helper()
	if err := st.Fleet.AppendTelemetry(context.Background(), points); err != nil {
		t.Fatalf("AppendTelemetry(%d points): %v", len(points), err)
	}
}

// telPoint is point i of dev, taken at devT0+at and received then.
func telPoint(dev string, at time.Duration, i int) device.TelemetryPoint {
	seq := int64(i)
	ts := devT0.Add(at)
	return device.TelemetryPoint{DeviceID: dev, TS: ts, Seq: &seq, Data: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i)), ReceivedAt: ts}
}

func queryPoints(t *testing.T, st DeviceStores, dev string, since, until time.Time, limit int) []device.TelemetryPoint {
	t.Helper()
	pts, err := st.Fleet.QueryTelemetry(context.Background(), dev, since, until, limit)
	if err != nil {
		t.Fatalf("QueryTelemetry(%s): %v", dev, err)
	}
	return pts
}

func seqs(pts []device.TelemetryPoint) string {
	var out []string
	for _, p := range pts {
		if p.Seq == nil {
			out = append(out, "-")
		} else {
			out = append(out, fmt.Sprint(*p.Seq))
		}
	}
	return fmt.Sprint(out)
}

var (
	allTime = devT0.Add(-24 * time.Hour)
	endTime = devT0.Add(24 * time.Hour)
)

func testTelemetryRoundTrip(t *testing.T, st DeviceStores) {
	full := telPoint("d1", time.Second, 7)
	full.TS = devT0.Add(123456789 * time.Nanosecond)
	full.ReceivedAt = devT0.Add(2 * time.Second)
	full.Data = json.RawMessage(`{"temp":21.5,"tags":["a","b"],"nested":{"x":null}}`)
	noSeq := telPoint("d1", 3*time.Second, 0)
	noSeq.Seq = nil
	storePoints(t, st, full, noSeq)
	got := queryPoints(t, st, "d1", allTime, endTime, 10)
	if len(got) != 2 {
		t.Fatalf("QueryTelemetry = %d points, want 2", len(got))
	}
	p := got[0]
	var gotData, wantData any
	if err := json.Unmarshal(p.Data, &gotData); err != nil {
		t.Fatalf("stored data %q is not JSON: %v", p.Data, err)
	}
	_ = json.Unmarshal(full.Data, &wantData)
	if p.DeviceID != "d1" || !p.TS.Equal(full.TS) || !p.ReceivedAt.Equal(full.ReceivedAt) || p.Seq == nil || *p.Seq != 7 || fmt.Sprint(gotData) != fmt.Sprint(wantData) {
		t.Errorf("point = %+v (data %s), want %+v (data %s)", p, p.Data, full, full.Data)
	}
	if got[1].Seq != nil {
		t.Errorf("a point without seq reads back with seq %d, want none", *got[1].Seq)
	}
	if err := st.Fleet.AppendTelemetry(context.Background(), nil); err != nil {
		t.Errorf("AppendTelemetry(no points) = %v, want nil", err)
	}
}

func testTelemetryRange(t *testing.T, st DeviceStores) {
	var batch []device.TelemetryPoint
	for i := 9; i >= 0; i-- { // stored newest first
		batch = append(batch, telPoint("d1", time.Duration(i)*time.Second, i))
	}
	storePoints(t, st, batch...)
	at := func(s int) time.Time { return devT0.Add(time.Duration(s) * time.Second) }
	tests := []struct {
		name         string
		since, until time.Time
		limit        int
		want         string
	}{
		{"since is inclusive and until exclusive", at(2), at(5), 100, "[2 3 4]"},
		{"the limit keeps the oldest", allTime, endTime, 4, "[0 1 2 3]"},
		{"an empty range holds nothing", at(3), at(3), 100, "[]"},
		{"a range past the newest holds nothing", at(10), endTime, 100, "[]"},
		{"everything, oldest first", allTime, endTime, 100, "[0 1 2 3 4 5 6 7 8 9]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := seqs(queryPoints(t, st, "d1", tc.since, tc.until, tc.limit)); got != tc.want {
				t.Errorf("seqs = %s, want %s", got, tc.want)
			}
		})
	}
}

func testTelemetryTies(t *testing.T, st DeviceStores) {
	storePoints(t, st, telPoint("d1", time.Second, 3), telPoint("d1", time.Second, 1))
	storePoints(t, st, telPoint("d1", time.Second, 2), telPoint("d1", 0, 9))
	if got := seqs(queryPoints(t, st, "d1", allTime, endTime, 10)); got != "[9 3 1 2]" {
		t.Errorf("seqs = %s, want [9 3 1 2] (by ts, then in the order stored)", got)
	}
	if got := seqs(queryPoints(t, st, "d1", allTime, endTime, 2)); got != "[9 3]" {
		t.Errorf("seqs(limit 2) = %s, want [9 3]", got)
	}
}

func testTelemetryPerDevice(t *testing.T, st DeviceStores) {
	storePoints(t, st, telPoint("d1", 0, 1), telPoint("d2", 0, 2), telPoint("d1", time.Second, 3))
	if got := seqs(queryPoints(t, st, "d1", allTime, endTime, 10)); got != "[1 3]" {
		t.Errorf("d1 = %s, want [1 3]", got)
	}
	d2 := queryPoints(t, st, "d2", allTime, endTime, 10)
	if seqs(d2) != "[2]" || d2[0].DeviceID != "d2" {
		t.Errorf("d2 = %+v, want its one point", d2)
	}
	if got := queryPoints(t, st, "nope", allTime, endTime, 10); len(got) != 0 {
		t.Errorf("an unknown device has %d points, want none", len(got))
	}
}

func testTelemetryLastSeen(t *testing.T, st DeviceStores) {
	lastSeen := func(id string) *time.Time {
		t.Helper()
		return getDevice(t, st.Registry, id).LastSeen
	}
	// Steps an hour apart: far beyond any store's last_seen resolution.
	storePoints(t, st, telPoint("d1", 0, 1))
	if ls := lastSeen("d1"); ls == nil || !ls.Equal(devT0) {
		t.Errorf("last_seen after the first point = %v, want %v", ls, devT0)
	}
	storePoints(t, st, telPoint("d1", -time.Hour, 2))
	if ls := lastSeen("d1"); ls == nil || !ls.Equal(devT0) {
		t.Errorf("last_seen after an older point = %v, want %v kept", ls, devT0)
	}
	storePoints(t, st, telPoint("d1", 2*time.Hour, 3), telPoint("d1", time.Hour, 4))
	if ls := lastSeen("d1"); ls == nil || !ls.Equal(devT0.Add(2*time.Hour)) {
		t.Errorf("last_seen after a batch = %v, want the newest received_at %v", ls, devT0.Add(2*time.Hour))
	}
	if ls := lastSeen("d2"); ls != nil {
		t.Errorf("d2's last_seen = %v, want none (no points)", ls)
	}
	if d := getDevice(t, st.Registry, "d1"); d.Online {
		t.Error("telemetry set the device online; only SetOnline does")
	}
}

func testTelemetryPrune(t *testing.T, st DeviceStores) {
	ctx := context.Background()
	var batch []device.TelemetryPoint
	for i := 0; i < 10; i++ {
		batch = append(batch, telPoint("d1", time.Duration(i)*time.Minute, i), telPoint("d2", time.Duration(i)*time.Minute, 100+i))
	}
	storePoints(t, st, batch...)
	n, err := st.Fleet.PruneTelemetry(ctx, devT0.Add(4*time.Minute))
	if err != nil || n != 8 {
		t.Errorf("PruneTelemetry = %d, %v; want 8 (4 of each device)", n, err)
	}
	if got := seqs(queryPoints(t, st, "d1", allTime, endTime, 100)); got != "[4 5 6 7 8 9]" {
		t.Errorf("d1 after pruning = %s, want [4 5 6 7 8 9] (the point at the cutoff kept)", got)
	}
	if got := queryPoints(t, st, "d2", allTime, endTime, 100); len(got) != 6 {
		t.Errorf("d2 after pruning = %s, want 6 points", seqs(got))
	}
	if n, err := st.Fleet.PruneTelemetry(ctx, devT0.Add(4*time.Minute)); err != nil || n != 0 {
		t.Errorf("PruneTelemetry again = %d, %v; want 0", n, err)
	}
}

func testTelemetryConcurrent(t *testing.T, st DeviceStores) {
	ctx := context.Background()
	const writers, batches, per = 4, 10, 5
	var wg sync.WaitGroup
	errs := make(chan error, writers+1)
	done := make(chan struct{})
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := 0; b < batches; b++ {
				var pts []device.TelemetryPoint
				for i := 0; i < per; i++ {
					n := (w*batches+b)*per + i
					pts = append(pts, telPoint("d1", time.Duration(n)*time.Millisecond, n))
				}
				if err := st.Fleet.AppendTelemetry(ctx, pts); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	// A reader alongside: a batch is stored whole, so it never sees a
	// count that is not a multiple of the batch size.
	written := make(chan struct{})
	go func() {
		defer close(done)
		for {
			last := false
			select {
			case <-written:
				last = true
			default:
			}
			pts, err := st.Fleet.QueryTelemetry(ctx, "d1", allTime, endTime, writers*batches*per+1)
			if err != nil {
				errs <- err
				return
			}
			if len(pts)%per != 0 {
				errs <- fmt.Errorf("a reader saw %d points, not whole batches of %d", len(pts), per)
				return
			}
			if last {
				return
			}
		}
	}()
	wg.Wait()
	close(written)
	<-done
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got := queryPoints(t, st, "d1", allTime, endTime, writers*batches*per+10)
	if len(got) != writers*batches*per {
		t.Fatalf("%d points stored, want %d", len(got), writers*batches*per)
	}
	for i, p := range got {
		if *p.Seq != int64(i) {
			t.Fatalf("point %d has seq %d: lost or duplicated", i, *p.Seq)
		}
	}
}
