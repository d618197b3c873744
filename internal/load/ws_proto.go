package load

// The two servers `bench ws` can drive: Unhidra (log in, create the
// channels, the unhidra.v1 subprotocol) and Centrifugo (HMAC tokens, its
// JSON protocol, the server API for publishes).

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
)

// ---- Unhidra ----

type unhidraProto struct {
	cfg    WSConfig
	host   string
	tokens []string // token of connection i: tokens[i % len] or by user
	per    int
	ids    atomic.Int64
}

// setupUnhidraWS logs in, creates channels and bench users as needed.
func setupUnhidraWS(ctx context.Context, cfg WSConfig, channels []string, stderr io.Writer) (*unhidraProto, error) {
	u, _ := url.Parse(cfg.URL)
	api := newAPIClient(cfg.AuthURL, restFromWS(cfg.URL), nil)
	p := &unhidraProto{cfg: cfg, host: u.Host}
	admin := cfg.Token
	if admin == "" {
		if cfg.AdminPass == "" {
			return nil, &UsageError{"needs --token, --admin-password (or $UNHIDRA_ADMIN_PASSWORD), or --spawn"}
		}
		t, err := api.login(ctx, cfg.AdminUser, cfg.AdminPass)
		if err != nil {
			return nil, err
		}
		admin = t
	}
	run := randomHex(4)
	for j := range channels {
		id, err := api.createChannel(ctx, admin, fmt.Sprintf("bench-%s-%d", run, j))
		if err != nil {
			return nil, err
		}
		channels[j] = id
	}
	if cfg.Token != "" || cfg.PerUser == 0 {
		p.tokens = []string{admin}
		p.per = cfg.Conns
		return p, nil
	}
	users := (cfg.Conns + cfg.PerUser - 1) / cfg.PerUser
	fmt.Fprintf(stderr, "bench: creating %d users (%d connections each; raise MAX_CONNECTIONS_PER_USER and pass --per-user to need fewer)\n", users, cfg.PerUser)
	p.tokens = make([]string, users)
	p.per = cfg.PerUser
	pass := randomHex(12)
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for i := 0; i < users; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer func() { <-sem; wg.Done() }()
			// Logins are limited per client IP: spread them over loopback addresses.
			a := api.withSource(i / 8)
			name := fmt.Sprintf("bench-%s-%d", run, i)
			if err := a.register(ctx, name, pass); err != nil {
				firstErr.CompareAndSwap(nil, err)
				return
			}
			t, err := a.login(ctx, name, pass)
			if err != nil {
				firstErr.CompareAndSwap(nil, err)
				return
			}
			for _, ch := range channels {
				if err := a.joinChannel(ctx, t, ch); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
			p.tokens[i] = t
		}(i)
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *unhidraProto) open(ctx context.Context, i int, channel string) (*websocket.Conn, error) {
	token := p.tokens[min(i/p.per, len(p.tokens)-1)]
	d := sourceDialer(p.host, i, p.cfg.SrcIPs)
	hc := &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
	c, resp, err := websocket.Dial(ctx, p.cfg.URL, &websocket.DialOptions{HTTPClient: hc, Subprotocols: []string{"unhidra.v1", "bearer." + token}})
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("handshake: HTTP %d", resp.StatusCode)
		}
		return nil, err
	}
	c.SetReadLimit(1 << 20)
	_, b, err := c.Read(ctx)
	if err != nil || !bytes.Contains(b, []byte(`"welcome"`)) {
		c.CloseNow()
		return nil, fmt.Errorf("no welcome: %v", err)
	}
	sub, _ := json.Marshal(map[string]any{"type": "subscribe", "id": "s", "channel": channel})
	if err := c.Write(ctx, websocket.MessageText, sub); err != nil {
		c.CloseNow()
		return nil, err
	}
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			c.CloseNow()
			return nil, fmt.Errorf("subscribe: %w", err)
		}
		var f struct{ Type, Code, Message string }
		_ = json.Unmarshal(b, &f)
		switch f.Type {
		case "subscribed":
			return c, nil
		case "error":
			c.CloseNow()
			return nil, fmt.Errorf("subscribe: %s: %s", f.Code, f.Message)
		}
	}
}

// publish writes a publish frame; the ack arrives on the reader (not
// awaited: publish→ack latency is then the write time only).
func (p *unhidraProto) publish(ctx context.Context, c *websocket.Conn, channel string, payload []byte, seq int64) error {
	f := make([]byte, 0, len(payload)+128)
	f = append(f, `{"type":"publish","id":`...)
	f = strconv.AppendInt(f, p.ids.Add(1), 10)
	f = append(f, `,"channel":`...)
	f = strconv.AppendQuote(f, channel)
	f = append(f, `,"data":`...)
	f = append(f, payload...)
	f = append(f, '}')
	return c.Write(ctx, websocket.MessageText, f)
}

// ---- Centrifugo v6 ----

// centrifugoProto speaks Centrifugo's JSON client protocol: a connect
// command with a JWT (HS256, client.token.hmac_secret_key), then subscribe;
// publications come as pushes. Publishing goes through its HTTP API.
//
// Centrifugo needs, for this bench:
//
//	{"client": {"token": {"hmac_secret_key": "<secret>"}, "allowed_origins": ["*"]},
//	 "http_api": {"key": "<api key>"},
//	 "channel": {"without_namespace": {"allow_subscribe_for_client": true}}}
type centrifugoProto struct {
	cfg  WSConfig
	host string
	hc   *http.Client
}

func (p *centrifugoProto) token(i int) (string, error) {
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "bench-" + strconv.Itoa(i),
		"exp": time.Now().Add(24 * time.Hour).Unix(),
	})
	return t.SignedString([]byte(p.cfg.CentrifugoSecret))
}

// centrifugoReply reads replies until the one with id, skipping pushes.
func centrifugoReply(ctx context.Context, c *websocket.Conn, id int) error {
	want := fmt.Sprintf(`"id":%d`, id)
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			return err
		}
		for _, line := range bytes.Split(b, []byte("\n")) {
			if !bytes.Contains(line, []byte(want)) {
				continue
			}
			var r struct {
				Error *struct {
					Code    int    `json:"code"`
					Message string `json:"message"`
				} `json:"error"`
			}
			_ = json.Unmarshal(line, &r)
			if r.Error != nil {
				return fmt.Errorf("centrifugo error %d: %s", r.Error.Code, r.Error.Message)
			}
			return nil
		}
	}
}

func (p *centrifugoProto) open(ctx context.Context, i int, channel string) (*websocket.Conn, error) {
	tok, err := p.token(i)
	if err != nil {
		return nil, err
	}
	d := sourceDialer(p.host, i, p.cfg.SrcIPs)
	hc := &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
	c, resp, err := websocket.Dial(ctx, p.cfg.URL, &websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("handshake: HTTP %d", resp.StatusCode)
		}
		return nil, err
	}
	c.SetReadLimit(1 << 20)
	msg, _ := json.Marshal(map[string]any{"id": 1, "connect": map[string]any{"token": tok, "name": "unhidra-bench"}})
	if err := c.Write(ctx, websocket.MessageText, msg); err != nil {
		c.CloseNow()
		return nil, err
	}
	if err := centrifugoReply(ctx, c, 1); err != nil {
		c.CloseNow()
		return nil, fmt.Errorf("connect: %w", err)
	}
	msg, _ = json.Marshal(map[string]any{"id": 2, "subscribe": map[string]any{"channel": channel}})
	if err := c.Write(ctx, websocket.MessageText, msg); err != nil {
		c.CloseNow()
		return nil, err
	}
	if err := centrifugoReply(ctx, c, 2); err != nil {
		c.CloseNow()
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	// Centrifugo pings with an empty JSON object and expects one back; the
	// bench's read loop answers them.
	return c, nil
}

func (p *centrifugoProto) publish(ctx context.Context, _ *websocket.Conn, channel string, payload []byte, _ int64) error {
	body := make([]byte, 0, len(payload)+64)
	body = append(body, `{"channel":`...)
	body = strconv.AppendQuote(body, channel)
	body = append(body, `,"data":`...)
	body = append(body, payload...)
	body = append(body, '}')
	req, err := http.NewRequestWithContext(ctx, "POST", strings.TrimRight(p.cfg.CentrifugoAPI, "/")+"/publish", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-API-Key", p.cfg.CentrifugoAPIKey)
	resp, err := p.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != 200 || bytes.Contains(b, []byte(`"error"`)) {
		return fmt.Errorf("centrifugo publish: HTTP %d %s", resp.StatusCode, bytes.TrimSpace(b))
	}
	return nil
}
