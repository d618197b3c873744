package platform

import (
	"context"
	"log/slog"

	"github.com/unhidra/unhidra/internal/auth"
	"github.com/unhidra/unhidra/internal/broker"
	"github.com/unhidra/unhidra/internal/httpapi"
	"github.com/unhidra/unhidra/internal/keys"
)

// keyRoutes are the E2EE key directory's REST routes (/api/v1/keys/…) on the
// node's directory service (NewServices: the backend's key store, key
// changes announced on the node's broker in the user's channels, as the chat
// service lists them, and audited in the node's audit log).
func (a *Node) keyRoutes() httpapi.RouteFunc {
	return httpapi.KeyRoutes(a.svcs.Keys, a.log.With("server", "api"))
}

// disabledKeys is the auth service's publisher. It publishes every event
// as the broker does; before it publishes the revocation of a user's
// sessions (auth.Service.DisableUser, and also a password set by an
// administrator), it asks the auth store whether the account is disabled
// and, if so, takes the user's devices out of the key directory
// (keys.Service.UserDisabled), so that peers stop encrypting to a disabled
// user. It runs in the call that disabled the account, whether made through
// the API or by `unhidra user disable`, and auth need not know the key
// directory.
type disabledKeys struct {
	broker.Publisher
	users auth.Store
	keys  *keys.Service // set once NewServices has built it
	log   *slog.Logger
}

// Publish implements broker.Publisher.
func (d *disabledKeys) Publish(ctx context.Context, topic string, ev *broker.Event) error {
	if r := ev.Revocation; topic == broker.RevocationTopic && r != nil && r.Kind == broker.RevokeUser && d.keys != nil {
		d.removeKeys(ctx, r.ID)
	}
	return d.Publisher.Publish(ctx, topic, ev)
}

func (d *disabledKeys) removeKeys(ctx context.Context, user string) {
	u, err := d.users.User(ctx, user)
	if err != nil || !u.Disabled {
		if err != nil {
			d.log.Error("keys: look up a user whose sessions were revoked", "err", err)
		}
		return
	}
	if err := d.keys.UserDisabled(ctx, user); err != nil {
		d.log.Error("keys: remove a disabled user's devices from the key directory", "err", err)
	}
}
