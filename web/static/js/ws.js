// The gateway connection: one WebSocket per tab, the access token in
// Sec-WebSocket-Protocol (never in the URL), transparent reconnect with
// backoff, every subscription resumed from its last offset (`since`), and
// an outbox: a message sent while offline is kept (also across a reload)
// and sent once the connection is back, with the client_msg_id it was
// given when it was typed, so the server stores it once.
//
// Events: "state" (detail: the new state), "frame" (detail: any server
// frame), and one event per frame type ("message", "message_updated",
// "message_deleted", "typing", "presence", "unsubscribed", …) with the
// frame as detail; "recovery" (detail {channel, recovered, offset}) after
// each (re)subscribe; "outbox" when the outbox changes.

import { newID } from "./lib.js";

const OUTBOX_KEY = "unhidra.outbox";

export const States = { connecting: "connecting", online: "online", reconnecting: "reconnecting", offline: "offline" };

export class Connection extends EventTarget {
  constructor(api) {
    super();
    this.api = api;
    this.state = States.offline;
    this.ws = null;
    this.nextID = 1;
    this.pending = new Map(); // frame id → {resolve, reject}
    this.subs = new Map(); // channel → last offset seen (0: none)
    this.outbox = readOutbox();
    this.attempt = 0;
    this.stopped = true;
    this.timer = null;
    this.refreshTimer = null;
    window.addEventListener("online", () => this.kick());
  }

  start() {
    this.stopped = false;
    if (!this.ws) this.open();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.refreshTimer);
    if (this.ws) this.ws.close(1000, "signed out");
    this.ws = null;
    this.setState(States.offline);
    this.failAll(new Error("signed out"));
  }

  // kick retries now (the browser came back online, the user asked).
  kick() {
    if (this.stopped || this.ws) return;
    clearTimeout(this.timer);
    this.open();
  }

  setState(s) {
    if (this.state === s) return;
    this.state = s;
    this.dispatchEvent(new CustomEvent("state", { detail: s }));
  }

  async open() {
    this.setState(this.attempt === 0 ? States.connecting : States.reconnecting);
    let token;
    try {
      token = await this.api.token();
    } catch (e) {
      if (e.status === 401) {
        this.stop();
        return;
      }
      this.retry();
      return;
    }
    if (this.stopped) return;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    let ws;
    try {
      ws = new WebSocket(scheme + "//" + location.host + "/ws", ["unhidra.v1", "bearer." + token]);
    } catch {
      this.retry();
      return;
    }
    this.ws = ws;
    let welcomed = false;
    ws.onmessage = (ev) => {
      let f;
      try {
        f = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (f.type === "welcome") {
        welcomed = true;
        this.attempt = 0;
        this.welcome = f;
        this.setState(States.online);
        this.resume();
        this.scheduleRefresh();
      }
      this.onFrame(f);
    };
    ws.onclose = (ev) => {
      if (this.ws === ws) this.ws = null;
      this.failAll(new Error("connection closed"));
      if (this.stopped) return;
      if (ev.code === 4003 || ev.code === 4001) {
        // The session ended (logout elsewhere, disabled, revoked): the
        // token is refreshed, or the user signed out, before a retry.
        this.api.access = null;
      }
      this.retry(welcomed);
    };
  }

  retry(wasOnline) {
    this.ws = null;
    this.setState(navigator.onLine === false ? States.offline : States.reconnecting);
    if (wasOnline) this.attempt = 0;
    const delay = Math.min(30000, 500 * 2 ** this.attempt) * (0.5 + Math.random() / 2);
    this.attempt++;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.open(), delay);
  }

  // scheduleRefresh hands the connection a new access token before its
  // own expires (the `refresh` frame), so it is never closed for expiry:
  // a minute before it ends, or after four fifths of a short one's life
  // (not sooner than in 5 s).
  scheduleRefresh() {
    clearTimeout(this.refreshTimer);
    const access = this.api.access;
    if (!access) return;
    const left = access.expiresAt - Date.now();
    const wait = Math.max(5000, left - Math.min(60000, left / 5));
    this.refreshTimer = setTimeout(async () => {
      try {
        await this.api.refresh();
        await this.request({ type: "refresh", token: this.api.access.token });
      } catch {
        // The reconnect path deals with an ended session.
      }
      this.scheduleRefresh();
    }, wait);
  }

  // resume subscribes again to every channel, from its last offset, and
  // sends the outbox.
  resume() {
    for (const [channel, offset] of this.subs) this.doSubscribe(channel, offset);
    this.flushOutbox();
  }

  onFrame(f) {
    if (f.id !== undefined && this.pending.has(String(f.id))) {
      const p = this.pending.get(String(f.id));
      this.pending.delete(String(f.id));
      if (f.type === "error") p.reject(Object.assign(new Error(f.message), { code: f.code }));
      else p.resolve(f);
    }
    if (f.type === "message" && this.subs.has(f.channel)) {
      this.subs.set(f.channel, Math.max(this.subs.get(f.channel) || 0, f.offset || 0));
    }
    if (f.type === "unsubscribed" && f.reason) this.subs.delete(f.channel);
    this.dispatchEvent(new CustomEvent("frame", { detail: f }));
    this.dispatchEvent(new CustomEvent(f.type, { detail: f }));
  }

  failAll(err) {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  // request sends a frame and resolves with its reply (rejects on an error
  // frame or when the connection closes first).
  request(frame) {
    if (!this.ws || this.state !== States.online) return Promise.reject(new Error("not connected"));
    const id = String(this.nextID++);
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.ws.send(JSON.stringify({ ...frame, id }));
    });
  }

  // send sends a frame that has no reply (typing, presence).
  send(frame) {
    if (this.ws && this.state === States.online) this.ws.send(JSON.stringify(frame));
  }

  // subscribe follows a channel from offset since (its messages after
  // since are delivered, when the server still has them: see "recovery").
  subscribe(channel, since) {
    const known = this.subs.get(channel);
    this.subs.set(channel, Math.max(known || 0, since || 0));
    if (this.state === States.online) this.doSubscribe(channel, this.subs.get(channel));
  }

  unsubscribe(channel) {
    if (!this.subs.delete(channel)) return;
    if (this.state === States.online) this.request({ type: "unsubscribe", channel }).catch(() => {});
  }

  async doSubscribe(channel, since) {
    const frame = { type: "subscribe", channel };
    if (since > 0) frame.since = since;
    try {
      const r = await this.request(frame);
      this.dispatchEvent(new CustomEvent("recovery", { detail: { channel, recovered: !!r.recovered, offset: r.offset, since } }));
    } catch (e) {
      this.dispatchEvent(new CustomEvent("subscribe_error", { detail: { channel, code: e.code, message: e.message } }));
    }
  }

  // publish sends a message (body: {text} or {data}, optional thread_id).
  // It is put in the outbox first and leaves it once acknowledged, so a
  // message typed offline is sent once the connection is back, once.
  // Resolves with the ack.
  publish(channel, body) {
    const item = { channel, body, client_msg_id: newID(), queued_at: new Date().toISOString() };
    this.outbox.push(item);
    this.saveOutbox();
    if (this.state === States.online) return this.sendItem(item);
    return new Promise((resolve, reject) => {
      item.wait = { resolve, reject };
    });
  }

  async sendItem(item) {
    if (item.inflight) return item.inflight;
    item.inflight = this.request({ type: "publish", channel: item.channel, client_msg_id: item.client_msg_id, ...item.body })
      .then((ack) => {
        this.outbox = this.outbox.filter((x) => x !== item);
        this.saveOutbox();
        if (item.wait) item.wait.resolve(ack);
        return ack;
      })
      .catch((e) => {
        item.inflight = null;
        if (e.code) {
          // Refused by the server (not a lost connection): it will not
          // pass on a retry either.
          this.outbox = this.outbox.filter((x) => x !== item);
          this.saveOutbox();
          if (item.wait) item.wait.reject(e);
        }
        throw e;
      });
    return item.inflight;
  }

  flushOutbox() {
    for (const item of [...this.outbox]) this.sendItem(item).catch(() => {});
  }

  saveOutbox() {
    localStorage.setItem(OUTBOX_KEY, JSON.stringify(this.outbox.map(({ channel, body, client_msg_id, queued_at }) => ({ channel, body, client_msg_id, queued_at }))));
    this.dispatchEvent(new Event("outbox"));
  }

  // queued returns the outbox items of channel (shown as "sending…").
  queued(channel) {
    return this.outbox.filter((x) => x.channel === channel);
  }

  clearOutbox() {
    for (const item of this.outbox) if (item.wait) item.wait.reject(new Error("signed out"));
    this.outbox = [];
    localStorage.removeItem(OUTBOX_KEY);
    this.dispatchEvent(new Event("outbox"));
  }

  // reset forgets the session's state (after a sign-out): the outbox and
  // the subscriptions.
  reset() {
    this.clearOutbox();
    this.subs.clear();
    this.welcome = null;
  }
}

function readOutbox() {
  try {
    const v = JSON.parse(localStorage.getItem(OUTBOX_KEY) || "[]");
    return Array.isArray(v) ? v.filter((x) => x && x.channel && x.client_msg_id && x.body) : [];
  } catch {
    return [];
  }
}
