// The fleet as the client sees it: the devices (auth API GET /devices, all
// of them for admins), their latest telemetry (GET /api/v1/devices/{id}/
// telemetry) and their live events from the device channels `device:<id>`
// over the WebSocket. The device posts there (internal/device):
//   {"type":"telemetry","ts","seq?","data":{…}}   a telemetry point
//   {"type":"heartbeat","ts?","received_at",…}    a heartbeat
//   {"type":"status","online":bool,"at",…}        online state changes
//   {"type":"command_result","command_id","name","status","result?"}
//   {"alert":"anomaly",…}                         an ML alert
// One FleetStore per connection (fleetOf); views use useFleet().
//
// Events: "change" whenever a device or its latest values changed;
// "event" (detail {id, data, message}) for every message of a device
// channel; "gap" (detail {id}) when a resubscription could not recover
// what was missed (views refetch over REST).
import { useEffect, useState, useEvent } from "../lib.js";
import { useApp } from "../app.js";

const stores = new WeakMap();

export function fleetOf(api, conn) {
  let s = stores.get(conn);
  if (!s) {
    s = new FleetStore(api, conn);
    stores.set(conn, s);
  }
  return s;
}

// useFleet returns the fleet store and re-renders on its "change" events.
export function useFleet() {
  const { api, conn } = useApp();
  const fleet = fleetOf(api, conn);
  const [, setTick] = useState(0);
  useEvent(fleet, "change", () => setTick((n) => n + 1));
  return fleet;
}

export const deviceChannel = (id) => "device:" + id;

export class FleetStore extends EventTarget {
  constructor(api, conn) {
    super();
    this.api = api;
    this.conn = conn;
    this.devices = new Map(); // id → device (auth API shape) + latest
    this.loaded = false;
    this.error = null;
    this.watchers = new Map(); // id → count
    conn.addEventListener("message", (ev) => this.onMessage(ev.detail));
    conn.addEventListener("recovery", (ev) => {
      const id = idOf(ev.detail.channel);
      if (id !== null && !ev.detail.recovered && ev.detail.since > 0) {
        this.refreshLatest(id);
        this.dispatchEvent(new CustomEvent("gap", { detail: { id } }));
      }
    });
    api.addEventListener("session", () => {
      if (!api.signedIn) {
        this.devices.clear();
        this.loaded = false;
      }
    });
  }

  changed() {
    this.dispatchEvent(new Event("change"));
  }

  list() {
    return [...this.devices.values()].sort((a, b) => (a.name || "").localeCompare(b.name || "") || a.device_id.localeCompare(b.device_id));
  }

  get(id) {
    return this.devices.get(id) || null;
  }

  // load fetches the device list; withLatest also fetches every device's
  // newest telemetry point.
  async load(withLatest) {
    try {
      const r = await this.api.auth("GET", "/devices");
      const seen = new Set();
      for (const d of r.devices || []) {
        seen.add(d.device_id);
        this.merge(d);
      }
      for (const id of [...this.devices.keys()]) if (!seen.has(id)) this.devices.delete(id);
      this.loaded = true;
      this.error = null;
      this.changed();
      if (withLatest) await pool([...seen], 4, (id) => this.refreshLatest(id));
    } catch (e) {
      this.error = e;
      this.changed();
    }
  }

  // fetchOne fetches one device (its page).
  async fetchOne(id) {
    const d = await this.api.auth("GET", "/devices/" + encodeURIComponent(id));
    this.merge(d);
    this.changed();
    return this.get(d.device_id);
  }

  merge(d) {
    const old = this.devices.get(d.device_id);
    const next = { ...(old || {}), ...d };
    // A live event newer than the registry's answer wins.
    if (old && old.liveAt && (!d.last_seen || Date.parse(d.last_seen) < old.liveAt)) {
      next.online = old.online;
      next.last_seen = old.last_seen;
    }
    this.devices.set(d.device_id, next);
  }

  forget(id) {
    this.devices.delete(id);
    this.changed();
  }

  setRevoked(id) {
    const d = this.devices.get(id);
    if (d) {
      d.revoked = true;
      d.online = false;
      this.changed();
    }
  }

  async refreshLatest(id) {
    const d = this.devices.get(id);
    if (!d || d.revoked) return;
    try {
      const p = await latestPoint(this.api, id);
      if (p) this.noteLatest(id, p);
    } catch {
      // The list shows what it has; the next event brings more.
    }
  }

  noteLatest(id, p) {
    const d = this.devices.get(id);
    if (!d) return;
    if (d.latest && Date.parse(d.latest.ts) > Date.parse(p.ts)) return;
    d.latest = { ts: p.ts, data: p.data };
    this.changed();
  }

  // watch follows device:<id> live until the returned function is called
  // (counted: several views may watch one device).
  watch(id) {
    const n = this.watchers.get(id) || 0;
    this.watchers.set(id, n + 1);
    if (n === 0) this.conn.subscribe(deviceChannel(id));
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const left = (this.watchers.get(id) || 1) - 1;
      this.watchers.set(id, left);
      if (left > 0) return;
      // Views hand over (list → page) in one render: unsubscribe only if
      // nobody took it up again meanwhile.
      setTimeout(() => {
        if ((this.watchers.get(id) || 0) === 0) {
          this.watchers.delete(id);
          this.conn.unsubscribe(deviceChannel(id));
        }
      }, 1000);
    };
  }

  onMessage(f) {
    const id = idOf(f.channel);
    if (id === null || !f.message) return;
    const data = f.message.data;
    if (!data || typeof data !== "object") return;
    const d = this.devices.get(id);
    if (d) {
      const at = f.message.created_at || new Date().toISOString();
      const fromDevice = f.message.sender && f.message.sender.kind === "device";
      switch (data.type) {
        case "telemetry":
          if (data.data && typeof data.data === "object") this.noteLatest(id, { ts: data.ts || at, data: data.data });
          this.seen(d, at, true);
          break;
        case "heartbeat":
          this.seen(d, data.received_at || at, true);
          break;
        case "status":
          d.online = !!data.online;
          d.liveAt = Date.now();
          if (data.online) d.last_seen = data.at || at;
          else if (data.at) d.last_seen = data.at;
          break;
        default:
          if (fromDevice) this.seen(d, at, true);
      }
      this.changed();
    }
    this.dispatchEvent(new CustomEvent("event", { detail: { id, data, message: f.message } }));
  }

  seen(d, at, online) {
    d.last_seen = at;
    if (online && !d.revoked) d.online = true;
    d.liveAt = Date.now();
  }
}

function idOf(channel) {
  return typeof channel === "string" && channel.startsWith("device:") ? channel.slice(7) : null;
}

// pool runs fn over items, at most n at a time.
export async function pool(items, n, fn) {
  const queue = [...items];
  const workers = Array.from({ length: Math.min(n, queue.length) }, async () => {
    while (queue.length) await fn(queue.shift());
  });
  await Promise.all(workers);
}

const enc = encodeURIComponent;

// latestPoint returns the device's newest telemetry point (null when it
// sent none in the last 7 days). The telemetry route answers oldest first,
// so it looks back in growing windows and pages forward when a window is
// full.
export async function latestPoint(api, id) {
  const now = Date.now();
  for (const back of [5 * 60e3, 3600e3, 86400e3, 7 * 86400e3]) {
    let since = new Date(now - back).toISOString();
    let last = null;
    for (let page = 0; page < 5; page++) {
      const r = await api.rest("GET", `/devices/${enc(id)}/telemetry?since=${enc(since)}&limit=1000`);
      const pts = (r && r.points) || [];
      if (pts.length) last = pts[pts.length - 1];
      if (pts.length < 1000) break;
      since = last.ts;
    }
    if (last) return last;
  }
  return null;
}

// fetchRange returns the device's points with since <= ts < until (until
// null: now), oldest first, at most maxPages × 10,000; truncated tells
// whether there were more.
export async function fetchRange(api, id, since, until, maxPages = 5) {
  const out = [];
  let from = since.toISOString();
  const to = until ? "&until=" + enc(until.toISOString()) : "";
  for (let page = 0; page < maxPages; page++) {
    const r = await api.rest("GET", `/devices/${enc(id)}/telemetry?since=${enc(from)}${to}&limit=10000`);
    const pts = (r && r.points) || [];
    let start = 0;
    if (page > 0) {
      // The first points of a page repeat the last ts of the previous one.
      const lastTS = out.length ? out[out.length - 1].ts : "";
      while (start < pts.length && pts[start].ts === lastTS) start++;
    }
    for (let i = start; i < pts.length; i++) out.push(pts[i]);
    if (pts.length < 10000) return { points: out, truncated: false };
    from = pts[pts.length - 1].ts;
  }
  return { points: out, truncated: true };
}

// numericFields flattens a telemetry point's data into its numeric fields:
// {"temp":21.5,"cpu":{"load":0.3}} → [["cpu.load",0.3],["temp",21.5]].
export function numericFields(data, prefix = "", depth = 0, out = []) {
  if (!data || typeof data !== "object" || Array.isArray(data)) return out;
  for (const [k, v] of Object.entries(data)) {
    const name = prefix + k;
    if (typeof v === "number" && isFinite(v)) out.push([name, v]);
    else if (v && typeof v === "object" && !Array.isArray(v) && depth < 3) numericFields(v, name + ".", depth + 1, out);
  }
  if (depth === 0) out.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return out;
}

export function stateOf(d) {
  if (!d) return "unknown";
  if (d.revoked) return "revoked";
  return d.online ? "online" : "offline";
}

// formatValue shows a number with at most 4 significant decimals.
export function formatValue(v) {
  if (typeof v !== "number") return String(v);
  if (Number.isInteger(v)) return String(v);
  return String(Number(v.toPrecision(6)));
}

// useNow re-renders every period ms (relative times).
export function useNow(period = 15000) {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), period);
    return () => clearInterval(t);
  }, [period]);
  return now;
}

export function relativeTime(ts, now = Date.now()) {
  const t = Date.parse(ts);
  if (isNaN(t)) return "never";
  const s = Math.round((now - t) / 1000);
  if (s < -5) return "in the future";
  if (s < 10) return "just now";
  if (s < 60) return s + " s ago";
  const m = Math.round(s / 60);
  if (m < 60) return m + " min ago";
  const h = Math.round(m / 60);
  if (h < 48) return h + " h ago";
  return Math.round(h / 24) + " d ago";
}

export function absoluteTime(ts) {
  const d = new Date(ts);
  if (isNaN(d)) return "";
  return d.toLocaleString([], { dateStyle: "medium", timeStyle: "medium" });
}
