package httpapi

// The auth API (AUTH_PORT, docs/protocol.md#auth-api): accounts, sessions, devices, and the
// operational endpoints /health, /ready and /metrics.

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/audit"
	"github.com/unhidra/unhidra/internal/auth"
	"github.com/unhidra/unhidra/internal/device"
	"github.com/unhidra/unhidra/internal/httpx"
)

// AuthAPI serves the auth API. Fill the fields, then call Handler once.
type AuthAPI struct {
	Auth    *auth.Service
	Devices *device.Service
	Log     *slog.Logger

	// TrustedProxies may set the client IP with X-Forwarded-For.
	TrustedProxies []netip.Prefix
	// AllowedOrigins are the exact browser origins allowed by CORS. Empty:
	// same-origin plus the gateway's page on the same host (GatewayPort).
	AllowedOrigins []string
	GatewayPort    int
	// TrustProxyTLS: TLS is terminated by a proxy in front, so cookies are
	// marked Secure although the request reached us in plain HTTP.
	TrustProxyTLS bool

	// Health reports whether the process and its database are usable;
	// Draining reports whether the server is shutting down (/ready fails).
	Health   func(ctx context.Context) error
	Draining func() bool
	// Metrics serves /metrics (Prometheus text); nil: 404.
	Metrics     http.Handler
	HTTPMetrics *HTTPMetrics
	// RequestLimit is the per-client-IP request limit for every route but
	// /health, /ready and /metrics; nil: none.
	RequestLimit Limiter
	// MLHealth answers /internal/ml/health; nil: {"status":"disabled"}.
	MLHealth func(ctx context.Context) any
}

// Handler returns the auth API's HTTP handler.
func (a *AuthAPI) Handler() http.Handler {
	if a.Log == nil {
		a.Log = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /register", a.register)
	mux.HandleFunc("POST /login", a.login)
	mux.HandleFunc("POST /token/refresh", a.refresh)
	mux.HandleFunc("POST /logout", a.logout)
	mux.HandleFunc("GET /me", a.me)
	mux.HandleFunc("PATCH /me", a.updateMe)
	mux.HandleFunc("POST /me/password", a.changePassword)
	mux.HandleFunc("POST /devices", a.registerDevice)
	mux.HandleFunc("GET /devices", a.listDevices)
	mux.HandleFunc("GET /devices/{id}", a.getDevice)
	mux.HandleFunc("DELETE /devices/{id}", a.revokeDevice)
	mux.HandleFunc("POST /devices/{id}/rotate-key", a.rotateKey)
	mux.HandleFunc("GET /admin/users", a.adminUsers)
	mux.HandleFunc("POST /admin/users/{name}/verify", a.adminVerify)
	mux.HandleFunc("POST /admin/users/{name}/disable", a.adminDisable)
	mux.HandleFunc("GET /debug/password-params", a.passwordParams)
	mux.HandleFunc("GET /internal/ml/health", a.mlHealth)
	mux.HandleFunc("GET /health", a.health)
	mux.HandleFunc("GET /ready", a.ready)
	if a.Metrics != nil {
		mux.Handle("GET /metrics", a.Metrics)
	}
	mux.HandleFunc("/auth/sso/", a.reserved)
	mux.HandleFunc("/auth/passkey/", a.reserved)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, r, a.Log, unhidra.Errorf(unhidra.ENOTFOUND, "no such route"))
	})

	var h http.Handler = mux
	h = a.cors(h)
	if a.RequestLimit != nil {
		h = LimitByIP(a.RequestLimit, a.TrustedProxies, isOperational, a.Log, h)
	}
	h = RefuseURLCredentials(a.Log, h)
	h = Recover(a.Log, h)
	if a.HTTPMetrics != nil {
		h = a.HTTPMetrics.Instrument("auth", a.Log, h)
	}
	// Outermost: every answer carries its X-Request-ID and every audit
	// event of the request names it, the transport and the client IP.
	return httpx.WithSource(audit.TransportHTTP, a.TrustedProxies, h)
}

func isOperational(r *http.Request) bool {
	switch r.URL.Path {
	case "/health", "/ready", "/metrics":
		return true
	}
	return false
}

func (a *AuthAPI) fail(w http.ResponseWriter, r *http.Request, err error) {
	if unhidra.ErrorCode(err) == unhidra.EUNAUTHORIZED {
		w.Header().Set("WWW-Authenticate", `Bearer realm="unhidra"`)
	}
	WriteError(w, r, a.Log, err)
}

func (a *AuthAPI) clientIP(r *http.Request) netip.Addr { return ClientIP(r, a.TrustedProxies) }

// identify authenticates the request's bearer credential: an access token,
// or a device API key (which user routes then refuse).
func (a *AuthAPI) identify(r *http.Request) (unhidra.Identity, error) {
	tok := BearerToken(r)
	if tok == "" {
		return unhidra.Identity{}, unhidra.Errorf(unhidra.EUNAUTHORIZED, "missing bearer token")
	}
	if device.LooksLikeKey(tok) {
		if a.Devices == nil {
			return unhidra.Identity{}, unhidra.Errorf(unhidra.EUNAUTHORIZED, "invalid token")
		}
		return a.Devices.AuthenticateDeviceKey(r.Context(), tok)
	}
	return a.Auth.AuthenticateToken(r.Context(), tok)
}

// userView is the public shape of an account.
type userView struct {
	Username    string    `json:"username"`
	DisplayName string    `json:"display_name"`
	Roles       []string  `json:"roles"`
	Verified    bool      `json:"verified"`
	Disabled    bool      `json:"disabled"`
	CreatedAt   time.Time `json:"created_at"`
}

func viewUser(u auth.User) userView {
	roles := u.Roles
	if roles == nil {
		roles = []string{}
	}
	return userView{u.Username, u.DisplayName, roles, u.Verified, u.Disabled, u.CreatedAt.UTC()}
}

func (a *AuthAPI) register(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Username    string `json:"username"`
		Password    string `json:"password"`
		DisplayName string `json:"display_name"`
	}
	if err := DecodeJSON(w, r, MaxJSONBody, &in); err != nil {
		a.fail(w, r, err)
		return
	}
	u, err := a.Auth.Register(r.Context(), auth.RegisterInput{Username: in.Username, Password: in.Password, DisplayName: in.DisplayName, IP: a.clientIP(r)})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusCreated, map[string]any{"username": u.Username, "display_name": u.DisplayName, "verified": u.Verified})
}

func (a *AuthAPI) login(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}
	if err := DecodeJSON(w, r, MaxJSONBody, &in); err != nil {
		a.fail(w, r, err)
		return
	}
	li := auth.LoginInput{Username: in.Username, Password: in.Password, IP: a.clientIP(r)}
	name := auth.DeviceCookieName(in.Username)
	if name != "" {
		if c, err := r.Cookie(name); err == nil {
			li.DeviceCookie = c.Value
		}
	}
	pair, err := a.Auth.Login(r.Context(), li)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if pair.DeviceCookie != "" {
		http.SetCookie(w, a.deviceCookie(auth.DeviceCookieName(pair.User.Username), pair.DeviceCookie, r))
	}
	WriteJSON(w, http.StatusOK, pair)
}

// deviceCookie is the device cookie a successful login sets (see the auth
// package): sent back to POST /login only, never readable by scripts,
// never sent on cross-site requests, Secure whenever the client speaks
// HTTPS to us or to the TLS proxy in front.
func (a *AuthAPI) deviceCookie(name, value string, r *http.Request) *http.Cookie {
	return &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     auth.DeviceCookiePath,
		MaxAge:   int(auth.DeviceCookieMaxAge / time.Second),
		HttpOnly: true,
		Secure:   r.TLS != nil || a.TrustProxyTLS,
		SameSite: http.SameSiteStrictMode,
	}
}

func (a *AuthAPI) refresh(w http.ResponseWriter, r *http.Request) {
	var in struct {
		RefreshToken string `json:"refresh_token"`
	}
	if err := DecodeJSON(w, r, MaxJSONBody, &in); err != nil {
		a.fail(w, r, err)
		return
	}
	pair, err := a.Auth.Refresh(r.Context(), in.RefreshToken, a.clientIP(r))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, pair)
}

// withIdentity runs h for an authenticated caller.
func (a *AuthAPI) withIdentity(w http.ResponseWriter, r *http.Request, h func(unhidra.Identity)) {
	who, err := a.identify(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	h(who)
}

func (a *AuthAPI) logout(w http.ResponseWriter, r *http.Request) {
	a.withIdentity(w, r, func(who unhidra.Identity) {
		if err := a.Auth.Logout(r.Context(), who); err != nil {
			a.fail(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

func (a *AuthAPI) me(w http.ResponseWriter, r *http.Request) {
	a.withIdentity(w, r, func(who unhidra.Identity) {
		u, err := a.Auth.Me(r.Context(), who)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		WriteJSON(w, http.StatusOK, viewUser(u))
	})
}

func (a *AuthAPI) updateMe(w http.ResponseWriter, r *http.Request) {
	a.withIdentity(w, r, func(who unhidra.Identity) {
		var in struct {
			DisplayName *string `json:"display_name"`
		}
		if err := DecodeJSON(w, r, MaxJSONBody, &in); err != nil {
			a.fail(w, r, err)
			return
		}
		if in.DisplayName == nil {
			a.fail(w, r, unhidra.Errorf(unhidra.EINVALID, "display_name is required"))
			return
		}
		u, err := a.Auth.UpdateMe(r.Context(), who, *in.DisplayName)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		WriteJSON(w, http.StatusOK, viewUser(u))
	})
}

func (a *AuthAPI) changePassword(w http.ResponseWriter, r *http.Request) {
	a.withIdentity(w, r, func(who unhidra.Identity) {
		var in struct {
			Current string `json:"current_password"`
			New     string `json:"new_password"`
		}
		if err := DecodeJSON(w, r, MaxJSONBody, &in); err != nil {
			a.fail(w, r, err)
			return
		}
		if err := a.Auth.ChangePassword(r.Context(), who, in.Current, in.New); err != nil {
			a.fail(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

func (a *AuthAPI) devices(w http.ResponseWriter, r *http.Request) bool {
	if a.Devices == nil {
		a.fail(w, r, unhidra.Errorf(unhidra.EUNAVAILABLE, "the device registry is not running"))
		return false
	}
	return true
}

func (a *AuthAPI) registerDevice(w http.ResponseWriter, r *http.Request) {
	if !a.devices(w, r) {
		return
	}
	a.withIdentity(w, r, func(who unhidra.Identity) {
		var in struct {
			Name     string `json:"name"`
			DeviceID string `json:"device_id"`
			Owner    string `json:"owner"`
		}
		if err := DecodeJSON(w, r, MaxJSONBody, &in); err != nil {
			a.fail(w, r, err)
			return
		}
		d, key, err := a.Devices.Register(r.Context(), who, device.RegisterInput{Name: in.Name, ID: in.DeviceID, Owner: in.Owner})
		if err != nil {
			a.fail(w, r, err)
			return
		}
		WriteJSON(w, http.StatusCreated, map[string]any{
			"device_id": d.ID, "name": d.Name, "owner": d.Owner, "api_key": key, "created_at": d.CreatedAt.UTC(),
		})
	})
}

func (a *AuthAPI) listDevices(w http.ResponseWriter, r *http.Request) {
	if !a.devices(w, r) {
		return
	}
	a.withIdentity(w, r, func(who unhidra.Identity) {
		ds, err := a.Devices.List(r.Context(), who)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		WriteJSON(w, http.StatusOK, map[string]any{"devices": ds})
	})
}

func (a *AuthAPI) getDevice(w http.ResponseWriter, r *http.Request) {
	if !a.devices(w, r) {
		return
	}
	a.withIdentity(w, r, func(who unhidra.Identity) {
		// Users see their devices (admins all); a device may read itself.
		d, err := a.Devices.Get(r.Context(), who, r.PathValue("id"))
		if err != nil {
			a.fail(w, r, err)
			return
		}
		WriteJSON(w, http.StatusOK, d)
	})
}

func (a *AuthAPI) revokeDevice(w http.ResponseWriter, r *http.Request) {
	if !a.devices(w, r) {
		return
	}
	a.withIdentity(w, r, func(who unhidra.Identity) {
		if err := a.Devices.Revoke(r.Context(), who, r.PathValue("id")); err != nil {
			a.fail(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

func (a *AuthAPI) rotateKey(w http.ResponseWriter, r *http.Request) {
	if !a.devices(w, r) {
		return
	}
	a.withIdentity(w, r, func(who unhidra.Identity) {
		key, err := a.Devices.RotateKey(r.Context(), who, r.PathValue("id"))
		if err != nil {
			a.fail(w, r, err)
			return
		}
		WriteJSON(w, http.StatusOK, map[string]string{"api_key": key})
	})
}

func (a *AuthAPI) adminUsers(w http.ResponseWriter, r *http.Request) {
	a.withIdentity(w, r, func(who unhidra.Identity) {
		us, err := a.Auth.Users(r.Context(), who)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		out := make([]userView, 0, len(us))
		for _, u := range us {
			out = append(out, viewUser(u))
		}
		WriteJSON(w, http.StatusOK, map[string]any{"users": out})
	})
}

func (a *AuthAPI) adminVerify(w http.ResponseWriter, r *http.Request) {
	a.withIdentity(w, r, func(who unhidra.Identity) {
		u, err := a.Auth.VerifyUser(r.Context(), who, r.PathValue("name"))
		if err != nil {
			a.fail(w, r, err)
			return
		}
		WriteJSON(w, http.StatusOK, viewUser(u))
	})
}

func (a *AuthAPI) adminDisable(w http.ResponseWriter, r *http.Request) {
	a.withIdentity(w, r, func(who unhidra.Identity) {
		u, err := a.Auth.DisableUser(r.Context(), who, r.PathValue("name"))
		if err != nil {
			a.fail(w, r, err)
			return
		}
		WriteJSON(w, http.StatusOK, viewUser(u))
	})
}

func (a *AuthAPI) passwordParams(w http.ResponseWriter, r *http.Request) {
	p := a.Auth.PasswordParams()
	WriteJSON(w, http.StatusOK, map[string]any{
		"algorithm": "argon2id", "version": 19,
		"memory_kib": p.MemoryKiB, "iterations": p.Iterations, "parallelism": p.Parallelism,
	})
}

func (a *AuthAPI) mlHealth(w http.ResponseWriter, r *http.Request) {
	if a.MLHealth == nil {
		WriteJSON(w, http.StatusOK, map[string]any{"status": "disabled", "restarts": 0})
		return
	}
	WriteJSON(w, http.StatusOK, a.MLHealth(r.Context()))
}

func (a *AuthAPI) reserved(w http.ResponseWriter, r *http.Request) {
	WriteError(w, r, a.Log, unhidra.Errorf(unhidra.ENOTFOUND, "not available in this version"))
}

func (a *AuthAPI) healthy(ctx context.Context) error {
	if a.Health == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return a.Health(ctx)
}

func (a *AuthAPI) health(w http.ResponseWriter, r *http.Request) {
	if err := a.healthy(r.Context()); err != nil {
		a.Log.Warn("health check failed", "err", err)
		WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable"})
		return
	}
	WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (a *AuthAPI) ready(w http.ResponseWriter, r *http.Request) {
	if a.Draining != nil && a.Draining() {
		WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "draining"})
		return
	}
	a.health(w, r)
}

// cors applies the ALLOWED_ORIGINS rule (docs/protocol.md#auth-api) to cross-origin requests.
// Credentials travel in the Authorization header, never in cookies; the one
// cookie is the device cookie of POST /login, so Allow-Credentials is sent
// to allowed origins on that route only (the web client on the gateway port
// sends its login with credentials: "include" to keep its device cookie).
func (a *AuthAPI) cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Add("Vary", "Origin")
		allowed := a.originAllowed(r, origin)
		if allowed {
			w.Header().Set("Access-Control-Allow-Origin", origin)
			w.Header().Set("Access-Control-Expose-Headers", "Retry-After, X-Request-ID")
			if r.URL.Path == auth.DeviceCookiePath {
				w.Header().Set("Access-Control-Allow-Credentials", "true")
			}
		}
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			if !allowed {
				WriteError(w, r, a.Log, unhidra.Errorf(unhidra.EFORBIDDEN, "origin not allowed"))
				return
			}
			w.Header().Set("Access-Control-Allow-Methods", "GET, POST, PATCH, DELETE")
			w.Header().Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
			w.Header().Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// originAllowed: an exact ALLOWED_ORIGINS entry; with the list empty, the
// request's own origin or the gateway's page on the same host.
func (a *AuthAPI) originAllowed(r *http.Request, origin string) bool {
	if len(a.AllowedOrigins) > 0 {
		return slices.Contains(a.AllowedOrigins, origin)
	}
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || u.User != nil || u.RawQuery != "" {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	reqHost := r.Host
	if h, _, ok := strings.Cut(r.Host, ":"); ok && !strings.HasPrefix(r.Host, "[") {
		reqHost = h
	} else if strings.HasPrefix(r.Host, "[") {
		if i := strings.Index(r.Host, "]"); i > 0 {
			reqHost = r.Host[:i+1]
		}
	}
	host := u.Hostname()
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return a.GatewayPort > 0 && strings.EqualFold(host, reqHost) && u.Port() == strconv.Itoa(a.GatewayPort)
}
