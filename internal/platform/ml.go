package platform

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/unhidra/unhidra/internal/config"
	"github.com/unhidra/unhidra/internal/device"
	"github.com/unhidra/unhidra/internal/ml"
)

// startML builds the ML sidecar of SPEC §8 when ML_WORKER_CMD is set and
// the node runs the ml service: the worker's supervisor and the bridge
// that scores the fleet's telemetry and posts alerts. Without a worker it
// returns a nil bridge (health "disabled").
func startML(cfg *config.Config, fleet *device.Fleet, log *slog.Logger, reg prometheus.Registerer) (*ml.Bridge, []Component, error) {
	if cfg.MLWorkerCmd == "" || !cfg.Runs("ml") {
		return nil, nil, nil
	}
	log = log.With("component", "ml")
	sup, err := ml.NewSupervisor(ml.SupervisorOptions{Command: cfg.MLWorkerCmd, Socket: cfg.MLSocketPath, Logger: log})
	if err != nil {
		return nil, nil, fmt.Errorf("ml: %w", err)
	}
	b := ml.New(ml.Options{
		Client:     ml.NewClient(cfg.MLSocketPath, cfg.MLTimeout, 8),
		Supervisor: sup,
		Alert: func(ctx context.Context, deviceID string, a ml.Alert) error {
			return fleet.PostAlert(ctx, deviceID, a)
		},
		Logger:     log,
		Registerer: reg,
	})
	fleet.SetObserver(b.Observe)
	log.Info("ml worker configured", "socket", cfg.MLSocketPath, "timeout", cfg.MLTimeout)
	return b, []Component{Func("ml worker", sup.Run), Func("ml bridge", b.Run)}, nil
}
