package mqttbridge

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/unhidra/unhidra/internal/broker"
	"github.com/unhidra/unhidra/wire"
)

// channelSubscriber names one MQTT client's subscription to one of a
// channel's topics (sub: messages or events), so that unsubscribing from
// one keeps the broker subscription the other needs.
func channelSubscriber(clientID, sub string) string { return clientID + "\x00" + sub }

// acquireChannel makes sure this node's bridge follows channel's broker
// topic while at least one MQTT client subscribes to one of its MQTT topics
// (subscriber: channelSubscriber): one broker subscription per channel per
// node, fanned out by mochi.
func (s *Server) acquireChannel(channel, subscriber string) {
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	if s.closed.Load() {
		return
	}
	t := s.chanSubs[channel]
	if t == nil {
		unsub, err := s.deps.Broker.Subscribe(broker.ChannelTopic(channel), func(ev *broker.Event) {
			s.enqueue(func() { s.relayChannel(channel, ev) })
		})
		if err != nil {
			s.log.Warn("mqtt channel subscribe", "channel", channel, "err", err)
			return
		}
		t = &topicSub{clients: map[string]int{}, unsub: unsub}
		s.chanSubs[channel] = t
	}
	t.clients[subscriber] = 1
}

func (s *Server) releaseChannel(channel, subscriber string) {
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	t := s.chanSubs[channel]
	if t == nil {
		return
	}
	delete(t.clients, subscriber)
	if len(t.clients) == 0 {
		t.unsub()
		delete(s.chanSubs, channel)
	}
}

// relayChannel turns a channel event from the broker into Message JSON on
// unhidra/channels/C/messages, or a key_change into its WebSocket frame on
// unhidra/channels/C/events, encoded once per node. Typing and presence
// are not relayed.
func (s *Server) relayChannel(channel string, ev *broker.Event) {
	switch ev.Kind {
	case broker.MemberRemoved:
		s.forgetReadable(channel, ev.User)
		return
	case broker.ChannelDeleted:
		s.forgetReadable(channel, "")
		return
	case broker.KeyChange:
		s.relayEvent(channel, ev)
		return
	case broker.Message, broker.MessageUpdated, broker.MessageDeleted:
	default:
		return
	}
	if ev.Message == nil {
		return
	}
	payload, err := json.Marshal(ev.Message)
	if err != nil {
		s.log.Error("mqtt channel relay: encode", "channel", channel, "err", err)
		return
	}
	if err := s.mq.Publish(ChannelTopic(channel), payload, false, 1); err != nil {
		s.log.Warn("mqtt channel relay", "channel", channel, "err", err)
	}
}

// relayEvent publishes ev's frame (the JSON WebSocket clients receive, e.g.
// {"type":"key_change","channel":…,"user":…,"device_id":…}) on channel's
// events topic, which only its readers may subscribe to.
func (s *Server) relayEvent(channel string, ev *broker.Event) {
	payload, err := json.Marshal(ev.Frame())
	if err != nil {
		s.log.Error("mqtt channel event relay: encode", "channel", channel, "kind", ev.Kind.String(), "err", err)
		return
	}
	if err := s.mq.Publish(EventsTopic(channel), payload, false, 1); err != nil {
		s.log.Warn("mqtt channel event relay", "channel", channel, "kind", ev.Kind.String(), "err", err)
	}
}

// forgetReadable drops the cached read permission for channel of user's
// sessions (every session when user is ""), so the next delivery asks the
// chat service again: a removed member stops receiving at once, not after
// PermissionTTL. It runs on the bridge goroutine, in order with the
// channel's messages, so nothing published after the removal is delivered
// on the stale answer.
func (s *Server) forgetReadable(channel, user string) {
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	for _, ss := range s.sessions {
		if ss.who.Principal.Kind != wire.KindUser || (user != "" && ss.who.Principal.ID != user) {
			continue
		}
		ss.mu.Lock()
		delete(ss.readable, channel)
		ss.mu.Unlock()
	}
}

// acquireDeviceCommands follows the device's command topic while it has a
// live MQTT session on this node.
func (s *Server) acquireDeviceCommands(deviceID string) {
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	if s.closed.Load() {
		return
	}
	t := s.devCmd[deviceID]
	if t == nil {
		unsub, err := s.deps.Broker.Subscribe(broker.DeviceCommandTopic(deviceID), func(ev *broker.Event) {
			s.enqueue(func() { s.deliverCommand(deviceID, ev) })
		})
		if err != nil {
			s.log.Warn("mqtt command subscribe", "device", deviceID, "err", err)
			return
		}
		t = &topicSub{clients: map[string]int{}, unsub: unsub}
		s.devCmd[deviceID] = t
	}
	t.clients[""]++
}

func (s *Server) releaseDeviceCommands(deviceID string) {
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	t := s.devCmd[deviceID]
	if t == nil {
		return
	}
	t.clients[""]--
	if t.clients[""] <= 0 {
		t.unsub()
		delete(s.devCmd, deviceID)
	}
}

// mqttCommand is the payload on unhidra/devices/D/commands.
type mqttCommand struct {
	CommandID string          `json:"command_id"`
	Name      string          `json:"name"`
	Params    json.RawMessage `json:"params,omitempty"`
}

// deviceListening reports whether a live MQTT client of the device
// subscribes to its commands topic on this node.
func (s *Server) deviceListening(deviceID string) bool {
	subs := s.mq.Topics.Subscribers(DeviceTopic(deviceID, subCommands))
	prefix := "d:" + deviceID + "/"
	for id := range subs.Subscriptions {
		if !strings.HasPrefix(id, prefix) {
			continue
		}
		if cl, ok := s.mq.Clients.Get(id); ok && !cl.Closed() {
			return true
		}
	}
	return false
}

// handCommand marks the command delivered and, when this call moved it
// (no other connection delivered it first), publishes it to the device.
func (s *Server) handCommand(deviceID string, c mqttCommand) {
	ctx, cancel := s.opCtx()
	defer cancel()
	moved, err := s.deps.Fleet.CommandDelivered(ctx, deviceID, c.CommandID)
	if err != nil || !moved {
		if err != nil {
			s.log.Warn("mqtt command delivery", "device", deviceID, "command", c.CommandID, "err", err)
		}
		return
	}
	payload, _ := json.Marshal(c)
	if err := s.mq.Publish(DeviceTopic(deviceID, subCommands), payload, false, 1); err != nil {
		s.log.Warn("mqtt command publish", "device", deviceID, "command", c.CommandID, "err", err)
	}
}

// deliverCommand hands a command offered on the broker to the device when
// it listens here; otherwise it stays pending for its next subscription.
func (s *Server) deliverCommand(deviceID string, ev *broker.Event) {
	if ev.Kind != broker.Command || ev.Command == nil || ev.Command.ID == "" {
		return
	}
	if !s.deviceListening(deviceID) {
		return
	}
	c := ev.Command
	s.handCommand(deviceID, mqttCommand{CommandID: c.ID, Name: c.Name, Params: c.Params})
}

// deliverPending hands every pending command to the device when it
// listens here.
func (s *Server) deliverPending(deviceID string) {
	if !s.deviceListening(deviceID) {
		return
	}
	ctx, cancel := s.opCtx()
	cmds, err := s.deps.Fleet.PendingCommands(ctx, deviceID)
	cancel()
	if err != nil {
		s.log.Warn("mqtt pending commands", "device", deviceID, "err", err)
		return
	}
	for _, c := range cmds {
		s.handCommand(deviceID, mqttCommand{CommandID: c.ID, Name: c.Name, Params: c.Params})
	}
}

// sweep forgets sessions whose CONNACK never went out (the client vanished
// between authentication and the CONNACK; mochi then calls no hook).
func (s *Server) sweep() {
	cutoff := s.now().Add(-time.Minute)
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	for cl, ss := range s.sessions {
		ss.mu.Lock()
		stale := !ss.established && ss.started.Before(cutoff) && cl.Closed()
		ss.mu.Unlock()
		if stale {
			s.dropSessionLocked(cl, ss)
		}
	}
}
