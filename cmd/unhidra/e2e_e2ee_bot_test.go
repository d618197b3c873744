package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/unhidra/unhidra/client"
	"github.com/unhidra/unhidra/client/e2ee"
	"github.com/unhidra/unhidra/client/e2ee/channel"
	"github.com/unhidra/unhidra/examples/e2ee-bot/bot"
	"github.com/unhidra/unhidra/internal/e2etest"
	"github.com/unhidra/unhidra/wire"
)

// TestE2EEBotAnswers runs the example bot (examples/e2ee-bot) against the
// real server: alice, a device of her own run by the SDK's channel
// package, asks in an e2ee channel as soon as the bot's keys are in the
// directory (before the bot has subscribed: it catches up from history);
// the bot decrypts, answers encrypted, and alice decrypts the answer.
// Neither text is on the server's disk.
func TestE2EEBotAnswers(t *testing.T) {
	s := startStack(t, nil)
	aliceTok, _ := s.user(t, "alice")
	_, botPW := s.user(t, "echo")
	r := s.api(t, "POST", "/api/v1/channels", aliceTok, map[string]any{"name": "bot-room", "kind": "private", "e2ee": true, "members": []string{"echo"}})
	e2etest.WantStatus(t, r, 201, "create the e2ee channel")
	var created struct{ ID string }
	r.JSON(t, &created)
	room := created.ID

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	replies := make(chan string, 4)
	botDone := make(chan error, 1)
	go func() {
		botDone <- bot.Run(ctx, bot.Config{GatewayURL: s.wsURL, AuthURL: s.url, User: "echo", Password: botPW, Channel: room,
			StateFile: filepath.Join(t.TempDir(), "bot.state"), Passphrase: "a passphrase for the test",
			OnReply: func(text string) { replies <- text }})
	}()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var dir struct{ Devices []json.RawMessage }
		s.api(t, "GET", "/api/v1/keys/users/echo", aliceTok, nil).JSON(t, &dir)
		if len(dir.Devices) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the bot never published its keys")
		}
		time.Sleep(50 * time.Millisecond)
	}

	acct, err := e2ee.NewAccount("alice", "phone")
	if err != nil {
		t.Fatal(err)
	}
	msgs := make(chan wire.Message, 16)
	c, err := client.New(client.Options{URL: s.wsURL, Token: aliceTok, OnMessage: func(f wire.MessageFrame) { msgs <- f.Message }})
	if err != nil {
		t.Fatal(err)
	}
	go c.Run(ctx)
	dev := channel.New(c, acct)
	if err := dev.PublishKeys(ctx, 10); err != nil {
		t.Fatal(err)
	}
	if err := c.Subscribe(ctx, room); err != nil {
		t.Fatal(err)
	}
	question := "what is the secret word 61c2?"
	if _, err := dev.Send(ctx, room, map[string]string{"type": "text", "text": question}); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-replies:
		if got != "echo: "+question {
			t.Fatalf("the bot answered %q", got)
		}
	case err := <-botDone:
		t.Fatalf("the bot stopped: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("the bot did not answer")
	}
	// Alice decrypts the answer from the live stream.
	timeout := time.After(15 * time.Second)
	for answered := false; !answered; {
		select {
		case m := <-msgs:
			pt, user, _, err := dev.Open(room, m)
			if errors.Is(err, channel.ErrNoContent) {
				continue
			}
			if err != nil {
				t.Fatalf("alice opens %d: %v", m.Offset, err)
			}
			var body struct{ Text string }
			json.Unmarshal(pt, &body)
			answered = user == "echo" && body.Text == "echo: "+question
		case <-timeout:
			t.Fatal("alice never read the bot's answer")
		}
	}
	filepath.WalkDir(s.dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if b, _ := os.ReadFile(path); bytes.Contains(b, []byte("secret word 61c2")) {
				t.Errorf("the plaintext is in %s", filepath.Base(path))
			}
		}
		return nil
	})
}
