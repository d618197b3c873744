package httpapi_test

// The audit routes over a real audit log on real SQLite: who may read,
// that every read is itself one record, filters and pages, and that the
// checkpoint, key and proofs served let a client check a record's place
// in the signed tree with nothing but the merkle verifiers.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/audit"
	"github.com/unhidra/unhidra/internal/audit/merkle"
	"github.com/unhidra/unhidra/internal/httpapi"
	"github.com/unhidra/unhidra/internal/sqlite"
	"github.com/unhidra/unhidra/internal/sqlitetest"
	"github.com/unhidra/unhidra/wire"
)

type auditHTTPEnv struct {
	srv *httptest.Server
	log *audit.Log
	st  *sqlite.AuditStore
	// t0 is the time of the first seeded record; record i is t0 + i minutes.
	t0 time.Time
}

// newAuditHTTPEnv serves the REST API with an audit service over a real
// audit log; the fake authenticator of api_test.go names the callers
// (tok-root is an admin, tok-alice is not).
func newAuditHTTPEnv(t *testing.T) *auditHTTPEnv {
	t.Helper()
	ctx := context.Background()
	db := sqlitetest.Open(t)
	st := sqlite.NewAuditStore(db)
	dir := filepath.Join(t.TempDir(), "audit")
	signer, vkey, _, err := audit.LoadSigner("", dir, "unhidra-test")
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.Open(ctx, st, audit.Options{Signer: signer, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	auth := apiFakeAuth{
		"tok-alice": {Principal: wire.Principal{Kind: wire.KindUser, ID: "alice"}},
		"tok-root":  {Principal: wire.Principal{Kind: wire.KindUser, ID: "root"}, Roles: []string{unhidra.RoleAdmin}},
		devKey:      {Principal: wire.Principal{Kind: wire.KindDevice, ID: "sensor"}},
	}
	h := httpapi.NewAPI(httpapi.APIDeps{Users: auth, Devices: auth, Audit: audit.NewService(l, vkey)})
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		srv.Close()
		l.Close()
	})
	return &auditHTTPEnv{srv: srv, log: l, st: st, t0: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
}

// seed appends n records: record i is by alice (even i, a successful
// login) or bob (odd i, a failed login), every third one a device
// registration instead, at t0 + i minutes.
func (e *auditHTTPEnv) seed(t *testing.T, n int) {
	t.Helper()
	ctx := context.Background()
	before := e.log.Head().Size
	for i := range n {
		ev := audit.Event{Time: e.t0.Add(time.Duration(i) * time.Minute), Action: audit.ActionLogin, Outcome: audit.Success,
			Actor: wire.Principal{Kind: wire.KindUser, ID: "alice"}, Target: "alice"}
		if i%2 == 1 {
			ev.Actor.ID, ev.Target, ev.Outcome, ev.Reason = "bob", "bob", audit.Failure, "bad password"
		}
		if i%3 == 0 {
			ev.Action, ev.Target = audit.ActionDeviceRegister, fmt.Sprintf("dev-%d", i)
		}
		e.log.Audit(ctx, ev)
	}
	if got := e.log.Head().Size; got != before+uint64(n) {
		t.Fatalf("seeded %d records, the log grew by %d", n, got-before)
	}
}

// last returns the newest record of the log.
func (e *auditHTTPEnv) last(t *testing.T) audit.Record {
	t.Helper()
	rows, err := e.st.AuditRows(context.Background(), audit.Query{After: -1, Before: -1, Desc: true, Limit: 1})
	if err != nil || len(rows) != 1 {
		t.Fatalf("newest record: %v (%d rows)", err, len(rows))
	}
	r, err := audit.DecodeRecord(rows[0].Entry)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// get sends one GET with token as the Bearer credential ("" for none).
func (e *auditHTTPEnv) get(t *testing.T, path, token string) apiResp {
	t.Helper()
	req, err := http.NewRequest("GET", e.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	return apiResp{status: res.StatusCode, header: res.Header, body: raw}
}

// read sends one GET as who and checks that it appended exactly one
// record, an audit_read of who with outcome, which it returns.
func (e *auditHTTPEnv) read(t *testing.T, path, token string, wantStatus int, outcome string) (apiResp, audit.Record) {
	t.Helper()
	before := e.log.Head().Size
	r := e.get(t, path, token)
	if r.status != wantStatus {
		t.Fatalf("GET %s: %d %s, want %d", path, r.status, r.body, wantStatus)
	}
	if got := e.log.Head().Size; got != before+1 {
		t.Fatalf("GET %s appended %d records, want exactly 1", path, got-before)
	}
	rec := e.last(t)
	if rec.Action != audit.ActionAuditRead || rec.Outcome != outcome {
		t.Fatalf("GET %s: the newest record is %s/%s, want audit_read/%s", path, rec.Action, rec.Outcome, outcome)
	}
	return r, rec
}

func TestAuditRoutesRefuseNonAdminsAndRecordEachRefusal(t *testing.T) {
	e := newAuditHTTPEnv(t)
	e.seed(t, 5)
	for _, path := range []string{"/api/v1/audit", "/api/v1/audit?actor=bob", "/api/v1/audit/checkpoint", "/api/v1/audit/key", "/api/v1/audit/proof?index=0", "/api/v1/audit/proof?from=1"} {
		t.Run("alice is refused "+path+" and the refusal is a record", func(t *testing.T) {
			r, rec := e.read(t, path, "tok-alice", http.StatusForbidden, audit.Failure)
			if r.code() != "forbidden" {
				t.Errorf("error code %q, want forbidden", r.code())
			}
			if strings.Contains(string(r.body), "login") {
				t.Errorf("the refusal shows records: %s", r.body)
			}
			if rec.Actor.ID != "alice" || rec.Reason == "" {
				t.Errorf("refusal record: actor %+v reason %q", rec.Actor, rec.Reason)
			}
		})
	}
	t.Run("a device is refused by the transport, which records nothing", func(t *testing.T) {
		before := e.log.Head().Size
		if r := e.get(t, "/api/v1/audit", devKey); r.status != http.StatusForbidden {
			t.Errorf("device: %d %s, want 403", r.status, r.body)
		}
		if r := e.get(t, "/api/v1/audit", ""); r.status != http.StatusUnauthorized {
			t.Errorf("no credential: %d %s, want 401", r.status, r.body)
		}
		if got := e.log.Head().Size; got != before {
			t.Errorf("%d records appended, want none", got-before)
		}
	})
}

// pageAll follows next from query until it is -1 and returns the seqs.
func (e *auditHTTPEnv) pageAll(t *testing.T, query url.Values, desc bool) []uint64 {
	t.Helper()
	var seqs []uint64
	for pages := 0; ; pages++ {
		if pages > 100 {
			t.Fatal("more than 100 pages")
		}
		r, rec := e.read(t, "/api/v1/audit?"+query.Encode(), "tok-root", http.StatusOK, audit.Success)
		if rec.Actor.ID != "root" || rec.Target != "records" {
			t.Errorf("read record: actor %+v target %q", rec.Actor, rec.Target)
		}
		for k := range query {
			if k != "limit" && k != "order" && rec.Details[k] == "" {
				t.Errorf("read record does not name the %s filter: %v", k, rec.Details)
			}
		}
		var p audit.Page
		r.decode(t, &p)
		for _, rc := range p.Records {
			seqs = append(seqs, rc.Seq)
		}
		if p.Next < 0 {
			return seqs
		}
		if len(p.Records) == 0 || int64(p.Records[len(p.Records)-1].Seq) != p.Next {
			t.Fatalf("next %d is not the last seq of the page %v", p.Next, p.Records)
		}
		if desc {
			query.Set("before", fmt.Sprint(p.Next))
		} else {
			query.Set("after", fmt.Sprint(p.Next))
		}
	}
}

func TestAnAdminPagesThroughAuditRecordsByFilter(t *testing.T) {
	e := newAuditHTTPEnv(t)
	const n = 40
	e.seed(t, n)
	want := func(keep func(i int) bool) []uint64 {
		var s []uint64
		for i := range n {
			if keep(i) {
				s = append(s, uint64(i))
			}
		}
		return s
	}
	ts := func(i int) string { return e.t0.Add(time.Duration(i) * time.Minute).Format(time.RFC3339) }
	for _, tc := range []struct {
		name  string
		query url.Values
		want  []uint64
	}{
		{"by actor", url.Values{"actor": {"alice"}, "limit": {"4"}}, want(func(i int) bool { return i%2 == 0 })},
		{"by action and outcome", url.Values{"action": {audit.ActionLogin}, "outcome": {audit.Failure}, "limit": {"3"}}, want(func(i int) bool { return i%2 == 1 && i%3 != 0 })},
		{"by target", url.Values{"target": {"dev-9"}}, []uint64{9}},
		{"by time range", url.Values{"since": {ts(10)}, "until": {ts(25)}, "limit": {"6"}}, want(func(i int) bool { return i >= 10 && i < 25 })},
		{"by actor and time range", url.Values{"actor": {"bob"}, "since": {ts(30)}, "limit": {"2"}}, want(func(i int) bool { return i%2 == 1 && i >= 30 })},
		{"everything seeded, one page", url.Values{"before": {fmt.Sprint(n)}, "limit": {"500"}}, want(func(int) bool { return true })},
	} {
		t.Run(tc.name+" gives exactly the matching records, oldest first, over pages", func(t *testing.T) {
			got := e.pageAll(t, tc.query, false)
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("got %v\nwant %v", got, tc.want)
			}
		})
	}
	t.Run("newest first pages backwards with before", func(t *testing.T) {
		got := e.pageAll(t, url.Values{"actor": {"alice"}, "order": {"desc"}, "limit": {"7"}}, true)
		w := want(func(i int) bool { return i%2 == 0 })
		for i, j := 0, len(w)-1; i < j; i, j = i+1, j-1 {
			w[i], w[j] = w[j], w[i]
		}
		if fmt.Sprint(got) != fmt.Sprint(w) {
			t.Errorf("got %v\nwant %v", got, w)
		}
	})
	t.Run("the reads are themselves records, found by action", func(t *testing.T) {
		r, _ := e.read(t, "/api/v1/audit?action=audit_read&actor=root&limit=500", "tok-root", http.StatusOK, audit.Success)
		var p audit.Page
		r.decode(t, &p)
		if len(p.Records) == 0 || p.Size != e.log.Head().Size-1 {
			t.Fatalf("%d audit_read records, size %d (log %d)", len(p.Records), p.Size, e.log.Head().Size)
		}
		// Every read is listed, this one included (stored before the
		// records are read): the log holds n seeded records, then only
		// reads.
		if got, want := len(p.Records), int(p.Size)+1-n; got != want {
			t.Errorf("%d audit_read records listed, want %d", got, want)
		}
		for _, rc := range p.Records {
			if rc.Action != audit.ActionAuditRead || rc.Actor.ID != "root" {
				t.Errorf("listed %+v", rc)
			}
		}
	})
}

func TestAuditRoutesRefuseBadParameters(t *testing.T) {
	e := newAuditHTTPEnv(t)
	e.seed(t, 3)
	for _, tc := range []struct{ query, want string }{
		{"/api/v1/audit?limit=0", "limit"},
		{"/api/v1/audit?limit=501", "limit"},
		{"/api/v1/audit?limit=many", "limit"},
		{"/api/v1/audit?since=yesterday", "since"},
		{"/api/v1/audit?until=2025-13-01T00:00:00Z", "until"},
		{"/api/v1/audit?since=2025-03-02T00:00:00Z&until=2025-03-01T00:00:00Z", "until"},
		{"/api/v1/audit?after=-1", "after"},
		{"/api/v1/audit?before=x", "before"},
		{"/api/v1/audit?order=sideways", "order"},
		{"/api/v1/audit?outcome=maybe", "outcome"},
		{"/api/v1/audit/proof", "index"},
		{"/api/v1/audit/proof?index=0&from=1", "not both"},
		{"/api/v1/audit/proof?index=x", "index"},
		{"/api/v1/audit/proof?index=-1", "index"},
		{"/api/v1/audit/proof?from=0", "from"},
		{"/api/v1/audit/proof?index=0&size=0", "size"},
		{"/api/v1/audit/proof?index=0&size=", "size"},
		{"/api/v1/audit/proof?index=99&size=3", "index"},
		{"/api/v1/audit/proof?index=0&size=1000000", "size"},
		{"/api/v1/audit/proof?from=3&size=2", "from"},
	} {
		t.Run(tc.query+" is 400 invalid naming "+tc.want, func(t *testing.T) {
			r := e.get(t, tc.query, "tok-root")
			if r.status != http.StatusBadRequest || r.code() != "invalid" || !strings.Contains(string(r.body), tc.want) {
				t.Errorf("%d %s, want 400 invalid naming %q", r.status, r.body, tc.want)
			}
		})
	}
}

// checkpoint fetches the checkpoint and the key and opens one with the
// other.
func (e *auditHTTPEnv) checkpoint(t *testing.T) (audit.Checkpoint, string) {
	t.Helper()
	r, _ := e.read(t, "/api/v1/audit/key", "tok-root", http.StatusOK, audit.Success)
	if ct := r.header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
		t.Errorf("key Content-Type %q", ct)
	}
	vkey := strings.TrimSpace(string(r.body))
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatalf("the served key %q: %v", vkey, err)
	}
	r, _ = e.read(t, "/api/v1/audit/checkpoint", "tok-root", http.StatusOK, audit.Success)
	if ct := r.header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
		t.Errorf("checkpoint Content-Type %q", ct)
	}
	cp, err := audit.OpenCheckpoint(r.body, note.VerifierList(v))
	if err != nil {
		t.Fatalf("the served checkpoint does not open with the served key: %v\n%s", err, r.body)
	}
	return cp, vkey
}

func TestAnInclusionProofOfAServedRecordVerifiesAgainstTheCheckpoint(t *testing.T) {
	e := newAuditHTTPEnv(t)
	e.seed(t, 37)
	cp, _ := e.checkpoint(t)
	if cp.Size < 37 {
		t.Fatalf("checkpoint of %d records", cp.Size)
	}
	r, _ := e.read(t, "/api/v1/audit?limit=500", "tok-root", http.StatusOK, audit.Success)
	var p audit.Page
	r.decode(t, &p)
	for _, idx := range []int{0, 1, 17, 36} {
		t.Run(fmt.Sprintf("record %d", idx), func(t *testing.T) {
			rec := p.Records[idx]
			entry, err := rec.Encode()
			if err != nil {
				t.Fatal(err)
			}
			leaf := merkle.LeafHash(entry)
			r, _ := e.read(t, fmt.Sprintf("/api/v1/audit/proof?index=%d&size=%d", rec.Seq, cp.Size), "tok-root", http.StatusOK, audit.Success)
			var pr audit.Proof
			r.decode(t, &pr)
			if pr.Index == nil || *pr.Index != rec.Seq || pr.Size != cp.Size || pr.Root != cp.Root || pr.Leaf == nil || *pr.Leaf != leaf {
				t.Fatalf("proof %s: does not name the record, size, root and leaf asked for", r.body)
			}
			if err := merkle.VerifyInclusion(leaf, rec.Seq, cp.Size, pr.Hashes, cp.Root); err != nil {
				t.Errorf("the proof does not verify: %v", err)
			}
			// The same proof refuses the record altered.
			rec.Reason += "!"
			forged, _ := rec.Encode()
			if err := merkle.VerifyInclusion(merkle.LeafHash(forged), rec.Seq, cp.Size, pr.Hashes, cp.Root); err == nil {
				t.Error("the proof verifies an altered record too")
			}
		})
	}
	t.Run("without size the proof is against the latest head", func(t *testing.T) {
		r, _ := e.read(t, "/api/v1/audit/proof?index=3", "tok-root", http.StatusOK, audit.Success)
		var pr audit.Proof
		r.decode(t, &pr)
		if pr.Size <= cp.Size {
			t.Errorf("size %d, want beyond the checkpoint's %d (the reads since were appended)", pr.Size, cp.Size)
		}
		entry, _ := p.Records[3].Encode()
		if err := merkle.VerifyInclusion(merkle.LeafHash(entry), 3, pr.Size, pr.Hashes, pr.Root); err != nil {
			t.Error(err)
		}
	})
}

func TestAConsistencyProofBetweenTwoCheckpointsVerifies(t *testing.T) {
	e := newAuditHTTPEnv(t)
	e.seed(t, 11)
	older, _ := e.checkpoint(t)
	for i := range 50 {
		e.log.Audit(context.Background(), audit.Event{Action: audit.ActionLogout, Actor: wire.Principal{Kind: wire.KindUser, ID: fmt.Sprint("u", i)}})
	}
	newer, _ := e.checkpoint(t)
	if newer.Size <= older.Size+50 {
		t.Fatalf("checkpoints of %d and %d records", older.Size, newer.Size)
	}
	r, _ := e.read(t, fmt.Sprintf("/api/v1/audit/proof?from=%d&size=%d", older.Size, newer.Size), "tok-root", http.StatusOK, audit.Success)
	var pr audit.Proof
	r.decode(t, &pr)
	if pr.From == nil || *pr.From != older.Size || pr.FromRoot == nil || *pr.FromRoot != older.Root || pr.Root != newer.Root {
		t.Fatalf("proof %s does not name the two checkpoints' sizes and roots", r.body)
	}
	if err := merkle.VerifyConsistency(older.Size, newer.Size, older.Root, newer.Root, pr.Hashes); err != nil {
		t.Errorf("the consistency proof does not verify: %v", err)
	}
	forged := older.Root
	forged[0] ^= 1
	if err := merkle.VerifyConsistency(older.Size, newer.Size, forged, newer.Root, pr.Hashes); err == nil {
		t.Error("the proof verifies against another older root too")
	}
}

func TestTheCheckpointIsNotFoundWhileTheLogHasNone(t *testing.T) {
	e := newAuditHTTPEnv(t)
	// A log that stores nothing (closed before its first record) has no
	// checkpoint to serve; the read is refused as not found, not served
	// empty.
	e.log.Close()
	r := e.get(t, "/api/v1/audit/checkpoint", "tok-root")
	if r.status != http.StatusNotFound || r.code() != "not_found" {
		t.Errorf("%d %s, want 404 not_found", r.status, r.body)
	}
}

// exerciseAuditRoutes drives every audit operation of the OpenAPI
// document, for the contract test (openapi_test.go).
func exerciseAuditRoutes(t *testing.T, c *contract) {
	e := newAuditHTTPEnv(t)
	e.seed(t, 5)
	gw, p := e.srv.URL, httpapi.APIPrefix
	c.call(gw, "GET", p+"/audit?actor=alice&since=2025-03-01T00:00:00Z&order=desc&limit=2", "tok-root", nil, 200)
	c.call(gw, "GET", p+"/audit?limit=0", "tok-root", nil, 400)
	c.call(gw, "GET", p+"/audit", "tok-alice", nil, 403)
	c.call(gw, "GET", p+"/audit", "", nil, 401)
	c.call(gw, "GET", p+"/audit/checkpoint", "tok-root", nil, 200)
	c.call(gw, "GET", p+"/audit/checkpoint", "tok-alice", nil, 403)
	c.call(gw, "GET", p+"/audit/key", "tok-root", nil, 200)
	c.call(gw, "GET", p+"/audit/key", "tok-alice", nil, 403)
	c.call(gw, "GET", p+"/audit/proof?index=2&size=5", "tok-root", nil, 200)
	c.call(gw, "GET", p+"/audit/proof?from=3", "tok-root", nil, 200)
	c.call(gw, "GET", p+"/audit/proof?from=3&index=1", "tok-root", nil, 400)
	c.call(gw, "GET", p+"/audit/proof?index=0", "tok-alice", nil, 403)
	empty := newAuditHTTPEnv(t)
	empty.log.Close()
	c.call(empty.srv.URL, "GET", p+"/audit/checkpoint", "tok-root", nil, 404)
}
