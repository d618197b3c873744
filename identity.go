package unhidra

import (
	"time"

	"github.com/unhidra/unhidra/wire"
)

// Role names carried in access tokens.
const RoleAdmin = "admin"

// Identity is an authenticated caller as every transport hands it to the
// domain services: a user holding an access token (with its session) or a
// device holding an API key.
type Identity struct {
	Principal wire.Principal
	// SessionID is the login session of a user's access token; empty for devices.
	SessionID string
	Roles     []string
	// ExpiresAt is when the credential stops being valid; zero for device keys.
	ExpiresAt time.Time
}

// IsAdmin reports whether the identity holds the admin role.
func (id Identity) IsAdmin() bool {
	for _, r := range id.Roles {
		if r == RoleAdmin {
			return true
		}
	}
	return false
}

// IsDevice reports whether the identity is a device.
func (id Identity) IsDevice() bool { return id.Principal.Kind == wire.KindDevice }

// Operator is the identity of the command line (`unhidra user …`,
// `unhidra device …`): an administrator that is not an account.
var Operator = Identity{Principal: wire.Principal{Kind: "operator", ID: "cli"}, Roles: []string{RoleAdmin}}

// IsOperator reports whether who is the command-line operator.
func IsOperator(who Identity) bool {
	return who.Principal == Operator.Principal && who.SessionID == "" && len(who.Roles) == 1 && who.Roles[0] == RoleAdmin
}
