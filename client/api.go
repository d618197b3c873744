package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// maxAPIAnswer bounds a REST answer API reads.
const maxAPIAnswer = 8 << 20

// API calls the gateway's REST API (/api/v1 + path, e.g. "/channels" or
// "/keys/claim?…") with the client's credential: in, when not nil, is sent
// as JSON; the answer is decoded into out when out is not nil. A refusal
// is a *ServerError with the API's error code.
func (c *Client) API(ctx context.Context, method, path string, in, out any) error {
	p, q, _ := strings.Cut(path, "?")
	u, err := c.apiURL(p)
	if err != nil {
		return err
	}
	if q != "" {
		if _, err := url.ParseQuery(q); err != nil {
			return fmt.Errorf("client: query of %s: %w", path, err)
		}
		u.RawQuery = q
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("client: encode %s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	resp, err := c.restRequestType(ctx, method, u, body, "application/json")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil || resp.StatusCode == http.StatusNoContent {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAPIAnswer))
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxAPIAnswer)).Decode(out); err != nil {
		return fmt.Errorf("client: answer of %s %s: %w", method, path, err)
	}
	return nil
}
