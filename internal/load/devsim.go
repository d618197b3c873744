package load

// The device simulator: a fleet of devices, each with a simulated sensor,
// over WebSocket (the client SDK) or MQTT v5 (devsim_mqtt.go).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/unhidra/unhidra/client"
)

// DevsimConfig is a run of `unhidra devsim`: the flags, one field each,
// and the logger of the device connections.
type DevsimConfig struct {
	Devices    int
	Transport  string
	Interval   time.Duration
	Duration   time.Duration
	Report     time.Duration
	URL        string
	MQTTURL    string
	AuthURL    string
	AdminToken string
	AdminUser  string
	AdminPass  string
	KeysFile   string
	SaveKeys   string
	Cleanup    bool
	SpikeProb  float64
	Seed       uint64
	CAFile     string
	Logger     *slog.Logger
}

// occasional spikes.
type simSignal struct {
	base, amp, period, phase, noise, spikeProb float64
	r                                          *rand.Rand
}

func newSignal(r *rand.Rand, base, amp float64, spikeProb float64) *simSignal {
	return &simSignal{base: base, amp: amp, period: 300 + r.Float64()*600, phase: r.Float64() * 2 * math.Pi,
		noise: amp * 0.05, spikeProb: spikeProb, r: r}
}

// at returns the reading at t seconds since the start, and whether it is a
// spike.
func (s *simSignal) at(t float64) (float64, bool) {
	v := s.base + s.amp*math.Sin(2*math.Pi*t/s.period+s.phase) + s.r.NormFloat64()*s.noise
	if s.r.Float64() < s.spikeProb {
		sign := 1.0
		if s.r.IntN(2) == 0 {
			sign = -1
		}
		return v + sign*s.amp*(3+2*s.r.Float64()), true
	}
	return v, false
}

// simDevice generates the telemetry of one device.
type simDevice struct {
	id          string
	temp, humid *simSignal
	start       time.Time
	seq         int64
}

func newSimDevice(id string, seed uint64, spikeProb float64, start time.Time) *simDevice {
	r := rand.New(rand.NewPCG(seed, 0x756e6869647261))
	return &simDevice{id: id, start: start,
		temp: newSignal(r, 21, 4, spikeProb), humid: newSignal(r, 45, 10, spikeProb)}
}

func (d *simDevice) reading(now time.Time) (map[string]any, int64) {
	temp, hum, s1, s2 := d.sample(now.Sub(d.start).Seconds())
	d.seq++
	data := map[string]any{"temp_c": temp, "humidity": hum}
	if s1 || s2 {
		data["spike"] = true
	}
	return data, d.seq
}

// sample returns the device's readings at t seconds since its start, as
// sent (rounded to 0.01, humidity within 0..100), and which are spikes.
func (d *simDevice) sample(t float64) (temp, hum float64, tempSpike, humSpike bool) {
	temp, tempSpike = d.temp.at(t)
	hum, humSpike = d.humid.at(t)
	return math.Round(temp*100) / 100, math.Round(min(100, max(0, hum))*100) / 100, tempSpike, humSpike
}

// SimReading is one metric of one reading of a simulated device, and
// whether the simulator made it a spike.
type SimReading struct {
	Metric string
	Value  float64
	Spike  bool
}

// SimStream returns n consecutive readings (temp_c, then humidity) of the
// simulated device that `unhidra devsim --seed` would run with seed, one
// every interval, with the spikes it injected marked: the ground truth
// against which the ML model's detection is measured.
func SimStream(seed uint64, spikeProb float64, interval time.Duration, n int) [][2]SimReading {
	d := newSimDevice("", seed, spikeProb, time.Time{})
	out := make([][2]SimReading, n)
	for i := range out {
		temp, hum, s1, s2 := d.sample(float64(i) * interval.Seconds())
		out[i] = [2]SimReading{{"temp_c", temp, s1}, {"humidity", hum, s2}}
	}
	return out
}

// devsimCounters are what the fleet counts on its own; the WebSocket
// devices' connection and ack counts come from their SDK clients' Stats.
type devsimCounters struct {
	generated     atomic.Int64 // telemetry points produced (both transports)
	mqttAcked     atomic.Int64 // MQTT telemetry PUBACKs
	mqttConnected atomic.Int64 // MQTT sessions up now
	mqttConnects  atomic.Int64 // MQTT sessions established
	mqttOnce      atomic.Int64 // MQTT devices that connected at least once
	mqttFailures  atomic.Int64 // MQTT sessions refused, failed or dropped
	notStarted    atomic.Int64 // devices whose client could not be built
	commands      atomic.Int64 // commands received
	answeredOK    atomic.Int64 // commands answered with status ok
	answeredErr   atomic.Int64 // commands answered with status error
	resultErrs    atomic.Int64 // MQTT command results that could not be published
}

// devsimTotals is one reading of the fleet's counts.
type devsimTotals struct {
	devices, ws, mqtt                int
	connected, once, connects, fails int64
	generated, acked, dropped        int64
	commands, ok, failed             int64
	errorFrames, errors              int64
}

func (t devsimTotals) answered() int64 { return t.ok + t.failed }

// devsimFleet is the running fleet.
type devsimFleet struct {
	cnt      devsimCounters
	mu       sync.Mutex
	clients  []*client.Client // the WebSocket devices
	ws, mqtt int
	devices  int
}

func (f *devsimFleet) addClient(c *client.Client) {
	f.mu.Lock()
	f.clients = append(f.clients, c)
	f.mu.Unlock()
}

func (f *devsimFleet) totals() devsimTotals {
	t := devsimTotals{devices: f.devices, ws: f.ws, mqtt: f.mqtt}
	c := &f.cnt
	t.connected, t.once, t.connects, t.fails = c.mqttConnected.Load(), c.mqttOnce.Load(), c.mqttConnects.Load(), c.mqttFailures.Load()
	t.generated, t.acked = c.generated.Load(), c.mqttAcked.Load()
	t.commands, t.ok, t.failed = c.commands.Load(), c.answeredOK.Load(), c.answeredErr.Load()
	f.mu.Lock()
	for _, cl := range f.clients {
		s := cl.Stats()
		if s.Connected {
			t.connected++
		}
		if s.Connects > 0 {
			t.once++
		}
		t.connects += int64(s.Connects)
		t.fails += int64(s.Failures)
		t.acked += int64(s.Acked)
		t.dropped += int64(s.Dropped)
		t.errorFrames += int64(s.Errors)
	}
	f.mu.Unlock()
	t.errors = t.errorFrames + c.notStarted.Load() + c.resultErrs.Load()
	return t
}

// Devsim runs `unhidra devsim`: the fleet, until ctx ends or cfg.Duration
// has passed; live counts and the summary go to stdout.
func Devsim(ctx context.Context, stdout io.Writer, cfg DevsimConfig) error {
	log := cfg.Logger
	var err error
	var devices []Device
	var cleanup func() (revoked int, err error)
	if cfg.KeysFile != "" {
		if devices, err = ReadKeysFile(cfg.KeysFile); err != nil {
			return err
		}
		if len(devices) < cfg.Devices {
			return fmt.Errorf("--keys-file has %d devices, --devices wants %d", len(devices), cfg.Devices)
		}
		devices = devices[:cfg.Devices]
	} else {
		api := newAPIClient(cfg.AuthURL, "", nil)
		token := cfg.AdminToken
		if token == "" {
			if token, err = api.login(ctx, cfg.AdminUser, cfg.AdminPass); err != nil {
				return err
			}
		}
		t0 := time.Now()
		devices, err = provisionDevices(ctx, api, token, "devsim-"+randomHex(3), cfg.Devices)
		if cfg.Cleanup {
			made := devices
			cleanup = func() (int, error) { return devsimCleanup(ctx, api, cfg, token, made) }
		}
		if err != nil {
			if cleanup != nil {
				if n, cerr := cleanup(); n > 0 || cerr != nil {
					fmt.Fprintf(stdout, "devsim: cleanup: revoked %d of the %d devices provisioned before the error\n", n, len(devices))
				}
			}
			return err
		}
		fmt.Fprintf(stdout, "devsim: provisioned %d devices in %s\n", len(devices), time.Since(t0).Round(time.Millisecond))
		if cfg.SaveKeys != "" {
			if err := saveKeys(cfg.SaveKeys, devices); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "devsim: wrote the devices' keys to %s\n", cfg.SaveKeys)
		}
	}
	runCtx := ctx
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}
	fleet := &devsimFleet{devices: len(devices)}
	start := time.Now()
	var wg sync.WaitGroup
	for i, d := range devices {
		sim := newSimDevice(d.ID, cfg.Seed+uint64(i), cfg.SpikeProb, start)
		useMQTT := cfg.Transport == "mqtt" || (cfg.Transport == "mixed" && i%2 == 1)
		// Spread the devices' first readings over one interval.
		offset := time.Duration(float64(cfg.Interval) * float64(i) / float64(len(devices)))
		if useMQTT {
			fleet.mqtt++
			wg.Add(1)
			go func() { defer wg.Done(); devsimMQTT(runCtx, cfg, d, sim, offset, &fleet.cnt, log) }()
		} else {
			fleet.ws++
			if c := devsimWS(runCtx, cfg, d, sim, offset, &fleet.cnt, log, &wg); c != nil {
				fleet.addClient(c)
			}
		}
	}
	fmt.Fprintf(stdout, "devsim: %d devices (ws %d, mqtt %d), interval %s, seed %d\n", len(devices), fleet.ws, fleet.mqtt, cfg.Interval, cfg.Seed)
	report := func() {
		t := fleet.totals()
		fmt.Fprintf(stdout, "devsim: %s connected=%d/%d telemetry=%d acked=%d dropped=%d commands=%d answered=%d failures=%d errors=%d\n",
			time.Since(start).Round(time.Second), t.connected, t.devices, t.generated, t.acked, t.dropped, t.commands, t.answered(), t.fails, t.errors)
	}
	tick := time.NewTicker(cfg.Report)
	defer tick.Stop()
loop:
	for {
		select {
		case <-runCtx.Done():
			break loop
		case <-tick.C:
			report()
		}
	}
	wg.Wait()
	ran := time.Since(start)
	t := fleet.totals()
	revoked, cleanupErr := 0, error(nil)
	if cleanup != nil {
		revoked, cleanupErr = cleanup()
		if cleanupErr != nil {
			t.errors += int64(len(devices) - revoked)
		}
	}
	printDevsimSummary(stdout, t, ran, cleanup != nil, revoked, cleanupErr)
	return cleanupErr
}

// printDevsimSummary prints what the fleet did, ending with one line of
// totals as key=value pairs.
func printDevsimSummary(w io.Writer, t devsimTotals, ran time.Duration, cleaned bool, revoked int, cleanupErr error) {
	fmt.Fprintf(w, "devsim: summary after %s\n", ran.Round(time.Millisecond))
	fmt.Fprintf(w, "  devices    %d (ws %d, mqtt %d): %d connected at least once, %d connections, %d connection failures\n",
		t.devices, t.ws, t.mqtt, t.once, t.connects, t.fails)
	fmt.Fprintf(w, "  telemetry  %d points generated, %d acked by the server, %d dropped (offline buffer full)\n",
		t.generated, t.acked, t.dropped)
	fmt.Fprintf(w, "  commands   %d received, %d answered (%d ok, %d error)\n", t.commands, t.answered(), t.ok, t.failed)
	fmt.Fprintf(w, "  errors     %d (error frames %d)\n", t.errors, t.errorFrames)
	if cleaned {
		fmt.Fprintf(w, "  cleanup    %d of %d devices revoked", revoked, t.devices)
		if cleanupErr != nil {
			fmt.Fprintf(w, " (%v)", cleanupErr)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "devsim: done devices=%d connected_once=%d telemetry=%d acked=%d commands=%d answered=%d failures=%d errors=%d",
		t.devices, t.once, t.generated, t.acked, t.commands, t.answered(), t.fails, t.errors)
	if cleaned {
		fmt.Fprintf(w, " revoked=%d", revoked)
	}
	fmt.Fprintf(w, " duration=%s\n", ran.Round(time.Millisecond))
}

// devsimCleanup revokes the devices the run provisioned. It runs after the
// run's context has ended (Ctrl-C), so it has a context of its own, and it
// logs in again when the admin's access token has expired meanwhile.
func devsimCleanup(ctx context.Context, api *apiClient, cfg DevsimConfig, token string, devices []Device) (int, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second+time.Duration(len(devices))*50*time.Millisecond)
	defer cancel()
	var mu sync.Mutex
	relogin := func(stale string) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		if token != stale {
			return token, nil
		}
		if cfg.AdminPass == "" {
			return "", errors.New("the admin token has expired (give --admin-password to clean up after long runs)")
		}
		t, err := api.login(ctx, cfg.AdminUser, cfg.AdminPass)
		if err != nil {
			return "", err
		}
		token = t
		return t, nil
	}
	var revoked atomic.Int64
	var firstErr atomic.Value
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for _, d := range devices {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			mu.Lock()
			t := token
			mu.Unlock()
			err := api.revokeDevice(ctx, t, d.ID)
			var ae *apiError
			if errors.As(err, &ae) && ae.Status == http.StatusUnauthorized {
				if t, err = relogin(t); err == nil {
					err = api.revokeDevice(ctx, t, d.ID)
				}
			}
			if err != nil {
				firstErr.CompareAndSwap(nil, err)
				return
			}
			revoked.Add(1)
		}()
	}
	wg.Wait()
	err, _ := firstErr.Load().(error)
	if err != nil {
		err = fmt.Errorf("cleanup: %d of %d devices not revoked: %w", len(devices)-int(revoked.Load()), len(devices), err)
	}
	return int(revoked.Load()), err
}

// devsimCommand answers a simulated device's commands: ping and
// set_interval; anything else is an error.
func devsimCommand(name string, params json.RawMessage, interval *atomic.Int64) (any, error) {
	switch name {
	case "ping":
		return map[string]any{"pong": true}, nil
	case "set_interval":
		var p struct {
			Seconds float64 `json:"seconds"`
		}
		if err := json.Unmarshal(orEmpty(params), &p); err != nil || p.Seconds < 0.01 || p.Seconds > 86400 {
			return nil, errors.New("set_interval needs {\"seconds\": N}")
		}
		interval.Store(int64(p.Seconds * float64(time.Second)))
		return map[string]any{"interval_s": p.Seconds}, nil
	default:
		return nil, fmt.Errorf("unknown command %q", truncate(name, 64))
	}
}

// devsimWS starts one device over the WebSocket SDK; running counts its
// goroutines until they have stopped.
func devsimWS(ctx context.Context, cfg DevsimConfig, d Device, sim *simDevice, offset time.Duration, cnt *devsimCounters, log *slog.Logger, running *sync.WaitGroup) *client.Client {
	var interval atomic.Int64
	interval.Store(int64(cfg.Interval))
	c, err := client.New(client.Options{
		URL: cfg.URL, APIKey: d.Key, CAFile: cfg.CAFile, Logger: log.With("device", d.ID),
		OnCommand: func(ctx context.Context, cmd client.Command) (any, error) {
			cnt.commands.Add(1)
			return cnt.answer(devsimCommand(cmd.Name, cmd.Params, &interval))
		},
	})
	if err != nil {
		cnt.notStarted.Add(1)
		log.Error("device not started", "device", d.ID, "err", err)
		return nil
	}
	running.Add(2)
	go func() {
		defer running.Done()
		if err := c.Run(ctx); err != nil {
			log.Error("device stopped", "device", d.ID, "err", err)
		}
	}()
	go func() {
		defer running.Done()
		if !sleepCtx(ctx, offset) {
			return
		}
		for {
			data, seq := sim.reading(time.Now())
			c.QueueTelemetry(client.Telemetry{Data: data, TS: time.Now(), Seq: seq})
			cnt.generated.Add(1)
			if !sleepCtx(ctx, time.Duration(interval.Load())) {
				return
			}
		}
	}()
	return c
}

// answer counts a command's answer by its status.
func (cnt *devsimCounters) answer(res any, err error) (any, error) {
	if err != nil {
		cnt.answeredErr.Add(1)
	} else {
		cnt.answeredOK.Add(1)
	}
	return res, err
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func orEmpty(b json.RawMessage) json.RawMessage {
	if len(b) == 0 || string(b) == "null" {
		return json.RawMessage(`{}`)
	}
	return b
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
