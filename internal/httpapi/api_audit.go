package httpapi

// The audit log's routes (docs/audit.md): records by filter and page, the
// latest signed checkpoint, its verifier key, and inclusion and consistency
// proofs. Users only; whether the caller may read the log (admins) is
// audit.Service's decision, which also records every read, refusals
// included. The handlers only parse parameters and encode answers.

import (
	"net/http"
	"net/url"
	"strconv"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/audit"
	"github.com/unhidra/unhidra/internal/chat"
)

// auditRoutes registers the audit routes when the API has an audit
// service.
func (a *api) auditRoutes(mux *http.ServeMux, user func(APIHandler) http.Handler) {
	if a.Audit == nil {
		return
	}
	p := APIPrefix
	mux.Handle("GET "+p+"/audit", user(a.auditRecords))
	mux.Handle("GET "+p+"/audit/checkpoint", user(a.auditCheckpoint))
	mux.Handle("GET "+p+"/audit/key", user(a.auditKey))
	mux.Handle("GET "+p+"/audit/proof", user(a.auditProof))
}

// DefaultAuditPage is the page size of GET /api/v1/audit without limit.
const DefaultAuditPage = 100

// parseAuditQuery reads the filters and page of GET /api/v1/audit.
func parseAuditQuery(r *http.Request) (audit.Query, error) {
	v := r.URL.Query()
	q := audit.Query{
		Actor:   v.Get("actor"),
		Action:  v.Get("action"),
		Target:  v.Get("target"),
		Outcome: v.Get("outcome"),
		After:   -1,
		Before:  -1,
	}
	if q.Outcome != "" && q.Outcome != audit.Success && q.Outcome != audit.Failure {
		return q, unhidra.Errorf(unhidra.EINVALID, "outcome must be %s or %s", audit.Success, audit.Failure)
	}
	var err error
	if q.Since, err = parseTimeParam(r, "since"); err != nil {
		return q, err
	}
	if q.Until, err = parseTimeParam(r, "until"); err != nil {
		return q, err
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && q.Until.Before(q.Since) {
		return q, unhidra.Errorf(unhidra.EINVALID, "until must not be before since")
	}
	if q.After, err = seqParam(v, "after", -1); err != nil {
		return q, err
	}
	if q.Before, err = seqParam(v, "before", -1); err != nil {
		return q, err
	}
	switch v.Get("order") {
	case "", "asc":
	case "desc":
		q.Desc = true
	default:
		return q, unhidra.Errorf(unhidra.EINVALID, "order must be asc or desc")
	}
	if q.Limit, err = chat.ParseLimit(v.Get("limit"), DefaultAuditPage, audit.MaxPage); err != nil {
		return q, err
	}
	return q, nil
}

// seqParam parses a record index parameter (a non-negative integer), def
// when absent.
func seqParam(v url.Values, name string, def int64) (int64, error) {
	s := v.Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, unhidra.Errorf(unhidra.EINVALID, "%s must be a record index (a non-negative integer)", name)
	}
	return n, nil
}

// sizeParam parses a tree size or index parameter: ok is false when it is
// absent.
func sizeParam(v url.Values, name string, min uint64) (n uint64, ok bool, err error) {
	s, ok := v.Get(name), v.Has(name)
	if !ok {
		return 0, false, nil
	}
	n, perr := strconv.ParseUint(s, 10, 64)
	if perr != nil || n < min {
		what := "a non-negative integer"
		if min > 0 {
			what = "a positive integer"
		}
		return 0, true, unhidra.Errorf(unhidra.EINVALID, "%s must be %s", name, what)
	}
	return n, true, nil
}

func (a *api) auditRecords(w http.ResponseWriter, r *http.Request, who unhidra.Identity) {
	q, err := parseAuditQuery(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	p, err := a.Audit.Records(r.Context(), who, q)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, p)
}

func writeText(w http.ResponseWriter, b []byte) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

func (a *api) auditCheckpoint(w http.ResponseWriter, r *http.Request, who unhidra.Identity) {
	note, err := a.Audit.Checkpoint(r.Context(), who)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if len(note) == 0 {
		a.fail(w, r, unhidra.Errorf(unhidra.ENOTFOUND, "the audit log is empty: no checkpoint yet"))
		return
	}
	writeText(w, note)
}

func (a *api) auditKey(w http.ResponseWriter, r *http.Request, who unhidra.Identity) {
	key, err := a.Audit.Key(r.Context(), who)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeText(w, []byte(key+"\n"))
}

// auditProof is an inclusion proof (?index=I) or a consistency proof
// (?from=M), against the tree of size records (the latest when absent).
func (a *api) auditProof(w http.ResponseWriter, r *http.Request, who unhidra.Identity) {
	v := r.URL.Query()
	index, hasIndex, err := sizeParam(v, "index", 0)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	from, hasFrom, err := sizeParam(v, "from", 1)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	size, _, err := sizeParam(v, "size", 1)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var p audit.Proof
	switch {
	case hasIndex && hasFrom:
		err = unhidra.Errorf(unhidra.EINVALID, "give index (an inclusion proof) or from (a consistency proof), not both")
	case hasIndex:
		p, err = a.Audit.InclusionProof(r.Context(), who, index, size)
	case hasFrom:
		p, err = a.Audit.ConsistencyProof(r.Context(), who, from, size)
	default:
		err = unhidra.Errorf(unhidra.EINVALID, "give index (an inclusion proof) or from (a consistency proof)")
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, p)
}
