// Package audit is the one seam for security-relevant events: the event
// type and a one-method Recorder that the auth and device services (and
// later chat and the transports) report to. Log writes events as structured
// log records until the tamper-evident audit log implements Recorder.
package audit

import (
	"context"
	"log/slog"

	"github.com/unhidra/unhidra/wire"
)

// Actions.
const (
	ActionLogin          = "login"
	ActionLogout         = "logout"
	ActionTokenReuse     = "token_reuse"
	ActionPasswordChange = "password_change"
	ActionRegister       = "register"
	ActionUserCreate     = "user_create"
	ActionUserVerify     = "user_verify"
	ActionUserDisable    = "user_disable"
	ActionDeviceRegister = "device_register"
	ActionDeviceRevoke   = "device_revoke"
	ActionDeviceRotate   = "device_rotate_key"
)

// Outcomes.
const (
	Success = "success"
	Failure = "failure"
)

// Event is one security-relevant event. It never carries a secret.
type Event struct {
	Action  string
	Actor   wire.Principal
	Target  string
	IP      string
	Outcome string // Success or Failure
	Reason  string
}

// Recorder records events. Audit must not block for long and must not fail
// the operation that reports.
type Recorder interface {
	Audit(ctx context.Context, e Event)
}

// Log is a Recorder writing each event as an info record "audit".
type Log struct{ Log *slog.Logger }

// Audit implements Recorder.
func (a Log) Audit(ctx context.Context, e Event) {
	if a.Log == nil {
		return
	}
	attrs := []any{"action", e.Action, "actor", e.Actor.String(), "outcome", e.Outcome}
	if e.Target != "" {
		attrs = append(attrs, "target", e.Target)
	}
	if e.IP != "" {
		attrs = append(attrs, "ip", e.IP)
	}
	if e.Reason != "" {
		attrs = append(attrs, "reason", e.Reason)
	}
	a.Log.InfoContext(ctx, "audit", attrs...)
}
