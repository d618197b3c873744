// Pieces the device and admin views share: a confirmation, the dialog
// that shows a new API key once, the register form, and a device's state
// and last-seen time as text (dialogs are ../ui.js's Modal).
import { html, useRef, useState } from "../lib.js";
import { Modal, ErrorLine } from "../ui.js";
import { useApp } from "../app.js";
import { stateOf, relativeTime, absoluteTime, useNow } from "./fleet.js";

// Confirm asks before a destructive action; onConfirm may be async (its
// error is shown, the dialog stays).
export function Confirm({ title, text, action, onConfirm, onClose }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const run = async () => {
    setBusy(true);
    setError(null);
    try {
      await onConfirm();
      onClose();
    } catch (e) {
      setError(e);
      setBusy(false);
    }
  };
  return html`<${Modal} title=${title} onClose=${onClose} className="dev-modal">
    <p>${text}</p>
    <${ErrorLine} error=${error} />
    <div class="modal-actions">
      <button type="button" onClick=${onClose}>Cancel</button>
      <button type="button" class="danger" disabled=${busy} onClick=${run}>${action}</button>
    </div>
  <//>`;
}

// KeyDialog shows a device's API key, once: it lives only in this
// dialog's props and is gone when it closes.
export function KeyDialog({ name, apiKey, onClose }) {
  const input = useRef(null);
  const [copied, setCopied] = useState("");
  const copy = async () => {
    try {
      if (!navigator.clipboard) throw new Error("no clipboard");
      await navigator.clipboard.writeText(apiKey);
      setCopied("Copied to the clipboard.");
    } catch {
      input.current.focus();
      input.current.select();
      setCopied("Copying is not allowed here: the key is selected, press Ctrl+C (⌘C) to copy it.");
    }
  };
  return html`<${Modal} title=${"API key of " + name} onClose=${onClose} className="dev-modal key-dialog">
    <p class="warning" role="alert"><strong>Copy this key now: it will not be shown again.</strong> Unhidra keeps only its hash; if it is lost, rotate the key.</p>
    <label>API key
      <input ref=${input} class="api-key" readonly value=${apiKey} spellcheck="false" autocomplete="off" onFocus=${(ev) => ev.target.select()} />
    </label>
    <p role="status" class="muted">${copied}</p>
    <div class="modal-actions">
      <button type="button" class="primary" onClick=${copy}>Copy</button>
      <button type="button" onClick=${onClose}>Done</button>
    </div>
  <//>`;
}

// RegisterDialog registers a device (POST /devices on the auth API) and
// hands the answer (with its one-time api_key) to onDone. Admins may name
// the owner.
export function RegisterDialog({ onClose, onDone }) {
  const { api } = useApp();
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const submit = async (ev) => {
    ev.preventDefault();
    const f = new FormData(ev.target);
    const body = { name: String(f.get("name") || "").trim() };
    const id = String(f.get("device_id") || "").trim();
    if (id) body.device_id = id;
    const owner = String(f.get("owner") || "").trim();
    if (owner) body.owner = owner;
    setBusy(true);
    setError(null);
    try {
      const d = await api.auth("POST", "/devices", body);
      onDone(d);
    } catch (e) {
      setError(e);
      setBusy(false);
    }
  };
  return html`<${Modal} title="Register device" onClose=${onClose} className="dev-modal">
    <form onSubmit=${submit}>
      <label>Name <input name="name" required maxlength="64" autocomplete="off" autofocus /></label>
      <label>Device ID <input name="device_id" maxlength="64" autocomplete="off" spellcheck="false" aria-describedby="reg-id-hint" /></label>
      <p id="reg-id-hint" class="muted hint">Optional: one is generated.</p>
      ${api.isAdmin() && html`<label>Owner <input name="owner" maxlength="32" autocomplete="off" aria-describedby="reg-owner-hint" /></label>
        <p id="reg-owner-hint" class="muted hint">Optional: the device is yours when empty.</p>`}
      <${ErrorLine} error=${error} />
      <div class="modal-actions">
        <button type="button" onClick=${onClose}>Cancel</button>
        <button type="submit" disabled=${busy}>Register</button>
      </div>
    </form>
  <//>`;
}

// useKeyFlow is the register / rotate flow: its dialogs, and the functions
// that open them. The key is held only while its dialog is open.
export function useKeyFlow(fleet) {
  const { api } = useApp();
  const [dialog, setDialog] = useState(null);
  const close = () => setDialog(null);
  const register = () => setDialog({ kind: "register" });
  const rotate = (d) => setDialog({ kind: "rotate", device: d });
  let view = null;
  if (dialog && dialog.kind === "register") {
    view = html`<${RegisterDialog} onClose=${close} onDone=${(d) => {
      fleet.merge({ device_id: d.device_id, name: d.name, owner: d.owner, created_at: d.created_at, revoked: false, online: false, last_seen: null });
      fleet.changed();
      setDialog({ kind: "key", name: d.name, key: d.api_key });
    }} />`;
  } else if (dialog && dialog.kind === "rotate") {
    const d = dialog.device;
    view = html`<${Confirm} title=${"Rotate the key of " + d.name + "?"} action="Rotate"
      text="A new API key is made and the current one stops working at once: the device's live sessions close until it is given the new key."
      onClose=${close}
      onConfirm=${async () => {
        const r = await api.auth("POST", "/devices/" + encodeURIComponent(d.device_id) + "/rotate-key");
        // Confirm closes itself after this resolves: open the key next.
        setTimeout(() => setDialog({ kind: "key", name: d.name, key: r.api_key }), 0);
      }} />`;
  } else if (dialog && dialog.kind === "revoke") {
    const d = dialog.device;
    view = html`<${Confirm} title=${"Revoke " + d.name + "?"} action="Revoke"
      text="The device's key stops working at once and its live sessions close. This cannot be undone."
      onClose=${close}
      onConfirm=${async () => {
        await api.auth("DELETE", "/devices/" + encodeURIComponent(d.device_id));
        fleet.setRevoked(d.device_id);
      }} />`;
  } else if (dialog && dialog.kind === "key") {
    view = html`<${KeyDialog} name=${dialog.name} apiKey=${dialog.key} onClose=${close} />`;
  }
  const revoke = (d) => setDialog({ kind: "revoke", device: d });
  return { view, register, rotate, revoke };
}

export function State({ device }) {
  const s = stateOf(device);
  return html`<span class=${"dev-state dev-" + s} data-state=${s}>${s}</span>`;
}

// LastSeen shows when the device was last seen, relative and absolute.
export function LastSeen({ ts }) {
  const now = useNow();
  if (!ts) return html`<span class="muted">never</span>`;
  return html`<span class="last-seen">${relativeTime(ts, now)} <time datetime=${ts} class="muted">(${absoluteTime(ts)})</time></span>`;
}
