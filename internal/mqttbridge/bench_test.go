package mqttbridge_test

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	pahov3 "github.com/eclipse/paho.mqtt.golang"
)

// BenchmarkPublishTelemetry measures device telemetry through the embedded
// broker end to end: MQTT in, parsed, stored in SQLite (fsynced before the ack,
// group commit) and posted to the device channel. QoS 1 counts a message
// when its PUBACK arrives (after both commits); QoS 0 when it is stored.
// 16 devices publish in parallel (UNHIDRA_BENCH_DEVICES to change it;
// UNHIDRA_BENCH_RATE to pace each device).
func BenchmarkPublishTelemetry(b *testing.B) {
	for _, qos := range []byte{0, 1} {
		b.Run(fmt.Sprintf("QoS%d", qos), func(b *testing.B) {
			devices := 16
			if v, err := strconv.Atoi(os.Getenv("UNHIDRA_BENCH_DEVICES")); err == nil && v > 0 {
				devices = v
			}
			// UNHIDRA_BENCH_RATE paces each device (messages per second),
			// as real devices are; unset, they publish as fast as they can.
			var every time.Duration
			if v, err := strconv.ParseFloat(os.Getenv("UNHIDRA_BENCH_RATE"), 64); err == nil && v > 0 {
				every = time.Duration(float64(time.Second) / v)
			}
			h := newHarness(b, harnessOpts{devices: devices})
			clients := make([]pahov3.Client, devices)
			for i := range clients {
				id := fmt.Sprintf("dev-%d", i)
				opts := pahov3.NewClientOptions().AddBroker("tcp://" + h.srv.Addr()).SetClientID(id).
					SetUsername(id).SetPassword(h.keys[id]).SetAutoReconnect(false).SetMaxResumePubInFlight(1000).SetConnectTimeout(30 * time.Second)
				c := pahov3.NewClient(opts)
				if tok := c.Connect(); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
					b.Fatal(tok.Error())
				}
				defer c.Disconnect(50)
				clients[i] = c
			}
			before := h.count(`SELECT COUNT(*) FROM telemetry`)
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			var latMu sync.Mutex
			var lats []time.Duration
			for i, c := range clients {
				n := b.N / devices
				if i < b.N%devices {
					n++
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					topic := fmt.Sprintf("unhidra/devices/dev-%d/telemetry", i)
					var last pahov3.Token
					lat := make([]time.Duration, 0, n)
					next := time.Now()
					if every > 0 {
						next = next.Add(time.Duration(i) * every / time.Duration(devices)) // spread the fleet
					}
					for j := 0; j < n; j++ {
						if every > 0 {
							time.Sleep(time.Until(next))
							next = next.Add(every)
						}
						t0 := time.Now()
						last = c.Publish(topic, qos, false, fmt.Sprintf(`{"data":{"v":%d},"seq":%d}`, j, j))
						if qos == 1 {
							// A device waits for its PUBACK before the next
							// reading: the latency is the PUBACK's.
							last.Wait()
							lat = append(lat, time.Since(t0))
						}
					}
					if last != nil {
						last.Wait()
					}
					latMu.Lock()
					lats = append(lats, lat...)
					latMu.Unlock()
				}()
			}
			wg.Wait()
			for h.count(`SELECT COUNT(*) FROM telemetry`) < before+b.N {
				time.Sleep(time.Millisecond)
			}
			el := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
			if len(lats) > 0 {
				b.ReportMetric(float64(pct(lats, 50).Microseconds())/1000, "p50_ms")
				b.ReportMetric(float64(pct(lats, 99).Microseconds())/1000, "p99_ms")
			}
		})
	}
}
