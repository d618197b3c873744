package device_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/device"
)

func TestTelemetryIsStoredAndQueryableByTimeRange(t *testing.T) {
	e := newFleetEnv(t)
	ctx := context.Background()
	base := e.fleetClock.Now()
	for i := 0; i < 5; i++ {
		seq := int64(i)
		ack, err := e.fleet.Telemetry(ctx, asDevice("d1"), device.TelemetryPoint{
			TS:   base.Add(time.Duration(i-5) * time.Minute),
			Seq:  &seq,
			Data: json.RawMessage(fmt.Sprintf(`{"temp": %d}`, 20+i)),
		})
		if err != nil {
			t.Fatalf("telemetry %d: %v", i, err)
		}
		if ack.Channel != "device:d1" || ack.MessageID == "" {
			t.Fatalf("ack = %+v, want channel device:d1 and a message id", ack)
		}
	}
	got, err := e.fleet.QueryTelemetry(ctx, asUser("alice", false), "d1", base.Add(-4*time.Minute), base.Add(-2*time.Minute), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || string(got[0].Data) != `{"temp":21}` || *got[1].Seq != 2 {
		t.Fatalf("got %+v, want the points at -4m and -3m (seq 1, 2)", got)
	}
	all, err := e.fleet.QueryTelemetry(ctx, asDevice("d1"), "d1", time.Time{}, time.Time{}, 3)
	if err != nil || len(all) != 3 || *all[0].Seq != 0 {
		t.Fatalf("device reading its own first 3 points: %v %+v", err, all)
	}
	if types := e.fleetPosts.types(); len(types) != 5 || types[0] != "telemetry" {
		t.Fatalf("device channel got %v, want 5 telemetry events", types)
	}
	if _, ls := e.deviceRow(t, "d1"); ls == "" {
		t.Fatal("last_seen was not set by telemetry")
	}
}

func TestTelemetryAuthorization(t *testing.T) {
	e := newFleetEnv(t)
	ctx := context.Background()
	tests := []struct {
		name string
		who  unhidra.Identity
		dev  string
		want string
	}{
		{"the owner reads her device", asUser("alice", false), "d1", ""},
		{"an admin reads any device", asUser("admin", true), "d2", ""},
		{"the device reads itself", asDevice("d1"), "d1", ""},
		{"another user is forbidden", asUser("bob", false), "d1", unhidra.EFORBIDDEN},
		{"another device is forbidden", asDevice("d2"), "d1", unhidra.EFORBIDDEN},
		{"an unknown device looks forbidden to users", asUser("bob", false), "nope", unhidra.EFORBIDDEN},
		{"an unknown device is not found for admins", asUser("admin", true), "nope", unhidra.ENOTFOUND},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.fleet.QueryTelemetry(ctx, tc.who, tc.dev, time.Time{}, time.Time{}, 10)
			if got := unhidra.ErrorCode(err); got != tc.want {
				t.Fatalf("code = %q, want %q (%v)", got, tc.want, err)
			}
		})
	}
	t.Run("a device cannot post telemetry as another device", func(t *testing.T) {
		_, err := e.fleet.Telemetry(ctx, asDevice("d1"), device.TelemetryPoint{DeviceID: "d2", Data: json.RawMessage(`{}`)})
		if unhidra.ErrorCode(err) != unhidra.EFORBIDDEN {
			t.Fatalf("err = %v, want forbidden", err)
		}
	})
	t.Run("a user cannot post telemetry", func(t *testing.T) {
		_, err := e.fleet.Telemetry(ctx, asUser("alice", false), device.TelemetryPoint{Data: json.RawMessage(`{}`)})
		if unhidra.ErrorCode(err) != unhidra.EFORBIDDEN {
			t.Fatalf("err = %v, want forbidden", err)
		}
	})
}

func TestTelemetryValidation(t *testing.T) {
	e := newFleetEnv(t)
	ctx := context.Background()
	big := make([]byte, device.MaxTelemetryDataBytes+10)
	copy(big, `{"x":"`)
	for i := 6; i < len(big)-2; i++ {
		big[i] = 'a'
	}
	copy(big[len(big)-2:], `"}`)
	tests := []struct {
		name string
		p    device.TelemetryPoint
		want string
	}{
		{"data that is not an object is invalid", device.TelemetryPoint{Data: json.RawMessage(`[1,2]`)}, unhidra.EINVALID},
		{"missing data is invalid", device.TelemetryPoint{}, unhidra.EINVALID},
		{"data over the limit is too large", device.TelemetryPoint{Data: big}, unhidra.ETOOLARGE},
		{"a ts two hours ahead is invalid", device.TelemetryPoint{Data: json.RawMessage(`{}`), TS: e.fleetClock.Now().Add(2 * time.Hour)}, unhidra.EINVALID},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.fleet.Telemetry(ctx, asDevice("d1"), tc.p)
			if got := unhidra.ErrorCode(err); got != tc.want {
				t.Fatalf("code = %q, want %q (%v)", got, tc.want, err)
			}
		})
	}
	t.Run("a ts from an unset device fleetClock becomes the arrival time", func(t *testing.T) {
		if _, err := e.fleet.Telemetry(ctx, asDevice("d2"), device.TelemetryPoint{Data: json.RawMessage(`{"a":1}`), TS: time.Unix(5, 0)}); err != nil {
			t.Fatal(err)
		}
		pts, err := e.fleet.QueryTelemetry(ctx, asDevice("d2"), "d2", time.Time{}, time.Time{}, 0)
		if err != nil || len(pts) != 1 || !pts[0].TS.Equal(e.fleetClock.Now()) {
			t.Fatalf("points %+v (%v), want one at %v", pts, err, e.fleetClock.Now())
		}
	})
}

func TestTelemetryIsNotAckedWhenTheStoreFails(t *testing.T) {
	e := newFleetEnv(t)
	e.db.Close()
	_, err := e.fleet.Telemetry(context.Background(), asDevice("d1"), device.TelemetryPoint{Data: json.RawMessage(`{"t":1}`)})
	if err == nil {
		t.Fatal("telemetry was acked with the database closed")
	}
}

func TestTelemetryIsNotAckedWhenTheChannelPostFails(t *testing.T) {
	e := newFleetEnv(t)
	e.fleetPosts.fail = unhidra.Errorf(unhidra.EUNAVAILABLE, "down")
	_, err := e.fleet.Telemetry(context.Background(), asDevice("d1"), device.TelemetryPoint{Data: json.RawMessage(`{"t":1}`)})
	if unhidra.ErrorCode(err) != unhidra.EUNAVAILABLE {
		t.Fatalf("err = %v, want unavailable", err)
	}
}

func TestConcurrentTelemetryIsGroupCommittedWithoutLoss(t *testing.T) {
	e := newFleetEnv(t)
	ctx := context.Background()
	const n = 300
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			d := "d1"
			if i%2 == 1 {
				d = "d2"
			}
			_, err := e.fleet.Telemetry(ctx, asDevice(d), device.TelemetryPoint{Data: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))})
			errs <- err
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var stored int
	if err := e.db.Reader().QueryRow(`SELECT COUNT(*) FROM telemetry`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored != n {
		t.Fatalf("stored %d points, want %d", stored, n)
	}
}

func TestPruneDeletesTelemetryOlderThanTheRetention(t *testing.T) {
	e := newFleetEnv(t)
	ctx := context.Background()
	for _, age := range []time.Duration{31 * 24 * time.Hour, 29 * 24 * time.Hour, time.Minute} {
		if _, err := e.fleet.Telemetry(ctx, asDevice("d1"), device.TelemetryPoint{TS: e.fleetClock.Now().Add(-age), Data: json.RawMessage(`{"v":1}`)}); err != nil {
			t.Fatal(err)
		}
	}
	n, err := e.fleet.Prune(ctx, e.fleetClock.Now().Add(-device.DefaultRetention))
	if err != nil || n != 1 {
		t.Fatalf("pruned %d (%v), want 1", n, err)
	}
	e.fleetClock.Add(2 * 24 * time.Hour)
	n, err = e.fleet.Prune(ctx, e.fleetClock.Now().Add(-device.DefaultRetention))
	if err != nil || n != 1 {
		t.Fatalf("two days later pruned %d (%v), want 1", n, err)
	}
	left, _ := e.fleet.QueryTelemetry(ctx, asDevice("d1"), "d1", time.Time{}, time.Time{}, 0)
	if len(left) != 1 {
		t.Fatalf("%d points left, want 1", len(left))
	}
}

func TestParseTelemetry(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		wantData string
		wantSeq  int64
		wantTS   time.Time
		wantErr  string
	}{
		{"a bare object is the data", `{"temp": 21.5, "hum": 40}`, `{"temp":21.5,"hum":40}`, -1, time.Time{}, ""},
		{"the envelope gives data, ts and seq", `{"data":{"t":1},"ts":"2026-03-01T10:00:00Z","seq":7}`, `{"t":1}`, 7, time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC), ""},
		{"a Unix ts in seconds is read", `{"data":{"t":1},"ts":1772359200}`, `{"t":1}`, -1, time.Unix(1772359200, 0).UTC(), ""},
		{"a Unix ts in milliseconds is read", `{"data":{"t":1},"ts":1772359200500}`, `{"t":1}`, -1, time.UnixMilli(1772359200500).UTC(), ""},
		{"a data key beside other keys is plain data", `{"data":{"t":1},"other":2}`, `{"data":{"t":1},"other":2}`, -1, time.Time{}, ""},
		{"a scalar data key is plain data", `{"data":5}`, `{"data":5}`, -1, time.Time{}, ""},
		{"an array is refused", `[1]`, "", 0, time.Time{}, unhidra.EINVALID},
		{"invalid JSON is refused", `{"a":`, "", 0, time.Time{}, unhidra.EINVALID},
		{"a bad ts is refused", `{"data":{},"ts":"yesterday"}`, "", 0, time.Time{}, unhidra.EINVALID},
		{"a fractional seq is refused", `{"data":{},"seq":1.5}`, "", 0, time.Time{}, unhidra.EINVALID},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := device.ParseTelemetry([]byte(tc.in))
			if got := unhidra.ErrorCode(err); got != tc.wantErr {
				t.Fatalf("code = %q, want %q (%v)", got, tc.wantErr, err)
			}
			if err != nil {
				return
			}
			if string(p.Data) != tc.wantData {
				t.Errorf("data = %s, want %s", p.Data, tc.wantData)
			}
			if (p.Seq == nil) != (tc.wantSeq < 0) || (p.Seq != nil && *p.Seq != tc.wantSeq) {
				t.Errorf("seq = %v, want %d", p.Seq, tc.wantSeq)
			}
			if !p.TS.Equal(tc.wantTS) {
				t.Errorf("ts = %v, want %v", p.TS, tc.wantTS)
			}
		})
	}
}

func FuzzParseTelemetry(f *testing.F) {
	for _, s := range []string{`{"t":1}`, `{"data":{"a":1},"ts":"2026-01-01T00:00:00Z","seq":3}`, `{"data":{},"ts":1e20}`, `[]`, `null`, `{"data":{"x":[1,{"y":null}]},"ts":-1}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := device.ParseTelemetry(b)
		if err != nil {
			if c := unhidra.ErrorCode(err); c != unhidra.EINVALID && c != unhidra.ETOOLARGE {
				t.Fatalf("unexpected error code %q", c)
			}
			return
		}
		if !json.Valid(p.Data) || len(p.Data) == 0 || p.Data[0] != '{' {
			t.Fatalf("accepted data %q is not a JSON object", p.Data)
		}
	})
}

func FuzzParseHeartbeat(f *testing.F) {
	for _, s := range []string{`{"device_id":"d1","ts":1772359200,"free_heap":1000}`, `{}`, ``, `{"ts":"x"}`, `{"device_id":5}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		hb, err := device.ParseHeartbeat(b)
		if err != nil {
			return
		}
		if hb.Fields == nil {
			t.Fatal("accepted heartbeat has nil fields")
		}
		for _, k := range []string{"device_id", "ts", "type"} {
			if _, ok := hb.Fields[k]; ok {
				t.Fatalf("field %q left in Fields", k)
			}
		}
	})
}
