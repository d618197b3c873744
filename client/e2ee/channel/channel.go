// Package channel runs one client device in Unhidra's end-to-end encrypted
// channels on top of the SDK: it publishes the device's keys to the key
// directory, shares its Megolm session with every member device of a
// channel over 1:1 Olm sessions (claiming their prekeys the first time),
// starts a new session whenever the set of member devices changed, and
// opens what arrives. The cryptography is package e2ee's; this package is
// the bookkeeping a chat client or a bot would otherwise write itself.
//
// Trust: a peer device's identity is pinned the first time it is seen
// (trust on first use); a later different identity for the same user and
// device is refused until Trust is called with its new fingerprint, which
// the user is expected to compare out of band (e2ee.Fingerprint).
package channel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/unhidra/unhidra/client"
	"github.com/unhidra/unhidra/client/e2ee"
	"github.com/unhidra/unhidra/wire"
)

// ErrNoContent is what Open returns for an envelope that carries nothing
// to show: a room key (now learned), one addressed to other devices, or
// this device's own message.
var ErrNoContent = errors.New("channel: no content for this device")

// ErrIdentityChanged refuses a peer whose identity key is not the one
// pinned for it.
var ErrIdentityChanged = errors.New("channel: a peer's identity key changed")

// Device is one client device. It is safe for concurrent use.
type Device struct {
	c    *client.Client
	acct *e2ee.Account

	mu       sync.Mutex
	sessions map[string][]*e2ee.Session   // by peer curve25519 key, newest last
	pinned   map[string]e2ee.IdentityKeys // "user/device" → identity
	inbound  map[string]*e2ee.InboundGroup
	out      map[string]*outbound // by channel
}

type outbound struct {
	g          *e2ee.OutboundGroup
	recipients string // the member devices it was shared with
}

// New returns a device using c (its token, its gateway) and acct.
func New(c *client.Client, acct *e2ee.Account) *Device {
	return &Device{c: c, acct: acct, sessions: map[string][]*e2ee.Session{}, pinned: map[string]e2ee.IdentityKeys{},
		inbound: map[string]*e2ee.InboundGroup{}, out: map[string]*outbound{}}
}

// Account returns the device's account.
func (d *Device) Account() *e2ee.Account { return d.acct }

// PublishKeys tops the device's one-time keys up to n in the directory and
// publishes a fallback key and its identity.
func (d *Device) PublishKeys(ctx context.Context, n int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var count struct {
		Count int `json:"one_time_key_count"`
	}
	if err := d.c.API(ctx, "GET", "/keys/devices/"+url.PathEscape(d.acct.DeviceID())+"/count", nil, &count); err != nil {
		var se *client.ServerError
		if !errors.As(err, &se) || se.Code != "not_found" {
			return err
		}
	}
	if missing := n - count.Count - d.acct.UnpublishedCount(); missing > 0 {
		if err := d.acct.GenerateOneTimeKeys(missing); err != nil {
			return err
		}
	}
	if err := d.acct.GenerateFallbackKey(); err != nil {
		return err
	}
	up, err := d.acct.Upload()
	if err != nil {
		return err
	}
	if err := d.c.API(ctx, "PUT", "/keys/devices/"+url.PathEscape(d.acct.DeviceID()), up, nil); err != nil {
		return err
	}
	d.acct.MarkPublished()
	return nil
}

// Trust pins a peer device's identity, replacing what was pinned.
func (d *Device) Trust(user, deviceID string, id e2ee.IdentityKeys) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pinned[strings.ToLower(user)+"/"+deviceID] = id
}

// Send encrypts content (JSON, e.g. {"type":"text","text":…}) for the
// member devices of ch and publishes it, sharing a new Megolm session first
// when the member devices changed since the last one.
func (d *Device) Send(ctx context.Context, ch string, content any) (wire.Ack, error) {
	pt, err := json.Marshal(content)
	if err != nil {
		return wire.Ack{}, err
	}
	peers, err := d.memberDevices(ctx, ch)
	if err != nil {
		return wire.Ack{}, err
	}
	keys := make([]string, len(peers))
	for i, p := range peers {
		keys[i] = p.Identity.Curve25519
	}
	slices.Sort(keys)
	recipients := strings.Join(keys, ",")

	d.mu.Lock()
	o := d.out[ch]
	d.mu.Unlock()
	if o == nil || o.recipients != recipients {
		if o, err = d.share(ctx, ch, peers, recipients); err != nil {
			return wire.Ack{}, err
		}
	}
	env, err := d.acct.SealGroupMessage(o.g, pt)
	if err != nil {
		return wire.Ack{}, err
	}
	return d.publish(ctx, ch, env)
}

// share starts a new Megolm session for ch and sends its key to peers.
func (d *Device) share(ctx context.Context, ch string, peers []peer, recipients string) (*outbound, error) {
	g, err := e2ee.NewOutboundGroup(ch)
	if err != nil {
		return nil, err
	}
	var to []*e2ee.Session
	for _, p := range peers {
		s, err := d.session(ctx, p)
		if err != nil {
			return nil, fmt.Errorf("channel: session with %s/%s: %w", p.User, p.DeviceID, err)
		}
		to = append(to, s)
	}
	if len(to) > 0 {
		env, err := d.acct.ShareRoomKey(g, to)
		if err != nil {
			return nil, err
		}
		if _, err := d.publish(ctx, ch, env); err != nil {
			return nil, err
		}
	}
	o := &outbound{g: g, recipients: recipients}
	d.mu.Lock()
	d.out[ch] = o
	d.mu.Unlock()
	return o, nil
}

func (d *Device) publish(ctx context.Context, ch string, env any) (wire.Ack, error) {
	raw, err := json.Marshal(env)
	if err != nil {
		return wire.Ack{}, err
	}
	return d.c.Publish(ctx, wire.Publish{Channel: ch, E2EE: raw})
}

// peer is a member device as the directory lists it.
type peer struct {
	User              string            `json:"-"`
	DeviceID          string            `json:"device_id"`
	Identity          e2ee.IdentityKeys `json:"identity"`
	IdentitySignature string            `json:"identity_signature"`
}

// memberDevices lists the devices of ch's members (accepted or not: an
// invitee who accepts later can read from then on only if it had the key)
// other than this one, each identity verified and checked against its pin.
func (d *Device) memberDevices(ctx context.Context, ch string) ([]peer, error) {
	var members []struct {
		User string `json:"user"`
	}
	if err := d.c.API(ctx, "GET", "/channels/"+url.PathEscape(ch)+"/members", nil, &members); err != nil {
		return nil, err
	}
	var out []peer
	for _, m := range members {
		var dir struct {
			Devices []peer `json:"devices"`
		}
		if err := d.c.API(ctx, "GET", "/keys/users/"+url.PathEscape(m.User), nil, &dir); err != nil {
			return nil, err
		}
		for _, p := range dir.Devices {
			p.User = m.User
			if strings.EqualFold(p.User, d.acct.User()) && p.DeviceID == d.acct.DeviceID() {
				continue
			}
			if err := e2ee.VerifyIdentity(p.User, p.DeviceID, p.Identity, p.IdentitySignature); err != nil {
				return nil, fmt.Errorf("channel: %s/%s: %w", p.User, p.DeviceID, err)
			}
			if err := d.pin(p.User, p.DeviceID, p.Identity); err != nil {
				return nil, err
			}
			out = append(out, p)
		}
	}
	return out, nil
}

func (d *Device) pin(user, deviceID string, id e2ee.IdentityKeys) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	k := strings.ToLower(user) + "/" + deviceID
	if have, ok := d.pinned[k]; ok && have != id {
		return fmt.Errorf("%w: %s (now %s)", ErrIdentityChanged, k, e2ee.Fingerprint(id.Ed25519))
	}
	d.pinned[k] = id
	return nil
}

// session returns the newest 1:1 session with p, claiming p's keys for a
// new one when there is none.
func (d *Device) session(ctx context.Context, p peer) (*e2ee.Session, error) {
	d.mu.Lock()
	if ss := d.sessions[p.Identity.Curve25519]; len(ss) > 0 {
		d.mu.Unlock()
		return ss[len(ss)-1], nil
	}
	d.mu.Unlock()
	var b e2ee.Bundle
	if err := d.c.API(ctx, "POST", "/keys/claim", map[string]string{"user": p.User, "device_id": p.DeviceID}, &b); err != nil {
		return nil, err
	}
	if b.Identity != p.Identity {
		return nil, fmt.Errorf("%w: the claimed bundle of %s/%s has another identity", ErrIdentityChanged, p.User, p.DeviceID)
	}
	s, err := d.acct.NewOutboundSession(b)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.sessions[p.Identity.Curve25519] = append(d.sessions[p.Identity.Curve25519], s)
	d.mu.Unlock()
	return s, nil
}

// Open opens an e2ee message of channel ch: the decrypted content of a
// group message and the session's (user, device) that sent it, or
// ErrNoContent for a room key (learned now), an envelope for other devices
// or this device's own message.
func (d *Device) Open(ch string, m wire.Message) (content []byte, user, device string, err error) {
	alg, err := e2ee.EnvelopeAlg(m.E2EE)
	if err != nil {
		return nil, "", "", err
	}
	me := d.acct.Identity().Curve25519
	switch alg {
	case e2ee.AlgOlm:
		var env e2ee.KeyShareEnvelope
		if err := json.Unmarshal(m.E2EE, &env); err != nil {
			return nil, "", "", fmt.Errorf("%w: %v", e2ee.ErrEnvelope, err)
		}
		msg, mine := env.Ciphertext[me]
		if !mine || env.SenderKey == me {
			return nil, "", "", ErrNoContent
		}
		return nil, "", "", d.learn(ch, env, msg)
	default:
		var env e2ee.GroupEnvelope
		if err := json.Unmarshal(m.E2EE, &env); err != nil {
			return nil, "", "", fmt.Errorf("%w: %v", e2ee.ErrEnvelope, err)
		}
		if env.SenderKey == me {
			return nil, "", "", ErrNoContent
		}
		d.mu.Lock()
		g := d.inbound[env.SessionID]
		d.mu.Unlock()
		if g == nil || g.SenderKey() != env.SenderKey {
			return nil, "", "", fmt.Errorf("channel: no key for session %s (not shared with this device)", env.SessionID)
		}
		pt, _, err := e2ee.OpenGroupMessage(env, g)
		if err != nil {
			return nil, "", "", err
		}
		u, dev := g.Sender()
		return pt, u, dev, nil
	}
}

// learn opens a room key addressed to this device: a prekey message opens
// a new 1:1 session, a normal one is tried on each session with its sender
// (a failed attempt leaves a session as it was).
func (d *Device) learn(ch string, env e2ee.KeyShareEnvelope, msg e2ee.OlmMessage) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var g *e2ee.InboundGroup
	err := e2ee.ErrDecrypt
	if msg.Type == e2ee.MsgPreKey {
		var s *e2ee.Session
		if g, s, err = d.acct.OpenRoomKeyShare(env, ch, nil); err == nil {
			d.sessions[env.SenderKey] = append(d.sessions[env.SenderKey], s)
		}
	} else {
		for _, s := range d.sessions[env.SenderKey] {
			if g, _, err = d.acct.OpenRoomKeyShare(env, ch, s); err == nil {
				break
			}
		}
	}
	if err != nil {
		return err
	}
	d.inbound[g.SessionID()] = g
	return nil
}
