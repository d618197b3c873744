package client_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"time"

	"github.com/unhidra/unhidra/client"
	"github.com/unhidra/unhidra/wire"
)

// A device that sends a temperature reading every minute and answers a
// "ping" command.
func Example() {
	c, err := client.New(client.Options{
		URL:    "wss://unhidra.example.com/ws",
		APIKey: os.Getenv("DEVICE_API_KEY"),
		CAFile: os.Getenv("CA_FILE"), // optional extra trusted CA
		Logger: slog.Default(),
		OnConnect: func(w wire.Welcome) {
			log.Printf("Device %s registered with server", w.Principal.ID)
		},
		OnCommand: func(ctx context.Context, cmd client.Command) (any, error) {
			if cmd.Name == "ping" {
				return map[string]bool{"pong": true}, nil
			}
			return nil, fmt.Errorf("unknown command %q", cmd.Name)
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for range time.Tick(time.Minute) {
			// Buffered while offline, sent in order after reconnecting.
			c.QueueTelemetry(client.Telemetry{Data: map[string]any{"temp_c": 21.5}, TS: time.Now()})
		}
	}()
	if err := c.Run(ctx); err != nil {
		log.Fatal(err) // e.g. the key was revoked
	}
}

// Reconnect delays grow from 1 s to 60 s; each delay is drawn uniformly
// below the cap ("full jitter").
func ExampleBackoff() {
	b := client.Backoff{Min: time.Second, Max: time.Minute, Rand: func() float64 { return 0.5 }}
	for i := 0; i < 8; i++ {
		fmt.Println(b.Cap(i), b.Next())
	}
	// Output:
	// 1s 500ms
	// 2s 1s
	// 4s 2s
	// 8s 4s
	// 16s 8s
	// 32s 16s
	// 1m0s 30s
	// 1m0s 30s
}
