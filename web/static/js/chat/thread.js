// The thread side panel (#/channels/<id>/thread/<mid>): the root message,
// its replies (loaded over REST, then live), and a composer that replies
// in the thread. Escape or "Close thread" closes it.
import { html, useEffect, useLayoutEffect, useRef, useState, useEvent } from "../lib.js";
import { useApp } from "../app.js";
import { MessageItem, Composer, Pending } from "./message.js";

export function ThreadPanel({ channel, rootID, store, manage, member, onClose }) {
  const { api, conn } = useApp();
  const [root, setRoot] = useState(null);
  const [replies, setReplies] = useState(() => new Map());
  const [error, setError] = useState(null);
  const [, setTick] = useState(0);
  const ref = useRef(null);
  const panel = useRef(null);

  const merge = (list) =>
    setReplies((cur) => {
      const next = new Map(cur);
      for (const m of list) {
        const old = next.get(m.offset);
        if (!old || m.deleted || Date.parse(m.edited_at || 0) >= Date.parse(old.edited_at || 0)) next.set(m.offset, m);
      }
      return next;
    });

  const load = async () => {
    try {
      let after = 0;
      for (let i = 0; i < 20; i++) {
        const r = await api.rest("GET", "/channels/" + encodeURIComponent(channel) + "/messages/" + encodeURIComponent(rootID) + "/thread?limit=200&after=" + after);
        setRoot(r.root);
        merge(r.messages || []);
        if (!r.has_more || !(r.messages || []).length) break;
        after = r.messages[r.messages.length - 1].offset;
      }
      setError(null);
    } catch (e) {
      setError(e);
    }
  };
  useEffect(() => {
    load();
  }, [channel, rootID]);

  useEvent(conn, "message", (ev) => {
    const f = ev.detail;
    if (f.channel === channel && f.message && f.message.thread_id === rootID) merge([{ ...f.message, offset: f.message.offset || f.offset }]);
  });
  const onUpdate = (m) => {
    if (!m || m.channel !== channel) return;
    if (m.id === rootID) setRoot(m);
    else if (m.thread_id === rootID) merge([m]);
  };
  useEvent(conn, "message_updated", (ev) => onUpdate(ev.detail.message));
  useEvent(conn, "message_deleted", (ev) => onUpdate(ev.detail.message));
  useEvent(store, "local-update", (ev) => onUpdate(ev.detail));
  useEvent(conn, "outbox", () => setTick((n) => n + 1));
  useEvent(conn, "recovery", (ev) => {
    if (ev.detail.channel === channel && !ev.detail.recovered) load();
  });

  // A layout effect: the listener is in place as soon as the panel is on
  // screen, so an Escape pressed at once closes it.
  useLayoutEffect(() => {
    const key = (ev) => {
      if (ev.key === "Escape" && !document.querySelector("dialog[open]")) onClose();
    };
    document.addEventListener("keydown", key);
    return () => document.removeEventListener("keydown", key);
  }, [onClose]);
  useEffect(() => {
    const t = panel.current && panel.current.querySelector("textarea");
    if (t) t.focus();
  }, [rootID, !!root]);
  useLayoutEffect(() => {
    if (ref.current) ref.current.scrollTop = ref.current.scrollHeight;
  }, [replies.size]);

  const list = [...replies.values()].sort((a, b) => a.offset - b.offset);
  const ids = new Set(list.map((m) => m.client_msg_id).filter(Boolean));
  const pending = conn.queued(channel).filter((it) => it.body.thread_id === rootID && !ids.has(it.client_msg_id));
  return html`<aside class="thread" aria-label="Thread" ref=${panel}>
    <header class="thread-head">
      <h2>Thread</h2>
      <button type="button" onClick=${onClose} aria-label="Close thread">×</button>
    </header>
    ${error && html`<p role="alert" class="error">${error.message}</p>`}
    <div class="thread-body" ref=${ref}>
      ${root && html`<ol class="thread-root" aria-label="Thread root">
        <${MessageItem} m=${root} store=${store} canManage=${manage} channel=${channel} />
      </ol>`}
      <p class="thread-count muted">${list.length === 1 ? "1 reply" : list.length + " replies"}</p>
      <ol class="log thread-log" role="log" aria-live="polite" aria-label="Replies">
        ${list.map((m) => html`<${MessageItem} key=${m.offset} m=${m} store=${store} canManage=${manage} channel=${channel} />`)}
        <${Pending} items=${pending} store=${store} />
      </ol>
    </div>
    ${member && root && !root.deleted
      ? html`<${Composer} channel=${channel} threadID=${rootID} label="Reply" button="Send reply" placeholder="Reply…" />`
      : null}
  </aside>`;
}
