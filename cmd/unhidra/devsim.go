package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
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
	SpikeProb  float64
	Seed       uint64
	CAFile     string
	LogLevel   string
}

func parseDevsim(e env) (devsimConfig, error) {
	c := devsimConfig{}
	fs := flag.NewFlagSet("devsim", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.IntVar(&c.Devices, "devices", 10, "simulated devices")
	fs.StringVar(&c.Transport, "transport", "ws", "ws, mqtt or mixed (every other device on MQTT)")
	fs.DurationVar(&c.Interval, "interval", 5*time.Second, "telemetry interval per device")
	fs.DurationVar(&c.Duration, "duration", 0, "stop after this long (0: until Ctrl-C)")
	fs.DurationVar(&c.Report, "report", 5*time.Second, "how often to print live counts")
	fs.StringVar(&c.URL, "url", "ws://127.0.0.1:9000/ws", "the gateway's WebSocket URL")
	fs.StringVar(&c.MQTTURL, "mqtt-url", "tcp://127.0.0.1:1883", "the MQTT listener")
	fs.StringVar(&c.AuthURL, "auth-url", "http://127.0.0.1:9200", "the auth API (device provisioning)")
	fs.StringVar(&c.AdminToken, "admin-token", e.getenv("UNHIDRA_ADMIN_TOKEN"), "access token that provisions devices (default $UNHIDRA_ADMIN_TOKEN)")
	fs.StringVar(&c.AdminUser, "admin-user", "admin", "user to log in as when no token is given")
	fs.StringVar(&c.AdminPass, "admin-password", e.getenv("UNHIDRA_ADMIN_PASSWORD"), "its password (default $UNHIDRA_ADMIN_PASSWORD)")
	fs.StringVar(&c.KeysFile, "keys-file", "", "use existing devices: a file of id,key lines")
	fs.StringVar(&c.SaveKeys, "save-keys", "", "write the provisioned devices' id,key lines to this file (mode 0600)")
	fs.Float64Var(&c.SpikeProb, "spike-prob", 0.01, "probability that a reading is a spike")
	fs.Uint64Var(&c.Seed, "seed", 0, "random seed (0: random)")
	fs.StringVar(&c.CAFile, "ca-file", e.getenv("CA_FILE"), "extra trusted CA for wss://")
	fs.StringVar(&c.LogLevel, "log-level", "warn", "log level of the device connections")
	if err := fs.Parse(e.args); err != nil {
		return c, fmt.Errorf("%w: %v", errUsage, err)
	}
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
		errs = append(errs, errors.New("devsim needs --keys-file, --admin-token or --admin-password to get device keys"))
	}
	if c.Seed == 0 {
		c.Seed = rand.Uint64()
	}
	return c, errors.Join(errs...)
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

type devsimCounters struct {
	connected, sent, acked, errors, commands atomic.Int64
}

func runDevsim(ctx context.Context, e env) error {
	cfg, err := parseDevsim(e)
	if err != nil {
		return err
	}
	log := newLogger(e.stderr, "text", cfg.LogLevel)
	var devices []benchDevice
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
		if devices, err = provisionDevices(ctx, api, token, "devsim-"+randomHex(3), cfg.Devices); err != nil {
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
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}
	var cnt devsimCounters
	var nWS, nMQTT int
	start := time.Now()
	var wg sync.WaitGroup
	var wsClients []*client.Client
	var mu sync.Mutex
	for i, d := range devices {
		sim := newSimDevice(d.id, cfg.Seed+uint64(i), cfg.SpikeProb, start)
		useMQTT := cfg.Transport == "mqtt" || (cfg.Transport == "mixed" && i%2 == 1)
		// Spread the devices' first readings over one interval.
		offset := time.Duration(float64(cfg.Interval) * float64(i) / float64(len(devices)))
		wg.Add(1)
		if useMQTT {
			nMQTT++
			go func() { defer wg.Done(); devsimMQTT(ctx, cfg, d, sim, offset, &cnt, log) }()
		} else {
			nWS++
			go func() {
				defer wg.Done()
				c := devsimWS(ctx, cfg, d, sim, offset, &cnt, log)
				if c != nil {
					mu.Lock()
					wsClients = append(wsClients, c)
					mu.Unlock()
				}
			}()
		}
	}
	fmt.Fprintf(e.stdout, "devsim: %d devices (ws %d, mqtt %d), interval %s, seed %d\n", len(devices), nWS, nMQTT, cfg.Interval, cfg.Seed)
	report := func() {
		var dropped, acked, sent, errs uint64
		conn := cnt.connected.Load()
		mu.Lock()
		for _, c := range wsClients {
			s := c.Stats()
			dropped += s.Dropped
			acked += s.Acked
			sent += s.Sent
			errs += s.Errors
			if s.Connected {
				conn++
			}
		}
		mu.Unlock()
		fmt.Fprintf(e.stdout, "devsim: %s connected=%d/%d sent=%d acked=%d errors=%d dropped=%d commands=%d\n",
			time.Since(start).Round(time.Second), conn, len(devices), sent+uint64(cnt.sent.Load()), acked+uint64(cnt.acked.Load()),
			errs+uint64(cnt.errors.Load()), dropped, cnt.commands.Load())
	}
	tick := time.NewTicker(cfg.Report)
	defer tick.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
			report()
		}
	}
	wg.Wait()
	report()
	return nil
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

// devsimWS runs one device over the WebSocket SDK.
func devsimWS(ctx context.Context, cfg devsimConfig, d benchDevice, sim *simDevice, offset time.Duration, cnt *devsimCounters, log *slog.Logger) *client.Client {
	var interval atomic.Int64
	interval.Store(int64(cfg.Interval))
	c, err := client.New(client.Options{
		URL: cfg.URL, APIKey: d.key, CAFile: cfg.CAFile, Logger: log.With("device", d.id),
		OnCommand: func(ctx context.Context, cmd client.Command) (any, error) {
			cnt.commands.Add(1)
			return devsimCommand(cmd.Name, cmd.Params, &interval)
		},
	})
	if err != nil {
		cnt.errors.Add(1)
		log.Error("device not started", "device", d.id, "err", err)
		return nil
	}
	go func() {
		if err := c.Run(ctx); err != nil {
			log.Error("device stopped", "device", d.id, "err", err)
		}
	}()
	go func() {
		if !sleepCtx(ctx, offset) {
			return
		}
		for {
			data, seq := sim.reading(time.Now())
			c.QueueTelemetry(client.Telemetry{Data: data, TS: time.Now(), Seq: seq})
			if !sleepCtx(ctx, time.Duration(interval.Load())) {
				return
			}
		}
	}()
	return c
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
	if !sleepCtx(ctx, offset) {
		return
	}
	for ctx.Err() == nil {
		err := devsimMQTTSession(ctx, cfg, d, sim, prefix, &interval, cnt)
		if ctx.Err() != nil {
			return
		}
		cnt.errors.Add(1)
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

func devsimMQTTSession(ctx context.Context, cfg devsimConfig, d benchDevice, sim *simDevice, prefix string, interval *atomic.Int64, cnt *devsimCounters) error {
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
			_, _ = pr.Client.Publish(pctx, &paho.Publish{Topic: prefix + "/commands/result", QoS: 1, Payload: b})
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
	cnt.connected.Add(1)
	defer cnt.connected.Add(-1)
	if _, err := c.Publish(sctx, &paho.Publish{Topic: prefix + "/status", QoS: 1, Retain: true, Payload: []byte(`{"online":true}`)}); err != nil {
		return err
	}
	if _, err := c.Subscribe(sctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: prefix + "/commands", QoS: 1}}}); err != nil {
		return err
	}
	for {
		data, seq := sim.reading(time.Now())
		b, _ := json.Marshal(map[string]any{"data": data, "ts": time.Now().UTC().Format(time.RFC3339Nano), "seq": seq})
		cnt.sent.Add(1)
		pctx, pcancel := context.WithTimeout(sctx, 30*time.Second)
		_, err := c.Publish(pctx, &paho.Publish{Topic: prefix + "/telemetry", QoS: 1, Payload: b})
		pcancel()
		if err != nil {
			return err
		}
		cnt.acked.Add(1)
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
