package main

// The load generators' command lines: `unhidra bench ws|mqtt|login` parse
// their flags here and run internal/load.

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/unhidra/unhidra/internal/load"
)

var benchCmd = &cmdSpec{
	name:    "bench",
	args:    "ws|mqtt|login [flags]",
	summary: "Load generators: throughput, latency percentiles and the server's memory (see cmd/unhidra/BENCH.md).",
	commands: [][2]string{
		{"ws", "WebSocket connections, channels and publishers: deliveries/s, end-to-end latency, RSS per connection"},
		{"mqtt", "MQTT devices publishing telemetry at QoS 0 or 1: throughput and latency (also against a plain broker)"},
		{"login", "logins per second and their latency through the Argon2id hash pool"},
	},
	examples: []string{
		"unhidra bench ws --spawn --conns 1000 --rate 200 --duration 10s",
		"unhidra bench mqtt --spawn --devices 100 --qos 1",
		"unhidra bench login --spawn --concurrency 4",
	},
}

// runBench is `unhidra bench ws|mqtt|login`: load generators that print
// throughput, latency percentiles and the server's memory.
func runBench(ctx context.Context, e env) error {
	sub, rest, err := benchCmd.group(e)
	if err != nil {
		return err
	}
	e.args = rest
	switch sub {
	case "ws":
		return runBenchWS(ctx, e)
	case "mqtt":
		return runBenchMQTT(ctx, e)
	default:
		return runBenchLogin(ctx, e)
	}
}

// envDefault returns v, or the environment variable name when v is empty.
// Flags whose default is a secret from the environment are declared with
// an empty default and filled in after parsing, so that -h never shows
// the secret.
func envDefault(e env, v, name string) string {
	if v == "" {
		return e.getenv(name)
	}
	return v
}

var benchWSCmd = &cmdSpec{
	name: "bench ws",
	args: "[flags]",
	summary: `Opens --conns WebSocket connections, each subscribed to one of --channels channels,
lets --publishers of them publish --rate messages per second for --duration, and
prints the connect rate, deliveries per second, end-to-end latency percentiles,
connections the server closed (by close code) and, with --server-pid or --spawn,
the server's memory per connection. Users and channels are created through the
APIs with the admin's password; --centrifugo benches a Centrifugo v6 server with
the same load.`,
	more: `Environment: UNHIDRA_ADMIN_PASSWORD is the default of --admin-password;
CENTRIFUGO_HTTP_API_KEY and CENTRIFUGO_CLIENT_TOKEN_HMAC_SECRET_KEY those of
--centrifugo-api-key and --centrifugo-secret.`,
	examples: []string{
		"unhidra bench ws --spawn --conns 1000 --channels 10 --publishers 10 --rate 200 --duration 10s",
		"unhidra bench ws --url ws://127.0.0.1:9000/ws --auth-url http://127.0.0.1:9200 --admin-password \"$PW\" --conns 100",
		"unhidra bench ws --spawn --idle --conns 10000",
	},
}

func parseBenchWS(e env) (load.WSConfig, error) {
	c := load.WSConfig{}
	spec := benchWSCmd
	fs := spec.flags()
	fs.StringVar(&c.URL, "url", "ws://127.0.0.1:9000/ws", "the gateway's WebSocket URL (Centrifugo: ws://127.0.0.1:8000/connection/websocket)")
	fs.StringVar(&c.AuthURL, "auth-url", "http://127.0.0.1:9200", "the auth API (users and tokens)")
	fs.IntVar(&c.Conns, "conns", 1000, "connections")
	fs.IntVar(&c.Channels, "channels", 10, "channels; connection i subscribes to channel i mod M")
	fs.IntVar(&c.Publishers, "publishers", 10, "connections that also publish (round robin over the channels)")
	fs.Float64Var(&c.Rate, "rate", 100, "messages per second, all publishers together (≤ 50 per publisher: the gateway's per-connection frame limit)")
	fs.IntVar(&c.Size, "size", 128, "message size in bytes (JSON data object)")
	fs.DurationVar(&c.Duration, "duration", 30*time.Second, "how long to publish (with --idle: how long to hold the connections)")
	fs.IntVar(&c.ServerPID, "server-pid", 0, "the server's process id, to report its RSS per connection")
	fs.BoolVar(&c.Spawn, "spawn", false, "start \"unhidra serve\" in a temporary directory, with limits raised, and bench it")
	fs.BoolVar(&c.Idle, "idle", false, "only connect, measure the server's memory per connection, and hold")
	fs.StringVar(&c.Token, "token", "", "access token for every connection (the server's MAX_CONNECTIONS_PER_USER must allow --conns)")
	fs.StringVar(&c.AdminUser, "admin-user", "admin", "admin user, to create channels and bench users")
	fs.StringVar(&c.AdminPass, "admin-password", "", "admin password (default $UNHIDRA_ADMIN_PASSWORD)")
	fs.IntVar(&c.PerUser, "per-user", 10, "connections per bench user (the server's MAX_CONNECTIONS_PER_USER); 0: all connections as the admin")
	fs.IntVar(&c.SrcIPs, "src-ips", 0, "loopback source addresses to spread connections over (0: one per 20,000 connections, at least the per-IP handshake limit needs)")
	fs.IntVar(&c.Concurrency, "connect-concurrency", 100, "handshakes in flight while connecting")
	fs.BoolVar(&c.Centrifugo, "centrifugo", false, "bench a Centrifugo v6 server with the same load (JSON protocol)")
	fs.StringVar(&c.CentrifugoAPI, "centrifugo-api", "http://127.0.0.1:8000/api", "Centrifugo's HTTP API (publish)")
	fs.StringVar(&c.CentrifugoAPIKey, "centrifugo-api-key", "", "Centrifugo http_api.key (default $CENTRIFUGO_HTTP_API_KEY)")
	fs.StringVar(&c.CentrifugoSecret, "centrifugo-secret", "", "Centrifugo client.token.hmac_secret_key, signs connection JWTs (default $CENTRIFUGO_CLIENT_TOKEN_HMAC_SECRET_KEY)")
	fs.StringVar(&c.CentrifugoChannelPref, "centrifugo-channel-prefix", "bench", "Centrifugo channel name prefix")
	if _, err := spec.parse(e, fs, e.args); err != nil {
		return c, err
	}
	c.AdminPass = envDefault(e, c.AdminPass, "UNHIDRA_ADMIN_PASSWORD")
	c.CentrifugoAPIKey = envDefault(e, c.CentrifugoAPIKey, "CENTRIFUGO_HTTP_API_KEY")
	c.CentrifugoSecret = envDefault(e, c.CentrifugoSecret, "CENTRIFUGO_CLIENT_TOKEN_HMAC_SECRET_KEY")
	if c.SrcIPs == 0 {
		c.SrcIPs = max(1, (c.Conns+19999)/20000)
	}
	return c, spec.invalid(c.Validate())
}

func runBenchWS(ctx context.Context, e env) error {
	cfg, err := parseBenchWS(e)
	if err != nil {
		return err
	}
	return usageOf(benchWSCmd, load.BenchWS(ctx, e.stdout, e.stderr, cfg))
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

func parseBenchMQTT(e env) (load.MQTTConfig, error) {
	c := load.MQTTConfig{}
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
	if c.SubTopic == "" {
		c.SubTopic = strings.ReplaceAll(c.PubTopic, "{id}", "+")
	}
	return c, spec.invalid(c.Validate())
}

func runBenchMQTT(ctx context.Context, e env) error {
	cfg, err := parseBenchMQTT(e)
	if err != nil {
		return err
	}
	return usageOf(benchMQTTCmd, load.BenchMQTT(ctx, e.stdout, e.stderr, cfg))
}

var benchLoginCmd = &cmdSpec{
	name: "bench login",
	args: "[flags]",
	summary: `Logs in as fast as --concurrency allows for --duration and prints logins per
second, the latency percentiles and the answers by status (429 and 503 are the
server's limits and its hash queue at work).`,
	more: `Environment: UNHIDRA_BENCH_PASSWORD is the default of --password.`,
	examples: []string{
		"unhidra bench login --spawn --concurrency 4 --duration 10s",
		"unhidra bench login --auth-url http://127.0.0.1:9200 --user bob --password 'a long password'",
	},
}

// runBenchLogin is `unhidra bench login`: login throughput and latency.
func runBenchLogin(ctx context.Context, e env) error {
	spec := benchLoginCmd
	fs := spec.flags()
	var c load.LoginConfig
	fs.StringVar(&c.AuthURL, "auth-url", "http://127.0.0.1:9200", "the auth API")
	fs.StringVar(&c.User, "user", "", "user to log in as (default: a new bench user is registered)")
	fs.StringVar(&c.Password, "password", "", "its password (default $UNHIDRA_BENCH_PASSWORD)")
	fs.IntVar(&c.Concurrency, "concurrency", 8, "logins in flight")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "how long to run")
	fs.IntVar(&c.SrcIPs, "src-ips", 1, "loopback source addresses to spread logins over (the per-IP login limit applies to each)")
	fs.BoolVar(&c.WrongPassword, "wrong-password", false, "use a wrong password (measures refusals)")
	fs.BoolVar(&c.Spawn, "spawn", false, "start \"unhidra serve\" in a temporary directory (limits raised) and bench it")
	fs.IntVar(&c.ServerPID, "server-pid", 0, "the server's process id, to report its RSS")
	if _, err := spec.parse(e, fs, e.args); err != nil {
		return err
	}
	c.Password = envDefault(e, c.Password, "UNHIDRA_BENCH_PASSWORD")
	if err := spec.invalid(c.Validate()); err != nil {
		return err
	}
	return usageOf(spec, load.BenchLogin(ctx, e.stdout, e.stderr, c))
}

// usageOf turns a setting the load generator refused (a *load.UsageError)
// into the command's usage error; other errors pass unchanged.
func usageOf(spec *cmdSpec, err error) error {
	var ue *load.UsageError
	if errors.As(err, &ue) {
		return spec.errorf("%s", ue.Problem)
	}
	return err
}
