package load

// A simulated device over MQTT v5: status (retained, and as the will),
// telemetry at QoS 1, commands in and results out.

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/unhidra/unhidra/client"
	"github.com/unhidra/unhidra/wire"
)

// devsimMQTT runs one device over MQTT v5: status (retained, and as the
// will), telemetry at QoS 1, commands in and results out; it reconnects
// with the SDK's backoff.
func devsimMQTT(ctx context.Context, cfg DevsimConfig, d Device, sim *simDevice, offset time.Duration, cnt *devsimCounters, log *slog.Logger) {
	bo := &client.Backoff{Min: time.Second, Max: time.Minute}
	var interval atomic.Int64
	interval.Store(int64(cfg.Interval))
	prefix := "unhidra/devices/" + d.ID
	var once bool // the device has connected at least once
	if !sleepCtx(ctx, offset) {
		return
	}
	for ctx.Err() == nil {
		err := devsimMQTTSession(ctx, cfg, d, sim, prefix, &interval, cnt, &once)
		if ctx.Err() != nil {
			return
		}
		cnt.mqttFailures.Add(1)
		if err != nil && strings.Contains(err.Error(), "CONNACK") {
			log.Error("MQTT connection refused", "device", d.ID, "err", err)
		}
		wait := bo.Next()
		log.Debug("MQTT reconnecting", "device", d.ID, "err", err, "in", wait)
		if !sleepCtx(ctx, wait) {
			return
		}
	}
}

func devsimMQTTSession(ctx context.Context, cfg DevsimConfig, d Device, sim *simDevice, prefix string, interval *atomic.Int64, cnt *devsimCounters, once *bool) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var c *paho.Client
	onMsg := func(pr paho.PublishReceived) (bool, error) {
		if pr.Packet.Topic != prefix+"/commands" {
			return true, nil
		}
		var cmd wire.CommandFrame
		if json.Unmarshal(pr.Packet.Payload, &cmd) != nil || cmd.CommandID == "" {
			return true, nil
		}
		cnt.commands.Add(1)
		go func() {
			res, err := devsimCommand(cmd.Name, cmd.Params, interval)
			body := map[string]any{"command_id": cmd.CommandID, "status": "ok", "result": res}
			if err != nil {
				body["status"], body["result"] = "error", map[string]any{"error": err.Error()}
			}
			b, _ := json.Marshal(body)
			pctx, pcancel := context.WithTimeout(sctx, 10*time.Second)
			defer pcancel()
			if _, perr := pr.Client.Publish(pctx, &paho.Publish{Topic: prefix + "/commands/result", QoS: 1, Payload: b}); perr != nil {
				cnt.resultErrs.Add(1)
				return
			}
			cnt.answer(res, err)
		}()
		return true, nil
	}
	cctx, ccancel := context.WithTimeout(ctx, 15*time.Second)
	c, err := mqttConnectWill(cctx, cfg.MQTTURL, d, prefix+"/status", onMsg)
	ccancel()
	if err != nil {
		return err
	}
	defer c.Disconnect(&paho.Disconnect{})
	cnt.mqttConnects.Add(1)
	if !*once {
		*once = true
		cnt.mqttOnce.Add(1)
	}
	cnt.mqttConnected.Add(1)
	defer cnt.mqttConnected.Add(-1)
	if _, err := c.Publish(sctx, &paho.Publish{Topic: prefix + "/status", QoS: 1, Retain: true, Payload: []byte(`{"online":true}`)}); err != nil {
		return err
	}
	if _, err := c.Subscribe(sctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: prefix + "/commands", QoS: 1}}}); err != nil {
		return err
	}
	for {
		data, seq := sim.reading(time.Now())
		b, _ := json.Marshal(map[string]any{"data": data, "ts": time.Now().UTC().Format(time.RFC3339Nano), "seq": seq})
		cnt.generated.Add(1)
		pctx, pcancel := context.WithTimeout(sctx, 30*time.Second)
		_, err := c.Publish(pctx, &paho.Publish{Topic: prefix + "/telemetry", QoS: 1, Payload: b})
		pcancel()
		if err != nil {
			return err
		}
		cnt.mqttAcked.Add(1)
		select {
		case <-c.Done():
			return errors.New("connection lost")
		case <-sctx.Done():
			return nil
		case <-time.After(time.Duration(interval.Load())):
		}
	}
}

// mqttConnectWill connects a device with its status topic as the will.
func mqttConnectWill(ctx context.Context, brokerURL string, d Device, willTopic string, onMsg func(paho.PublishReceived) (bool, error)) (*paho.Client, error) {
	c, err := mqttConnectOpts(ctx, brokerURL, 0, 1, "devsim-"+d.ID, d.ID, d.Key, onMsg,
		&paho.WillMessage{Topic: willTopic, QoS: 1, Retain: true, Payload: []byte(`{"online":false}`)})
	return c, err
}
