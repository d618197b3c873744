// The channel sidebar: my channels and direct messages with unread counts
// and presence, and the dialogs to create, browse and join channels and to
// open a direct conversation. The dialogs are rendered at the end of
// <body> (the sidebar is hidden on a phone until the menu opens, and the
// home view opens them too).
import { html, render, useEffect, useRoute, useState, go } from "../lib.js";
import { AppContext, useApp } from "../app.js";
import { useChat } from "./store.js";
import { Modal, ErrorLine, presenceText } from "./ui.js";

export function ChannelSidebar() {
  const ctx = useApp();
  const store = useChat();
  const route = useRoute();
  const current = route[0] === "channels" ? route[1] : "";
  useEffect(() => {
    const host = document.createElement("div");
    host.className = "chat-dialogs";
    document.body.appendChild(host);
    render(html`<${AppContext.Provider} value=${ctx}><${DialogHost} /><//>`, host);
    return () => {
      render(null, host);
      host.remove();
      if (!ctx.api.signedIn) store.close();
    };
  }, [store]);
  const list = store.sorted();
  const groups = list.filter((c) => c.kind !== "direct");
  const directs = list.filter((c) => c.kind === "direct");
  return html`<nav aria-label="Channels" class="channels">
    <div class="side-group">
      <h2 class="side-h" id="side-channels">Channels</h2>
      <ul aria-labelledby="side-channels">
        ${groups.map((c) => html`<${Item} key=${c.id} c=${c} store=${store} current=${current} />`)}
      </ul>
      ${store.loaded && groups.length === 0 && html`<p class="muted side-empty">No channels yet.</p>`}
      <div class="side-actions">
        <button type="button" class="link" onClick=${() => store.openDialog("new-channel")}>New channel</button>
        <button type="button" class="link" onClick=${() => store.openDialog("browse")}>Browse channels</button>
      </div>
    </div>
    <div class="side-group">
      <h2 class="side-h" id="side-direct">Direct messages</h2>
      <ul aria-labelledby="side-direct">
        ${directs.map((c) => html`<${Item} key=${c.id} c=${c} store=${store} current=${current} />`)}
      </ul>
      <div class="side-actions">
        <button type="button" class="link" onClick=${() => store.openDialog("direct")}>New direct message</button>
      </div>
    </div>
  </nav>`;
}

function Item({ c, store, current }) {
  const n = current === c.id ? 0 : store.unread(c.id);
  const name = store.channelName(c);
  const descID = "side-desc-" + c.id.replace(/[^A-Za-z0-9_-]/g, "_");
  let desc = null;
  let dot = null;
  if (c.kind === "direct") {
    const p = store.presence.get(c.peer);
    const status = (p && p.status) || "offline";
    dot = html`<span class=${"dot dot-" + status} aria-hidden="true"></span>`;
    desc = html`<span id=${descID} class="visually-hidden presence-text" data-user=${c.peer}>${c.peer} (${presenceText(status)})</span>`;
  } else if (c.kind === "private") {
    dot = html`<span class="lock" aria-hidden="true"></span>`;
  }
  return html`<li class=${n > 0 ? "has-unread" : ""}>
    <a href=${"#/channels/" + encodeURIComponent(c.id)} aria-current=${current === c.id ? "page" : undefined}
      aria-describedby=${desc ? descID : undefined} data-presence=${c.kind === "direct" ? (store.presence.get(c.peer) || {}).status || "offline" : undefined}
      >${dot}${c.kind === "direct" ? "" : c.kind === "private" ? "" : html`<span aria-hidden="true" class="hash"></span>`}${name}</a>
    ${desc}
    ${n > 0 && html`<span class="unread" aria-label=${n + " unread"}>${n > 99 ? "99+" : n}</span>`}
  </li>`;
}

function DialogHost() {
  const store = useChat();
  const [open, setOpen] = useState("");
  useEffect(() => {
    const l = (ev) => setOpen(ev.detail);
    store.addEventListener("dialog", l);
    return () => store.removeEventListener("dialog", l);
  }, [store]);
  const close = () => setOpen("");
  switch (open) {
    case "new-channel":
      return html`<${NewChannel} onClose=${close} />`;
    case "browse":
      return html`<${Browse} onClose=${close} />`;
    case "direct":
      return html`<${NewDirect} onClose=${close} />`;
    default:
      return null;
  }
}

function NewChannel({ onClose }) {
  const { api } = useApp();
  const store = useChat();
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (ev) => {
    ev.preventDefault();
    const f = new FormData(ev.target);
    setBusy(true);
    setError(null);
    try {
      const body = { name: String(f.get("name")).trim(), kind: f.get("kind") };
      const topic = String(f.get("topic") || "").trim();
      if (topic) body.topic = topic;
      const ch = await api.rest("POST", "/channels", body);
      await store.reload();
      onClose();
      go("channels", ch.id);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  return html`<${Modal} title="New channel" onClose=${onClose}>
    <form onSubmit=${submit}>
      <label>Name <input name="name" required maxlength="80" autofocus /></label>
      <label>Visibility
        <select name="kind">
          <option value="public">Public: anyone can find and join it</option>
          <option value="private">Private: members only</option>
        </select>
      </label>
      <label>Topic <input name="topic" maxlength="250" /></label>
      <${ErrorLine} error=${error} />
      <div class="modal-actions"><button type="submit" disabled=${busy}>Create</button></div>
    </form>
  <//>`;
}

function Browse({ onClose }) {
  const { api } = useApp();
  const store = useChat();
  const [error, setError] = useState(null);
  const [filter, setFilter] = useState("");
  useEffect(() => {
    store.reload();
  }, []);
  const join = async (c) => {
    setError(null);
    try {
      await api.rest("POST", "/channels/" + encodeURIComponent(c.id) + "/join");
      await store.reload();
      onClose();
      go("channels", c.id);
    } catch (e) {
      setError(e);
    }
  };
  const f = filter.trim().toLowerCase();
  const list = store.publicOthers.filter((c) => !f || c.name.toLowerCase().includes(f) || (c.topic || "").toLowerCase().includes(f));
  return html`<${Modal} title="Browse channels" onClose=${onClose}>
    <label>Filter channels <input type="search" value=${filter} onInput=${(e) => setFilter(e.target.value)} /></label>
    ${store.publicOthers.length === 0 ? html`<p class="muted">${store.loaded ? "You are in every public channel." : "Loading…"}</p>` : null}
    <ul class="browse">
      ${list.map((c) => html`<li key=${c.id}>
        <span class="browse-name" id=${"browse-" + c.id.replace(/[^A-Za-z0-9_-]/g, "_")}>${c.name}</span>
        ${c.topic && html`<span class="muted browse-topic">${c.topic}</span>`}
        <button type="button" aria-describedby=${"browse-" + c.id.replace(/[^A-Za-z0-9_-]/g, "_")} onClick=${() => join(c)}>Join</button>
        <a href=${"#/channels/" + encodeURIComponent(c.id)} onClick=${onClose} aria-label=${"View " + c.name}>View</a>
      </li>`)}
    </ul>
    <${ErrorLine} error=${error} />
  <//>`;
}

function NewDirect({ onClose }) {
  const { api } = useApp();
  const store = useChat();
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (ev) => {
    ev.preventDefault();
    const user = String(new FormData(ev.target).get("user")).trim().toLowerCase();
    setBusy(true);
    setError(null);
    try {
      const ch = await api.rest("POST", "/channels", { kind: "direct", name: "", members: [user] });
      await store.reload();
      onClose();
      go("channels", ch.id);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  return html`<${Modal} title="New direct message" onClose=${onClose}>
    <form onSubmit=${submit}>
      <label>Username <input name="user" required minlength="3" maxlength="32" autocomplete="off" autocapitalize="none" autofocus /></label>
      <${ErrorLine} error=${error} />
      <div class="modal-actions"><button type="submit" disabled=${busy}>Start conversation</button></div>
    </form>
  <//>`;
}
