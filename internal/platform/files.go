package platform

import "github.com/unhidra/unhidra/internal/httpapi"

// fileRoutes are the encrypted files' REST routes (/api/v1/files…).
func (a *Node) fileRoutes() httpapi.RouteFunc { return nil }
