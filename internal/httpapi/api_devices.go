package httpapi

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/chat"
	"github.com/unhidra/unhidra/internal/device"
)

// Fleet is what the device routes need of the device runtime (*device.Fleet).
type Fleet interface {
	QueryTelemetry(ctx context.Context, who unhidra.Identity, deviceID string, since, until time.Time, limit int) ([]device.TelemetryPoint, error)
	SendCommand(ctx context.Context, who unhidra.Identity, deviceID, name string, params json.RawMessage, timeout time.Duration) (device.Command, error)
	GetCommand(ctx context.Context, who unhidra.Identity, deviceID, commandID string) (device.Command, error)
}

// MaxCommandTimeout bounds timeout_s of a command.
const MaxCommandTimeout = 7 * 24 * time.Hour

// DeviceRoutes returns the APIDeps.Routes hook for the devices' REST routes
// (docs/protocol.md#rest): telemetry by time range, and commands.
func DeviceRoutes(f Fleet, log *slog.Logger) func(mux *http.ServeMux, user, anyone func(APIHandler) http.Handler) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return func(mux *http.ServeMux, user, anyone func(APIHandler) http.Handler) {
		d := &deviceAPI{fleet: f, log: log}
		p := APIPrefix
		mux.Handle("GET "+p+"/devices/{id}/telemetry", anyone(d.telemetry))
		mux.Handle("POST "+p+"/devices/{id}/commands", user(d.sendCommand))
		mux.Handle("GET "+p+"/devices/{id}/commands/{cid}", anyone(d.getCommand))
	}
}

type deviceAPI struct {
	fleet Fleet
	log   *slog.Logger
}

func parseTimeParam(r *http.Request, name string) (time.Time, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, unhidra.Errorf(unhidra.EINVALID, "%s must be an RFC 3339 time", name)
	}
	return t.UTC(), nil
}

func (d *deviceAPI) telemetry(w http.ResponseWriter, r *http.Request, who unhidra.Identity) {
	since, err := parseTimeParam(r, "since")
	if err != nil {
		WriteError(w, r, d.log, err)
		return
	}
	until, err := parseTimeParam(r, "until")
	if err != nil {
		WriteError(w, r, d.log, err)
		return
	}
	if !until.IsZero() && until.Before(since) {
		WriteError(w, r, d.log, unhidra.Errorf(unhidra.EINVALID, "until must not be before since"))
		return
	}
	limit, err := chat.ParseLimit(r.URL.Query().Get("limit"), device.DefaultQueryLimit, device.MaxQueryLimit)
	if err != nil {
		WriteError(w, r, d.log, err)
		return
	}
	points, err := d.fleet.QueryTelemetry(r.Context(), who, r.PathValue("id"), since, until, limit)
	if err != nil {
		WriteError(w, r, d.log, err)
		return
	}
	if points == nil {
		points = []device.TelemetryPoint{}
	}
	WriteJSON(w, http.StatusOK, map[string]any{"points": points})
}

type commandRequest struct {
	Name     string          `json:"name"`
	Params   json.RawMessage `json:"params"`
	TimeoutS *float64        `json:"timeout_s"`
}

func (d *deviceAPI) sendCommand(w http.ResponseWriter, r *http.Request, who unhidra.Identity) {
	var in commandRequest
	if err := DecodeJSON(w, r, MaxJSONBody, &in); err != nil {
		WriteError(w, r, d.log, err)
		return
	}
	var timeout time.Duration
	if in.TimeoutS != nil {
		if *in.TimeoutS <= 0 || *in.TimeoutS > MaxCommandTimeout.Seconds() {
			WriteError(w, r, d.log, unhidra.Errorf(unhidra.EINVALID, "timeout_s must be between 1 and %d", int(MaxCommandTimeout.Seconds())))
			return
		}
		timeout = time.Duration(*in.TimeoutS * float64(time.Second))
	}
	if len(in.Params) > 0 && string(in.Params) == "null" {
		in.Params = nil
	}
	cmd, err := d.fleet.SendCommand(r.Context(), who, r.PathValue("id"), in.Name, in.Params, timeout)
	if err != nil {
		WriteError(w, r, d.log, err)
		return
	}
	WriteJSON(w, http.StatusAccepted, cmd)
}

func (d *deviceAPI) getCommand(w http.ResponseWriter, r *http.Request, who unhidra.Identity) {
	cmd, err := d.fleet.GetCommand(r.Context(), who, r.PathValue("id"), r.PathValue("cid"))
	if err != nil {
		WriteError(w, r, d.log, err)
		return
	}
	WriteJSON(w, http.StatusOK, cmd)
}
