package platform

import (
	"github.com/unhidra/unhidra/internal/httpapi"
	"github.com/unhidra/unhidra/internal/keys"
)

// keyRoutes are the E2EE key directory's REST routes (/api/v1/keys/…): the
// directory service on the backend's key store, announcing key changes on
// the node's broker in the user's channels (listed by the chat service) and
// auditing them in the node's audit log.
func (a *Node) keyRoutes() httpapi.RouteFunc {
	log := a.log.With("server", "api")
	svc := keys.NewService(keys.Deps{Store: a.backend.Keys, Broker: a.broker, Channels: a.chatSvc, Audit: a.audit, Log: log})
	return httpapi.KeyRoutes(svc, log)
}
