// The audit log (GET /api/v1/audit): records newest first by filter, page
// by page ("Older", "Newer"), and their verification in this browser: the
// latest checkpoint's signature under the verifier key, then every shown
// record's inclusion proof against that checkpoint's root (verify.js).
// Every read here is itself an audit record (docs/audit.md).
import { html, useEffect, useRef, useState } from "../lib.js";
import { useApp } from "../app.js";
import { pool } from "../devices/fleet.js";
import { available, openCheckpoint, canonicalEntry, leafHash, verifyInclusion, b64decode, equal } from "./verify.js";

export const ACTIONS = [
  "login", "logout", "token_reuse", "password_change", "register", "user_create", "user_verify", "user_disable",
  "device_register", "device_revoke", "device_rotate_key", "channel_create", "channel_delete", "member_add",
  "member_role", "member_remove", "member_join", "member_leave", "message_delete", "connection_refused",
  "audit_read", "config_refused",
];

const PAGE = 50;
const EMPTY = { actor: "", action: "", target: "", outcome: "", from: "", to: "" };

function query(filters, before) {
  const q = new URLSearchParams({ order: "desc", limit: String(PAGE) });
  for (const k of ["actor", "action", "target", "outcome"]) if (filters[k]) q.set(k, filters[k]);
  if (filters.from) q.set("since", new Date(filters.from).toISOString());
  if (filters.to) q.set("until", new Date(filters.to).toISOString());
  if (before >= 0) q.set("before", String(before));
  return "/audit?" + q.toString();
}

export function AdminAudit() {
  const { api } = useApp();
  const [filters, setFilters] = useState(EMPTY);
  const [cursors, setCursors] = useState([-1]); // the `before` of each page seen; the last is shown
  const [page, setPage] = useState(null);
  const [error, setError] = useState(null);
  const [ver, setVer] = useState({ state: "idle", run: 0 });
  const [checks, setChecks] = useState({}); // seq → {ok, error}
  const run = useRef(0);

  const before = cursors[cursors.length - 1];
  useEffect(() => {
    const n = ++run.current;
    setError(null);
    setPage(null);
    setChecks({});
    setVer({ state: "checking", run: n });
    (async () => {
      let p;
      try {
        p = await api.rest("GET", query(filters, before));
      } catch (e) {
        if (run.current === n) {
          setError(e);
          setVer({ state: "idle", run: n });
        }
        return;
      }
      if (run.current !== n) return;
      setPage(p);
      await verifyPage(api, p.records || [], (v) => run.current === n && setVer({ ...v, run: n }), (seq, r) => run.current === n && setChecks((c) => ({ ...c, [seq]: r })));
    })();
  }, [filters, before]);

  const apply = (ev) => {
    ev.preventDefault();
    const f = new FormData(ev.target);
    const next = {};
    for (const k of Object.keys(EMPTY)) next[k] = String(f.get(k) || "").trim();
    setFilters(next);
    setCursors([-1]);
  };
  const clear = (ev) => {
    ev.target.form.reset();
    setFilters(EMPTY);
    setCursors([-1]);
  };
  const records = (page && page.records) || [];
  return html`<div class="admin-panel audit">
    <h3>Audit log</h3>
    <form class="audit-filters" onSubmit=${apply} aria-label="Audit filters">
      <label>Actor <input name="actor" autocomplete="off" spellcheck="false" /></label>
      <label>Action <select name="action">
        <option value="">Any action</option>
        ${ACTIONS.map((a) => html`<option value=${a}>${a}</option>`)}
      </select></label>
      <label>Target <input name="target" autocomplete="off" spellcheck="false" /></label>
      <label>Outcome <select name="outcome">
        <option value="">Any outcome</option><option value="success">success</option><option value="failure">failure</option>
      </select></label>
      <label>From <input name="from" type="datetime-local" /></label>
      <label>To <input name="to" type="datetime-local" /></label>
      <div class="filter-actions"><button type="submit">Apply</button> <button type="button" onClick=${clear}>Clear</button></div>
    </form>
    <${VerifyState} ver=${ver} />
    ${error && html`<p role="alert" class="error">${error.message}</p>`}
    ${!page && !error && html`<p class="loading">Loading records…</p>`}
    ${page && html`<p class="muted">${records.length ? `Records ${records[records.length - 1].seq}–${records[0].seq}` : "No records match"} · the log holds ${page.size} records</p>`}
    ${page && records.length > 0 && html`<div class="table-wrap"><table class="admin-table audit-table">
      <caption class="visually-hidden">Audit records</caption>
      <thead><tr>
        <th scope="col">Time</th><th scope="col">Actor</th><th scope="col">Action</th><th scope="col">Target</th><th scope="col">Outcome</th>
        <th scope="col">Reason</th><th scope="col">IP</th><th scope="col">Transport</th><th scope="col">Request ID</th><th scope="col">Verified</th>
      </tr></thead>
      <tbody>${records.map((r) => html`<${RecordRow} key=${r.seq} r=${r} check=${checks[r.seq]} />`)}</tbody>
    </table></div>`}
    <div class="pager" role="group" aria-label="Pages">
      <button type="button" disabled=${cursors.length < 2} onClick=${() => setCursors(cursors.slice(0, -1))}>Newer</button>
      <button type="button" disabled=${!page || page.next < 0} onClick=${() => setCursors([...cursors, page.next])}>Older</button>
    </div>
  </div>`;
}

function RecordRow({ r, check }) {
  const details = Object.entries(r.details || {});
  return html`<tr data-seq=${r.seq}>
    <td data-label="Time"><time datetime=${r.ts} title=${r.ts}>${new Date(r.ts).toLocaleString()}</time><div class="muted">#${r.seq}</div></td>
    <td data-label="Actor">${r.actor ? (r.actor.id ? r.actor.id : r.actor.kind) : ""}${r.actor && r.actor.id && r.actor.kind !== "user" && html` <span class="muted">(${r.actor.kind})</span>`}</td>
    <td data-label="Action">${r.action}${details.length > 0 && html`<div class="muted details">${details.map(([k, v]) => `${k}=${v}`).join(" · ")}</div>`}</td>
    <td data-label="Target">${r.target || ""}</td>
    <td data-label="Outcome"><span class=${"outcome " + (r.outcome === "success" ? "ok" : "bad")}>${r.outcome}</span></td>
    <td data-label="Reason">${r.reason || ""}</td>
    <td data-label="IP">${r.ip || ""}</td>
    <td data-label="Transport">${r.transport || ""}</td>
    <td data-label="Request ID"><code>${r.request_id || ""}</code></td>
    <td data-label="Verified" class="verify-cell">${!check
      ? html`<span class="muted">…</span>`
      : check.ok
        ? html`<span class="ok" title="in the signed log">✓ verified</span>`
        : html`<span class="bad" title=${check.error}>✗ ${check.error}</span>`}</td>
  </tr>`;
}

function VerifyState({ ver }) {
  let text = "";
  let cls = "muted";
  switch (ver.state) {
    case "checking":
      text = "Verifying…";
      break;
    case "ok":
      text = `Verified: ${ver.count} ${ver.count === 1 ? "record" : "records"} against checkpoint of size ${ver.size} signed ${ver.time ? new Date(ver.time).toLocaleString() : "(no time)"}${ver.origin ? " by " + ver.origin : ""}.`;
      cls = "ok";
      break;
    case "failed":
      text = "Not verified: " + ver.error;
      cls = "bad";
      break;
    case "unavailable":
      text = "Not verified: this browser offers no WebCrypto here (it needs HTTPS).";
      cls = "warn";
      break;
    default:
      text = "";
  }
  return html`<p role="status" aria-live="polite" class=${"verify-state " + cls} data-state=${ver.state} data-run=${ver.run}>${text}</p>`;
}

// verifyPage checks the checkpoint, then each record's inclusion proof;
// onState gets the page's state, onRecord each record's.
async function verifyPage(api, records, onState, onRecord) {
  if (!available()) {
    onState({ state: "unavailable" });
    return;
  }
  let cp;
  try {
    // The records were read first: the checkpoint covers them.
    const [note, vkey] = await Promise.all([api.text("/audit/checkpoint"), api.text("/audit/key")]);
    cp = await openCheckpoint(note, vkey);
  } catch (e) {
    onState({ state: "failed", error: "the checkpoint: " + e.message });
    for (const r of records) onRecord(r.seq, { ok: false, error: "no verified checkpoint" });
    return;
  }
  let good = 0;
  let bad = 0;
  await pool(records, 4, async (r) => {
    try {
      if (r.seq >= cp.size) throw new Error("not yet in the checkpoint");
      const p = await api.rest("GET", `/audit/proof?index=${r.seq}&size=${cp.size}`);
      const leaf = await leafHash(canonicalEntry(r));
      if (p.leaf_hash && !equal(b64decode(p.leaf_hash), leaf)) throw new Error("the record differs from the logged entry");
      await verifyInclusion(r.seq, cp.size, leaf, (p.proof || []).map(b64decode), cp.root);
      good++;
      onRecord(r.seq, { ok: true });
    } catch (e) {
      bad++;
      onRecord(r.seq, { ok: false, error: e.message });
    }
  });
  if (bad === 0) onState({ state: "ok", count: good, size: cp.size, time: cp.time, origin: cp.origin });
  else onState({ state: "failed", error: `${bad} of ${records.length} records failed verification against the checkpoint of size ${cp.size}` });
}
