package main

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/unhidra/unhidra/internal/load"
)

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

func parseDevsim(e env) (load.DevsimConfig, error) {
	c := load.DevsimConfig{}
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
	level := fs.String("log-level", "warn", "log level of the device connections")
	if _, err := spec.parse(e, fs, e.args); err != nil {
		return c, err
	}
	c.AdminToken = envDefault(e, c.AdminToken, "UNHIDRA_ADMIN_TOKEN")
	c.AdminPass = envDefault(e, c.AdminPass, "UNHIDRA_ADMIN_PASSWORD")
	c.CAFile = envDefault(e, c.CAFile, "CA_FILE")
	c.Logger = newLogger(e.stderr, "text", *level)
	if c.Seed == 0 {
		c.Seed = rand.Uint64()
	}
	return c, spec.invalid(c.Validate())
}

// simSignal is one device's simulated sensor: a sine wave with noise and

// runDevsim is `unhidra devsim`: a fleet of simulated devices.
func runDevsim(ctx context.Context, e env) error {
	cfg, err := parseDevsim(e)
	if err != nil {
		return err
	}
	return load.Devsim(ctx, e.stdout, cfg)
}
