// Member management (owners and admins add, remove and change roles;
// everyone sees the list) and channel settings (rename, topic, delete).
import { html, useEffect, useState, go } from "../lib.js";
import { useApp } from "../app.js";
import { useChat } from "./store.js";
import { Modal, ErrorLine } from "./ui.js";

const ROLES = ["member", "admin", "owner"];

export function MembersDialog({ ch, manage, owner, onLeave, onClose }) {
  const { api } = useApp();
  const store = useChat();
  const [members, setMembers] = useState(null);
  const [error, setError] = useState(null);
  const base = "/channels/" + encodeURIComponent(ch.id) + "/members";
  const load = async () => {
    try {
      const list = await store.refreshMembers(ch.id);
      setMembers(list || (await api.rest("GET", base)));
    } catch (e) {
      setError(e);
    }
  };
  useEffect(() => {
    load();
  }, [ch.id]);
  const act = async (fn) => {
    setError(null);
    try {
      await fn();
      await load();
    } catch (e) {
      setError(e);
    }
  };
  const add = (ev) => {
    ev.preventDefault();
    const form = ev.target;
    const user = String(new FormData(form).get("user")).trim().toLowerCase();
    if (!user) return;
    act(async () => {
      await api.rest("PUT", base + "/" + encodeURIComponent(user), {});
      form.reset();
    });
  };
  return html`<${Modal} title=${"Members of " + store.channelName(ch)} onClose=${onClose} className="members">
    ${members === null && !error && html`<p class="muted">Loading…</p>`}
    <ul class="member-list">
      ${(members || []).map((m) => html`<li key=${m.user}>
        <span class="member-name">${store.displayName(m.user)}${m.user === store.me ? " (you)" : ""}</span>
        ${!m.accepted_at && html`<span class="muted"> (invited)</span>`}
        ${manage && m.user !== store.me
          ? html`<select aria-label=${"Role of " + m.user} value=${m.role}
              onChange=${(e) => act(() => api.rest("PUT", base + "/" + encodeURIComponent(m.user), { role: e.target.value }))}>
              ${ROLES.map((r) => html`<option value=${r} disabled=${r !== "member" && !owner && r !== m.role}>${r}</option>`)}
            </select>
            <button type="button" onClick=${() => act(() => api.rest("DELETE", base + "/" + encodeURIComponent(m.user)))}>${"Remove " + m.user}</button>`
          : html`<span class="role">${m.role}</span>`}
      </li>`)}
    </ul>
    ${manage && html`<form class="add-member" onSubmit=${add}>
      <label>Add member <input name="user" required minlength="3" maxlength="32" autocomplete="off" autocapitalize="none" /></label>
      <button type="submit">Add</button>
    </form>`}
    <${ErrorLine} error=${error} />
    <div class="modal-actions"><button type="button" onClick=${async () => { await onLeave(); onClose(); }}>Leave channel</button></div>
  <//>`;
}

export function SettingsDialog({ ch, owner, onClose }) {
  const { api } = useApp();
  const store = useChat();
  const [error, setError] = useState(null);
  const [confirm, setConfirm] = useState(false);
  const path = "/channels/" + encodeURIComponent(ch.id);
  const save = async (ev) => {
    ev.preventDefault();
    const f = new FormData(ev.target);
    setError(null);
    try {
      await api.rest("PATCH", path, { name: String(f.get("name")).trim(), topic: String(f.get("topic") || "").trim() });
      await store.reload();
      onClose();
    } catch (e) {
      setError(e);
    }
  };
  const del = async () => {
    setError(null);
    try {
      await api.rest("DELETE", path);
      await store.reload();
      onClose();
      go();
    } catch (e) {
      setError(e);
    }
  };
  return html`<${Modal} title="Channel settings" onClose=${onClose}>
    <form onSubmit=${save}>
      <label>Name <input name="name" required maxlength="80" value=${ch.name} /></label>
      <label>Topic <input name="topic" maxlength="250" value=${ch.topic || ""} /></label>
      <div class="modal-actions"><button type="submit">Save</button></div>
    </form>
    ${owner && html`<div class="danger-zone">
      ${confirm
        ? html`<p>Delete ${ch.name} and all its messages for everyone?</p>
            <button type="button" class="danger" onClick=${del}>Yes, delete channel</button> <button type="button" onClick=${() => setConfirm(false)}>Cancel</button>`
        : html`<button type="button" class="danger" onClick=${() => setConfirm(true)}>Delete channel</button>`}
    </div>`}
    <${ErrorLine} error=${error} />
  <//>`;
}
