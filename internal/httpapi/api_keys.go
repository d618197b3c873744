package httpapi

import (
	"log/slog"
	"net/http"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/keys"
)

// KeyRoutes returns the APIDeps.Routes hook for the E2EE key directory
// (/api/v1/keys/…). Every route is for users only; the service decides
// the rest (a device's keys are managed by their owner alone).
func KeyRoutes(svc *keys.Service, log *slog.Logger) RouteFunc {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return func(mux *http.ServeMux, user, _ func(APIHandler) http.Handler) {
		k := &keyAPI{svc: svc, log: log}
		p := APIPrefix + "/keys"
		mux.Handle("PUT "+p+"/devices/{device_id}", user(k.upload))
		mux.Handle("GET "+p+"/devices/{device_id}/count", user(k.count))
		mux.Handle("DELETE "+p+"/devices/{device_id}", user(k.remove))
		mux.Handle("GET "+p+"/users/{user}", user(k.devices))
		mux.Handle("POST "+p+"/claim", user(k.claim))
	}
}

type keyAPI struct {
	svc *keys.Service
	log *slog.Logger
}

// maxKeyUpload bounds an upload's body: 100 one-time keys of about 200
// bytes of JSON each, the identity and fallback key, with room to spare.
const maxKeyUpload = 64 << 10

func (k *keyAPI) upload(w http.ResponseWriter, r *http.Request, who unhidra.Identity) {
	var in keys.Upload
	if err := DecodeJSON(w, r, maxKeyUpload, &in); err != nil {
		WriteError(w, r, k.log, err)
		return
	}
	n, err := k.svc.Upload(r.Context(), who, r.PathValue("device_id"), in)
	if err != nil {
		WriteError(w, r, k.log, err)
		return
	}
	WriteJSON(w, http.StatusOK, map[string]int{"one_time_key_count": n})
}

func (k *keyAPI) count(w http.ResponseWriter, r *http.Request, who unhidra.Identity) {
	n, err := k.svc.Count(r.Context(), who, r.PathValue("device_id"))
	if err != nil {
		WriteError(w, r, k.log, err)
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{"one_time_key_count": n, "low": n < keys.LowKeys})
}

func (k *keyAPI) remove(w http.ResponseWriter, r *http.Request, who unhidra.Identity) {
	if err := k.svc.Delete(r.Context(), who, r.PathValue("device_id")); err != nil {
		WriteError(w, r, k.log, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (k *keyAPI) devices(w http.ResponseWriter, r *http.Request, who unhidra.Identity) {
	user := r.PathValue("user")
	devs, err := k.svc.Devices(r.Context(), who, user)
	if err != nil {
		WriteError(w, r, k.log, err)
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{"user": user, "devices": devs})
}

type claimRequest struct {
	User     string `json:"user"`
	DeviceID string `json:"device_id"`
}

func (k *keyAPI) claim(w http.ResponseWriter, r *http.Request, who unhidra.Identity) {
	var in claimRequest
	if err := DecodeJSON(w, r, MaxJSONBody, &in); err != nil {
		WriteError(w, r, k.log, err)
		return
	}
	b, err := k.svc.Claim(r.Context(), who, in.User, in.DeviceID)
	if err != nil {
		WriteError(w, r, k.log, err)
		return
	}
	WriteJSON(w, http.StatusOK, b)
}
