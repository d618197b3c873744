// A channel's messages as this view knows them: the newest page loaded on
// open over REST, older pages on demand (`before`), live messages, edits
// and deletions from the connection, and any gap after a reconnect that
// the server could not replay (`recovery` with recovered:false) fetched
// over REST (`after`). Messages are kept by offset, so a message seen twice
// (REST and live) is one, and always shown in offset order.
import { useEffect, useRef, useState } from "../lib.js";

export const PAGE = 50;

// newer reports whether a is a later state of the same message than b.
function newer(a, b) {
  if (a.deleted !== b.deleted) return !!a.deleted;
  return Date.parse(a.edited_at || 0) >= Date.parse(b.edited_at || 0);
}

export class History {
  constructor(api, channel, onChange) {
    this.api = api;
    this.channel = channel;
    this.onChange = onChange;
    this.byOffset = new Map();
    this.hasMore = false;
    this.loaded = false;
    this.loadingOlder = false;
    this.error = null;
    this.gapRunning = null;
    this.closed = false;
  }

  path(q) {
    return "/channels/" + encodeURIComponent(this.channel) + "/messages?" + q;
  }

  put(m, offset) {
    if (!m || this.closed) return false;
    const o = m.offset || offset;
    if (!o) return false;
    const cur = this.byOffset.get(o);
    if (cur && !newer(m, cur)) return false;
    this.byOffset.set(o, { ...m, offset: o });
    return true;
  }

  // update applies a message_updated / message_deleted: only to messages
  // this view holds (older ones come with their latest state when loaded).
  update(m) {
    if (!m || !m.offset || !this.byOffset.has(m.offset)) return false;
    return this.put(m);
  }

  minOffset() {
    let min = Infinity;
    for (const o of this.byOffset.keys()) if (o < min) min = o;
    return min === Infinity ? 0 : min;
  }

  maxOffset() {
    let max = 0;
    for (const o of this.byOffset.keys()) if (o > max) max = o;
    return max;
  }

  list() {
    return [...this.byOffset.values()].sort((a, b) => a.offset - b.offset);
  }

  async loadNewest() {
    try {
      const r = await this.api.rest("GET", this.path("limit=" + PAGE));
      if (this.closed) return;
      for (const m of r.messages || []) this.put(m);
      this.hasMore = !!r.has_more;
      this.loaded = true;
      this.error = null;
    } catch (e) {
      this.error = e;
    }
    this.onChange("newest");
  }

  async loadOlder() {
    if (!this.loaded || !this.hasMore || this.loadingOlder || this.closed) return;
    this.loadingOlder = true;
    this.onChange("loading");
    try {
      const r = await this.api.rest("GET", this.path("before=" + this.minOffset() + "&limit=" + PAGE));
      if (this.closed) return;
      for (const m of r.messages || []) this.put(m);
      this.hasMore = !!r.has_more;
    } catch (e) {
      this.error = e;
    } finally {
      this.loadingOlder = false;
    }
    this.onChange("older");
  }

  // fillGap fetches every message after the newest one held.
  fillGap() {
    if (!this.loaded || this.closed) return Promise.resolve();
    if (!this.gapRunning) {
      this.gapRunning = (async () => {
        try {
          for (let i = 0; i < 50 && !this.closed; i++) {
            const r = await this.api.rest("GET", this.path("after=" + this.maxOffset() + "&limit=200"));
            let added = 0;
            for (const m of r.messages || []) if (this.put(m)) added++;
            if (added) this.onChange("live");
            if (!r.has_more || !(r.messages || []).length) break;
          }
        } catch (e) {
          this.error = e;
          this.onChange("error");
        } finally {
          this.gapRunning = null;
        }
      })();
    }
    return this.gapRunning;
  }
}

// useHistory follows channel on conn and returns [history, lastChangeKind].
export function useHistory(api, conn, channel) {
  const [, setTick] = useState(0);
  const kind = useRef("");
  const ref = useRef(null);
  if (!ref.current || ref.current.channel !== channel) {
    if (ref.current) ref.current.closed = true;
    ref.current = new History(api, channel, (k) => {
      kind.current = k;
      setTick((n) => n + 1);
    });
  }
  const h = ref.current;
  useEffect(() => {
    const onMessage = (ev) => {
      const f = ev.detail;
      if (f.channel !== channel) return;
      if (h.put(f.message, f.offset)) h.onChange("live");
    };
    const onUpdate = (ev) => {
      const f = ev.detail;
      if (f.channel === channel && h.update(f.message)) h.onChange("update");
    };
    const onRecovery = (ev) => {
      const d = ev.detail;
      if (d.channel !== channel) return;
      if (!d.recovered || d.offset > h.maxOffset()) h.fillGap();
    };
    conn.addEventListener("message", onMessage);
    conn.addEventListener("message_updated", onUpdate);
    conn.addEventListener("message_deleted", onUpdate);
    conn.addEventListener("recovery", onRecovery);
    h.loadNewest().then(() => {
      // Anything stored between this page and the subscription's start.
      if (conn.subs.has(channel)) h.fillGap();
    });
    return () => {
      h.closed = true;
      conn.removeEventListener("message", onMessage);
      conn.removeEventListener("message_updated", onUpdate);
      conn.removeEventListener("message_deleted", onUpdate);
      conn.removeEventListener("recovery", onRecovery);
    };
  }, [h]);
  return [h, kind];
}
