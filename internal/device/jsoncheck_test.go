package device_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/device"
	"github.com/unhidra/unhidra/wire"
)

// nested returns a JSON object whose field "v" holds depth levels of arrays.
func nested(depth int) string {
	return `{"v":` + strings.Repeat("[", depth) + strings.Repeat("]", depth) + `}`
}

// TestDevicePayloadsShareTheJSONRules: every device payload (telemetry and
// its data, heartbeats, status, command params and results) refuses what
// the WebSocket and REST decoders refuse — nesting past wire.MaxDepth,
// invalid UTF-8, a lone surrogate escape — with "invalid", and accepts the
// deepest value allowed, so a device cannot store what a client cannot read.
func TestDevicePayloadsShareTheJSONRules(t *testing.T) {
	e := newFleetEnv(t)
	ctx := context.Background()
	d1 := asDevice("d1")
	ok := nested(wire.MaxDepth - 1)  // the object plus MaxDepth-1 arrays: depth MaxDepth
	deep := nested(wire.MaxDepth)    // one level too many
	badUTF8 := "{\"v\":\"caf\xe9\"}" // Latin-1 é
	surrogate := `{"v":"\ud800"}`    // a lone high surrogate
	parsers := map[string]func(p string) error{
		"telemetry": func(p string) error {
			pt, err := device.ParseTelemetry([]byte(p))
			if err == nil {
				_, err = e.fleet.Telemetry(ctx, d1, pt)
			}
			return err
		},
		"telemetry envelope": func(p string) error {
			pt, err := device.ParseTelemetry([]byte(`{"data":` + p + `}`))
			if err == nil {
				_, err = e.fleet.Telemetry(ctx, d1, pt)
			}
			return err
		},
		"heartbeat": func(p string) error {
			hb, err := device.ParseHeartbeat([]byte(p))
			if err == nil {
				err = e.fleet.Heartbeat(ctx, d1, hb)
			}
			return err
		},
		"status": func(p string) error { return e.fleet.Status(ctx, d1, []byte(p)) },
		"command params": func(p string) error {
			_, err := e.fleet.SendCommand(ctx, asUser("alice", false), "d1", "set", json.RawMessage(p), 0)
			return err
		},
		"command result": func(p string) error {
			c, err := e.fleet.SendCommand(ctx, asUser("alice", false), "d1", "ping", nil, 0)
			if err != nil {
				return err
			}
			r, err := device.ParseCommandResult([]byte(`{"command_id":"` + c.ID + `","status":"ok","result":` + p + `}`))
			if err == nil {
				err = e.fleet.CommandResult(ctx, d1, r)
			}
			return err
		},
	}
	// A heartbeat or status is an envelope: each of its fields may nest
	// MaxDepth levels (wire.CheckJSONBody), like a field of a frame.
	envelope := map[string]bool{"heartbeat": true, "status": true}
	// A telemetry point is relayed as the data of its device-channel
	// message, {"type":"telemetry","data":…}, one level deeper, and message
	// data nests at most MaxDepth (the chat rule, which the real chat
	// service applies here): the point's data may nest MaxDepth-1.
	relayed := map[string]bool{"telemetry": true, "telemetry envelope": true}
	for name, parse := range parsers {
		ok, deep := ok, deep
		if envelope[name] {
			ok, deep = nested(wire.MaxDepth), nested(wire.MaxDepth+1)
		}
		if relayed[name] {
			ok, deep = nested(wire.MaxDepth-2), nested(wire.MaxDepth-1)
		}
		if err := parse(ok); err != nil {
			t.Errorf("%s at the deepest allowed: %v, want accepted", name, err)
		}
		for what, p := range map[string]string{"too deep": deep, "invalid UTF-8": badUTF8, "a lone surrogate": surrogate} {
			err := parse(p)
			if unhidra.ErrorCode(err) != unhidra.EINVALID {
				t.Errorf("%s with %s: %v, want invalid", name, what, err)
			}
		}
	}
}
