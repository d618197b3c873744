// Package bot is the example end-to-end encrypted bot: it signs in, puts
// its device's keys in the key directory, joins one e2ee channel and
// answers every text message it can decrypt with an encrypted "echo: …".
// The server relays and stores only ciphertext throughout.
package bot

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/unhidra/unhidra/client"
	"github.com/unhidra/unhidra/client/e2ee"
	"github.com/unhidra/unhidra/client/e2ee/channel"
	"github.com/unhidra/unhidra/wire"
)

// Config is the bot's configuration.
type Config struct {
	GatewayURL string // ws://localhost:9000/ws
	AuthURL    string // http://localhost:9200
	User       string
	Password   string
	Channel    string // the e2ee channel's id
	DeviceID   string // default "bot"
	// StateFile, when set, keeps the device's account (its identity) across
	// restarts, sealed with Passphrase. Without it each run is a new device.
	StateFile  string
	Passphrase string
	Logger     *slog.Logger
	// OnReply, when set, is called after each answer is sent (tests).
	OnReply func(text string)
}

type tokens struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	ExpiresIn    int    `json:"expires_in"`
}

// Run runs the bot until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	if cfg.DeviceID == "" {
		cfg.DeviceID = "bot"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	log := cfg.Logger
	started := time.Now()
	tok, err := authCall(ctx, cfg.AuthURL+"/login", map[string]string{"username": cfg.User, "password": cfg.Password})
	if err != nil {
		return fmt.Errorf("sign in: %w", err)
	}
	acct, err := loadAccount(cfg)
	if err != nil {
		return err
	}
	inbox := make(chan wire.Message, 256)
	c, err := client.New(client.Options{URL: cfg.GatewayURL, Token: tok.AccessToken, Logger: log,
		OnMessage: func(f wire.MessageFrame) {
			if f.Channel == cfg.Channel && f.Message.E2EE != nil {
				select {
				case inbox <- f.Message:
				default:
					log.Warn("bot: inbox full; message skipped", "offset", f.Offset)
				}
			}
		}})
	if err != nil {
		return err
	}
	dev := channel.New(c, acct)
	if err := dev.PublishKeys(ctx, 20); err != nil {
		return fmt.Errorf("publish keys: %w", err)
	}
	if err := saveAccount(cfg, acct); err != nil {
		return err
	}
	// Joining is idempotent: a member already, or an invitee accepting.
	if err := c.API(ctx, "POST", "/channels/"+url.PathEscape(cfg.Channel)+"/join", nil, nil); err != nil {
		var se *client.ServerError
		if !errors.As(err, &se) || se.Code != "conflict" {
			return fmt.Errorf("join %s: %w", cfg.Channel, err)
		}
	}
	runErr := make(chan error, 1)
	go func() { runErr <- c.Run(ctx) }()
	if err := c.WaitConnected(ctx); err != nil {
		return err
	}
	if err := c.Subscribe(ctx, cfg.Channel); err != nil {
		return err
	}
	// What was posted between the keys' publication and the subscription
	// (a room key shared with the new device, a first question) is in the
	// history only: catch up on it, then go on live from there.
	var page struct {
		Messages []wire.Message `json:"messages"`
	}
	if err := c.API(ctx, "GET", "/channels/"+url.PathEscape(cfg.Channel)+"/messages?limit=200", nil, &page); err != nil {
		return fmt.Errorf("history of %s: %w", cfg.Channel, err)
	}
	slices.SortFunc(page.Messages, func(a, b wire.Message) int { return cmp.Compare(a.Offset, b.Offset) })
	var done int64 // the highest offset handled
	for _, m := range page.Messages {
		if m.E2EE != nil {
			answer(ctx, cfg, dev, m, !m.CreatedAt.Before(started))
		}
		done = max(done, m.Offset)
	}
	log.Info("bot: listening", "channel", cfg.Channel, "device", cfg.DeviceID, "fingerprint", acct.Fingerprint())
	refresh := time.NewTimer(time.Duration(max(tok.ExpiresIn/2, 30)) * time.Second)
	defer refresh.Stop()
	for {
		select {
		case <-ctx.Done():
			return <-runErr
		case err := <-runErr:
			return err
		case <-refresh.C:
			if tok, err = authCall(ctx, cfg.AuthURL+"/token/refresh", map[string]string{"refresh_token": tok.RefreshToken}); err != nil {
				return fmt.Errorf("refresh: %w", err)
			}
			if _, err := c.Refresh(ctx, tok.AccessToken); err != nil {
				log.Warn("bot: token refresh not taken", "err", err)
			}
			refresh.Reset(time.Duration(max(tok.ExpiresIn/2, 30)) * time.Second)
		case m := <-inbox:
			if m.Offset > done {
				done = m.Offset
				answer(ctx, cfg, dev, m, true)
			}
		}
	}
}

// answer opens one message (learning the room keys it carries) and, when
// reply is set, answers a text with its echo.
func answer(ctx context.Context, cfg Config, dev *channel.Device, m wire.Message, reply bool) {
	pt, user, _, err := dev.Open(cfg.Channel, m)
	switch {
	case errors.Is(err, channel.ErrNoContent):
		return
	case err != nil:
		cfg.Logger.Warn("bot: cannot open a message", "offset", m.Offset, "err", err)
		return
	}
	var body struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if !reply || json.Unmarshal(pt, &body) != nil || body.Type != "text" || strings.EqualFold(user, cfg.User) {
		return
	}
	text := "echo: " + body.Text
	if _, err := dev.Send(ctx, cfg.Channel, map[string]string{"type": "text", "text": text}); err != nil {
		cfg.Logger.Warn("bot: answer not sent", "err", err)
		return
	}
	if cfg.OnReply != nil {
		cfg.OnReply(text)
	}
}

func loadAccount(cfg Config) (*e2ee.Account, error) {
	if cfg.StateFile != "" {
		sealed, err := os.ReadFile(cfg.StateFile)
		switch {
		case err == nil:
			st, err := e2ee.OpenState([]byte(cfg.Passphrase), sealed)
			if err != nil {
				return nil, fmt.Errorf("open %s: %w", cfg.StateFile, err)
			}
			return st.Account, nil
		case !errors.Is(err, os.ErrNotExist):
			return nil, err
		}
	}
	return e2ee.NewAccount(cfg.User, cfg.DeviceID)
}

func saveAccount(cfg Config, acct *e2ee.Account) error {
	if cfg.StateFile == "" {
		return nil
	}
	sealed, err := e2ee.SealState([]byte(cfg.Passphrase), &e2ee.State{Account: acct}, e2ee.DefaultKDF)
	if err != nil {
		return err
	}
	return os.WriteFile(cfg.StateFile, sealed, 0o600)
}

// authCall posts JSON to the auth API and reads a token pair.
func authCall(ctx context.Context, u string, in any) (tokens, error) {
	b, _ := json.Marshal(in)
	req, err := http.NewRequestWithContext(ctx, "POST", u, bytes.NewReader(b))
	if err != nil {
		return tokens{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return tokens{}, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return tokens{}, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	var t tokens
	if err := json.Unmarshal(body, &t); err != nil || t.AccessToken == "" {
		return tokens{}, fmt.Errorf("no token in the answer")
	}
	return t, nil
}
