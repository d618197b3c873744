package e2etest

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.golang/paho"
)

// MQTTClient is a paho.golang v5 client that keeps what it receives.
type MQTTClient struct {
	C    *paho.Client
	Msgs chan *paho.Publish // the messages received (up to 4096 waiting; more are dropped)
	Gone chan struct{}      // closed when the server disconnects or the connection fails
	once sync.Once
}

// DialMQTT connects a v5 client; on refusal it returns the CONNACK reason.
func DialMQTT(t testing.TB, addr, clientID, user, pass string) (*MQTTClient, byte, error) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, 0, err
	}
	m := &MQTTClient{Msgs: make(chan *paho.Publish, 4096), Gone: make(chan struct{})}
	end := func() { m.once.Do(func() { close(m.Gone) }) }
	m.C = paho.NewClient(paho.ClientConfig{
		ClientID: clientID,
		Conn:     conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			select {
			case m.Msgs <- pr.Packet:
			default:
			}
			return true, nil
		}},
		OnServerDisconnect: func(*paho.Disconnect) { end() },
		OnClientError:      func(error) { end() },
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ca, err := m.C.Connect(ctx, &paho.Connect{ClientID: clientID, KeepAlive: 30, CleanStart: true,
		Username: user, UsernameFlag: user != "", Password: []byte(pass), PasswordFlag: pass != ""})
	if ca == nil {
		conn.Close()
		return nil, 0, fmt.Errorf("connect: %v", err)
	}
	if ca.ReasonCode != 0 {
		conn.Close()
		return nil, ca.ReasonCode, fmt.Errorf("CONNACK 0x%02x", ca.ReasonCode)
	}
	t.Cleanup(func() { _ = m.C.Disconnect(&paho.Disconnect{}) })
	return m, 0, nil
}

// MustMQTT is DialMQTT failing the test on a refusal.
func MustMQTT(t testing.TB, addr, clientID, user, pass string) *MQTTClient {
	t.Helper()
	m, code, err := DialMQTT(t, addr, clientID, user, pass)
	if m == nil {
		t.Fatalf("MQTT connect as %s: 0x%02x %v", user, code, err)
	}
	return m
}

// Subscribe returns the SUBACK reason code.
func (m *MQTTClient) Subscribe(t testing.TB, filter string, qos byte) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sa, err := m.C.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: qos}}})
	if sa == nil || len(sa.Reasons) != 1 {
		t.Fatalf("subscribe %s: %v", filter, err)
	}
	return sa.Reasons[0]
}

// Publish sends at QoS 1 and returns the PUBACK reason.
func (m *MQTTClient) Publish(t testing.TB, topic string, payload []byte) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pr, err := m.C.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: payload})
	if pr == nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
	return pr.ReasonCode
}

// Next returns the next message within d, or fails.
func (m *MQTTClient) Next(t testing.TB, d time.Duration) *paho.Publish {
	t.Helper()
	select {
	case p := <-m.Msgs:
		return p
	case <-time.After(d):
		t.Fatalf("no MQTT message within %s", d)
		return nil
	}
}
