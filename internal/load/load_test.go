package load

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestPercentileByNearestRank(t *testing.T) {
	s := make([]time.Duration, 1000)
	for i := range s {
		s[i] = time.Duration(i+1) * time.Millisecond
	}
	for _, tc := range []struct {
		name string
		p    float64
		want time.Duration
	}{
		{"the median of 1..1000 ms is 500 ms", 50, 500 * time.Millisecond},
		{"p99 of 1..1000 ms is 990 ms", 99, 990 * time.Millisecond},
		{"p99.9 of 1..1000 ms is 999 ms", 99.9, 999 * time.Millisecond},
		{"p100 is the maximum", 100, 1000 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := percentile(s, tc.p); got != tc.want {
				t.Errorf("percentile(%v) = %v, want %v", tc.p, got, tc.want)
			}
		})
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("percentile of nothing = %v, want 0", got)
	}
}

func TestLatenciesKeepABoundedSample(t *testing.T) {
	l := newLatencies(100)
	for i := 0; i < 10000; i++ {
		l.add(time.Duration(i))
	}
	if len(l.samples) != 100 || l.n != 10000 || l.top != 9999 || l.min != 0 {
		t.Errorf("samples=%d n=%d max=%v min=%v", len(l.samples), l.n, l.top, l.min)
	}
	if !strings.Contains(l.summary(), "n=10000") {
		t.Errorf("summary = %s", l.summary())
	}
}

func TestPayloadCarriesItsTimestampAndSize(t *testing.T) {
	now := time.Unix(1700000000, 123456789)
	for _, size := range []int{64, 128, 1024} {
		p := benchPayload(now, 42, size)
		if len(p) != size {
			t.Errorf("size %d: payload is %d bytes", size, len(p))
		}
		if !json.Valid(p) {
			t.Errorf("size %d: payload is not JSON: %s", size, p)
		}
		var got []time.Time
		// As a WebSocket message frame wraps it.
		frame := []byte(`{"type":"message","channel":"c","offset":1,"message":{"data":` + string(p) + `}}`)
		if n := benchTimestamps(frame, func(t time.Time) { got = append(got, t) }); n != 1 || !got[0].Equal(now) {
			t.Errorf("size %d: timestamps %v, want [%v]", size, got, now)
		}
	}
}

func TestBenchTimestampsFindsEveryMessageOfABatch(t *testing.T) {
	b := []byte(`{"push":{"pub":{"data":{"bench_ts":1}}}}` + "\n" + `{"push":{"pub":{"data":{"bench_ts": 2}}}}` + "\n" + `{"bench_ts":"x"}`)
	var got []int64
	benchTimestamps(b, func(t time.Time) { got = append(got, t.UnixNano()) })
	if len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Errorf("got %v, want [1 2]", got)
	}
}

func FuzzBenchTimestamps(f *testing.F) {
	f.Add([]byte(`{"bench_ts":1700000000000000000}`))
	f.Add([]byte(`"bench_ts":"bench_ts":99999999999999999999999`))
	f.Fuzz(func(t *testing.T, b []byte) {
		n := 0
		got := benchTimestamps(b, func(time.Time) { n++ })
		if got != n || got > len(b)/len(benchTSKey) {
			t.Fatalf("reported %d, called %d times, on %d bytes", got, n, len(b))
		}
	})
}

func TestParseKeyLine(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		ok       bool
		wantErr  bool
	}{
		{"an id and a key are read", "dev1,unhidra_dk_abc-DEF_123", true, false},
		{"spaces around the fields are trimmed", "  dev1 , unhidra_dk_abc ", true, false},
		{"a blank line is skipped", "   ", false, false},
		{"a comment is skipped", "# id,key", false, false},
		{"a line without a comma is an error", "dev1 unhidra_dk_abc", false, true},
		{"a key with other characters is an error", "dev1,unhidra dk", false, true},
		{"an id with an MQTT wildcard is an error", "dev/+,unhidra_dk_abc", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, ok, err := parseKeyLine(tc.in)
			if ok != tc.ok || (err != nil) != tc.wantErr {
				t.Fatalf("parseKeyLine(%q) = %+v, %v, %v", tc.in, d, ok, err)
			}
			if err != nil && strings.Contains(err.Error(), "unhidra_dk") {
				t.Errorf("error %q repeats the key", err)
			}
		})
	}
}

func FuzzParseKeyLine(f *testing.F) {
	f.Add("dev1,unhidra_dk_abc")
	f.Add("#x")
	f.Fuzz(func(t *testing.T, line string) {
		d, ok, err := parseKeyLine(line)
		if ok && (d.ID == "" || d.Key == "" || strings.ContainsAny(d.ID, "/+#")) {
			t.Fatalf("accepted %+v", d)
		}
		if err != nil && ok {
			t.Fatal("ok with an error")
		}
	})
}

func TestSimulatedSignalIsASineWithNoiseAndSpikes(t *testing.T) {
	t.Run("without spikes readings stay within the amplitude plus noise", func(t *testing.T) {
		s := newSignal(rand.New(rand.NewPCG(1, 2)), 20, 5, 0)
		lo, hi := math.Inf(1), math.Inf(-1)
		for i := 0; i < 10000; i++ {
			v, spike := s.at(float64(i))
			if spike {
				t.Fatal("a spike with probability 0")
			}
			lo, hi = math.Min(lo, v), math.Max(hi, v)
		}
		if lo < 20-5-6*0.25 || hi > 20+5+6*0.25 {
			t.Errorf("range [%.2f, %.2f] exceeds 20±5 plus noise", lo, hi)
		}
		if hi-lo < 8 {
			t.Errorf("range [%.2f, %.2f] does not swing like a sine of amplitude 5", lo, hi)
		}
	})
	t.Run("spikes leave the normal range at about the configured rate", func(t *testing.T) {
		s := newSignal(rand.New(rand.NewPCG(3, 4)), 20, 5, 0.05)
		spikes := 0
		for i := 0; i < 10000; i++ {
			v, spike := s.at(float64(i))
			if spike {
				spikes++
				if math.Abs(v-20) < 3*5-5-1 { // a spike adds at least 3×amp to a sine within ±amp (minus noise)
					t.Fatalf("spike %.2f is not out of the normal range", v)
				}
			}
		}
		if spikes < 400 || spikes > 600 {
			t.Errorf("%d spikes in 10000 readings, want about 500", spikes)
		}
	})
	t.Run("the same seed gives the same readings", func(t *testing.T) {
		start := time.Unix(0, 0)
		a, b := newSimDevice("d", 7, 0.01, start), newSimDevice("d", 7, 0.01, start)
		for i := 0; i < 100; i++ {
			now := start.Add(time.Duration(i) * time.Second)
			ra, _ := a.reading(now)
			rb, _ := b.reading(now)
			if ra["temp_c"] != rb["temp_c"] || ra["humidity"] != rb["humidity"] {
				t.Fatalf("reading %d differs: %v vs %v", i, ra, rb)
			}
		}
	})
}

func TestDevsimCommands(t *testing.T) {
	var iv atomic.Int64
	if r, err := devsimCommand("ping", nil, &iv); err != nil || r.(map[string]any)["pong"] != true {
		t.Errorf("ping = %v, %v", r, err)
	}
	if _, err := devsimCommand("set_interval", json.RawMessage(`{"seconds":2}`), &iv); err != nil || iv.Load() != int64(2*time.Second) {
		t.Errorf("set_interval: err %v, interval %v", err, time.Duration(iv.Load()))
	}
	if _, err := devsimCommand("set_interval", json.RawMessage(`{"seconds":-1}`), &iv); err == nil {
		t.Error("a negative interval was accepted")
	}
	if _, err := devsimCommand("format_disk", nil, &iv); err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Errorf("unknown command: %v", err)
	}
}
