package httpapi

// Consent and blocks (issue 7): accepting a channel one was added to, and
// blocking users. The rules live in chat.Service (Accept, Block, Unblock,
// Blocks), so the WebSocket and MQTT transports enforce the same blocks.
//
//	POST   /api/v1/channels/{id}/accept  → 200 Member (idempotent)
//	POST   /api/v1/users/{id}/block      → 200 {user, created_at} (idempotent)
//	DELETE /api/v1/users/{id}/block      → 204 (idempotent)
//	GET    /api/v1/blocks                → 200 [{user, created_at}]

import (
	"net/http"

	"github.com/unhidra/unhidra"
)

func (a *api) directRoutes(mux *http.ServeMux, user func(APIHandler) http.Handler) {
	p := APIPrefix
	mux.Handle("POST "+p+"/channels/{id}/accept", user(a.accept))
	mux.Handle("POST "+p+"/users/{id}/block", user(a.block))
	mux.Handle("DELETE "+p+"/users/{id}/block", user(a.unblock))
	mux.Handle("GET "+p+"/blocks", user(a.listBlocks))
}

func (a *api) accept(w http.ResponseWriter, r *http.Request, who unhidra.Identity) {
	m, err := a.Chat.Accept(r.Context(), who, r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, m)
}

func (a *api) block(w http.ResponseWriter, r *http.Request, who unhidra.Identity) {
	b, err := a.Chat.Block(r.Context(), who, r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, b)
}

func (a *api) unblock(w http.ResponseWriter, r *http.Request, who unhidra.Identity) {
	if err := a.Chat.Unblock(r.Context(), who, r.PathValue("id")); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *api) listBlocks(w http.ResponseWriter, r *http.Request, who unhidra.Identity) {
	bs, err := a.Chat.Blocks(r.Context(), who)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, bs)
}
