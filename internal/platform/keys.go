package platform

import "github.com/unhidra/unhidra/internal/httpapi"

// keyRoutes are the E2EE key directory's REST routes (/api/v1/keys/…).
func (a *Node) keyRoutes() httpapi.RouteFunc { return nil }
