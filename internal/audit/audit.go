// Package audit is the one seam for security-relevant events: the event
// type and a one-method Recorder that the auth, device and chat services and
// both transports report to, wired once by the composition root
// (internal/platform). Log writes events as structured
// log records until the tamper-evident audit log implements Recorder.
package audit

import (
	"context"
	"log/slog"
	"maps"
	"slices"

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

	// Channels and membership (chat). Target is the channel; Details
	// name the member ("user") and the role ("role").
	ActionChannelCreate = "channel_create"
	ActionChannelDelete = "channel_delete"
	ActionMemberAdd     = "member_add"
	ActionMemberRole    = "member_role"
	ActionMemberRemove  = "member_remove"
	ActionMemberJoin    = "member_join"
	ActionMemberLeave   = "member_leave"

	// ActionConnectionRefused is a WebSocket handshake or MQTT CONNECT
	// refused before a session began. Reason is one of the Refused*
	// reasons; Details name the transport ("websocket" or "mqtt").
	ActionConnectionRefused = "connection_refused"
)

// Reasons of ActionConnectionRefused.
const (
	RefusedAuth   = "auth"   // no, or a bad, credential
	RefusedOrigin = "origin" // a browser page of another origin
	RefusedLimit  = "limit"  // a rate or connection limit
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
	// Details are further facts of the event, by name (never a secret).
	Details map[string]string
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
	for _, k := range slices.Sorted(maps.Keys(e.Details)) {
		attrs = append(attrs, k, e.Details[k])
	}
	a.Log.InfoContext(ctx, "audit", attrs...)
}
