// Live connections (GET /api/v1/admin/connections), refreshed every 5 s
// while the page is visible, and on demand.
import { html, useEffect, useState, formatTime } from "../lib.js";
import { useApp } from "../app.js";

export function AdminConnections() {
  const { api, conn } = useApp();
  const [rows, setRows] = useState(null);
  const [error, setError] = useState(null);
  const [at, setAt] = useState(null);
  const load = async () => {
    try {
      const r = await api.rest("GET", "/admin/connections");
      const list = Array.isArray(r) ? r : [];
      list.sort((a, b) => String(a.connected_at).localeCompare(String(b.connected_at)));
      setRows(list);
      setError(null);
      setAt(new Date());
    } catch (e) {
      setError(e);
    }
  };
  useEffect(() => {
    load();
    const t = setInterval(() => {
      if (document.visibilityState === "visible") load();
    }, 5000);
    const v = () => document.visibilityState === "visible" && load();
    document.addEventListener("visibilitychange", v);
    return () => {
      clearInterval(t);
      document.removeEventListener("visibilitychange", v);
    };
  }, []);
  const mine = conn.welcome && conn.welcome.session_id;
  return html`<div class="admin-panel">
    <div class="dev-head">
      <h3>Live connections</h3>
      <button type="button" onClick=${load}>Refresh</button>
    </div>
    <p class="muted" role="status">${rows ? `${rows.length} ${rows.length === 1 ? "connection" : "connections"}` : ""}${at ? ` · updated ${at.toLocaleTimeString()} · refreshes every 5 s` : ""}</p>
    ${error && html`<p role="alert" class="error">${error.message}</p>`}
    ${rows && html`<div class="table-wrap"><table class="admin-table">
      <caption class="visually-hidden">Live connections</caption>
      <thead><tr><th scope="col">Who</th><th scope="col">Transport</th><th scope="col">IP</th><th scope="col">Connected</th><th scope="col">Subscriptions</th><th scope="col">Messages in / out</th><th scope="col">Session</th></tr></thead>
      <tbody>
        ${rows.map((c) => html`<tr key=${c.session_id} data-session=${c.session_id}>
          <td data-label="Who">${c.principal ? c.principal.kind + " " + c.principal.id : ""}${c.session_id === mine && html` <span class="badge">this tab</span>`}</td>
          <td data-label="Transport">${c.transport}</td>
          <td data-label="IP">${c.remote_ip}</td>
          <td data-label="Connected"><time datetime=${c.connected_at}>${formatTime(c.connected_at)}</time></td>
          <td data-label="Subscriptions" title=${(c.subscriptions || []).join(", ")}>${(c.subscriptions || []).length}</td>
          <td data-label="Messages in / out">${c.msgs_in} / ${c.msgs_out}</td>
          <td data-label="Session"><code>${c.session_id}</code></td>
        </tr>`)}
      </tbody>
    </table></div>`}
  </div>`;
}
