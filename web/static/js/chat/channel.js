// A channel: its heading and topic, the message log (history on open,
// scroll-back, live messages), who is typing, the composer, the thread
// panel, and member management and settings for those allowed.
import { html, useEffect, useLayoutEffect, useRef, useState, useEvent, go } from "../lib.js";
import { useApp } from "../app.js";
import { useChat } from "./store.js";
import { useHistory } from "./history.js";
import { MessageItem, Composer, Pending } from "./message.js";
import { ThreadPanel } from "./thread.js";
import { MembersDialog, SettingsDialog } from "./manage.js";
import { SearchBox } from "./search.js";
import { presenceText } from "./ui.js";

const GROUP_MS = 5 * 60 * 1000;

export function ChannelView({ id, thread }) {
  const { api, conn } = useApp();
  const store = useChat();
  const [info, setInfo] = useState(null); // a channel I am not in
  const [infoError, setInfoError] = useState(null);
  const [dialog, setDialog] = useState("");
  const [notice, setNotice] = useState(null);
  const mine = store.channels.get(id);
  const ch = mine || info;

  useEffect(() => {
    store.setView(id);
    if (store.channels.has(id)) store.refreshMembers(id);
    return () => store.setView("");
  }, [id, store]);

  useEffect(() => {
    setInfo(null);
    setInfoError(null);
    setNotice(null);
    if (store.channels.has(id)) return undefined;
    let gone = false;
    api.rest("GET", "/channels/" + encodeURIComponent(id)).then((c) => !gone && setInfo(c), (e) => !gone && setInfoError(e));
    return () => {
      gone = true;
    };
  }, [id]);

  // Follow the channel while it is open (the store follows mine anyway).
  useEffect(() => {
    if (!ch) return undefined;
    const followed = conn.subs.has(id);
    if (!followed) conn.subscribe(id, ch.last_offset || 0);
    return () => {
      if (!followed && !store.channels.has(id)) conn.unsubscribe(id);
    };
  }, [id, !!ch]);

  if (!ch) {
    return html`<div class="chat-view"><section class="channel" aria-label="Channel">
      <p class=${infoError ? "error" : "loading"} role=${infoError ? "alert" : "status"}>${infoError ? "This channel cannot be opened: " + infoError.message : "Loading…"}</p>
    </section></div>`;
  }
  const name = store.channelName(ch);
  const member = !!mine;
  const manage = member && ch.kind !== "direct" && (ch.role === "owner" || ch.role === "admin" || api.isAdmin());
  const owner = member && (ch.role === "owner" || api.isAdmin());
  const peer = ch.kind === "direct" ? store.presence.get(ch.peer) : null;

  const join = async () => {
    try {
      await api.rest("POST", "/channels/" + encodeURIComponent(id) + "/join");
      await store.reload();
    } catch (e) {
      setNotice(e);
    }
  };
  const accept = async () => {
    try {
      await api.rest("POST", "/channels/" + encodeURIComponent(id) + "/accept");
      await store.refreshMembers(id);
    } catch (e) {
      setNotice(e);
    }
  };
  const leave = async () => {
    try {
      await api.rest("POST", "/channels/" + encodeURIComponent(id) + "/leave");
      await store.reload();
      go();
    } catch (e) {
      setNotice(e);
    }
  };
  const headID = "channel-title";
  return html`<div class=${"chat-view" + (thread ? " with-thread" : "")}>
    <section class="channel" aria-labelledby=${headID}>
      <header class="channel-head">
        <div class="channel-title">
          <h2 id=${headID}>${name}</h2>
          ${ch.kind === "direct" && html`<span class=${"peer-state dot-text dot-" + ((peer && peer.status) || "offline")} data-user=${ch.peer}>${presenceText(peer && peer.status)}</span>`}
          ${ch.topic && html`<p class="topic muted">${ch.topic}</p>`}
        </div>
        <div class="channel-actions">
          <${SearchBox} compact=${true} />
          ${member && ch.kind !== "direct" && html`<button type="button" onClick=${() => setDialog("members")}>Members</button>`}
          ${manage && html`<button type="button" onClick=${() => setDialog("settings")}>Channel settings</button>`}
          ${member && ch.kind === "direct" && html`<button type="button" onClick=${leave}>Leave channel</button>`}
        </div>
      </header>
      ${notice && html`<p role="alert" class="error">${notice.message}</p>`}
      ${member && ch.pending && html`<div class="notice" role="status">
        <span>${ch.kind === "direct" ? ch.peer + " started a conversation with you." : "You were added to this channel."}</span>
        <button type="button" onClick=${accept}>Accept</button>
      </div>`}
      <${Log} key=${id} ch=${ch} name=${name} store=${store} manage=${manage} />
      <${Typing} id=${id} store=${store} />
      ${member
        ? html`<${Composer} channel=${id} label="Message" button="Send" disabled=${!!ch.e2ee}
            placeholder=${ch.e2ee ? "End-to-end encrypted: this client cannot send here yet" : "Message " + (ch.kind === "direct" ? name : "#" + name)}
            onSent=${() => ch.pending && store.refreshMembers(id)} />`
        : html`<div class="join-bar"><span>You are viewing ${name}.</span> <button type="button" class="primary" onClick=${join}>Join channel</button></div>`}
    </section>
    ${thread && html`<${ThreadPanel} key=${thread} channel=${id} rootID=${thread} store=${store} manage=${manage} member=${member}
      onClose=${() => go("channels", id)} />`}
    ${dialog === "members" && html`<${MembersDialog} ch=${ch} manage=${manage} owner=${owner} onLeave=${leave} onClose=${() => setDialog("")} />`}
    ${dialog === "settings" && html`<${SettingsDialog} ch=${ch} owner=${owner} onClose=${() => setDialog("")} />`}
  </div>`;
}

function Typing({ id, store }) {
  const [, setTick] = useState(0);
  const who = store.typers(id);
  useEffect(() => {
    if (!who.length) return undefined;
    const t = setTimeout(() => setTick((n) => n + 1), 1000);
    return () => clearTimeout(t);
  });
  let text = "";
  const names = who.map((u) => store.displayName(u));
  if (names.length === 1) text = names[0] + " is typing…";
  else if (names.length === 2) text = names[0] + " and " + names[1] + " are typing…";
  else if (names.length > 2) text = "Several people are typing…";
  return html`<p class="typing muted" role="status" aria-live="polite">${text}</p>`;
}

// Log is the main message list: top-level messages (replies are counted on
// their root), the scroll position kept at the bottom while it is there,
// older pages loaded when scrolled to the top with the view kept still.
function Log({ ch, name, store, manage }) {
  const { api, conn } = useApp();
  const id = ch.id;
  const [h, kind] = useHistory(api, conn, id);
  const ref = useRef(null);
  const atBottom = useRef(true);
  const anchor = useRef(null);
  const [, setTick] = useState(0);
  useEvent(conn, "outbox", () => setTick((n) => n + 1));
  useEvent(store, "local-update", (ev) => {
    const m = ev.detail;
    if (m && m.channel === id && h.update(m)) setTick((n) => n + 1);
  });

  const loadOlder = () => {
    const el = ref.current;
    if (!el || !h.hasMore || h.loadingOlder) return;
    anchor.current = el.scrollHeight - el.scrollTop;
    h.loadOlder();
  };
  const onScroll = () => {
    const el = ref.current;
    atBottom.current = el.scrollHeight - el.scrollTop - el.clientHeight < 40;
    if (el.scrollTop < 120) loadOlder();
  };

  useLayoutEffect(() => {
    const el = ref.current;
    if (!el) return;
    if (kind.current === "older" && anchor.current !== null) {
      el.scrollTop = el.scrollHeight - anchor.current;
      anchor.current = null;
    } else if (kind.current === "newest" || atBottom.current) {
      el.scrollTop = el.scrollHeight;
    }
    // A first page that does not fill the view (or holds only replies).
    if (h.loaded && h.hasMore && !h.loadingOlder && el.scrollHeight <= el.clientHeight + 120) loadOlder();
  });

  const all = h.list();
  const replies = new Map();
  const clientIDs = new Set();
  for (const m of all) {
    if (m.thread_id) replies.set(m.thread_id, (replies.get(m.thread_id) || 0) + 1);
    if (m.client_msg_id) clientIDs.add(m.client_msg_id);
  }
  const top = all.filter((m) => !m.thread_id);
  const pending = conn.queued(id).filter((it) => !it.body.thread_id && !clientIDs.has(it.client_msg_id));
  let prev = null;
  return html`<div class="log-wrap">
    ${h.loadingOlder && html`<p class="muted log-more" role="status">Loading older messages…</p>`}
    ${h.error && html`<p role="alert" class="error">${h.error.message}</p>`}
    <ol class="log" role="log" aria-live="polite" aria-label=${"Messages in " + name} ref=${ref} onScroll=${onScroll} tabindex="0"
      aria-busy=${h.loaded ? "false" : "true"} data-has-more=${h.hasMore ? "true" : "false"}>
      ${h.loaded && !h.hasMore && html`<li class="log-start muted" aria-hidden="true">${ch.kind === "direct" ? "This is the start of your conversation with " + name + "." : "This is the start of " + name + "."}</li>`}
      ${top.map((m) => {
        const grouped = !!(prev && !prev.deleted && !m.deleted && prev.sender && m.sender && prev.sender.id === m.sender.id &&
          prev.sender.kind === m.sender.kind && Date.parse(m.created_at) - Date.parse(prev.created_at) < GROUP_MS);
        prev = m;
        return html`<${MessageItem} key=${m.offset} m=${m} store=${store} canManage=${manage} grouped=${grouped} channel=${id}
          replies=${replies.get(m.id) || 0} onThread=${() => go("channels", id, "thread", m.id)} />`;
      })}
      <${Pending} items=${pending} store=${store} />
    </ol>
  </div>`;
}
