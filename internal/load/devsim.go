package main

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
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/unhidra/unhidra/client"
	"github.com/unhidra/unhidra/wire"
)

// devsimConfig is `unhidra devsim`.
type devsimConfig struct {
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
	LogLevel   string
}

var devsimCmd = &cmdSpec{
	name: "devsim",
	args: "[--devices N] [--transport ws|mqtt|mixed] [flags]",
	summary: `A fleet of simulated devices: each sends a temperature and humidity reading (a sine
wave with noise and occasional spikes) every --interval over WebSocket or MQTT v5,
and answers the commands ping and set_interval {"seconds": N}. The devices are
provisioned through the auth API as the admin (or read from --keys-file). Live
counts are printed every --report; a summary when it stops (Ctrl-C or --duration).
With --cleanup the devices it provisioned are revoked on the way out.`,
	more: `Environment: UNHIDRA_ADMIN_TOKEN and UNHIDRA_ADMIN_PASSWORD are the defaults of
--admin-token and --admin-password, CA_FILE that of --ca-file.`,
	examples: []string{
		"unhidra devsim --devices 50 --transport mixed --admin-password \"$PW\"",
		"unhidra devsim --devices 10 --duration 1m --cleanup --admin-password \"$PW\"",
		"unhidra devsim --devices 1000 --keys-file fleet.keys --interval 1s --report 10s",
	},
}

func parseDevsim(e env) (devsimConfig, error) {
	c := devsimConfig{}
	spec := devsimCmd
	fs := spec.flags()
	fs.IntVar(&c.Devices, "devices", 10, "simulated devices")
	fs.StringVar(&c.Transport, "transport", "ws", "ws, mqtt or mixed (every other device on MQTT)")
	fs.DurationVar(&c.Interval, "interval", 5*time.Second, "telemetry interval per device")
	fs.DurationVar(&c.Duration, "duration", 0, "stop after this long (0: until Ctrl-C)")
	fs.DurationVar(&c.Report, "report", 5*time.Second, "how often to print live counts")
	fs.StringVar(&c.URL, "url", "ws://127.0.0.1:9000/ws", "the gateway's WebSocket URL")
	fs.StringVar(&c.MQTTURL, "mqtt-url", "tcp://127.0.0.1:1883", "the MQTT listener")
	fs.StringVar(&c.AuthURL, "auth-url", "http://127.0.0.1:9200", "the auth API (device provisioning)")
	fs.StringVar(&c.AdminToken, "admin-token", "", "access token that provisions devices (default $UNHIDRA_ADMIN_TOKEN)")
	fs.StringVar(&c.AdminUser, "admin-user", "admin", "user to log in as when no token is given")
	fs.StringVar(&c.AdminPass, "admin-password", "", "its password (default $UNHIDRA_ADMIN_PASSWORD)")
	fs.StringVar(&c.KeysFile, "keys-file", "", "use existing devices: a file of id,key lines")
	fs.StringVar(&c.SaveKeys, "save-keys", "", "write the provisioned devices' id,key lines to this file (mode 0600)")
	fs.BoolVar(&c.Cleanup, "cleanup", false, "on exit, revoke the devices this run provisioned (DELETE /devices/{id}); not with --keys-file")
	fs.Float64Var(&c.SpikeProb, "spike-prob", 0.01, "probability that a reading is a spike")
	fs.Uint64Var(&c.Seed, "seed", 0, "random seed (0: random)")
	fs.StringVar(&c.CAFile, "ca-file", "", "extra trusted CA for wss:// (default $CA_FILE)")
	fs.StringVar(&c.LogLevel, "log-level", "warn", "log level of the device connections")
	if _, err := spec.parse(e, fs, e.args); err != nil {
		return c, err
	}
	c.AdminToken = envDefault(e, c.AdminToken, "UNHIDRA_ADMIN_TOKEN")
	c.AdminPass = envDefault(e, c.AdminPass, "UNHIDRA_ADMIN_PASSWORD")
	c.CAFile = envDefault(e, c.CAFile, "CA_FILE")
	var errs []error
	if c.Devices < 1 || c.Devices > 1_000_000 {
		errs = append(errs, errors.New("--devices must be between 1 and 1000000"))
	}
	switch c.Transport {
	case "ws", "mqtt", "mixed":
	default:
		errs = append(errs, fmt.Errorf("--transport %q must be ws, mqtt or mixed", c.Transport))
	}
	if c.Interval < 10*time.Millisecond || c.Report <= 0 || c.Duration < 0 {
		errs = append(errs, errors.New("--interval must be at least 10ms, --report positive, --duration ≥ 0"))
	}
	if c.SpikeProb < 0 || c.SpikeProb > 1 {
		errs = append(errs, errors.New("--spike-prob must be between 0 and 1"))
	}
	if c.KeysFile == "" && c.AdminToken == "" && c.AdminPass == "" {
		errs = append(errs, errors.New("needs --keys-file, --admin-token or --admin-password to get device keys"))
	}
	if c.KeysFile != "" && c.Cleanup {
		errs = append(errs, errors.New("--cleanup revokes only the devices devsim provisions, not those of --keys-file"))
	}
	if c.Seed == 0 {
		c.Seed = rand.Uint64()
	}
	return c, spec.invalid(errs)
}

// simSignal is one device's simulated sensor: a sine wave with noise and
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
	t := now.Sub(d.start).Seconds()
	temp, s1 := d.temp.at(t)
	hum, s2 := d.humid.at(t)
	d.seq++
	data := map[string]any{
		"temp_c":   math.Round(temp*100) / 100,
		"humidity": math.Round(min(100, max(0, hum))*100) / 100,
	}
	if s1 || s2 {
		data["spike"] = true
	}
	return data, d.seq
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

func runDevsim(ctx context.Context, e env) error {
	cfg, err := parseDevsim(e)
	if err != nil {
		return err
	}
	log := newLogger(e.stderr, "text", cfg.LogLevel)
	var devices []benchDevice
	var cleanup func() (revoked int, err error)
	if cfg.KeysFile != "" {
		if devices, err = readKeysFile(cfg.KeysFile); err != nil {
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
					fmt.Fprintf(e.stdout, "devsim: cleanup: revoked %d of the %d devices provisioned before the error\n", n, len(devices))
				}
			}
			return err
		}
		fmt.Fprintf(e.stdout, "devsim: provisioned %d devices in %s\n", len(devices), time.Since(t0).Round(time.Millisecond))
		if cfg.SaveKeys != "" {
			if err := saveKeys(cfg.SaveKeys, devices); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "devsim: wrote the devices' keys to %s\n", cfg.SaveKeys)
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
		sim := newSimDevice(d.id, cfg.Seed+uint64(i), cfg.SpikeProb, start)
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
	fmt.Fprintf(e.stdout, "devsim: %d devices (ws %d, mqtt %d), interval %s, seed %d\n", len(devices), fleet.ws, fleet.mqtt, cfg.Interval, cfg.Seed)
	report := func() {
		t := fleet.totals()
		fmt.Fprintf(e.stdout, "devsim: %s connected=%d/%d telemetry=%d acked=%d dropped=%d commands=%d answered=%d failures=%d errors=%d\n",
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
	printDevsimSummary(e.stdout, t, ran, cleanup != nil, revoked, cleanupErr)
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
func devsimCleanup(ctx context.Context, api *apiClient, cfg devsimConfig, token string, devices []benchDevice) (int, error) {
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
			err := api.revokeDevice(ctx, t, d.id)
			var ae *apiError
			if errors.As(err, &ae) && ae.Status == http.StatusUnauthorized {
				if t, err = relogin(t); err == nil {
					err = api.revokeDevice(ctx, t, d.id)
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

func saveKeys(path string, devices []benchDevice) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	for _, d := range devices {
		fmt.Fprintf(f, "%s,%s\n", d.id, d.key)
	}
	return f.Close()
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
func devsimWS(ctx context.Context, cfg devsimConfig, d benchDevice, sim *simDevice, offset time.Duration, cnt *devsimCounters, log *slog.Logger, running *sync.WaitGroup) *client.Client {
	var interval atomic.Int64
	interval.Store(int64(cfg.Interval))
	c, err := client.New(client.Options{
		URL: cfg.URL, APIKey: d.key, CAFile: cfg.CAFile, Logger: log.With("device", d.id),
		OnCommand: func(ctx context.Context, cmd client.Command) (any, error) {
			cnt.commands.Add(1)
			return cnt.answer(devsimCommand(cmd.Name, cmd.Params, &interval))
		},
	})
	if err != nil {
		cnt.notStarted.Add(1)
		log.Error("device not started", "device", d.id, "err", err)
		return nil
	}
	running.Add(2)
	go func() {
		defer running.Done()
		if err := c.Run(ctx); err != nil {
			log.Error("device stopped", "device", d.id, "err", err)
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

// devsimMQTT runs one device over MQTT v5: status (retained, and as the
// will), telemetry at QoS 1, commands in and results out; it reconnects
// with the SDK's backoff.
func devsimMQTT(ctx context.Context, cfg devsimConfig, d benchDevice, sim *simDevice, offset time.Duration, cnt *devsimCounters, log *slog.Logger) {
	bo := &client.Backoff{Min: time.Second, Max: time.Minute}
	var interval atomic.Int64
	interval.Store(int64(cfg.Interval))
	prefix := "unhidra/devices/" + d.id
	var once bool // the device has connected at least once
	if !sleepCtx(ctx, offset) {
		return
	}
	for ctx.Err() == nil {
		err := devsimMQTTSession(ctx, cfg, d, sim, prefix, &interval, cnt, &once)
		if ctx.Err() != nil {
			return
		}
		cnt.mqttFailures.Add(1)
		if err != nil && strings.Contains(err.Error(), "CONNACK") {
			log.Error("MQTT connection refused", "device", d.id, "err", err)
		}
		wait := bo.Next()
		log.Debug("MQTT reconnecting", "device", d.id, "err", err, "in", wait)
		if !sleepCtx(ctx, wait) {
			return
		}
	}
}

func devsimMQTTSession(ctx context.Context, cfg devsimConfig, d benchDevice, sim *simDevice, prefix string, interval *atomic.Int64, cnt *devsimCounters, once *bool) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var c *paho.Client
	onMsg := func(pr paho.PublishReceived) (bool, error) {
		if pr.Packet.Topic != prefix+"/commands" {
			return true, nil
		}
		var cmd wire.CommandFrame
		if json.Unmarshal(pr.Packet.Payload, &cmd) != nil || cmd.CommandID == "" {
			return true, nil
		}
		cnt.commands.Add(1)
		go func() {
			res, err := devsimCommand(cmd.Name, cmd.Params, interval)
			body := map[string]any{"command_id": cmd.CommandID, "status": "ok", "result": res}
			if err != nil {
				body["status"], body["result"] = "error", map[string]any{"error": err.Error()}
			}
			b, _ := json.Marshal(body)
			pctx, pcancel := context.WithTimeout(sctx, 10*time.Second)
			defer pcancel()
			if _, perr := pr.Client.Publish(pctx, &paho.Publish{Topic: prefix + "/commands/result", QoS: 1, Payload: b}); perr != nil {
				cnt.resultErrs.Add(1)
				return
			}
			cnt.answer(res, err)
		}()
		return true, nil
	}
	cctx, ccancel := context.WithTimeout(ctx, 15*time.Second)
	c, err := mqttConnectWill(cctx, cfg.MQTTURL, d, prefix+"/status", onMsg)
	ccancel()
	if err != nil {
		return err
	}
	defer c.Disconnect(&paho.Disconnect{})
	cnt.mqttConnects.Add(1)
	if !*once {
		*once = true
		cnt.mqttOnce.Add(1)
	}
	cnt.mqttConnected.Add(1)
	defer cnt.mqttConnected.Add(-1)
	if _, err := c.Publish(sctx, &paho.Publish{Topic: prefix + "/status", QoS: 1, Retain: true, Payload: []byte(`{"online":true}`)}); err != nil {
		return err
	}
	if _, err := c.Subscribe(sctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: prefix + "/commands", QoS: 1}}}); err != nil {
		return err
	}
	for {
		data, seq := sim.reading(time.Now())
		b, _ := json.Marshal(map[string]any{"data": data, "ts": time.Now().UTC().Format(time.RFC3339Nano), "seq": seq})
		cnt.generated.Add(1)
		pctx, pcancel := context.WithTimeout(sctx, 30*time.Second)
		_, err := c.Publish(pctx, &paho.Publish{Topic: prefix + "/telemetry", QoS: 1, Payload: b})
		pcancel()
		if err != nil {
			return err
		}
		cnt.mqttAcked.Add(1)
		select {
		case <-c.Done():
			return errors.New("connection lost")
		case <-sctx.Done():
			return nil
		case <-time.After(time.Duration(interval.Load())):
		}
	}
}

// mqttConnectWill connects a device with its status topic as the will.
func mqttConnectWill(ctx context.Context, brokerURL string, d benchDevice, willTopic string, onMsg func(paho.PublishReceived) (bool, error)) (*paho.Client, error) {
	c, err := mqttConnectOpts(ctx, brokerURL, 0, 1, "devsim-"+d.id, d.id, d.key, onMsg,
		&paho.WillMessage{Topic: willTopic, QoS: 1, Retain: true, Payload: []byte(`{"online":false}`)})
	return c, err
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
