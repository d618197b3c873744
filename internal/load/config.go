package load

// What the command line checks before a run: every problem of a
// configuration at once, worded with the flags' names.

import (
	"errors"
	"fmt"
	"time"
)

// Validate returns every problem of the configuration (none: nil). SrcIPs
// must be set (the command line derives it from Conns when 0).
func (c WSConfig) Validate() []error {
	var errs []error
	if c.Conns < 1 || c.Channels < 1 || c.Publishers < 0 || c.Publishers > c.Conns || c.Size < 64 || c.Size > 60<<10 {
		errs = append(errs, errors.New("need --conns ≥ 1, --channels ≥ 1, 0 ≤ --publishers ≤ --conns, 64 ≤ --size ≤ 61440"))
	}
	if c.Rate < 0 || c.Duration <= 0 {
		errs = append(errs, errors.New("--rate must be ≥ 0 and --duration positive"))
	}
	if c.Centrifugo && (c.CentrifugoSecret == "" || (c.CentrifugoAPIKey == "" && !c.Idle && c.Publishers > 0)) {
		errs = append(errs, errors.New("--centrifugo needs --centrifugo-secret and --centrifugo-api-key"))
	}
	if c.Centrifugo && c.Spawn {
		errs = append(errs, errors.New("--spawn starts unhidra; start Centrifugo yourself"))
	}
	if c.SrcIPs > 250 {
		errs = append(errs, errors.New("--src-ips at most 250"))
	}
	return errs
}

// Validate returns every problem of the configuration (none: nil).
func (c MQTTConfig) Validate() []error {
	var errs []error
	if c.QoS != 0 && c.QoS != 1 {
		errs = append(errs, errors.New("--qos must be 0 or 1"))
	}
	if c.Devices < 1 || c.Duration <= 0 || c.Rate < 0 || c.Size < 64 || c.Size > 60<<10 {
		errs = append(errs, errors.New("need --devices ≥ 1, --duration > 0, --rate ≥ 0, 64 ≤ --size ≤ 61440"))
	}
	return errs
}

// Validate returns every problem of the configuration (none: nil).
func (c LoginConfig) Validate() []error {
	if c.Concurrency < 1 || c.Duration <= 0 || c.SrcIPs < 1 || c.SrcIPs > 250 {
		return []error{errors.New("needs --concurrency ≥ 1, --duration > 0, 1 ≤ --src-ips ≤ 250")}
	}
	return nil
}

// Validate returns every problem of the configuration (none: nil).
func (c DevsimConfig) Validate() []error {
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
	return errs
}
