package mqttbridge_test

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// needTool skips when a system tool is missing, except under make check
// (UNHIDRA_CHECK=1), where it fails.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("UNHIDRA_CHECK") == "1" {
			t.Fatalf("%s is required (apt-get install mosquitto-clients): %v", name, err)
		}
		t.Skipf("%s not installed (apt-get install mosquitto-clients); set UNHIDRA_CHECK=1 to make this a failure", name)
	}
	return p
}

// TestMosquittoClients covers MQ-1 with Mosquitto's own clients, for MQTT 5
// and 3.1.1: QoS 0 and 1 publishes from a device, a retained status, a Will
// after a kill -9, and a refused bad key.
func TestMosquittoClients(t *testing.T) {
	pub := needTool(t, "mosquitto_pub")
	sub := needTool(t, "mosquitto_sub")
	h := newHarness(t, harnessOpts{})
	host, port, _ := net.SplitHostPort(h.srv.Addr())
	for _, v := range []string{"mqttv5", "mqttv311"} {
		t.Run(v, func(t *testing.T) {
			base := []string{"-h", host, "-p", port, "-V", v}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			// The owner listens to the device's subtree.
			var out bytes.Buffer
			watch := exec.CommandContext(ctx, sub, append(base, "-i", "owner-"+v, "-u", "alice", "-P", "tok-alice", "-q", "1", "-v", "-t", "unhidra/devices/d1/#", "-R", "-C", "4", "-W", "25")...)
			watch.Stdout = &out
			watch.Stderr = &out
			if err := watch.Start(); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 5*time.Second, "subscriber connected", func() bool { return hasSession(h, "owner-"+v) })
			time.Sleep(300 * time.Millisecond)

			rows := h.count(`SELECT COUNT(*) FROM telemetry`)
			run := func(args ...string) {
				t.Helper()
				cmd := exec.CommandContext(ctx, pub, append(append([]string{}, base...), args...)...)
				if b, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("mosquitto_pub %v: %v\n%s", args[len(args)-1], err, b)
				}
			}
			dev := []string{"-u", "d1", "-P", h.keys["d1"]}
			run(append(dev, "-q", "1", "-t", "unhidra/devices/d1/telemetry", "-m", `{"temp":20.5}`)...)
			if got := h.count(`SELECT COUNT(*) FROM telemetry`); got != rows+1 {
				t.Fatalf("QoS 1 telemetry: %d rows after mosquitto_pub returned, want %d", got, rows+1)
			}
			run(append(dev, "-q", "0", "-t", "unhidra/devices/d1/heartbeat", "-m", `{"free_heap":1234}`)...)
			run(append(dev, "-q", "1", "-r", "-t", "unhidra/devices/d1/status", "-m", `{"online":true,"fw":"`+v+`"}`)...)

			// A device that dies (kill -9) leaves its Will.
			willSub := exec.CommandContext(ctx, sub, append(base, "-i", "dying-"+v, "-u", "d1", "-P", h.keys["d1"], "-k", "30",
				"--will-topic", "unhidra/devices/d1/status", "--will-payload", `{"online":false}`, "--will-qos", "1", "-t", "unhidra/devices/d1/commands")...)
			if err := willSub.Start(); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 5*time.Second, "dying device connected", func() bool { return hasSession(h, "dying-"+v) })
			_ = willSub.Process.Signal(syscall.SIGKILL)
			_ = willSub.Wait()

			if err := watch.Wait(); err != nil {
				t.Fatalf("mosquitto_sub: %v\n%s", err, out.String())
			}
			got := out.String()
			for _, want := range []string{
				`unhidra/devices/d1/telemetry {"temp":20.5}`,
				`unhidra/devices/d1/heartbeat {"free_heap":1234}`,
				`unhidra/devices/d1/status {"online":true,"fw":"` + v + `"}`,
				`unhidra/devices/d1/status {"online":false}`,
			} {
				if !strings.Contains(got, want) {
					t.Errorf("subscriber output lacks %q:\n%s", want, got)
				}
			}

			// A late subscriber gets the retained status (the Will was not
			// retained, so the device's own retained status stays).
			late := exec.CommandContext(ctx, sub, append(base, "-u", "alice", "-P", "tok-alice", "-t", "unhidra/devices/d1/status", "-C", "1", "-W", "10")...)
			b, err := late.CombinedOutput()
			if err != nil || strings.TrimSpace(string(b)) != `{"online":true,"fw":"`+v+`"}` {
				t.Fatalf("retained status: %q %v", b, err)
			}

			// A bad key is refused.
			bad := exec.CommandContext(ctx, pub, append(base, "-u", "d1", "-P", "unhidra_dk_nope", "-t", "unhidra/devices/d1/telemetry", "-m", "{}")...)
			b, err = bad.CombinedOutput()
			if err == nil {
				t.Fatalf("mosquitto_pub with a bad key succeeded: %s", b)
			}
			if s := strings.ToLower(string(b)); !strings.Contains(s, "bad user name or password") && !strings.Contains(s, "not authori") {
				t.Fatalf("bad key refusal says %q", b)
			}
		})
	}
}

func hasSession(h *harness, clientID string) bool {
	for _, s := range h.srv.Sessions() {
		if s.ClientID == clientID {
			return true
		}
	}
	return false
}
