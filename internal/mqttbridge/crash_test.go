package mqttbridge_test

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	pahov3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/chat"
	"github.com/unhidra/unhidra/internal/device"
	"github.com/unhidra/unhidra/internal/inmem"
	"github.com/unhidra/unhidra/internal/mqttbridge"
	"github.com/unhidra/unhidra/internal/sqlite"
	"github.com/unhidra/unhidra/wire"
)

// TestCrashChild is the server process of the crash tests: it runs only
// when started by them (UNHIDRA_MQTT_CHILD_DB set), serves MQTT on the given
// port over the given database, and waits to be killed.
func TestCrashChild(t *testing.T) {
	path := os.Getenv("UNHIDRA_MQTT_CHILD_DB")
	if path == "" {
		t.Skip("helper process of the crash tests")
	}
	port, _ := strconv.Atoi(os.Getenv("UNHIDRA_MQTT_CHILD_PORT"))
	ctx := context.Background()
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	b := inmem.NewBroker()
	users := dbUsers{db}
	registry, err := device.NewService(device.Config{Secret: testSecret}, device.Deps{Store: sqlite.NewDeviceStore(db), Users: users, Publisher: b})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := sqlite.NewChatStore(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	chatSvc := chat.NewService(cs, b, chat.Options{Users: users})
	// Wired as `unhidra serve` wires it: point and message in one commit.
	fleet := device.NewFleet(device.FleetOptions{Store: sqlite.NewFleetStore(db), Broker: b, Channels: chatSvc, Owners: registry,
		EnsureChannel: func(ctx context.Context, id, owner string) error {
			_, err := chatSvc.EnsureDeviceChannel(ctx, id, owner)
			return err
		}})
	_ = fleet.ResetOnline(ctx)
	srv, err := mqttbridge.New(mqttbridge.Config{Port: port}, mqttbridge.Deps{Fleet: fleet, DeviceKeys: registry, Chat: chatSvc, Broker: b, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("READY", srv.Addr())
	_ = srv.Run(ctx) // until killed
}

// TestQoS1SurvivesKill9 covers MQ-4 briefly in make check: QoS 1 telemetry
// while the server is killed with SIGKILL and restarted; every PUBACKed
// message is in the database afterwards. TestSoakQoS1SurvivesKill9 is the
// full run (10,000 messages or more, a kill every 5 s, at least 10 kills).
func TestQoS1SurvivesKill9(t *testing.T) { crashStorm(t, 600, 1500*time.Millisecond, 2) }

func TestSoakQoS1SurvivesKill9(t *testing.T) {
	if os.Getenv("UNHIDRA_SOAK") == "" {
		t.Skip("set UNHIDRA_SOAK=1 (make soak) for 10,000 messages with a kill every 5 s")
	}
	crashStorm(t, 10000, 5*time.Second, 10)
}

// crashStorm publishes at least total QoS 1 messages, and on until the
// server was killed minKills times, with a SIGKILL every interval.
func crashStorm(t *testing.T, total int, every time.Duration, minKills int32) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "crash.db")
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	now := sqlite.Time(time.Now())
	if _, err := db.Writer().ExecContext(ctx, `INSERT INTO users (username, display_name, password_hash, created_at, updated_at) VALUES ('alice', 'alice', 'x', ?, ?)`, now, now); err != nil {
		t.Fatal(err)
	}
	registry, _ := device.NewService(device.Config{Secret: testSecret}, device.Deps{Store: sqlite.NewDeviceStore(db), Users: dbUsers{db}})
	_, key, err := registry.Register(ctx, unhidra.Identity{Principal: wire.Principal{Kind: wire.KindUser, ID: "alice"}, SessionID: "s"}, device.RegisterInput{Name: "crash", ID: "crash"})
	if err != nil {
		t.Fatal(err)
	}
	cs, _ := sqlite.NewChatStore(ctx, db)
	if _, err := chat.NewService(cs, inmem.NewBroker(), chat.Options{Users: dbUsers{db}}).EnsureDeviceChannel(ctx, "crash", "alice"); err != nil {
		t.Fatal(err)
	}
	db.Close()

	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	addr := fmt.Sprintf("127.0.0.1:%d", port)

	var mu sync.Mutex
	var child *exec.Cmd
	start := func() {
		cmd := exec.Command(os.Args[0], "-test.run", "^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), "UNHIDRA_MQTT_CHILD_DB="+path, "UNHIDRA_MQTT_CHILD_PORT="+strconv.Itoa(port))
		out, _ := cmd.StdoutPipe()
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "READY") {
				break
			}
		}
		go func() {
			for sc.Scan() {
			}
		}()
		mu.Lock()
		child = cmd
		mu.Unlock()
	}
	kill := func() {
		mu.Lock()
		defer mu.Unlock()
		if child != nil {
			_ = child.Process.Signal(syscall.SIGKILL)
			_ = child.Wait()
			child = nil
		}
	}
	start()
	defer kill()

	stop := make(chan struct{})
	var kills atomic.Int32
	var kw sync.WaitGroup
	kw.Add(1)
	go func() {
		defer kw.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(every):
			}
			kill()
			kills.Add(1)
			start()
		}
	}()

	acked := 0
	retries := 0
	var c pahov3.Client
	deadline := time.Now().Add(10 * time.Minute)
	// At least total messages, and on past minKills kills: on a fast
	// machine total messages can be PUBACKed before the first kill.
	for acked < total || kills.Load() < minKills {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d messages acked in 10 minutes", acked, total)
		}
		if c == nil || !c.IsConnectionOpen() {
			opts := pahov3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("crash").SetUsername("crash").SetPassword(key).
				SetAutoReconnect(false).SetConnectTimeout(2 * time.Second).SetCleanSession(true)
			c = pahov3.NewClient(opts)
			if tok := c.Connect(); !tok.WaitTimeout(3*time.Second) || tok.Error() != nil {
				c = nil
				time.Sleep(50 * time.Millisecond)
				continue
			}
		}
		tok := c.Publish("unhidra/devices/crash/telemetry", 1, false, fmt.Sprintf(`{"data":{"n":%d},"seq":%d}`, acked, acked))
		if !tok.WaitTimeout(3*time.Second) || tok.Error() != nil {
			retries++
			c.Disconnect(0)
			c = nil
			continue
		}
		acked++ // PUBACKed: it must survive everything from here on
	}
	close(stop)
	kw.Wait()
	if c != nil {
		c.Disconnect(50)
	}
	kill()

	db, err = sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var stored, distinct, inChannel int
	if err := db.Reader().QueryRow(`SELECT COUNT(*), COUNT(DISTINCT seq) FROM telemetry WHERE device_id = 'crash' AND seq < ?`, acked).Scan(&stored, &distinct); err != nil {
		t.Fatal(err)
	}
	// The point and its device-channel message are one transaction: every
	// stored point has its message.
	if err := db.Reader().QueryRow(`SELECT COUNT(DISTINCT json_extract(CAST(data AS TEXT), '$.seq')) FROM messages
		WHERE channel_id = 'device:crash' AND json_extract(CAST(data AS TEXT), '$.type') = 'telemetry' AND json_extract(CAST(data AS TEXT), '$.seq') < ?`, acked).Scan(&inChannel); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d QoS 1 messages PUBACKed across %d kill -9 restarts (%d resends); %d rows, %d distinct, %d in the device channel", acked, kills.Load(), retries, stored, distinct, inChannel)
	if distinct != acked {
		t.Fatalf("lost %d PUBACKed messages", acked-distinct)
	}
	if inChannel != acked {
		t.Fatalf("%d PUBACKed points have no device-channel message", acked-inChannel)
	}
	if kills.Load() == 0 {
		t.Fatal("the server was never killed")
	}
}
