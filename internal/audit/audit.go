// Package audit is the one seam for security-relevant events: the event
// type and a one-method Recorder that the auth, device and chat services and
// both transports report to, wired once by the composition root
// (internal/platform). Log is the tamper-evident audit log (log.go);
// Slog writes events as structured log records instead.
package audit

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"time"

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

	// ActionMessageDelete is a message deleted by someone other than its
	// author (a channel owner or admin, or an admin). Target is the
	// channel; Details name the message ("message") and its author
	// ("author").
	ActionMessageDelete = "message_delete"
	// ActionAuditRead is a read of the audit log (records, proofs,
	// checkpoints, exports). Details name the query.
	ActionAuditRead = "audit_read"
	// ActionConfigRefused is a start refused for an unsafe or invalid
	// configuration. Reason lists the problems (never a value of a secret).
	ActionConfigRefused = "config_refused"
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
	// Time is when it happened (zero: when it is recorded).
	Time    time.Time
	Action  string
	Actor   wire.Principal
	Target  string
	IP      string
	Outcome string // Success or Failure
	Reason  string
	// Transport is the edge the request came through (Transport*; empty:
	// the Source of the context, if any).
	Transport string
	// RequestID ties the event to the request's log lines and its
	// X-Request-ID answer (empty: the Source of the context, if any).
	RequestID string
	// Details are further facts of the event, by name (never a secret).
	Details map[string]string
}

// Transports of Event.Transport.
const (
	TransportHTTP      = "http"      // the auth API and the gateway's REST API
	TransportWebSocket = "websocket" // the gateway's WebSocket
	TransportMQTT      = "mqtt"      // the MQTT broker
	TransportCLI       = "cli"       // an administration command
	TransportSystem    = "system"    // the server itself (start-up, timers)
)

// Source is where a request came from, set once by the transport that
// accepted it so every event a service reports while serving it names its
// edge.
type Source struct {
	Transport string
	RequestID string
	IP        string
}

type sourceKey struct{}

// WithSource returns ctx carrying src.
func WithSource(ctx context.Context, src Source) context.Context {
	return context.WithValue(ctx, sourceKey{}, src)
}

// SourceOf returns the Source ctx carries (zero without one).
func SourceOf(ctx context.Context) Source {
	src, _ := ctx.Value(sourceKey{}).(Source)
	return src
}

// Complete fills the fields of e left empty from the Source of ctx and the
// clock: what every Recorder does before it records.
func Complete(ctx context.Context, e Event, now time.Time) Event {
	src := SourceOf(ctx)
	if e.Transport == "" {
		e.Transport = src.Transport
	}
	if e.RequestID == "" {
		e.RequestID = src.RequestID
	}
	if e.IP == "" {
		e.IP = src.IP
	}
	if e.Time.IsZero() {
		e.Time = now
	}
	if e.Outcome == "" {
		e.Outcome = Success
	}
	return e
}

// Recorder records events. Audit must not block for long and must not fail
// the operation that reports.
type Recorder interface {
	Audit(ctx context.Context, e Event)
}

// Slog is a Recorder writing each event as an info record "audit" to a
// process log: for tests and tools that keep no audit log.
type Slog struct{ Log *slog.Logger }

// Audit implements Recorder.
func (a Slog) Audit(ctx context.Context, e Event) {
	if a.Log == nil {
		return
	}
	e = Complete(ctx, e, time.Now())
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
	if e.Transport != "" {
		attrs = append(attrs, "transport", e.Transport)
	}
	if e.RequestID != "" {
		attrs = append(attrs, "request_id", e.RequestID)
	}
	for _, k := range slices.Sorted(maps.Keys(e.Details)) {
		attrs = append(attrs, k, e.Details[k])
	}
	a.Log.InfoContext(ctx, "audit", attrs...)
}

// Tee is a Recorder that records every event in each of rs in turn (a
// node's log and a test's tap).
type Tee []Recorder

// Audit implements Recorder.
func (t Tee) Audit(ctx context.Context, e Event) {
	for _, r := range t {
		if r != nil {
			r.Audit(ctx, e)
		}
	}
}
