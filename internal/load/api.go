package load

// Talking to the server: source addresses, and the auth and REST APIs for
// provisioning.

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// ---- source addresses ----

// isLoopbackHost reports whether host names a loopback address.
func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback() && ip.To4() != nil
}

// sourceDialer returns a dialer bound to loopback source address
// 127.0.0.(1+i%n) when the target is loopback, so that more than ~28k
// connections (one ephemeral port range per source address) and per-IP
// limits can be spread; otherwise the default dialer.
func sourceDialer(target string, i, n int) *net.Dialer {
	d := &net.Dialer{Timeout: 15 * time.Second}
	host, _, err := net.SplitHostPort(target)
	if err != nil || n <= 1 || !isLoopbackHost(host) {
		return d
	}
	d.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i%n))}
	return d
}

// ---- the HTTP APIs ----

// apiClient talks to the auth API and the REST API for provisioning.
type apiClient struct {
	authURL string // http://127.0.0.1:9200
	restURL string // http://127.0.0.1:9000/api/v1
	hc      *http.Client
}

func newAPIClient(authURL, restURL string, local net.Addr) *apiClient {
	d := &net.Dialer{Timeout: 10 * time.Second, LocalAddr: local}
	return &apiClient{authURL: strings.TrimRight(authURL, "/"), restURL: strings.TrimRight(restURL, "/"),
		hc: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 64}}}
}

// withSource returns a copy whose requests come from loopback address
// 127.0.0.(1+i) (to spread per-IP login limits).
func (a *apiClient) withSource(i int) *apiClient {
	host := a.authURL
	if u, err := url.Parse(a.authURL); err == nil {
		host = u.Hostname()
	}
	if !isLoopbackHost(host) {
		return a
	}
	return newAPIClient(a.authURL, a.restURL, &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i%250))})
}

type apiError struct {
	Status int
	Code   string
	Msg    string
}

func (e *apiError) Error() string { return fmt.Sprintf("HTTP %d %s: %s", e.Status, e.Code, e.Msg) }

func (a *apiClient) do(ctx context.Context, method, u, token string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode >= 300 {
		var eb struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		_ = json.Unmarshal(b, &eb)
		return &apiError{Status: resp.StatusCode, Code: eb.Error.Code, Msg: eb.Error.Message}
	}
	if out != nil && len(b) > 0 {
		return json.Unmarshal(b, out)
	}
	return nil
}

func (a *apiClient) login(ctx context.Context, user, pass string) (string, error) {
	var out struct {
		AccessToken string `json:"access_token"`
	}
	if err := a.do(ctx, "POST", a.authURL+"/login", "", map[string]string{"username": user, "password": pass}, &out); err != nil {
		return "", fmt.Errorf("login %s: %w", user, err)
	}
	return out.AccessToken, nil
}

func (a *apiClient) register(ctx context.Context, user, pass string) error {
	err := a.do(ctx, "POST", a.authURL+"/register", "", map[string]string{"username": user, "password": pass}, nil)
	if err != nil {
		return fmt.Errorf("register %s: %w", user, err)
	}
	return nil
}

func (a *apiClient) createDevice(ctx context.Context, token, name string) (id, key string, err error) {
	var out struct {
		DeviceID string `json:"device_id"`
		APIKey   string `json:"api_key"`
	}
	if err := a.do(ctx, "POST", a.authURL+"/devices", token, map[string]string{"name": name}, &out); err != nil {
		return "", "", fmt.Errorf("create device %s: %w", name, err)
	}
	return out.DeviceID, out.APIKey, nil
}

// revokeDevice revokes a device (DELETE /devices/{id}): its key stops
// working; the device stays listed as revoked.
func (a *apiClient) revokeDevice(ctx context.Context, token, id string) error {
	if err := a.do(ctx, "DELETE", a.authURL+"/devices/"+url.PathEscape(id), token, nil, nil); err != nil {
		return fmt.Errorf("revoke device %s: %w", id, err)
	}
	return nil
}

func (a *apiClient) createChannel(ctx context.Context, token, name string) (string, error) {
	var out struct {
		ID string `json:"id"`
	}
	if err := a.do(ctx, "POST", a.restURL+"/channels", token, map[string]any{"name": name, "kind": "public"}, &out); err != nil {
		return "", fmt.Errorf("create channel %s: %w", name, err)
	}
	return out.ID, nil
}

func (a *apiClient) joinChannel(ctx context.Context, token, id string) error {
	err := a.do(ctx, "POST", a.restURL+"/channels/"+url.PathEscape(id)+"/join", token, map[string]any{}, nil)
	var ae *apiError
	if errors.As(err, &ae) && ae.Status == http.StatusConflict {
		return nil
	}
	return err
}

// restFromWS derives the REST base (http://host/api/v1) from a WebSocket URL.
func restFromWS(ws string) string {
	u, err := url.Parse(ws)
	if err != nil {
		return ""
	}
	switch u.Scheme {
	case "wss":
		u.Scheme = "https"
	default:
		u.Scheme = "http"
	}
	u.Path, u.RawQuery = "/api/v1", ""
	return u.String()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = crand.Read(b)
	return hex.EncodeToString(b)
}
