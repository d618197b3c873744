package keys

import (
	"context"
	"log/slog"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/audit"
	"github.com/unhidra/unhidra/internal/broker"
	"github.com/unhidra/unhidra/internal/ratelimit"
	"github.com/unhidra/unhidra/wire"
)

// Channels lists the ids of the channels user is a member of, where the
// user's key changes are announced (the chat service).
type Channels interface {
	UserChannels(ctx context.Context, user string) ([]string, error)
}

// Deps are what the Service needs.
type Deps struct {
	Store Store
	// Broker announces key_change on the Channels of the user (either
	// nil: no announcement).
	Broker   broker.Publisher
	Channels Channels
	// Audit records identity-key changes (nil: audit.Slog on Log).
	Audit audit.Recorder
	Log   *slog.Logger
	// ClaimLimit limits claims per (requester, target) pair (nil: a
	// sliding window of ClaimsPerMinute a minute).
	ClaimLimit ratelimit.Limiter
	Now        func() time.Time
}

// Service applies the directory's rules: who may do what, validation, the
// claim limit, and the audit and announcement of key changes.
type Service struct {
	st    Store
	pub   broker.Publisher
	chans Channels
	audit audit.Recorder
	log   *slog.Logger
	limit ratelimit.Limiter
	now   func() time.Time
}

// NewService returns the directory service on d.Store.
func NewService(d Deps) *Service {
	s := &Service{st: d.Store, pub: d.Broker, chans: d.Channels, audit: d.Audit, log: d.Log, limit: d.ClaimLimit, now: d.Now}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.audit == nil {
		s.audit = audit.Slog{Log: s.log}
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.limit == nil {
		s.limit = ratelimit.NewWindowLimiter(ClaimsPerMinute, time.Minute, s.now)
	}
	return s
}

// userOnly refuses devices (IoT API keys) and the command line: the
// directory holds users' client devices, and only a user signs in as one.
func userOnly(who unhidra.Identity) error {
	if who.Principal.Kind != wire.KindUser || who.Principal.ID == "" {
		return unhidra.Errorf(unhidra.EFORBIDDEN, "only users have end-to-end encryption keys")
	}
	return nil
}

func checkDeviceID(id string) error {
	if !ValidDeviceID(id) {
		return invalid("device_id must be 1 to 64 letters, digits, '_' or '-'")
	}
	return nil
}

// Upload publishes the caller's own device's keys and returns its
// one-time key count. A different identity for a known device is an
// identity-key change: the old keys are dropped, the change is audited and
// announced on every channel of the caller.
func (s *Service) Upload(ctx context.Context, who unhidra.Identity, deviceID string, up Upload) (int, error) {
	if err := userOnly(who); err != nil {
		return 0, err
	}
	user := who.Principal.ID
	if err := Validate(user, deviceID, up); err != nil {
		return 0, err
	}
	res, err := s.st.PutKeys(ctx, Put{
		User: user, DeviceID: deviceID, Identity: up.Identity, IdentitySignature: up.IdentitySignature,
		OneTimeKeys: up.OneTimeKeys, FallbackKey: up.FallbackKey, At: s.now().UTC(),
		MaxKeys: MaxOneTimeKeys, MaxDevices: MaxDevices,
	})
	if err != nil {
		return 0, err
	}
	if res.Replaced {
		s.keyChanged(ctx, who.Principal, user, deviceID, "identity_changed")
	}
	return res.OneTimeKeyCount, nil
}

// Devices lists user's devices; any signed-in user may.
func (s *Service) Devices(ctx context.Context, who unhidra.Identity, user string) ([]Device, error) {
	if err := userOnly(who); err != nil {
		return nil, err
	}
	if user == "" {
		return nil, invalid("user is required")
	}
	return s.st.Devices(ctx, user)
}

// Claim hands out one of the device's one-time keys (each exactly once)
// with its identity and fallback key; with none left, only the fallback
// key. Claims are limited per requester and target user.
func (s *Service) Claim(ctx context.Context, who unhidra.Identity, user, deviceID string) (Bundle, error) {
	if err := userOnly(who); err != nil {
		return Bundle{}, err
	}
	if user == "" {
		return Bundle{}, invalid("user is required")
	}
	if err := checkDeviceID(deviceID); err != nil {
		return Bundle{}, err
	}
	// The key separates the names with a byte no user name holds.
	if ok, wait := s.limit.Allow(who.Principal.ID + "\x00" + user); !ok {
		e := unhidra.Errorf(unhidra.ERATELIMITED, "too many key claims for %s; at most %d a minute", user, ClaimsPerMinute)
		e.RetryAfter = max(1, int((wait+time.Second-1)/time.Second))
		return Bundle{}, e
	}
	return s.st.Claim(ctx, user, deviceID)
}

// Count returns the caller's device's one-time key count.
func (s *Service) Count(ctx context.Context, who unhidra.Identity, deviceID string) (int, error) {
	if err := userOnly(who); err != nil {
		return 0, err
	}
	if err := checkDeviceID(deviceID); err != nil {
		return 0, err
	}
	return s.st.Count(ctx, who.Principal.ID, deviceID)
}

// Delete removes the caller's device's keys; its peers are told
// (key_change) so that they stop encrypting to it.
func (s *Service) Delete(ctx context.Context, who unhidra.Identity, deviceID string) error {
	if err := userOnly(who); err != nil {
		return err
	}
	if err := checkDeviceID(deviceID); err != nil {
		return err
	}
	if err := s.st.DeleteDevice(ctx, who.Principal.ID, deviceID); err != nil {
		return err
	}
	s.keyChanged(ctx, who.Principal, who.Principal.ID, deviceID, "device_deleted")
	return nil
}

// systemActor is the audit actor of what the server does by itself.
var systemActor = wire.Principal{Kind: "system", ID: "serve"}

// UserDisabled removes every device of user, who was disabled, from the
// directory: their peers stop encrypting to them and claims answer
// not_found. Each device's removal is audited and announced (key_change,
// change "user_disabled") as a deletion by the user is. A user without
// devices changes nothing, so calling it again (on every node, for a
// revocation published twice) announces nothing twice. It is the server's
// own call, not a request's: it checks no permission.
func (s *Service) UserDisabled(ctx context.Context, user string) error {
	if user == "" {
		return invalid("user is required")
	}
	ids, err := s.st.DeleteUser(ctx, user)
	if err != nil {
		return err
	}
	ctx = audit.WithSource(ctx, audit.Source{Transport: audit.TransportSystem})
	for _, id := range ids {
		s.keyChanged(ctx, systemActor, user, id, "user_disabled")
	}
	return nil
}

// keyChanged audits a key change of user's device, made by actor, and
// announces it on every channel of user. The change is committed: a failed
// announcement is logged, not returned (clients also re-list devices when
// they start).
func (s *Service) keyChanged(ctx context.Context, actor wire.Principal, user, deviceID, what string) {
	ctx = context.WithoutCancel(ctx)
	s.audit.Audit(ctx, audit.Event{Action: ActionKeyChange, Actor: actor, Target: user, Outcome: audit.Success,
		Details: map[string]string{"device_id": deviceID, "change": what}})
	if s.pub == nil || s.chans == nil {
		return
	}
	channels, err := s.chans.UserChannels(ctx, user)
	if err != nil {
		s.log.Error("keys: list channels for key_change", "err", err)
		return
	}
	for _, ch := range channels {
		ev := &broker.Event{Kind: broker.KeyChange, Channel: ch, User: user, DeviceID: deviceID}
		if err := s.pub.Publish(ctx, broker.ChannelTopic(ch), ev); err != nil {
			s.log.Error("keys: publish key_change", "channel", ch, "err", err)
		}
	}
}
