package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/unhidra/unhidra/internal/procfs"
)

// MQTTConfig is a run of `unhidra bench mqtt`: the flags, one field each.
type MQTTConfig struct {
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

// BenchMQTT runs `unhidra bench mqtt`: devices publishing telemetry while
// one subscriber receives everything; the figures go to stdout, progress to
// stderr.
func BenchMQTT(ctx context.Context, stdout, stderr io.Writer, cfg MQTTConfig) error {
	out := stdout
	if cfg.Spawn {
		srv, err := spawnServer(ctx, stderr)
		if err != nil {
			return err
		}
		defer srv.Stop()
		cfg.URL, cfg.AuthURL, cfg.AdminPass, cfg.ServerPID = "tcp://"+srv.MQTTAddr, srv.AuthURL, srv.AdminPassword, srv.PID()
	}
	run := randomHex(4)
	var devices []Device
	subUser, subPass := cfg.Username, cfg.Password
	if cfg.Plain {
		for i := 0; i < cfg.Devices; i++ {
			devices = append(devices, Device{ID: fmt.Sprintf("bench-%s-%d", run, i)})
		}
	} else {
		if cfg.AdminPass == "" {
			return &UsageError{"needs --admin-password (or $UNHIDRA_ADMIN_PASSWORD), --spawn, or --plain for a broker without Unhidra"}
		}
		api := newAPIClient(cfg.AuthURL, "", nil)
		token, err := api.login(ctx, cfg.AdminUser, cfg.AdminPass)
		if err != nil {
			return err
		}
		subUser, subPass = cfg.AdminUser, token
		if cfg.KeysFile != "" {
			if devices, err = ReadKeysFile(cfg.KeysFile); err != nil {
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
			topics = append(topics, strings.ReplaceAll(cfg.SubTopic, "{id}", d.ID))
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
		rss0, _ = procfs.RSS(cfg.ServerPID)
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
		go func(i int, d Device) {
			defer func() { <-sem; wg.Done() }()
			user, pass := cfg.Username, cfg.Password
			if !cfg.Plain {
				user, pass = d.ID, d.Key
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
		if rss1, err := procfs.RSS(cfg.ServerPID); err == nil {
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
	brokerCPU0, _ := procfs.CPU(cfg.ServerPID)
	benchCPU0 := selfCPU()
	var pwg sync.WaitGroup
	for i, c := range pubs {
		if c == nil {
			continue
		}
		pwg.Add(1)
		go func(i int, c *paho.Client) {
			defer pwg.Done()
			topic := strings.ReplaceAll(cfg.PubTopic, "{id}", devices[i].ID)
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
	stopProgress := progress(pctx, stderr, func() string {
		return fmt.Sprintf("%s published=%d received=%d errors=%d",
			time.Since(start).Round(time.Second), published.Load(), received.Load(), pubErrs.Load())
	})
	pwg.Wait()
	stopProgress()
	dur := time.Since(start)
	brokerCPU1, cpuErr := procfs.CPU(cfg.ServerPID)
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
		if rss, err := procfs.RSS(cfg.ServerPID); err == nil {
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

// selfCPU returns the CPU time this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
