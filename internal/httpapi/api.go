package httpapi

// The REST API under /api/v1 on the gateway port (docs/protocol.md#rest): channels,
// members, messages, threads, search, presence and admin/connections. Every
// route authenticates a Bearer credential (an access token, or a device API
// key where devices are allowed), makes one service call and encodes the
// answer. Shapes: lists are JSON arrays (channels, members, search hits,
// presence, connections); history and threads are
// {messages, has_more} (threads add the root); single objects otherwise.
// The devices' telemetry and command routes are added with APIDeps.Routes.

import (
	"context"
	"log/slog"
	"net/http"
	"strings"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/audit"
	"github.com/unhidra/unhidra/internal/chat"
	"github.com/unhidra/unhidra/internal/presence"
	"github.com/unhidra/unhidra/wire"
)

// APIPrefix is where the gateway mounts the REST API.
const APIPrefix = "/api/v1"

// deviceKeyPrefix starts every device API key (docs/protocol.md#identifiers).
const deviceKeyPrefix = wire.DeviceKeyPrefix

// UserAuthenticator verifies user access tokens (*auth.Service).
type UserAuthenticator interface {
	AuthenticateToken(ctx context.Context, token string) (unhidra.Identity, error)
}

// DeviceAuthenticator verifies device API keys (*device.Service).
type DeviceAuthenticator interface {
	AuthenticateDeviceKey(ctx context.Context, key string) (unhidra.Identity, error)
}

// APIHandler is a route handler that runs with the caller's identity.
type APIHandler func(w http.ResponseWriter, r *http.Request, who unhidra.Identity)

// APIDeps are the services behind the REST API.
type APIDeps struct {
	Chat     *chat.Service
	Presence *presence.Service
	Users    UserAuthenticator
	Devices  DeviceAuthenticator // optional: without it device keys get 401
	Audit    *audit.Service      // optional: the audit log's routes (api_audit.go)
	Log      *slog.Logger
	// Routes, when set, registers more routes on the API's mux, with
	// patterns starting with APIPrefix (e.g. "GET /api/v1/devices/{id}/telemetry").
	// user wraps a handler for users only; anyone also admits devices.
	Routes RouteFunc
}

// RouteFunc registers routes on the API's mux, with patterns starting with
// APIPrefix; user wraps a handler for users only, anyone also admits
// devices.
type RouteFunc = func(mux *http.ServeMux, user, anyone func(APIHandler) http.Handler)

// CombineRoutes registers each of fs in turn; nil ones are skipped.
func CombineRoutes(fs ...RouteFunc) RouteFunc {
	return func(mux *http.ServeMux, user, anyone func(APIHandler) http.Handler) {
		for _, f := range fs {
			if f != nil {
				f(mux, user, anyone)
			}
		}
	}
}

type api struct {
	APIDeps
}

// NewAPI returns the REST API handler; the gateway mounts it at
// APIPrefix + "/".
func NewAPI(d APIDeps) http.Handler {
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	a := &api{APIDeps: d}
	mux := http.NewServeMux()
	user := func(h APIHandler) http.Handler { return a.authed(false, h) }
	anyone := func(h APIHandler) http.Handler { return a.authed(true, h) }
	p := APIPrefix
	mux.Handle("GET "+p+"/channels", anyone(a.listChannels))
	mux.Handle("POST "+p+"/channels", user(a.createChannel))
	mux.Handle("GET "+p+"/channels/{id}", anyone(a.getChannel))
	mux.Handle("PATCH "+p+"/channels/{id}", user(a.updateChannel))
	mux.Handle("DELETE "+p+"/channels/{id}", user(a.deleteChannel))
	mux.Handle("GET "+p+"/channels/{id}/members", user(a.listMembers))
	mux.Handle("PUT "+p+"/channels/{id}/members/{user}", user(a.putMember))
	mux.Handle("DELETE "+p+"/channels/{id}/members/{user}", user(a.removeMember))
	mux.Handle("POST "+p+"/channels/{id}/join", user(a.join))
	mux.Handle("POST "+p+"/channels/{id}/leave", user(a.leave))
	mux.Handle("GET "+p+"/channels/{id}/messages", anyone(a.history))
	mux.Handle("POST "+p+"/channels/{id}/messages", anyone(a.postMessage))
	mux.Handle("PATCH "+p+"/channels/{id}/messages/{mid}", anyone(a.editMessage))
	mux.Handle("DELETE "+p+"/channels/{id}/messages/{mid}", anyone(a.deleteMessage))
	mux.Handle("GET "+p+"/channels/{id}/messages/{mid}/thread", anyone(a.thread))
	mux.Handle("GET "+p+"/search", user(a.search))
	mux.Handle("GET "+p+"/presence", user(a.presence))
	mux.Handle("GET "+p+"/admin/connections", user(a.adminConnections))
	mux.HandleFunc("GET "+OpenAPIPath, serveOpenAPI)
	a.directRoutes(mux, user)
	a.auditRoutes(mux, user)
	if d.Routes != nil {
		d.Routes(mux, user, anyone)
	}
	mux.HandleFunc(p+"/", func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, r, a.Log, unhidra.Errorf(unhidra.ENOTFOUND, "no such route"))
	})
	return mux
}

// authed authenticates the Bearer credential and runs h. Device keys are
// admitted only where devices is true.
func (a *api) authed(devices bool, h APIHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		who, err := a.identify(r)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="unhidra"`)
			WriteError(w, r, a.Log, err)
			return
		}
		if who.IsDevice() && !devices {
			WriteError(w, r, a.Log, unhidra.Errorf(unhidra.EFORBIDDEN, "devices may not use this route"))
			return
		}
		h(w, r, who)
	})
}

var errBadCredential = unhidra.Errorf(unhidra.EUNAUTHORIZED, "invalid token")

func (a *api) identify(r *http.Request) (unhidra.Identity, error) {
	tok := BearerToken(r)
	if tok == "" {
		return unhidra.Identity{}, unhidra.Errorf(unhidra.EUNAUTHORIZED, "missing bearer token")
	}
	var who unhidra.Identity
	var err error
	switch {
	case strings.HasPrefix(tok, deviceKeyPrefix):
		if a.Devices == nil {
			return unhidra.Identity{}, errBadCredential
		}
		who, err = a.Devices.AuthenticateDeviceKey(r.Context(), tok)
	case a.Users != nil:
		who, err = a.Users.AuthenticateToken(r.Context(), tok)
	default:
		return unhidra.Identity{}, errBadCredential
	}
	if err != nil {
		if c := unhidra.ErrorCode(err); c == unhidra.EUNAVAILABLE || c == unhidra.ERATELIMITED {
			return unhidra.Identity{}, err
		}
		return unhidra.Identity{}, errBadCredential
	}
	if who.Principal.ID == "" {
		return unhidra.Identity{}, errBadCredential
	}
	return who, nil
}

func (a *api) fail(w http.ResponseWriter, r *http.Request, err error) { WriteError(w, r, a.Log, err) }

// decodeOptional decodes a JSON body when there is one.
func decodeOptional(w http.ResponseWriter, r *http.Request, v any) error {
	if r.ContentLength == 0 && r.Header.Get("Content-Type") == "" {
		return nil
	}
	return DecodeJSON(w, r, MaxJSONBody, v)
}

func (a *api) listChannels(w http.ResponseWriter, r *http.Request, who unhidra.Identity) {
	chs, err := a.Chat.ListChannels(r.Context(), who)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, chs)
}

func (a *api) createChannel(w http.ResponseWriter, r *http.Request, who unhidra.Identity) {
	var in chat.CreateChannel
	if err := DecodeJSON(w, r, MaxJSONBody, &in); err != nil {
		a.fail(w, r, err)
		return
	}
	ch, created, err := a.Chat.CreateChannel(r.Context(), who, in)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	status := http.StatusCreated
	if !created {
		status = http.StatusOK
	}
	WriteJSON(w, status, ch)
}

func (a *api) getChannel(w http.ResponseWriter, r *http.Request, who unhidra.Identity) {
	ch, err := a.Chat.GetChannel(r.Context(), who, r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, ch)
}

func (a *api) updateChannel(w http.ResponseWriter, r *http.Request, who unhidra.Identity) {
	var in struct {
		Name  *string `json:"name"`
		Topic *string `json:"topic"`
	}
	if err := DecodeJSON(w, r, MaxJSONBody, &in); err != nil {
		a.fail(w, r, err)
		return
	}
	if in.Name == nil && in.Topic == nil {
		a.fail(w, r, unhidra.Errorf(unhidra.EINVALID, "nothing to change: give name or topic"))
		return
	}
	ch, err := a.Chat.UpdateChannel(r.Context(), who, r.PathValue("id"), in.Name, in.Topic)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, ch)
}

func (a *api) deleteChannel(w http.ResponseWriter, r *http.Request, who unhidra.Identity) {
	if err := a.Chat.DeleteChannel(r.Context(), who, r.PathValue("id")); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *api) listMembers(w http.ResponseWriter, r *http.Request, who unhidra.Identity) {
	ms, err := a.Chat.Members(r.Context(), who, r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, ms)
}

func (a *api) putMember(w http.ResponseWriter, r *http.Request, who unhidra.Identity) {
	var in struct {
		Role string `json:"role"`
	}
	if err := decodeOptional(w, r, &in); err != nil {
		a.fail(w, r, err)
		return
	}
	m, err := a.Chat.PutMember(r.Context(), who, r.PathValue("id"), r.PathValue("user"), in.Role)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, m)
}

func (a *api) removeMember(w http.ResponseWriter, r *http.Request, who unhidra.Identity) {
	if err := a.Chat.RemoveMember(r.Context(), who, r.PathValue("id"), r.PathValue("user")); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *api) join(w http.ResponseWriter, r *http.Request, who unhidra.Identity) {
	m, err := a.Chat.Join(r.Context(), who, r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, m)
}

func (a *api) leave(w http.ResponseWriter, r *http.Request, who unhidra.Identity) {
	if err := a.Chat.Leave(r.Context(), who, r.PathValue("id")); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// page is the body of history and thread answers.
type page struct {
	Root     *wire.Message  `json:"root,omitempty"`
	Messages []wire.Message `json:"messages"`
	HasMore  bool           `json:"has_more"`
}

func (a *api) history(w http.ResponseWriter, r *http.Request, who unhidra.Identity) {
	q := r.URL.Query()
	p, err := chat.ParsePage(q.Get("before"), q.Get("after"), q.Get("limit"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	msgs, more, err := a.Chat.History(r.Context(), who, r.PathValue("id"), p)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, page{Messages: msgs, HasMore: more})
}

func (a *api) postMessage(w http.ResponseWriter, r *http.Request, who unhidra.Identity) {
	var in wire.Publish
	if err := DecodeJSON(w, r, MaxJSONBody, &in); err != nil {
		a.fail(w, r, err)
		return
	}
	id := r.PathValue("id")
	if in.Channel != "" && in.Channel != id {
		a.fail(w, r, unhidra.Errorf(unhidra.EINVALID, "channel in the body differs from the path"))
		return
	}
	in.Channel = id
	m, dup, err := a.Chat.Post(r.Context(), who, in)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	status := http.StatusCreated
	if dup {
		status = http.StatusOK
	}
	WriteJSON(w, status, m)
}

func (a *api) editMessage(w http.ResponseWriter, r *http.Request, who unhidra.Identity) {
	var in chat.Edit
	if err := DecodeJSON(w, r, MaxJSONBody, &in); err != nil {
		a.fail(w, r, err)
		return
	}
	m, err := a.Chat.EditMessage(r.Context(), who, r.PathValue("id"), r.PathValue("mid"), in)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, m)
}

func (a *api) deleteMessage(w http.ResponseWriter, r *http.Request, who unhidra.Identity) {
	m, err := a.Chat.DeleteMessage(r.Context(), who, r.PathValue("id"), r.PathValue("mid"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, m)
}

func (a *api) thread(w http.ResponseWriter, r *http.Request, who unhidra.Identity) {
	q := r.URL.Query()
	after, err := chat.ParseOffset("after", q.Get("after"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	limit, err := chat.ParseLimit(q.Get("limit"), chat.DefaultPageLimit, chat.MaxPageLimit)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	root, replies, more, err := a.Chat.Thread(r.Context(), who, r.PathValue("id"), r.PathValue("mid"), after, limit)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, page{Root: &root, Messages: replies, HasMore: more})
}

func (a *api) search(w http.ResponseWriter, r *http.Request, who unhidra.Identity) {
	q := r.URL.Query()
	limit, err := chat.ParseLimit(q.Get("limit"), chat.DefaultSearchLim, chat.MaxSearchLimit)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	msgs, err := a.Chat.Search(r.Context(), who, q.Get("q"), q.Get("channel"), limit)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, msgs)
}

func (a *api) presence(w http.ResponseWriter, r *http.Request, who unhidra.Identity) {
	users := r.URL.Query()["user"]
	if len(users) == 0 {
		a.fail(w, r, unhidra.Errorf(unhidra.EINVALID, "name at least one user"))
		return
	}
	if len(users) > presence.MaxQueryUsers {
		a.fail(w, r, unhidra.Errorf(unhidra.EINVALID, "at most %d users per request", presence.MaxQueryUsers))
		return
	}
	for i, u := range users {
		v, err := chat.ValidateUserID(u)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		users[i] = v
	}
	if a.Presence == nil {
		a.fail(w, r, unhidra.Errorf(unhidra.EUNAVAILABLE, "presence is not available"))
		return
	}
	ps, err := a.Presence.GetFor(r.Context(), who, users)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, ps)
}

func (a *api) adminConnections(w http.ResponseWriter, r *http.Request, who unhidra.Identity) {
	if a.Presence == nil {
		a.fail(w, r, unhidra.Errorf(unhidra.EUNAVAILABLE, "presence is not available"))
		return
	}
	conns, err := a.Presence.AdminConnections(who)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, conns)
}
