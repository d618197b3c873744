package device

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/broker"
	"github.com/unhidra/unhidra/wire"
)

// Command statuses (docs/protocol.md#rest): pending → delivered → ok | error, or
// timeout when the deadline passes first.
const (
	CommandPending   = "pending"
	CommandDelivered = "delivered"
	CommandOK        = "ok"
	CommandError     = "error"
	CommandTimeout   = "timeout"
)

// Limits on commands.
const (
	MaxCommandNameLen     = 64
	MaxCommandParamsBytes = 16 << 10
	MaxCommandResultBytes = 16 << 10
)

// Command is a command sent to a device, as GET
// /api/v1/devices/{id}/commands/{cid} returns it.
type Command struct {
	ID          string          `json:"command_id"`
	DeviceID    string          `json:"device_id"`
	Name        string          `json:"name"`
	Params      json.RawMessage `json:"params,omitempty"`
	Status      string          `json:"status"`
	Result      json.RawMessage `json:"result,omitempty"`
	CreatedBy   string          `json:"created_by"`
	CreatedAt   time.Time       `json:"created_at"`
	Deadline    time.Time       `json:"deadline"`
	DeliveredAt *time.Time      `json:"delivered_at,omitempty"`
	CompletedAt *time.Time      `json:"completed_at,omitempty"`
}

// Event is the broker event that offers the command to its device.
func (c Command) Event() *broker.Event {
	return &broker.Event{Kind: broker.Command, Command: &broker.DeviceCommand{ID: c.ID, Name: c.Name, Params: c.Params}}
}

// Final reports whether the command's status can no longer change.
func (c Command) Final() bool {
	return c.Status == CommandOK || c.Status == CommandError || c.Status == CommandTimeout
}

// ValidateCommandName checks a command name: 1..64 of [A-Za-z0-9._-].
func ValidateCommandName(name string) error {
	if name == "" || len(name) > MaxCommandNameLen {
		return unhidra.Errorf(unhidra.EINVALID, "name must be 1 to %d characters", MaxCommandNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return unhidra.Errorf(unhidra.EINVALID, "name may contain only A-Z, a-z, 0-9, '.', '_' and '-'")
		}
	}
	return nil
}

func validJSON(raw json.RawMessage, field string, maxBytes int) (json.RawMessage, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if len(raw) > maxBytes {
		return nil, unhidra.Errorf(unhidra.ETOOLARGE, "%s is larger than %d bytes", field, maxBytes)
	}
	if err := checkJSON(field, raw, false); err != nil {
		return nil, err
	}
	return compact(raw), nil
}

// SendCommand creates a pending command for the device and offers it to
// whichever transport the device is connected on (broker topic
// DeviceCommandTopic). A device that is offline gets it when it connects,
// until the timeout (default DefaultCommandTimeout). Owner and admins only.
// A revoked device takes no commands: conflict.
func (f *Fleet) SendCommand(ctx context.Context, who unhidra.Identity, deviceID, name string, params json.RawMessage, timeout time.Duration) (Command, error) {
	d, err := f.authorizeUser(ctx, who, deviceID)
	if err != nil {
		return Command{}, err
	}
	deviceID = d.ID
	if d.Revoked || f.isRevoked(deviceID) {
		return Command{}, unhidra.Errorf(unhidra.ECONFLICT, "device is revoked")
	}
	if err := ValidateCommandName(name); err != nil {
		return Command{}, err
	}
	params, err = validJSON(params, "params", MaxCommandParamsBytes)
	if err != nil {
		return Command{}, err
	}
	switch {
	case timeout == 0:
		timeout = DefaultCommandTimeout
	case timeout < time.Second || timeout > MaxCommandTimeout:
		return Command{}, unhidra.Errorf(unhidra.EINVALID, "timeout_s must be between 1 and %d", int(MaxCommandTimeout/time.Second))
	}
	now := f.now()
	c := Command{
		ID:        f.newID(),
		DeviceID:  deviceID,
		Name:      name,
		Params:    params,
		Status:    CommandPending,
		CreatedBy: who.Principal.ID,
		CreatedAt: now,
		Deadline:  now.Add(timeout),
	}
	if err := f.store.CreateCommand(ctx, c); err != nil {
		return Command{}, err
	}
	f.met.commandStatus(CommandPending, 1)
	if err := f.broker.Publish(ctx, broker.DeviceCommandTopic(deviceID), c.Event()); err != nil {
		// The command stays pending and is delivered on the next connect.
		f.log.Warn("command offer", "device", deviceID, "command", c.ID, "err", err)
	}
	return c, nil
}

// GetCommand returns a command of the device. The owner, admins and the
// device itself may read it.
func (f *Fleet) GetCommand(ctx context.Context, who unhidra.Identity, deviceID, commandID string) (Command, error) {
	if who.IsDevice() {
		if err := deviceSelf(who, deviceID); err != nil {
			return Command{}, err
		}
		deviceID = who.Principal.ID
	} else {
		d, err := f.authorizeUser(ctx, who, deviceID)
		if err != nil {
			return Command{}, err
		}
		deviceID = d.ID
	}
	if commandID == "" || len(commandID) > wire.MaxCommandIDLen {
		return Command{}, unhidra.Errorf(unhidra.ENOTFOUND, "command not found")
	}
	return f.store.GetCommand(ctx, deviceID, commandID)
}

// PendingCommands returns the device's commands that still wait for
// delivery, oldest first. A transport calls it when the device connects (or
// subscribes to its command topic), hands each to the device, then calls
// CommandDelivered.
func (f *Fleet) PendingCommands(ctx context.Context, deviceID string) ([]Command, error) {
	return f.store.PendingCommands(ctx, deviceID, f.now(), maxPendingDelivered)
}

// CommandDelivered records that a transport handed the command to the
// device. It reports false when the command was no longer pending (already
// delivered by another connection, answered or timed out).
func (f *Fleet) CommandDelivered(ctx context.Context, deviceID, commandID string) (bool, error) {
	_, moved, err := f.store.TransitionCommand(ctx, deviceID, commandID, []string{CommandPending}, CommandDelivered, nil, f.now())
	if moved {
		f.met.commandStatus(CommandDelivered, 1)
	}
	return moved, err
}

// CommandResult is a device's answer to a command (the WebSocket
// `command_result` frame, MQTT unhidra/devices/D/commands/result).
type CommandResult struct {
	CommandID string          `json:"command_id"`
	Status    string          `json:"status"`
	Result    json.RawMessage `json:"result,omitempty"`
}

// ParseCommandResult decodes an MQTT command result payload.
func ParseCommandResult(payload []byte) (CommandResult, error) {
	if len(payload) > MaxCommandResultBytes+1024 {
		return CommandResult{}, unhidra.Errorf(unhidra.ETOOLARGE, "command result is too large")
	}
	if err := checkJSON("command result", payload, true); err != nil {
		return CommandResult{}, err
	}
	var r CommandResult
	if err := json.Unmarshal(payload, &r); err != nil {
		return CommandResult{}, unhidra.Errorf(unhidra.EINVALID, "command result must be a JSON object {command_id, status, result?}")
	}
	return r, nil
}

type commandEvent struct {
	Type      string          `json:"type"`
	CommandID string          `json:"command_id"`
	Name      string          `json:"name"`
	Status    string          `json:"status"`
	Result    json.RawMessage `json:"result,omitempty"`
}

// CommandResult records the device's answer: the command becomes ok or
// error and an event {"type":"command_result",…} is posted in
// device:<id>. Answering a command that is already final is accepted and
// changes nothing (a retransmission); an unknown command is not_found.
func (f *Fleet) CommandResult(ctx context.Context, who unhidra.Identity, r CommandResult) error {
	if err := f.deviceActs(who, ""); err != nil {
		return err
	}
	if r.CommandID == "" || len(r.CommandID) > wire.MaxCommandIDLen {
		return unhidra.Errorf(unhidra.EINVALID, "command_id is required")
	}
	if r.Status != CommandOK && r.Status != CommandError {
		return unhidra.Errorf(unhidra.EINVALID, "status must be ok or error")
	}
	result, err := validJSON(r.Result, "result", MaxCommandResultBytes)
	if err != nil {
		return err
	}
	id := who.Principal.ID
	c, moved, err := f.store.TransitionCommand(ctx, id, r.CommandID, []string{CommandPending, CommandDelivered}, r.Status, result, f.now())
	if err != nil {
		return err
	}
	if !moved {
		return nil
	}
	f.met.commandStatus(c.Status, 1)
	_, err = f.post(ctx, id, commandEvent{Type: "command_result", CommandID: c.ID, Name: c.Name, Status: c.Status, Result: c.Result})
	if err != nil {
		f.log.Warn("command result event", "device", id, "command", c.ID, "err", err)
	}
	return nil
}

// ExpireCommands times out every open command whose deadline has passed
// and posts a command_result event with status timeout for each.
func (f *Fleet) ExpireCommands(ctx context.Context) (int, error) {
	total := 0
	for {
		cs, err := f.store.ExpireCommands(ctx, f.now(), 500)
		if err != nil {
			return total, err
		}
		for _, c := range cs {
			if _, err := f.post(ctx, c.DeviceID, commandEvent{Type: "command_result", CommandID: c.ID, Name: c.Name, Status: CommandTimeout}); err != nil {
				f.log.Warn("command timeout event", "device", c.DeviceID, "command", c.ID, "err", err)
			}
		}
		f.met.commandStatus(CommandTimeout, len(cs))
		total += len(cs)
		if len(cs) < 500 {
			return total, nil
		}
	}
}

// checkJSON refuses a payload (body: an object whose fields are values, one
// level more) or a value that is not valid Unicode or nests deeper than
// wire.MaxDepth — the one rule of every transport (wire.CheckJSON). A value
// that is not JSON at all is "<field> must be JSON"; a payload that is not,
// left to its decoder's own message.
func checkJSON(field string, b []byte, body bool) error {
	check := wire.CheckJSON
	if body {
		check = wire.CheckJSONBody
	}
	err := check(b)
	var je *wire.JSONError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &je) && je.Reason == wire.JSONSyntax:
		if body {
			return nil
		}
		return unhidra.Errorf(unhidra.EINVALID, "%s must be JSON", field)
	default:
		return unhidra.Wrap(unhidra.EINVALID, field+": "+err.Error(), err)
	}
}
