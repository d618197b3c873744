package device_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/broker"
	"github.com/unhidra/unhidra/internal/brokertest"
	"github.com/unhidra/unhidra/internal/device"
	"github.com/unhidra/unhidra/wire"
)

func TestCommandGoesPendingDeliveredOK(t *testing.T) {
	e := newFleetEnv(t)
	ctx := context.Background()
	offered := make(chan []byte, 1)
	unsub, _ := e.broker.Subscribe(broker.DeviceCommandTopic("d1"), func(ev *broker.Event) { offered <- brokertest.FrameJSON(ev) })
	defer unsub()

	c, err := e.fleet.SendCommand(ctx, asUser("alice", false), "d1", "reboot", json.RawMessage(`{"delay": 5}`), 0)
	if err != nil {
		t.Fatal(err)
	}
	if c.Status != device.CommandPending || !c.Deadline.Equal(e.fleetClock.Now().Add(device.DefaultCommandTimeout)) {
		t.Fatalf("command = %+v, want pending with the default deadline", c)
	}
	var frame wire.CommandFrame
	if err := json.Unmarshal(<-offered, &frame); err != nil || frame.Type != "command" || frame.CommandID != c.ID || string(frame.Params) != `{"delay":5}` {
		t.Fatalf("offered frame %+v (%v), want the command frame", frame, err)
	}
	pend, err := e.fleet.PendingCommands(ctx, "d1")
	if err != nil || len(pend) != 1 || pend[0].ID != c.ID {
		t.Fatalf("pending = %+v (%v), want the command", pend, err)
	}
	if moved, err := e.fleet.CommandDelivered(ctx, "d1", c.ID); err != nil || !moved {
		t.Fatalf("delivered: moved %v err %v", moved, err)
	}
	if moved, _ := e.fleet.CommandDelivered(ctx, "d1", c.ID); moved {
		t.Fatal("a second delivery moved the command again")
	}
	if pend, _ := e.fleet.PendingCommands(ctx, "d1"); len(pend) != 0 {
		t.Fatalf("delivered command still pending: %+v", pend)
	}
	got, _ := e.fleet.GetCommand(ctx, asUser("alice", false), "d1", c.ID)
	if got.Status != device.CommandDelivered || got.DeliveredAt == nil {
		t.Fatalf("after delivery: %+v", got)
	}

	if err := e.fleet.CommandResult(ctx, asDevice("d1"), device.CommandResult{CommandID: c.ID, Status: "ok", Result: json.RawMessage(`{"pong":true}`)}); err != nil {
		t.Fatal(err)
	}
	got, _ = e.fleet.GetCommand(ctx, asUser("admin", true), "d1", c.ID)
	if got.Status != device.CommandOK || string(got.Result) != `{"pong":true}` || got.CompletedAt == nil {
		t.Fatalf("after result: %+v", got)
	}
	ev := e.fleetPosts.last()
	if ev["type"] != "command_result" || ev["status"] != "ok" || ev["command_id"] != c.ID {
		t.Fatalf("device channel event %v, want the command result", ev)
	}
	// A retransmitted result is accepted and changes nothing.
	if err := e.fleet.CommandResult(ctx, asDevice("d1"), device.CommandResult{CommandID: c.ID, Status: "error"}); err != nil {
		t.Fatal(err)
	}
	if got, _ = e.fleet.GetCommand(ctx, asDevice("d1"), "d1", c.ID); got.Status != device.CommandOK {
		t.Fatalf("status after a late result = %s, want ok", got.Status)
	}
}

func TestCommandTimesOutWhenTheDeviceStaysAway(t *testing.T) {
	e := newFleetEnv(t)
	ctx := context.Background()
	c, err := e.fleet.SendCommand(ctx, asUser("alice", false), "d1", "ping", nil, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	e.fleetClock.Add(29 * time.Second)
	if n, _ := e.fleet.ExpireCommands(ctx); n != 0 {
		t.Fatalf("expired %d before the deadline", n)
	}
	if pend, _ := e.fleet.PendingCommands(ctx, "d1"); len(pend) != 1 {
		t.Fatal("command not held for the offline device")
	}
	e.fleetClock.Add(time.Second)
	if pend, _ := e.fleet.PendingCommands(ctx, "d1"); len(pend) != 0 {
		t.Fatal("a command past its deadline is still offered")
	}
	if n, err := e.fleet.ExpireCommands(ctx); n != 1 || err != nil {
		t.Fatalf("expired %d (%v), want 1", n, err)
	}
	got, _ := e.fleet.GetCommand(ctx, asUser("alice", false), "d1", c.ID)
	if got.Status != device.CommandTimeout {
		t.Fatalf("status = %s, want timeout", got.Status)
	}
	if ev := e.fleetPosts.last(); ev["status"] != "timeout" {
		t.Fatalf("event %v, want a timeout result", ev)
	}
	if err := e.fleet.CommandResult(ctx, asDevice("d1"), device.CommandResult{CommandID: c.ID, Status: "ok"}); err != nil {
		t.Fatal(err)
	}
	if got, _ = e.fleet.GetCommand(ctx, asUser("alice", false), "d1", c.ID); got.Status != device.CommandTimeout {
		t.Fatalf("a result after the timeout changed the status to %s", got.Status)
	}
}

func TestSendCommandRules(t *testing.T) {
	e := newFleetEnv(t)
	ctx := context.Background()
	tests := []struct {
		name    string
		who     unhidra.Identity
		dev     string
		cmd     string
		params  string
		timeout time.Duration
		want    string
	}{
		{"the owner may send", asUser("alice", false), "d1", "ping", "", 0, ""},
		{"an admin may send to any device", asUser("admin", true), "d2", "ping", "", 0, ""},
		{"another user may not", asUser("bob", false), "d1", "ping", "", 0, unhidra.EFORBIDDEN},
		{"a device may not", asDevice("d1"), "d1", "ping", "", 0, unhidra.EFORBIDDEN},
		{"a name with spaces is invalid", asUser("alice", false), "d1", "rm -rf", "", 0, unhidra.EINVALID},
		{"params that are not JSON are invalid", asUser("alice", false), "d1", "ping", "{", 0, unhidra.EINVALID},
		{"a timeout under a second is invalid", asUser("alice", false), "d1", "ping", "", time.Millisecond, unhidra.EINVALID},
		{"a timeout over a week is invalid", asUser("alice", false), "d1", "ping", "", 8 * 24 * time.Hour, unhidra.EINVALID},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.fleet.SendCommand(ctx, tc.who, tc.dev, tc.cmd, json.RawMessage(tc.params), tc.timeout)
			if got := unhidra.ErrorCode(err); got != tc.want {
				t.Fatalf("code = %q, want %q (%v)", got, tc.want, err)
			}
		})
	}
	t.Run("a device cannot answer another device's command", func(t *testing.T) {
		c, err := e.fleet.SendCommand(ctx, asUser("alice", false), "d1", "ping", nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		err = e.fleet.CommandResult(ctx, asDevice("d2"), device.CommandResult{CommandID: c.ID, Status: "ok"})
		if unhidra.ErrorCode(err) != unhidra.ENOTFOUND {
			t.Fatalf("err = %v, want not_found", err)
		}
	})
	t.Run("a result status other than ok or error is invalid", func(t *testing.T) {
		err := e.fleet.CommandResult(ctx, asDevice("d1"), device.CommandResult{CommandID: "x", Status: "done"})
		if unhidra.ErrorCode(err) != unhidra.EINVALID {
			t.Fatalf("err = %v, want invalid", err)
		}
	})
}

func FuzzParseCommandResult(f *testing.F) {
	for _, s := range []string{`{"command_id":"c","status":"ok","result":{"a":1}}`, `{"command_id":1}`, `null`, `[]`, `{"status":"error","result":"x"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := device.ParseCommandResult(b)
		if err != nil {
			if c := unhidra.ErrorCode(err); c != unhidra.EINVALID && c != unhidra.ETOOLARGE {
				t.Fatalf("code %q", c)
			}
			return
		}
		if len(r.Result) > 0 && !json.Valid(r.Result) {
			t.Fatalf("result %q is not JSON", r.Result)
		}
	})
}
