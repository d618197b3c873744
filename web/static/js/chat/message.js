// One message in a log: author, time, body (text with links, device data
// as compact JSON, an encrypted body as a notice, a deletion as "message
// deleted"), and its actions: reply in thread, edit and delete.
import { html, useEffect, useRef, useState, formatTime } from "../lib.js";
import { useApp } from "../app.js";
import { linkify, compactJSON } from "./text.js";

export function authorOf(store, m) {
  const s = m.sender || {};
  if (s.kind === "user") return store.displayName(s.id);
  return s.id || "unknown";
}

function Body({ m }) {
  if (m.deleted) return html`<p class="msg-text msg-deleted">message deleted</p>`;
  if (typeof m.text === "string") return html`<p class="msg-text">${linkify(m.text)}</p>`;
  if (m.e2ee !== undefined && m.e2ee !== null) return html`<p class="msg-text msg-e2ee">Encrypted message</p>`;
  if (m.data !== undefined) return html`<pre class="msg-data"><code>${compactJSON(m.data)}</code></pre>`;
  return html`<p class="msg-text muted">(empty)</p>`;
}

// MessageItem props: m, store, canManage (channel admin), grouped (same
// author as the one before: the head is kept for screen readers only),
// replies (count, for a root in the main log), onThread (open the
// thread; absent inside a thread).
export function MessageItem({ m, store, canManage, grouped, replies, onThread, channel }) {
  const { api } = useApp();
  const [mode, setMode] = useState(""); // "", "edit", "delete"
  const [error, setError] = useState(null);
  const mine = m.sender && m.sender.kind === "user" && m.sender.id === store.me;
  const canEdit = mine && !m.deleted && typeof m.text === "string";
  const canDelete = !m.deleted && (mine || canManage);
  const author = authorOf(store, m);
  const path = "/channels/" + encodeURIComponent(channel) + "/messages/" + encodeURIComponent(m.id);
  const save = async (text) => {
    setError(null);
    try {
      const updated = await api.rest("PATCH", path, { text });
      store.dispatchEvent(new CustomEvent("local-update", { detail: updated }));
      setMode("");
    } catch (e) {
      setError(e);
    }
  };
  const del = async () => {
    setError(null);
    try {
      const t = await api.rest("DELETE", path);
      store.dispatchEvent(new CustomEvent("local-update", { detail: t }));
      setMode("");
    } catch (e) {
      setError(e);
    }
  };
  return html`<li class=${"msg" + (grouped ? " grouped" : "") + (mine ? " mine" : "")} data-offset=${m.offset} data-id=${m.id}>
    <div class=${"msg-head" + (grouped ? " visually-hidden" : "")}>
      <span class="author">${author}</span>
      ${" "}<time datetime=${m.created_at} title=${m.created_at}>${formatTime(m.created_at)}</time>
      ${m.edited_at && !m.deleted ? html` <span class="edited muted">(edited)</span>` : null}
    </div>
    ${mode === "edit" ? html`<${EditBox} initial=${m.text} onSave=${save} onCancel=${() => setMode("")} />` : html`<${Body} m=${m} />`}
    ${replies > 0 && onThread && html`<button type="button" class="link replies" onClick=${onThread}>${replies === 1 ? "1 reply" : replies + " replies"}</button>`}
    ${mode === "delete" && html`<div class="confirm" role="group" aria-label="Confirm delete">
      <span>Delete this message?</span>
      <button type="button" class="danger" onClick=${del}>Yes, delete</button>
      <button type="button" onClick=${() => setMode("")}>Cancel</button>
    </div>`}
    ${error && html`<p role="alert" class="error">${error.message}</p>`}
    ${mode === "" && !m.deleted && html`<div class="msg-actions" role="group" aria-label=${"Actions for the message of " + author}>
      ${onThread && html`<button type="button" onClick=${onThread}>Reply in thread</button>`}
      ${canEdit && html`<button type="button" onClick=${() => setMode("edit")}>Edit</button>`}
      ${canDelete && html`<button type="button" onClick=${() => setMode("delete")}>Delete</button>`}
    </div>`}
  </li>`;
}

function EditBox({ initial, onSave, onCancel }) {
  const ref = useRef(null);
  const [text, setText] = useState(initial || "");
  useEffect(() => {
    const el = ref.current;
    el.focus();
    el.setSelectionRange(el.value.length, el.value.length);
  }, []);
  const submit = (ev) => {
    ev.preventDefault();
    if (text.trim()) onSave(text);
  };
  const key = (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) submit(ev);
    else if (ev.key === "Escape") {
      ev.stopPropagation();
      onCancel();
    }
  };
  return html`<form class="edit" onSubmit=${submit}>
    <textarea ref=${ref} aria-label="Edit message" rows="2" value=${text} onInput=${(e) => setText(e.target.value)} onKeyDown=${key}></textarea>
    <div><button type="submit">Save</button> <button type="button" onClick=${onCancel}>Cancel</button></div>
  </form>`;
}

// Composer is a textarea that sends on Enter (Shift+Enter: a new line),
// sends a typing notice at most every 3 s, and publishes through the
// connection's outbox.
export function Composer({ channel, threadID, label, button, placeholder, onSent, disabled }) {
  const { conn } = useApp();
  const [text, setText] = useState("");
  const [error, setError] = useState(null);
  const lastTyping = useRef(0);
  const ref = useRef(null);
  const send = (ev) => {
    if (ev) ev.preventDefault();
    const t = text;
    if (!t.trim()) return;
    setText("");
    setError(null);
    const body = { text: t };
    if (threadID) body.thread_id = threadID;
    conn.publish(channel, body).then((ack) => onSent && onSent(ack), (e) => {
      if (e.code) setError(e);
    });
    lastTyping.current = 0;
    if (ref.current) ref.current.focus();
  };
  const input = (ev) => {
    setText(ev.target.value);
    const now = Date.now();
    if (ev.target.value && now - lastTyping.current > 3000) {
      lastTyping.current = now;
      conn.send({ type: "typing", channel });
    }
  };
  const key = (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) send(ev);
  };
  return html`<form class="composer" onSubmit=${send}>
    <textarea ref=${ref} aria-label=${label} rows="1" placeholder=${placeholder} value=${text} disabled=${disabled}
      maxlength="16384" onInput=${input} onKeyDown=${key}></textarea>
    <button type="submit" class="primary" disabled=${disabled}>${button}</button>
    ${error && html`<p role="alert" class="error">${error.message}</p>`}
  </form>`;
}

// Pending lists the outbox items of a channel (typed offline, or not yet
// acknowledged) as "sending…".
export function Pending({ items, store }) {
  if (!items.length) return null;
  return items.map((it) => html`<li class="msg pending" key=${it.client_msg_id} data-client-msg-id=${it.client_msg_id}>
    <div class="msg-head"><span class="author">${store.displayName(store.me)}</span> <span class="muted">sending…</span></div>
    <p class="msg-text">${linkify(it.body.text || "")}</p>
  </li>`);
}
