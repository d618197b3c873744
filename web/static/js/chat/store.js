// The chat state shared by the sidebar and the views: my channels (with
// my role and, for a direct channel, the other member), unread counts,
// presence, who is typing and the display names known. One store per
// signed-in user; it follows every channel of mine on the connection, so
// unread counts, presence and typing update live, and it polls the channel
// list (there is no frame for "you were added to a channel").
//
// Unread counts: the last offset read per channel, persisted per user in
// localStorage; a channel's unread count is its last offset less that one.
//
// Events: "change" whenever anything shown may have changed; "dialog"
// (detail: the dialog to open, see openDialog).
import { useEffect, useState } from "../lib.js";
import { useApp } from "../app.js";

const POLL_MS = 8000;
const TYPING_MS = 5000;

export class ChatStore extends EventTarget {
  constructor(api, conn) {
    super();
    this.api = api;
    this.conn = conn;
    this.me = (api.user && api.user.username) || "";
    this.channels = new Map(); // id → channel + {role, pending, peer, members}
    this.publicOthers = []; // public channels I am not in
    this.presence = new Map(); // user → {status, last_seen}
    this.typing = new Map(); // channel → Map(user → expiry)
    this.names = new Map(); // user → display name
    if (api.user && api.user.display_name) this.names.set(this.me, api.user.display_name);
    this.viewing = "";
    this.loaded = false;
    this.readKey = "unhidra.read." + this.me;
    this.read = readJSON(this.readKey);
    this.firstRun = this.read === null;
    this.read = this.read || {};
    this.loading = null;
    this.memberCache = new Map(); // channel → members, reused by the poll
    this.timer = null;
    this.listeners = [];
    this.closed = false;
  }

  start() {
    if (this.started) return;
    this.started = true;
    const on = (target, type, fn) => {
      target.addEventListener(type, fn);
      this.listeners.push(() => target.removeEventListener(type, fn));
    };
    on(this.conn, "message", (ev) => this.onMessage(ev.detail));
    on(this.conn, "recovery", (ev) => this.onRecovery(ev.detail));
    on(this.conn, "presence", (ev) => this.onPresence(ev.detail));
    on(this.conn, "typing", (ev) => this.onTyping(ev.detail));
    on(this.conn, "unsubscribed", (ev) => {
      if (ev.detail.reason) this.reload();
    });
    on(this.conn, "state", (ev) => {
      if (ev.detail === "online") {
        this.sendPresence();
        this.reload();
      }
    });
    on(document, "visibilitychange", () => {
      this.sendPresence();
      if (document.visibilityState === "visible") {
        this.markRead(this.viewing);
        this.reload(true);
      }
    });
    if (this.api.isAdmin()) {
      this.api.auth("GET", "/admin/users").then((r) => {
        for (const u of (r && r.users) || []) if (u.display_name) this.names.set(u.username, u.display_name);
        this.changed();
      }).catch(() => {});
    }
    this.reload();
    this.timer = setInterval(() => this.reload(true), POLL_MS);
    if (this.conn.state === "online") this.sendPresence();
  }

  close() {
    this.closed = true;
    clearInterval(this.timer);
    for (const id of this.channels.keys()) this.conn.unsubscribe(id);
    for (const off of this.listeners) off();
    this.listeners = [];
  }

  changed() {
    this.dispatchEvent(new Event("change"));
  }

  // openDialog asks the dialog host to open "new-channel", "browse" or
  // "direct".
  openDialog(name) {
    this.dispatchEvent(new CustomEvent("dialog", { detail: name }));
  }

  sendPresence() {
    this.conn.send({ type: "presence", status: document.visibilityState === "hidden" ? "away" : "online" });
  }

  // reload reads the channel list again, and every membership. The
  // periodic poll (poll=true) reads only those of channels new to it: the
  // others are read again after a change made here, on reconnect, when
  // the page becomes visible, and when a channel is opened.
  reload(poll) {
    if (this.closed || !this.api.signedIn) return Promise.resolve();
    if (this.loading) {
      if (poll) return this.loading;
      // A change was made: read again once the running load is over.
      this.again = this.again || this.loading.then(() => {
        this.again = null;
        return this.reload();
      });
      return this.again;
    }
    this.loading = this.load(!poll).catch(() => {}).finally(() => {
      this.loading = null;
    });
    return this.loading;
  }

  async load(fresh) {
    const list = await this.api.rest("GET", "/channels");
    const all = (Array.isArray(list) ? list : (list && list.channels) || []).filter((c) => c.kind !== "device");
    const next = new Map();
    const others = [];
    const cache = new Map();
    await pool(all, 6, async (c) => {
      const prev = this.channels.get(c.id);
      let members = fresh ? null : this.memberCache.get(c.id);
      if (!members) {
        try {
          members = await this.api.rest("GET", "/channels/" + encodeURIComponent(c.id) + "/members");
        } catch {
          members = null;
        }
      }
      if (members) cache.set(c.id, members);
      const mine = (members || []).find((m) => m.user === this.me);
      if (!mine) {
        if (c.kind === "public") others.push(c);
        return;
      }
      next.set(c.id, this.decorate(c, members, mine, prev));
    });
    if (this.closed) return;
    this.memberCache = cache;
    for (const [id, c] of next) {
      if (!(id in this.read)) this.read[id] = this.firstRun ? c.last_offset : 0;
    }
    this.firstRun = false;
    saveJSON(this.readKey, this.read);
    const before = this.channels;
    this.channels = next;
    this.publicOthers = others.sort(byName);
    for (const [id, c] of next) {
      if (!before.has(id) || !this.conn.subs.has(id)) this.conn.subscribe(id, c.last_offset);
    }
    for (const id of before.keys()) if (!next.has(id)) this.conn.unsubscribe(id);
    this.markRead(this.viewing);
    await this.loadPresence();
    this.loaded = true;
    this.changed();
  }

  decorate(c, members, mine, prev) {
    const ch = { ...c, members, role: mine.role, pending: !mine.accepted_at };
    if (prev && prev.last_offset > ch.last_offset) ch.last_offset = prev.last_offset;
    if (c.kind === "direct") {
      const other = members.find((m) => m.user !== this.me);
      ch.peer = other ? other.user : this.me;
      ch.peerPending = !!(other && !other.accepted_at);
    }
    return ch;
  }

  // refreshMembers reads one channel's members again (after a join, a
  // leave, a role change).
  async refreshMembers(id) {
    let members;
    try {
      members = await this.api.rest("GET", "/channels/" + encodeURIComponent(id) + "/members");
    } catch {
      members = null;
    }
    const prev = this.channels.get(id);
    const mine = (members || []).find((m) => m.user === this.me);
    if (members) this.memberCache.set(id, members);
    if (prev && mine) {
      this.channels.set(id, this.decorate(prev, members, mine, prev));
      if (prev.kind === "direct") await this.loadPresence();
      this.changed();
    } else {
      await this.reload();
    }
    return members;
  }

  async loadPresence() {
    const peers = [...new Set([...this.channels.values()].filter((c) => c.peer && c.peer !== this.me).map((c) => c.peer))].slice(0, 100);
    if (!peers.length) return;
    try {
      const r = await this.api.rest("GET", "/presence?" + peers.map((u) => "user=" + encodeURIComponent(u)).join("&"));
      for (const p of r || []) this.presence.set(p.user, { status: p.status, last_seen: p.last_seen });
    } catch {
      // Presence is a nicety; the channels still show.
    }
  }

  onMessage(f) {
    const c = this.channels.get(f.channel);
    if (!c) return;
    c.last_offset = Math.max(c.last_offset || 0, f.offset || 0);
    const m = f.message || {};
    if (m.sender && m.sender.kind === "user") this.stopTyping(f.channel, m.sender.id);
    if (m.sender && m.sender.kind === "user" && m.sender.id === this.me) this.setRead(f.channel, f.offset);
    if (f.channel === this.viewing && document.visibilityState !== "hidden") this.setRead(f.channel, f.offset);
    // The peer of a direct channel who answers is sharing presence now
    // (their acceptance starts it; no presence frame says so).
    if (c.kind === "direct" && m.sender && m.sender.id === c.peer && c.peer !== this.me) {
      const p = this.presence.get(c.peer);
      if (!p || p.status === "offline") this.refreshPresence(c.peer);
    }
    this.changed();
  }

  async refreshPresence(user) {
    try {
      const r = await this.api.rest("GET", "/presence?user=" + encodeURIComponent(user));
      for (const p of r || []) this.presence.set(p.user, { status: p.status, last_seen: p.last_seen });
      this.changed();
    } catch {
      // Presence is a nicety.
    }
  }

  onRecovery(d) {
    const c = this.channels.get(d.channel);
    if (!c || typeof d.offset !== "number") return;
    if (d.offset > (c.last_offset || 0)) {
      c.last_offset = d.offset;
      if (d.channel === this.viewing) this.setRead(d.channel, d.offset);
      this.changed();
    }
  }

  onPresence(f) {
    if (!f.user) return;
    this.presence.set(f.user, { status: f.status, last_seen: f.last_seen });
    this.changed();
  }

  onTyping(f) {
    if (!f.user || f.user === this.me) return;
    let m = this.typing.get(f.channel);
    if (!m) this.typing.set(f.channel, (m = new Map()));
    m.set(f.user, Date.now() + TYPING_MS);
    setTimeout(() => this.changed(), TYPING_MS + 50);
    this.changed();
  }

  stopTyping(channel, user) {
    const m = this.typing.get(channel);
    if (m && m.delete(user)) this.changed();
  }

  typers(channel) {
    const m = this.typing.get(channel);
    if (!m) return [];
    const now = Date.now();
    return [...m].filter(([, exp]) => exp > now).map(([u]) => u).sort();
  }

  setView(id) {
    this.viewing = id || "";
    this.markRead(this.viewing);
  }

  markRead(id) {
    const c = id && this.channels.get(id);
    if (c) this.setRead(id, c.last_offset || 0);
  }

  setRead(id, offset) {
    if ((this.read[id] || 0) >= offset) return;
    this.read[id] = offset;
    saveJSON(this.readKey, this.read);
    this.changed();
  }

  unread(id) {
    const c = this.channels.get(id);
    if (!c) return 0;
    return Math.max(0, (c.last_offset || 0) - (this.read[id] || 0));
  }

  displayName(user) {
    return this.names.get(user) || user;
  }

  // channelName is what a channel is called here: a direct channel by the
  // other member, the others by their name.
  channelName(c) {
    if (!c) return "";
    if (c.kind === "direct" && c.peer) return c.peer === this.me ? this.me + " (you)" : c.peer;
    return c.name;
  }

  sorted() {
    const list = [...this.channels.values()];
    const named = (c) => this.channelName(c).toLowerCase();
    list.sort((a, b) => (named(a) < named(b) ? -1 : named(a) > named(b) ? 1 : 0));
    return list;
  }
}

function byName(a, b) {
  return a.name.toLowerCase() < b.name.toLowerCase() ? -1 : 1;
}

async function pool(items, n, fn) {
  let i = 0;
  const run = async () => {
    while (i < items.length) await fn(items[i++]);
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, run));
}

function readJSON(key) {
  try {
    const v = JSON.parse(localStorage.getItem(key) || "null");
    return v && typeof v === "object" ? v : null;
  } catch {
    return null;
  }
}

function saveJSON(key, v) {
  try {
    localStorage.setItem(key, JSON.stringify(v));
  } catch {
    // A full or disabled storage loses the read marks, nothing else.
  }
}

let current = null;

// storeFor returns the store of the signed-in user (a new one after a
// change of user).
export function storeFor(api, conn) {
  const me = (api.user && api.user.username) || "";
  if (!current || current.me !== me || current.conn !== conn || current.closed) {
    if (current) current.close();
    current = new ChatStore(api, conn);
  }
  current.start();
  return current;
}

// useChat returns the store and re-renders the component on its changes.
export function useChat() {
  const { api, conn } = useApp();
  const store = storeFor(api, conn);
  const [, setTick] = useState(0);
  useEffect(() => {
    const l = () => setTick((n) => n + 1);
    store.addEventListener("change", l);
    return () => store.removeEventListener("change", l);
  }, [store]);
  return store;
}
