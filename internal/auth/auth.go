// Package auth owns users, sessions, passwords, tokens and login limits:
// registration, password login, refresh-token rotation with reuse detection,
// logout, password change, administration of accounts, and the verification
// of access tokens that every transport runs on every request or handshake.
//
// Concurrency contract: a Service is safe for concurrent use. Password hashing
// runs on a bounded pool (at most HashWorkers at once, HashQueue waiting,
// beyond that "unavailable" at once). Limiters and the revoked-session cache
// are in memory and guarded by their own mutexes; the Store is shared with
// other processes (the CLI), so cached session states expire after
// RevocationTTL and are read back from it.
package auth

import (
	"context"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/audit"
	"github.com/unhidra/unhidra/internal/broker"
)

// User is an account. PasswordHash never leaves the service.
type User struct {
	Username     string    `json:"username"`
	DisplayName  string    `json:"display_name"`
	Roles        []string  `json:"roles"`
	Verified     bool      `json:"verified"`
	Disabled     bool      `json:"disabled"`
	CreatedAt    time.Time `json:"created_at"`
	PasswordHash string    `json:"-"`
}

// Session is one login: the family of refresh tokens rotated from it and the
// access tokens carrying its id as `sid`.
type Session struct {
	ID        string
	Username  string
	CreatedAt time.Time
	ExpiresAt time.Time
}

// SessionState is what AuthenticateToken needs to know about a session.
type SessionState struct {
	ID           string
	Username     string
	Roles        []string
	Revoked      bool
	UserDisabled bool
	ExpiresAt    time.Time
}

// RotateResult is the outcome of presenting a refresh token.
type RotateResult struct {
	Session SessionState
	// Reused is set when the token had already been rotated: the store has
	// revoked the whole session (family) and the caller must refuse.
	Reused bool
}

// Store keeps users, sessions and refresh tokens. Implementations return
// unhidra errors: ENOTFOUND for a missing user or token, ECONFLICT for a
// taken username (compared case-insensitively). Every method naming a user
// finds it in any letter case and fails with ENOTFOUND when there is none.
// A Store is safe for concurrent use; implementations pass the conformance
// suite storetest.Auth.
type Store interface {
	// CreateUser stores u; its name is stored in lower case, and a name
	// taken in any letter case is a conflict.
	CreateUser(ctx context.Context, u User) error
	// User returns a user with every field; Roles is never nil (empty: no
	// roles), so an account reads back as "roles": [].
	User(ctx context.Context, username string) (User, error)
	// Users lists every user ordered by name.
	Users(ctx context.Context) ([]User, error)
	CountUsers(ctx context.Context) (int, error)
	// SetDisplayName changes the display name and returns the user.
	SetDisplayName(ctx context.Context, username, displayName string, at time.Time) (User, error)
	SetVerified(ctx context.Context, username string, at time.Time) error
	// SetPasswordHash replaces the hash (an upgrade), ending no session.
	SetPasswordHash(ctx context.Context, username, hash string, at time.Time) error
	// ChangePassword replaces the hash and, in the same transaction, revokes
	// every session of the user except keepSession (all when empty). It
	// returns the ids of the sessions it revoked (not those revoked before).
	ChangePassword(ctx context.Context, username, hash, keepSession string, at time.Time) ([]string, error)
	// DisableUser marks the user disabled and revokes all its sessions,
	// returning the ids of those it revoked.
	DisableUser(ctx context.Context, username string, at time.Time) ([]string, error)

	// CreateSession stores a session with its first refresh token hash.
	CreateSession(ctx context.Context, s Session, refreshHash []byte) error
	// RotateRefresh atomically retires oldHash and stores newHash in the same
	// session, extending it to expires. A token already retired revokes the
	// session and yields Reused (also when the session was revoked already);
	// of concurrent presentations of one token exactly one rotates it and
	// the others are Reused. An unknown token, one whose expiry is at or
	// before now, one of a revoked session, or one of a disabled user,
	// yields EUNAUTHORIZED. The result carries the session's id, user, roles
	// and (after a rotation) its new expiry.
	RotateRefresh(ctx context.Context, oldHash, newHash []byte, now, expires time.Time) (RotateResult, error)
	// RevokeSession revokes one session; it reports whether it was active
	// (false, and no error, for an unknown or already revoked session).
	RevokeSession(ctx context.Context, sid, reason string, at time.Time) (bool, error)
	// SessionState returns the session's state with its user's roles and
	// disabled flag; ENOTFOUND for an unknown (or pruned) session.
	SessionState(ctx context.Context, sid string) (SessionState, error)
	// CountActiveSessions counts sessions not revoked whose expiry is after
	// now.
	CountActiveSessions(ctx context.Context, now time.Time) (int, error)
	// PruneSessions deletes sessions (and their refresh tokens) that
	// expired or were revoked before before (strictly), and returns how
	// many. A pruned session's retired tokens no longer count as reuse.
	PruneSessions(ctx context.Context, before time.Time) (int64, error)
}

// Publisher publishes revocation events (broker.RevocationTopic) to every
// transport. *inmem.Broker satisfies it.
type Publisher = broker.Publisher

// Audit actions, events and recorders live in internal/audit; these names
// are the auth service's view of them.
const (
	ActionLogin          = audit.ActionLogin
	ActionLogout         = audit.ActionLogout
	ActionTokenReuse     = audit.ActionTokenReuse
	ActionPasswordChange = audit.ActionPasswordChange
	ActionRegister       = audit.ActionRegister
	ActionUserCreate     = audit.ActionUserCreate
	ActionUserVerify     = audit.ActionUserVerify
	ActionUserDisable    = audit.ActionUserDisable
)

type (
	// Event is an audit event (audit.Event).
	Event = audit.Event
	// Auditor records audit events (audit.Recorder).
	Auditor = audit.Recorder
	// LogAuditor writes audit events to a log (audit.Slog).
	LogAuditor = audit.Slog
)

// Operator is the identity of the command line (`unhidra user …`,
// `unhidra device …`): an administrator that is not an account.
var Operator = unhidra.Operator
