package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// benchMQTTConfig is `unhidra bench mqtt`.
type benchMQTTConfig struct {
	URL                 string
	Devices             int
	QoS                 int
	Duration            time.Duration
	Rate                float64
	Size                int
	Plain               bool
	Username, Password  string
	AuthURL, AdminUser  string
	AdminPass, KeysFile string
	PubTopic, SubTopic  string
	ServerPID           int
	Spawn               bool
	SrcIPs              int
}

var benchMQTTCmd = &cmdSpec{
	name: "bench mqtt",
	args: "[flags]",
	summary: `Connects --devices MQTT v5 clients that publish telemetry at QoS 0 or 1 while one
subscriber receives everything, and prints the publish rate, PUBACK and end-to-end
latency percentiles, missing messages and the broker's CPU and memory. Devices are
provisioned through the auth API (or read from --keys-file); --plain benches a
broker without Unhidra, e.g. mosquitto, for comparison.`,
	more: `Environment: UNHIDRA_ADMIN_PASSWORD is the default of --admin-password.`,
	examples: []string{
		"unhidra bench mqtt --spawn --devices 100 --qos 1 --duration 10s",
		"unhidra bench mqtt --url tcp://127.0.0.1:1883 --admin-password \"$PW\" --devices 1000 --qos 0 --rate 5000",
		"unhidra bench mqtt --plain --url tcp://127.0.0.1:1884 --pub-topic 'bench/{id}' --devices 100",
	},
}

func parseBenchMQTT(e env) (benchMQTTConfig, error) {
	c := benchMQTTConfig{}
	spec := benchMQTTCmd
	fs := spec.flags()
	fs.StringVar(&c.URL, "url", "tcp://127.0.0.1:1883", "the MQTT broker")
	fs.IntVar(&c.Devices, "devices", 1000, "publishing clients (one connection each)")
	fs.IntVar(&c.QoS, "qos", 1, "0 or 1")
	fs.DurationVar(&c.Duration, "duration", 20*time.Second, "how long to publish")
	fs.Float64Var(&c.Rate, "rate", 0, "messages per second, all devices together (0: each device publishes as fast as it can; QoS 1 waits for each PUBACK)")
	fs.IntVar(&c.Size, "size", 128, "payload bytes (a JSON object)")
	fs.BoolVar(&c.Plain, "plain", false, "a plain broker (e.g. Debian's mosquitto): no provisioning, one wildcard subscription")
	fs.StringVar(&c.Username, "username", "", "plain broker: user name for every client (optional)")
	fs.StringVar(&c.Password, "password", "", "plain broker: password for every client (optional)")
	fs.StringVar(&c.AuthURL, "auth-url", "http://127.0.0.1:9200", "Unhidra's auth API (device provisioning)")
	fs.StringVar(&c.AdminUser, "admin-user", "admin", "Unhidra admin user (provisions devices; subscribes with an access token)")
	fs.StringVar(&c.AdminPass, "admin-password", "", "Unhidra admin password (default $UNHIDRA_ADMIN_PASSWORD)")
	fs.StringVar(&c.KeysFile, "keys-file", "", "reuse devices: a file of id,key lines")
	fs.StringVar(&c.PubTopic, "pub-topic", "unhidra/devices/{id}/telemetry", "topic each device publishes to")
	fs.StringVar(&c.SubTopic, "sub-topic", "", "the subscriber's filter ({id}: one subscription per device); default: the publish topic with {id} as + (Unhidra lets admins use it)")
	fs.IntVar(&c.ServerPID, "server-pid", 0, "the broker's process id, to report its RSS")
	fs.BoolVar(&c.Spawn, "spawn", false, "start \"unhidra serve\" in a temporary directory and bench it")
	fs.IntVar(&c.SrcIPs, "src-ips", 1, "loopback source addresses to spread connections over")
	if _, err := spec.parse(e, fs, e.args); err != nil {
		return c, err
	}
	c.AdminPass = envDefault(e, c.AdminPass, "UNHIDRA_ADMIN_PASSWORD")
	var errs []error
	if c.QoS != 0 && c.QoS != 1 {
		errs = append(errs, errors.New("--qos must be 0 or 1"))
	}
	if c.Devices < 1 || c.Duration <= 0 || c.Rate < 0 || c.Size < 64 || c.Size > 60<<10 {
		errs = append(errs, errors.New("need --devices ≥ 1, --duration > 0, --rate ≥ 0, 64 ≤ --size ≤ 61440"))
	}
	if c.SubTopic == "" {
		c.SubTopic = strings.ReplaceAll(c.PubTopic, "{id}", "+")
	}
	return c, spec.invalid(errs)
}

type benchDevice struct{ id, key string }

// readKeysFile reads id,key lines (blank lines and # comments skipped).
func readKeysFile(path string) ([]benchDevice, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []benchDevice
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		d, ok, err := parseKeyLine(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		if ok {
			out = append(out, d)
		}
	}
	return out, sc.Err()
}

// parseKeyLine parses one "id,key" line; ok is false for blank and comment
// lines. The key itself never appears in an error.
func parseKeyLine(line string) (d benchDevice, ok bool, err error) {
	line = strings.TrimSpace(line)
	if line == "" || strings.HasPrefix(line, "#") {
		return d, false, nil
	}
	id, key, found := strings.Cut(line, ",")
	id, key = strings.TrimSpace(id), strings.TrimSpace(key)
	if !found || id == "" || key == "" {
		return d, false, errors.New("want id,key")
	}
	if len(id) > 128 || len(key) > 256 || strings.ContainsAny(id, "/+#\x00") {
		return d, false, errors.New("bad device id or key")
	}
	for _, r := range key {
		if !(r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return d, false, errors.New("a key has only [A-Za-z0-9_-]")
		}
	}
	return benchDevice{id: id, key: key}, true, nil
}

// provisionDevices creates n devices through the auth API. On an error it
// also returns the devices it did create, so that they can be removed.
func provisionDevices(ctx context.Context, api *apiClient, token, prefix string, n int) ([]benchDevice, error) {
	out := make([]benchDevice, n)
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for i := 0; i < n; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer func() { <-sem; wg.Done() }()
			id, key, err := api.createDevice(ctx, token, fmt.Sprintf("%s-%d", prefix, i))
			if err != nil {
				firstErr.CompareAndSwap(nil, err)
				return
			}
			out[i] = benchDevice{id: id, key: key}
		}(i)
	}
	wg.Wait()
	made := out[:0]
	for _, d := range out {
		if d.id != "" {
			made = append(made, d)
		}
	}
	if err, _ := firstErr.Load().(error); err != nil {
		return made, err
	}
	return made, nil
}

// mqttConnect dials and connects one MQTT v5 client.
func mqttConnect(ctx context.Context, brokerURL string, srcIdx, srcIPs int, clientID, user, pass string, onMsg func(paho.PublishReceived) (bool, error)) (*paho.Client, error) {
	return mqttConnectOpts(ctx, brokerURL, srcIdx, srcIPs, clientID, user, pass, onMsg, nil)
}

// mqttConnectOpts is mqttConnect with an optional will.
func mqttConnectOpts(ctx context.Context, brokerURL string, srcIdx, srcIPs int, clientID, user, pass string, onMsg func(paho.PublishReceived) (bool, error), will *paho.WillMessage) (*paho.Client, error) {
	u, err := url.Parse(brokerURL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("MQTT URL %q: want tcp://host:port", brokerURL)
	}
	d := sourceDialer(u.Host, srcIdx, srcIPs)
	nc, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return nil, err
	}
	cfg := paho.ClientConfig{ClientID: clientID, Conn: nc, PacketTimeout: 30 * time.Second}
	if onMsg != nil {
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){onMsg}
	}
	c := paho.NewClient(cfg)
	cp := &paho.Connect{ClientID: clientID, KeepAlive: 60, CleanStart: true, WillMessage: will}
	if user != "" {
		cp.Username, cp.UsernameFlag = user, true
	}
	if pass != "" {
		cp.Password, cp.PasswordFlag = []byte(pass), true
	}
	ca, err := c.Connect(ctx, cp)
	if err != nil {
		nc.Close()
		if ca != nil {
			return nil, fmt.Errorf("CONNACK reason 0x%02x", ca.ReasonCode)
		}
		return nil, err
	}
	return c, nil
}

func runBenchMQTT(ctx context.Context, e env) error {
	cfg, err := parseBenchMQTT(e)
	if err != nil {
		return err
	}
	out := e.stdout
	if cfg.Spawn {
		srv, err := spawnServer(ctx, e.stderr)
		if err != nil {
			return err
		}
		defer srv.Stop()
		cfg.URL, cfg.AuthURL, cfg.AdminPass, cfg.ServerPID = "tcp://"+srv.MQTTAddr, srv.AuthURL, srv.AdminPassword, srv.PID()
	}
	run := randomHex(4)
	var devices []benchDevice
	subUser, subPass := cfg.Username, cfg.Password
	if cfg.Plain {
		for i := 0; i < cfg.Devices; i++ {
			devices = append(devices, benchDevice{id: fmt.Sprintf("bench-%s-%d", run, i)})
		}
	} else {
		if cfg.AdminPass == "" {
			return benchMQTTCmd.errorf("needs --admin-password (or $UNHIDRA_ADMIN_PASSWORD), --spawn, or --plain for a broker without Unhidra")
		}
		api := newAPIClient(cfg.AuthURL, "", nil)
		token, err := api.login(ctx, cfg.AdminUser, cfg.AdminPass)
		if err != nil {
			return err
		}
		subUser, subPass = cfg.AdminUser, token
		if cfg.KeysFile != "" {
			if devices, err = readKeysFile(cfg.KeysFile); err != nil {
				return err
			}
			if len(devices) < cfg.Devices {
				return fmt.Errorf("--keys-file has %d devices, --devices wants %d", len(devices), cfg.Devices)
			}
			devices = devices[:cfg.Devices]
		} else {
			t0 := time.Now()
			if devices, err = provisionDevices(ctx, api, token, "bench-"+run, cfg.Devices); err != nil {
				return err
			}
			fmt.Fprintf(out, "provisioned %d devices in %s\n", len(devices), time.Since(t0).Round(time.Millisecond))
		}
	}

	// The subscriber.
	lat := newLatencies(1_000_000)
	var received atomic.Int64
	sub, err := mqttConnect(ctx, cfg.URL, 0, 1, "bench-sub-"+run, subUser, subPass, func(pr paho.PublishReceived) (bool, error) {
		now := time.Now()
		received.Add(int64(benchTimestamps(pr.Packet.Payload, func(t time.Time) { lat.add(now.Sub(t)) })))
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("subscriber: %w", err)
	}
	defer sub.Disconnect(&paho.Disconnect{})
	var topics []string
	if strings.Contains(cfg.SubTopic, "{id}") {
		for _, d := range devices {
			topics = append(topics, strings.ReplaceAll(cfg.SubTopic, "{id}", d.id))
		}
	} else {
		topics = []string{cfg.SubTopic}
	}
	for i := 0; i < len(topics); i += 100 {
		var opts []paho.SubscribeOptions
		for _, t := range topics[i:min(i+100, len(topics))] {
			opts = append(opts, paho.SubscribeOptions{Topic: t, QoS: byte(cfg.QoS)})
		}
		sa, err := sub.Subscribe(ctx, &paho.Subscribe{Subscriptions: opts})
		if err != nil {
			return fmt.Errorf("subscribe: %w", err)
		}
		for _, rc := range sa.Reasons {
			if rc >= 0x80 {
				return fmt.Errorf("subscribe refused (SUBACK 0x%02x) for %s…", rc, opts[0].Topic)
			}
		}
	}

	var rss0 int64
	if cfg.ServerPID > 0 {
		rss0, _ = readRSS(cfg.ServerPID)
	}
	// The publishers.
	pubs := make([]*paho.Client, len(devices))
	sem := make(chan struct{}, 100)
	var wg sync.WaitGroup
	var connErrs atomic.Int64
	var firstErr atomic.Value
	t0 := time.Now()
	for i, d := range devices {
		sem <- struct{}{}
		wg.Add(1)
		go func(i int, d benchDevice) {
			defer func() { <-sem; wg.Done() }()
			user, pass := cfg.Username, cfg.Password
			if !cfg.Plain {
				user, pass = d.id, d.key
			}
			c, err := mqttConnect(ctx, cfg.URL, i, cfg.SrcIPs, fmt.Sprintf("bench-%s-p%d", run, i), user, pass, nil)
			if err != nil {
				connErrs.Add(1)
				firstErr.CompareAndSwap(nil, err)
				return
			}
			pubs[i] = c
		}(i, d)
	}
	wg.Wait()
	connected := int64(len(devices)) - connErrs.Load()
	fmt.Fprintf(out, "connected %d of %d publishers in %s\n", connected, len(devices), time.Since(t0).Round(time.Millisecond))
	if err, _ := firstErr.Load().(error); err != nil {
		fmt.Fprintf(out, "connect errors: %d (first: %v)\n", connErrs.Load(), err)
	}
	if connected == 0 {
		return errors.New("no publisher connected")
	}
	if cfg.ServerPID > 0 {
		if rss1, err := readRSS(cfg.ServerPID); err == nil {
			fmt.Fprintf(out, "broker RSS: %s before, %s with %d publishers\n", fmtBytes(rss0), fmtBytes(rss1), connected)
		}
	}

	var published, pubErrs atomic.Int64
	ackLat := newLatencies(500_000)
	pctx, stop := context.WithTimeout(ctx, cfg.Duration)
	defer stop()
	per := 0.0
	if cfg.Rate > 0 {
		per = cfg.Rate / float64(connected)
	}
	start := time.Now()
	brokerCPU0, _ := procCPU(cfg.ServerPID)
	benchCPU0 := selfCPU()
	var pwg sync.WaitGroup
	for i, c := range pubs {
		if c == nil {
			continue
		}
		pwg.Add(1)
		go func(i int, c *paho.Client) {
			defer pwg.Done()
			topic := strings.ReplaceAll(cfg.PubTopic, "{id}", devices[i].id)
			var interval time.Duration
			next := time.Now()
			if per > 0 {
				interval = time.Duration(float64(time.Second) / per)
				next = next.Add(time.Duration(float64(interval) * float64(i) / float64(len(pubs))))
			}
			for seq := int64(0); pctx.Err() == nil; seq++ {
				if interval > 0 {
					if d := time.Until(next); d > 0 {
						select {
						case <-pctx.Done():
							return
						case <-time.After(d):
						}
					}
					next = next.Add(interval)
				}
				t := time.Now()
				pctx2, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				_, err := c.Publish(pctx2, &paho.Publish{Topic: topic, QoS: byte(cfg.QoS), Payload: benchPayload(t, seq, cfg.Size)})
				cancel()
				if err != nil {
					pubErrs.Add(1)
					firstErr.CompareAndSwap(nil, err)
					if pctx.Err() == nil {
						time.Sleep(100 * time.Millisecond)
					}
					continue
				}
				published.Add(1)
				if cfg.QoS == 1 {
					ackLat.add(time.Since(t))
				}
			}
		}(i, c)
	}
	tick := time.NewTicker(5 * time.Second)
	go func() {
		for {
			select {
			case <-pctx.Done():
				return
			case <-tick.C:
				fmt.Fprintf(e.stderr, "bench: %s published=%d received=%d errors=%d\n",
					time.Since(start).Round(time.Second), published.Load(), received.Load(), pubErrs.Load())
			}
		}
	}()
	pwg.Wait()
	tick.Stop()
	dur := time.Since(start)
	brokerCPU1, cpuErr := procCPU(cfg.ServerPID)
	benchCPU := selfCPU() - benchCPU0
	deadline := time.Now().Add(10 * time.Second)
	for received.Load() < published.Load() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Fprintf(out, "QoS %d, %d publishers, %s, payload %d B\n", cfg.QoS, connected, dur.Round(time.Millisecond), cfg.Size)
	fmt.Fprintf(out, "published: %d (%.0f msg/s), errors %d\n", published.Load(), float64(published.Load())/dur.Seconds(), pubErrs.Load())
	if cfg.QoS == 1 {
		fmt.Fprintf(out, "publish→PUBACK: %s\n", ackLat.summary())
	}
	fmt.Fprintf(out, "received: %d (%.0f msg/s), missing %d\n", received.Load(), float64(received.Load())/dur.Seconds(), max(0, published.Load()-received.Load()))
	fmt.Fprintf(out, "end-to-end latency: %s\n", lat.summary())
	if err, _ := firstErr.Load().(error); err != nil && pubErrs.Load() > 0 {
		fmt.Fprintf(out, "first error: %v\n", err)
	}
	// Both run on the same machine: how the cores were shared while
	// publishing (a core-second per second is one core kept busy).
	if cfg.ServerPID > 0 && cpuErr == nil {
		fmt.Fprintf(out, "CPU while publishing: broker %.1f s (%.2f cores), bench %.1f s (%.2f cores)\n",
			(brokerCPU1 - brokerCPU0).Seconds(), (brokerCPU1-brokerCPU0).Seconds()/dur.Seconds(), benchCPU.Seconds(), benchCPU.Seconds()/dur.Seconds())
	} else {
		fmt.Fprintf(out, "CPU while publishing: bench %.1f s (%.2f cores)\n", benchCPU.Seconds(), benchCPU.Seconds()/dur.Seconds())
	}
	if cfg.ServerPID > 0 {
		if rss, err := readRSS(cfg.ServerPID); err == nil {
			fmt.Fprintf(out, "broker RSS at the end: %s\n", fmtBytes(rss))
		}
	}
	for _, c := range pubs {
		if c != nil {
			_ = c.Disconnect(&paho.Disconnect{})
		}
	}
	return nil
}

// procCPU returns the user+system CPU time process pid has used, from
// /proc/PID/stat (clock ticks of 1/100 s, as on every Linux port Go
// supports).
func procCPU(pid int) (time.Duration, error) {
	if pid <= 0 {
		return 0, errors.New("no process id")
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseProcStatCPU(b)
}

// parseProcStatCPU reads utime and stime (fields 14 and 15) from a
// /proc/PID/stat line; the command name (field 2) may contain spaces and
// parentheses, so fields are counted after its last ')'.
func parseProcStatCPU(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("/proc stat: no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): utime is f[11], stime f[12].
	if len(f) < 13 {
		return 0, errors.New("/proc stat: too few fields")
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 63)
	st, err2 := strconv.ParseUint(f[12], 10, 63)
	if err1 != nil || err2 != nil || ut > math.MaxInt64/2/uint64(10*time.Millisecond) || st > math.MaxInt64/2/uint64(10*time.Millisecond) {
		return 0, errors.New("/proc stat: bad utime/stime")
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

// selfCPU returns the CPU time this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
