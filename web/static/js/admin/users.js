// Users: every account with its roles and state; verify one waiting for
// approval (REGISTRATION=approval), disable one (its sessions end).
import { html, useEffect, useState, formatTime } from "../lib.js";
import { useApp } from "../app.js";
import { Confirm } from "../devices/ui.js";

export function AdminUsers() {
  const { api } = useApp();
  const [users, setUsers] = useState(null);
  const [error, setError] = useState(null);
  const [status, setStatus] = useState("");
  const [confirm, setConfirm] = useState(null);
  const load = async () => {
    try {
      const r = await api.auth("GET", "/admin/users");
      const list = (r && r.users) || [];
      // Those waiting for approval first, then by name.
      list.sort((a, b) => Number(a.verified) - Number(b.verified) || a.username.localeCompare(b.username));
      setUsers(list);
      setError(null);
    } catch (e) {
      setError(e);
    }
  };
  useEffect(() => {
    load();
  }, []);
  const replace = (u) => setUsers((list) => list.map((x) => (x.username === u.username ? u : x)));
  const verify = async (u) => {
    try {
      replace(await api.auth("POST", "/admin/users/" + encodeURIComponent(u.username) + "/verify"));
      setStatus(u.username + " is verified.");
    } catch (e) {
      setError(e);
    }
  };
  const disable = async (u) => {
    replace(await api.auth("POST", "/admin/users/" + encodeURIComponent(u.username) + "/disable"));
    setStatus(u.username + " is disabled.");
  };
  const me = (api.user || {}).username;
  return html`<div class="admin-panel">
    <h3>Users</h3>
    <p role="status" class="muted">${status}</p>
    ${error && html`<p role="alert" class="error">${error.message}</p>`}
    ${!users && !error && html`<p class="loading">Loading users…</p>`}
    ${users && html`<div class="table-wrap"><table class="admin-table">
      <caption class="visually-hidden">Users</caption>
      <thead><tr><th scope="col">Username</th><th scope="col">Display name</th><th scope="col">Roles</th><th scope="col">State</th><th scope="col">Created</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
      <tbody>
        ${users.map((u) => html`<tr key=${u.username} data-user=${u.username}>
          <td data-label="Username">${u.username}</td>
          <td data-label="Display name">${u.display_name}</td>
          <td data-label="Roles">${(u.roles || []).join(", ") || "user"}</td>
          <td data-label="State"><span class=${"user-state " + (u.disabled ? "bad" : u.verified ? "ok" : "warn")}>${u.disabled ? "disabled" : u.verified ? "verified" : "awaiting verification"}</span></td>
          <td data-label="Created"><time datetime=${u.created_at}>${formatTime(u.created_at)}</time></td>
          <td class="row-actions">
            ${!u.verified && !u.disabled && html`<button type="button" aria-label=${"Verify " + u.username} onClick=${() => verify(u)}>Verify</button>`}
            ${!u.disabled && u.username !== me && html`<button type="button" class="danger" aria-label=${"Disable " + u.username} onClick=${() => setConfirm(u)}>Disable</button>`}
          </td>
        </tr>`)}
      </tbody>
    </table></div>`}
    ${confirm && html`<${Confirm} title=${"Disable " + confirm.username + "?"} action="Disable"
      text="The account can no longer sign in, and its sessions and live connections end at once."
      onClose=${() => setConfirm(null)} onConfirm=${() => disable(confirm)} />`}
  </div>`;
}
