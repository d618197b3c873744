// Command e2ee-bot is an example bot in an end-to-end encrypted channel:
// it answers every text message it can decrypt with "echo: <text>",
// encrypted for the channel's member devices.
//
//	BOT_USER=echo BOT_PASSWORD=… BOT_CHANNEL=<channel id> \
//	BOT_STATE=bot.state BOT_PASSPHRASE=… go run ./examples/e2ee-bot
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/unhidra/unhidra/examples/e2ee-bot/bot"
)

func main() {
	env := func(k, def string) string {
		if v := os.Getenv(k); v != "" {
			return v
		}
		return def
	}
	cfg := bot.Config{
		GatewayURL: env("GATEWAY_URL", "ws://localhost:9000/ws"),
		AuthURL:    env("AUTH_URL", "http://localhost:9200"),
		User:       os.Getenv("BOT_USER"),
		Password:   os.Getenv("BOT_PASSWORD"),
		Channel:    os.Getenv("BOT_CHANNEL"),
		DeviceID:   env("BOT_DEVICE", "bot"),
		StateFile:  os.Getenv("BOT_STATE"),
		Passphrase: os.Getenv("BOT_PASSPHRASE"),
		Logger:     slog.New(slog.NewTextHandler(os.Stderr, nil)),
	}
	if cfg.User == "" || cfg.Password == "" || cfg.Channel == "" || (cfg.StateFile != "" && cfg.Passphrase == "") {
		fmt.Fprintln(os.Stderr, "e2ee-bot: set BOT_USER, BOT_PASSWORD and BOT_CHANNEL (and BOT_PASSPHRASE with BOT_STATE)")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := bot.Run(ctx, cfg); err != nil && ctx.Err() == nil {
		fmt.Fprintln(os.Stderr, "e2ee-bot:", err)
		os.Exit(1)
	}
}
