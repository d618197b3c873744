// Package openapitest checks real HTTP exchanges against the OpenAPI 3.1
// document of the REST and auth APIs (internal/httpapi/openapi.json, served
// at GET /api/v1/openapi.json), so that the document and the server cannot
// drift apart unnoticed. It is for tests only: kin-openapi, which it
// imports, is never linked into the binary.
//
// A checked exchange fails when
//   - its method and path are not an operation of the document;
//   - its status is not one of that operation's documented responses;
//   - a JSON answer does not match the response's schema (field types,
//     required fields, enums, and no undocumented fields: response objects
//     are closed), or its Content-Type is not a documented one;
//   - a documented header (Retry-After on 429) is missing or malformed;
//   - an answer without a documented body has one;
//   - the server accepted (status below 400) a request the document says
//     is invalid: parameters, body, or a credential of a scheme the
//     operation does not allow (a device key on a users-only route).
//
// Requests the server refused are not held to the request schema (tests
// send bad requests on purpose); their answers are checked like any other.
//
// Check, CheckCall and Validate are safe for concurrent use.
package openapitest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/unhidra/unhidra/internal/httpapi"
	"github.com/unhidra/unhidra/wire"
)

// Load parses and validates an OpenAPI 3.1 document.
func Load(doc []byte) (*openapi3.T, error) {
	l := openapi3.NewLoader()
	t, err := l.LoadFromData(doc)
	if err != nil {
		return nil, fmt.Errorf("openapi: load: %w", err)
	}
	if !t.IsOpenAPI31OrLater() {
		return nil, fmt.Errorf("openapi: version %q, want 3.1", t.OpenAPI)
	}
	if err := t.Validate(l.Context); err != nil {
		return nil, fmt.Errorf("openapi: invalid document: %w", err)
	}
	return t, nil
}

var (
	once      sync.Once
	theRouter routers.Router
	loadErr   error
)

// router loads the embedded document once. The servers are dropped from
// its copy, so routes match whatever host and port a test server has.
func router() (routers.Router, error) {
	once.Do(func() {
		doc, err := Load(httpapi.OpenAPI())
		if err != nil {
			loadErr = err
			return
		}
		doc.Servers = nil
		for _, item := range doc.Paths.Map() {
			item.Servers = nil
		}
		theRouter, loadErr = gorillamux.NewRouter(doc)
	})
	return theRouter, loadErr
}

// Check reports (t.Error) every way in which one exchange departs from the
// document. req is the request as sent (its body already consumed: pass
// its bytes as reqBody, nil for none); resp the answer, whose body the
// caller read into respBody.
func Check(t testing.TB, req *http.Request, reqBody []byte, resp *http.Response, respBody []byte) {
	t.Helper()
	if err := Validate(req, reqBody, resp.StatusCode, resp.Header, respBody); err != nil {
		t.Errorf("openapi: %s %s → %d: %v", req.Method, req.URL.RequestURI(), resp.StatusCode, err)
	}
}

// CheckCall is Check for test helpers that hold the parts of an exchange
// rather than the request: method and path (with its query), the bearer
// credential sent ("" for none), the request body (nil for none, []byte or
// string as sent, anything else as its JSON encoding, with Content-Type
// application/json), and the answer's status, header and body.
func CheckCall(t testing.TB, method, path, bearer string, reqBody any, status int, header http.Header, respBody []byte) {
	t.Helper()
	var b []byte
	switch v := reqBody.(type) {
	case nil:
	case []byte:
		b = v
	case string:
		b = []byte(v)
	default:
		j, err := json.Marshal(v)
		if err != nil {
			t.Errorf("openapi: %s %s: encode the request body: %v", method, path, err)
			return
		}
		b = j
	}
	req := httptest.NewRequest(method, path, nil)
	if b != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	if err := Validate(req, b, status, header, respBody); err != nil {
		t.Errorf("openapi: %s %s → %d: %v", method, path, status, err)
	}
}

// Validate returns why an exchange departs from the document, or nil.
func Validate(req *http.Request, reqBody []byte, status int, header http.Header, respBody []byte) error {
	r, err := router()
	if err != nil {
		return err
	}
	// The router reads only the method and URL; the validators read the
	// body, so give them a fresh copy.
	req = req.Clone(context.Background())
	req.Body = io.NopCloser(bytes.NewReader(reqBody))
	req.ContentLength = int64(len(reqBody))
	route, pathParams, err := r.FindRoute(req)
	if err != nil {
		return fmt.Errorf("not an operation of the document: %w", err)
	}
	opts := &openapi3filter.Options{
		IncludeResponseStatus: true,
		MultiError:            false,
		AuthenticationFunc:    authenticate,
	}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: pathParams, Route: route, Options: opts}
	var errs []error
	if status < 400 {
		if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
			errs = append(errs, fmt.Errorf("the server accepted a request the document refuses: %w", err))
		}
	}
	if header == nil {
		header = http.Header{}
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 status,
		Header:                 header,
		Options:                opts,
	}
	out.SetBodyBytes(respBody)
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		errs = append(errs, err)
	} else if rr := route.Operation.Responses.Status(status); rr != nil && rr.Value != nil && len(rr.Value.Content) == 0 && len(bytes.TrimSpace(respBody)) > 0 {
		errs = append(errs, fmt.Errorf("status %d is documented without a body, got %d bytes", status, len(respBody)))
	}
	return errors.Join(errs...)
}

// authenticate checks that a request presents a credential of one of the
// schemes its operation allows: bearerAuth is an access token, deviceKey a
// device API key (by its prefix). Whether the credential is good is the
// server's business.
func authenticate(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	h := in.RequestValidationInput.Request.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || tok == "" {
		return errors.New("no bearer credential")
	}
	isKey := strings.HasPrefix(tok, wire.DeviceKeyPrefix)
	switch in.SecuritySchemeName {
	case "bearerAuth":
		if isKey {
			return errors.New("a device key where an access token is required")
		}
	case "deviceKey":
		if !isKey {
			return errors.New("not a device key")
		}
	default:
		return fmt.Errorf("unknown security scheme %q", in.SecuritySchemeName)
	}
	return nil
}

// Operation returns the operation of the document that a request for
// method and path (a query is ignored) is, as "METHOD /template", e.g.
// "GET /api/v1/channels/{id}".
func Operation(method, path string) (string, error) {
	r, err := router()
	if err != nil {
		return "", err
	}
	route, _, err := r.FindRoute(httptest.NewRequest(method, path, nil))
	if err != nil {
		return "", fmt.Errorf("%s %s is not an operation of the document: %w", method, path, err)
	}
	return route.Method + " " + route.Path, nil
}

// Operations lists every operation of the document as "METHOD /template",
// so a suite can prove it exercised them all.
func Operations() ([]string, error) {
	doc, err := Load(httpapi.OpenAPI())
	if err != nil {
		return nil, err
	}
	var ops []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			ops = append(ops, method+" "+path)
		}
	}
	slices.Sort(ops)
	return ops, nil
}
