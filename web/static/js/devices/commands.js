// The command form and the device's commands with their status and
// result. POST /api/v1/devices/{id}/commands answers 202 with the command
// pending; its result comes live, as a {"type":"command_result"} message of
// device:<id> (ok, error, timeout). "delivered" has no event: the command
// is read back (GET …/commands/{cid}) with backoff until it is final, which
// also covers a result missed while the connection was down.
import { html, useEffect, useRef, useState, useEvent, formatTime } from "../lib.js";
import { useApp } from "../app.js";

const FINAL = new Set(["ok", "error", "timeout"]);
const storeKey = (id) => "unhidra.commands." + id;

function readSaved(id) {
  try {
    const v = JSON.parse(sessionStorage.getItem(storeKey(id)) || "[]");
    return Array.isArray(v) ? v : [];
  } catch {
    return [];
  }
}

export function Commands({ device, fleet, canSend }) {
  const { api } = useApp();
  const id = device.device_id;
  const [cmds, setCmds] = useState(() => readSaved(id));
  const [error, setError] = useState("");
  const [paramsError, setParamsError] = useState("");
  const [busy, setBusy] = useState(false);
  const live = useRef(new Map()); // command_id → result event seen before the POST answered
  const timers = useRef(new Map());
  const alive = useRef(true);

  const update = (cid, patch) =>
    setCmds((list) => {
      const next = list.map((c) => (c.command_id === cid ? { ...c, ...patch } : c));
      sessionStorage.setItem(storeKey(id), JSON.stringify(next.slice(0, 50)));
      return next;
    });

  const poll = (cid, attempt = 0) => {
    clearTimeout(timers.current.get(cid));
    const delay = Math.min(10000, 400 * 2 ** attempt);
    timers.current.set(
      cid,
      setTimeout(async () => {
        if (!alive.current) return;
        try {
          const c = await api.rest("GET", `/devices/${encodeURIComponent(id)}/commands/${encodeURIComponent(cid)}`);
          update(cid, { status: c.status, result: c.result, completed_at: c.completed_at });
          if (FINAL.has(c.status)) return;
        } catch (e) {
          if (e.status === 404) return;
        }
        if (attempt < 30) poll(cid, attempt + 1);
      }, delay),
    );
  };

  useEffect(() => {
    alive.current = true;
    for (const c of cmds) if (!FINAL.has(c.status)) poll(c.command_id);
    return () => {
      alive.current = false;
      for (const t of timers.current.values()) clearTimeout(t);
    };
  }, [id]);

  useEvent(fleet, "event", (ev) => {
    const { id: dev, data } = ev.detail;
    if (dev !== id || data.type !== "command_result" || !data.command_id) return;
    const known = cmds.some((c) => c.command_id === data.command_id);
    if (!known) {
      live.current.set(data.command_id, data);
      return;
    }
    if (FINAL.has(data.status)) clearTimeout(timers.current.get(data.command_id));
    update(data.command_id, { status: data.status, result: data.result });
  });

  const submit = async (ev) => {
    ev.preventDefault();
    const form = ev.target;
    const name = form.elements.namedItem("command").value.trim();
    const raw = form.elements.namedItem("params").value.trim();
    setError("");
    setParamsError("");
    let params;
    if (raw) {
      try {
        params = JSON.parse(raw);
      } catch (e) {
        setParamsError("Parameters must be valid JSON: " + e.message);
        form.elements.namedItem("params").focus();
        return;
      }
    }
    setBusy(true);
    try {
      const body = { name };
      if (params !== undefined) body.params = params;
      const c = await api.rest("POST", `/devices/${encodeURIComponent(id)}/commands`, body);
      const early = live.current.get(c.command_id);
      live.current.delete(c.command_id);
      const item = { command_id: c.command_id, name: c.name, params: c.params, status: early ? early.status : c.status, result: early ? early.result : undefined, created_at: c.created_at };
      setCmds((list) => {
        const next = [item, ...list];
        sessionStorage.setItem(storeKey(id), JSON.stringify(next.slice(0, 50)));
        return next;
      });
      if (!FINAL.has(item.status)) poll(c.command_id);
      form.elements.namedItem("command").value = "";
    } catch (e) {
      setError(e.message);
    } finally {
      setBusy(false);
    }
  };

  return html`<section class="dev-commands" aria-labelledby="commands-title">
    <h3 id="commands-title">Commands</h3>
    ${canSend
      ? html`<form class="command-form" onSubmit=${submit}>
          <label>Command <input name="command" required maxlength="64" autocomplete="off" spellcheck="false" placeholder="e.g. ping" /></label>
          <label>Parameters (JSON)
            <textarea name="params" rows="3" spellcheck="false" aria-invalid=${paramsError ? "true" : "false"} aria-describedby="params-error" placeholder='{"seconds": 5}'></textarea>
          </label>
          <p id="params-error" role="alert" class="error">${paramsError}</p>
          <button type="submit" disabled=${busy}>Send command</button>
          <p role="alert" class="error">${error}</p>
        </form>`
      : html`<p class="muted">Commands cannot be sent to a revoked device.</p>`}
    <ul class="command-list" aria-label="Commands" aria-live="polite">
      ${cmds.length === 0 && html`<li class="muted empty">No commands sent from here yet.</li>`}
      ${cmds.map((c) => html`<li key=${c.command_id} data-command=${c.command_id} data-status=${c.status}>
        <span class="cmd-name">${c.name}</span>${" "}<span class=${"cmd-status cmd-" + c.status}>${c.status}</span>${" "}<time class="muted" datetime=${c.created_at}>${formatTime(c.created_at)}</time>
        ${c.params !== undefined && c.params !== null && html`<div class="muted">params${" "}<code>${JSON.stringify(c.params)}</code></div>`}
        ${c.result !== undefined && c.result !== null && html`<div>result${" "}<code class="cmd-result">${JSON.stringify(c.result)}</code></div>`}
      </li>`)}
    </ul>
  </section>`;
}
