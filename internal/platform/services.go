package platform

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/audit"
	"github.com/unhidra/unhidra/internal/auth"
	"github.com/unhidra/unhidra/internal/broker"
	"github.com/unhidra/unhidra/internal/chat"
	"github.com/unhidra/unhidra/internal/config"
	"github.com/unhidra/unhidra/internal/device"
	"github.com/unhidra/unhidra/internal/keys"
	"github.com/unhidra/unhidra/internal/presence"
)

// Options are what the caller of NewServices adds to the configuration.
type Options struct {
	// Log is the process logger; each service logs with its name.
	Log *slog.Logger
	// Registerer receives the services' metrics (nil: none).
	Registerer prometheus.Registerer
	// Audit records the security events of every service (nil: the
	// log-backed recorder on Log).
	Audit audit.Recorder
	// HashParams, when set, replaces the Argon2id parameters (tests that
	// are not about hashing); HashQueue the hashing pool's queue length.
	HashParams auth.Params
	HashQueue  int
}

// Services are the domain services of a node.
type Services struct {
	Auth     *auth.Service
	Chat     *chat.Service
	Presence *presence.Service
	Devices  *device.Service
	Fleet    *device.Fleet
	Keys     *keys.Service
	Audit    audit.Recorder
}

// NewServices builds the domain services on b: what `serve` runs and what
// the administration commands call, so both apply the same rules. Every
// node applies every node's revocations to its session cache (subscribed
// here). Long-running work (the fleet's Run, session pruning) is the
// caller's to start.
func NewServices(ctx context.Context, cfg *config.Config, b *Backend, o Options) (*Services, error) {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Services{Audit: o.Audit}
	if s.Audit == nil {
		s.Audit = audit.Slog{Log: log.With("component", "audit")}
	}
	var err error
	// A disabled user's devices leave the key directory (keys.go).
	revs := &disabledKeys{Publisher: b.Broker, users: b.Auth, log: log.With("service", "keys")}
	s.Auth, err = auth.New(auth.Config{
		Secret:         cfg.JWTSecret,
		PreviousSecret: cfg.JWTSecretPrevious,
		AccessTTL:      cfg.AccessTokenTTL,
		RefreshTTL:     cfg.RefreshTokenTTL,
		Registration:   cfg.Registration,
		LoginPerMinute: cfg.RateLimitLoginPerMin,
		Params:         o.HashParams,
		HashQueue:      o.HashQueue,
	}, auth.Deps{Store: b.Auth, Publisher: revs, Auditor: s.Audit, Log: log.With("service", "auth"), Registerer: o.Registerer})
	if err != nil {
		return nil, err
	}
	s.Chat = chat.NewService(b.Chat, b.Broker, chat.Options{
		E2EEEnforced: cfg.E2EEEnforced,
		Users:        userDirectory{s.Auth},
		Audit:        s.Audit,
		Logger:       log.With("service", "chat"),
		Registerer:   o.Registerer,
	})
	s.Keys = keys.NewService(keys.Deps{Store: b.Keys, Broker: b.Broker, Channels: s.Chat, Audit: s.Audit, Log: log.With("service", "keys")})
	revs.keys = s.Keys
	s.Presence = presence.NewService(presence.Options{
		Store: b.Presence, Channels: b.PresenceChannels, Peers: b.Peers, Publisher: b.Broker, Logger: log.With("service", "presence"),
	})
	s.Devices, err = device.NewService(device.Config{Secret: cfg.JWTSecret, PreviousSecret: cfg.JWTSecretPrevious},
		device.Deps{Store: b.Devices, Users: s.Auth, Publisher: b.Broker, Auditor: s.Audit, Channels: deviceChannels{s.Chat}, Log: log.With("service", "device")})
	if err != nil {
		return nil, err
	}
	if _, err := b.Broker.Subscribe(broker.RevocationTopic, s.Auth.OnRevocation); err != nil {
		return nil, err
	}
	s.Fleet = device.NewFleet(device.FleetOptions{
		Store:         b.Fleet,
		Broker:        b.Broker,
		Channels:      s.Chat,
		Owners:        s.Devices,
		EnsureChannel: deviceChannels{s.Chat}.EnsureDeviceChannel,
		Logger:        log.With("service", "fleet"),
		Registerer:    o.Registerer,
		Retention:     cfg.TelemetryRetention,
		OfflineGrace:  2 * time.Second,
	})
	return s, nil
}

// deviceChannels creates device channels through the chat service.
type deviceChannels struct{ chat *chat.Service }

func (d deviceChannels) EnsureDeviceChannel(ctx context.Context, deviceID, owner string) error {
	_, err := d.chat.EnsureDeviceChannel(ctx, deviceID, owner)
	return err
}

// userDirectory answers the chat service's "does this user exist" from the
// auth service.
type userDirectory struct{ auth *auth.Service }

func (u userDirectory) UserExists(ctx context.Context, name string) (bool, error) {
	_, err := u.auth.User(ctx, name)
	switch unhidra.ErrorCode(err) {
	case "":
		return true, nil
	case unhidra.ENOTFOUND:
		return false, nil
	default:
		return false, err
	}
}

// Background is the long-running work of the services on b, as components
// for the caller to run: session pruning, the fleet's timers, and the feed
// that carries revocations written by other processes to this one's live
// sessions.
func Background(s *Services, b *Backend, log *slog.Logger) []Component {
	return []Component{
		&Ticker{Label: "session pruning", Every: time.Hour, Log: log, Fn: func(ctx context.Context) error {
			n, err := s.Auth.PruneSessions(ctx)
			if n > 0 {
				log.Info("pruned ended sessions", "sessions", n)
			}
			return err
		}},
		Func("fleet", s.Fleet.Run),
		&revocationFeed{
			recent: b.Revocations,
			pub:    b.Broker,
			log:    log.With("component", "revocations"),
			every:  time.Second,
			window: 30 * time.Second,
			now:    func() time.Time { return time.Now().UTC() },
			seen:   map[broker.Revocation]time.Time{},
		},
	}
}
