package httpapi

// The OpenAPI 3.1 document of the auth API and the REST API, embedded and
// served at GET /api/v1/openapi.json (no credential needed). The prose
// reference, with the WebSocket and MQTT protocols, is docs/protocol.md;
// internal/openapitest checks real answers against this document.

import (
	_ "embed"
	"net/http"
)

//go:embed openapi.json
var openAPIDoc []byte

// OpenAPIPath is where the gateway serves the document.
const OpenAPIPath = APIPrefix + "/openapi.json"

// OpenAPI returns the embedded OpenAPI 3.1 document (JSON). The slice is
// shared: callers must not modify it.
func OpenAPI() []byte { return openAPIDoc }

// serveOpenAPI answers GET /api/v1/openapi.json.
func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(openAPIDoc)
}
