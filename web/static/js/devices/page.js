// A device's page (#/devices/<id>): its name, state and last seen; a chart
// per numeric metric over the chosen time range of stored telemetry,
// appended live from device:<id>; the command form and the commands; the
// owner's actions (rotate the key, revoke); the ML alerts beside the charts
// (alerts.js); recent events, the model's alerts highlighted.
import { html, useEffect, useRef, useState, useEvent, formatTime } from "../lib.js";
import { useApp } from "../app.js";
import { useFleet, fetchRange, numericFields, stateOf } from "./fleet.js";
import { State, LastSeen, useKeyFlow } from "./ui.js";
import { MetricChart } from "./chart.js";
import { Commands } from "./commands.js";
import { useAlerts, Anomalies } from "./alerts.js";

const RANGES = [
  { key: "15m", label: "Last 15 minutes", ms: 15 * 60e3 },
  { key: "1h", label: "Last hour", ms: 3600e3 },
  { key: "24h", label: "Last 24 hours", ms: 86400e3 },
  { key: "7d", label: "Last 7 days", ms: 7 * 86400e3 },
  { key: "custom", label: "Custom range" },
];

// localInput renders a Date for a datetime-local input.
function localInput(d) {
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

export function DevicePage({ id }) {
  const { api } = useApp();
  const fleet = useFleet();
  const [error, setError] = useState(null);
  const device = fleet.get(id);
  const flow = useKeyFlow(fleet);
  const alerts = useAlerts(id, fleet);

  useEffect(() => {
    setError(null);
    fleet.fetchOne(id).catch((e) => setError(e));
  }, [id]);
  useEffect(() => fleet.watch(id), [id]);

  if (error && !device) {
    return html`<section class="device"><h2>Device</h2><p role="alert" class="error">${error.status === 404 ? "Device not found." : error.message}</p>
      <p><a href="#/devices">All devices</a></p></section>`;
  }
  if (!device) return html`<section class="device"><p class="loading">Loading device…</p></section>`;
  const user = api.user || {};
  const owner = device.owner === user.username || api.isAdmin();
  const revoked = stateOf(device) === "revoked";
  return html`<section class="device" aria-labelledby="device-title">
    <p class="crumbs"><a href="#/devices">Devices</a></p>
    <div class="dev-head">
      <h2 id="device-title">${device.name || device.device_id}</h2>
      <${State} device=${device} />
    </div>
    <dl class="dev-facts">
      <div><dt>Last seen</dt><dd><${LastSeen} ts=${device.last_seen} /></dd></div>
      <div><dt>Device ID</dt><dd><code>${device.device_id}</code></dd></div>
      <div><dt>Owner</dt><dd>${device.owner}</dd></div>
    </dl>
    ${owner && !revoked && html`<div class="dev-actions" role="group" aria-label="Device actions">
      <button type="button" onClick=${() => flow.rotate(device)}>Rotate key</button>
      <button type="button" class="danger" onClick=${() => flow.revoke(device)}>Revoke device</button>
    </div>`}
    <div class="dev-live">
      <${Telemetry} id=${device.device_id} fleet=${fleet} latest=${alerts.latest} list=${alerts.list} />
      <${Anomalies} alerts=${alerts} />
    </div>
    <div class="dev-columns">
      <${Commands} device=${device} fleet=${fleet} canSend=${!revoked} />
      <${Events} id=${device.device_id} fleet=${fleet} />
    </div>
    ${flow.view}
  </section>`;
}

// Telemetry is the time-range picker and the charts; latest (metric → the
// newest alert from the model) and list (every alert) mark them.
function Telemetry({ id, fleet, latest, list }) {
  const { api } = useApp();
  const [range, setRange] = useState({ key: "1h" });
  const [custom, setCustom] = useState(() => ({ from: localInput(new Date(Date.now() - 3600e3)), to: localInput(new Date()) }));
  const [status, setStatus] = useState({ loading: true, error: null, truncated: false });
  const [version, setVersion] = useState(0);
  const data = useRef({ series: new Map(), keys: new Set(), loading: true, pending: [], live: true, since: 0 });

  const add = (p) => {
    const d = data.current;
    const key = p.ts + "|" + JSON.stringify(p.data);
    if (d.keys.has(key)) return false;
    const t = Date.parse(p.ts) / 1000;
    if (isNaN(t)) return false;
    d.keys.add(key);
    for (const [name, v] of numericFields(p.data)) {
      let s = d.series.get(name);
      if (!s) {
        s = { xs: [], ys: [] };
        d.series.set(name, s);
      }
      // Points come in time order but a device may send buffered ones late.
      let i = s.xs.length;
      while (i > 0 && s.xs[i - 1] > t) i--;
      s.xs.splice(i, 0, t);
      s.ys.splice(i, 0, v);
    }
    return true;
  };

  const trim = () => {
    const d = data.current;
    if (!d.live || !d.windowMs) return;
    const cut = (Date.now() - d.windowMs) / 1000;
    for (const s of d.series.values()) {
      let n = 0;
      while (n < s.xs.length && s.xs[n] < cut) n++;
      if (n) {
        s.xs.splice(0, n);
        s.ys.splice(0, n);
      }
    }
  };

  const load = async () => {
    let since;
    let until = null;
    const r = RANGES.find((x) => x.key === range.key);
    if (range.key === "custom") {
      since = new Date(range.from);
      until = new Date(range.to);
      if (isNaN(since) || isNaN(until) || until <= since) {
        setStatus({ loading: false, error: new Error("The end of the range must be after its start."), truncated: false });
        return;
      }
    } else {
      since = new Date(Date.now() - r.ms);
    }
    const d = { series: new Map(), keys: new Set(), loading: true, pending: [], live: range.key !== "custom", windowMs: r.ms || 0 };
    data.current = d;
    setStatus({ loading: true, error: null, truncated: false });
    try {
      const res = await fetchRange(api, id, since, until);
      if (data.current !== d) return;
      for (const p of res.points) add(p);
      for (const p of d.pending) add(p);
      d.pending = [];
      d.loading = false;
      setStatus({ loading: false, error: null, truncated: res.truncated });
      setVersion((v) => v + 1);
    } catch (e) {
      if (data.current !== d) return;
      d.loading = false;
      setStatus({ loading: false, error: e, truncated: false });
    }
  };

  useEffect(() => {
    load();
  }, [id, range]);

  useEvent(fleet, "event", (ev) => {
    const { id: dev, data: ev0, message } = ev.detail;
    if (dev !== id || ev0.type !== "telemetry" || !ev0.data) return;
    const d = data.current;
    if (!d.live) return;
    const p = { ts: ev0.ts || message.created_at, data: ev0.data };
    if (d.loading) {
      d.pending.push(p);
      return;
    }
    if (add(p)) {
      trim();
      setVersion((v) => v + 1);
    }
  });
  useEvent(fleet, "gap", (ev) => {
    if (ev.detail.id === id && data.current.live) load();
  });

  const names = [...data.current.series.keys()].sort();
  const pick = (ev) => {
    const key = ev.target.value;
    if (key === "custom") setRange({ key, from: custom.from, to: custom.to });
    else setRange({ key });
  };
  const applyCustom = (ev) => {
    ev.preventDefault();
    const f = new FormData(ev.target);
    const next = { from: String(f.get("from")), to: String(f.get("to")) };
    setCustom(next);
    setRange({ key: "custom", ...next });
  };
  return html`<section class="dev-telemetry" aria-labelledby="telemetry-title" aria-busy=${status.loading ? "true" : "false"}>
    <div class="dev-head">
      <h3 id="telemetry-title">Telemetry</h3>
      <label class="inline">Time range
        <select value=${range.key} onChange=${pick}>
          ${RANGES.map((r) => html`<option value=${r.key}>${r.label}</option>`)}
        </select>
      </label>
    </div>
    ${range.key === "custom" && html`<form class="range-custom" onSubmit=${applyCustom}>
      <label class="inline">From <input type="datetime-local" name="from" value=${custom.from} required /></label>
      <label class="inline">To <input type="datetime-local" name="to" value=${custom.to} required /></label>
      <button type="submit">Show</button>
    </form>`}
    ${status.error && html`<p role="alert" class="error">Telemetry could not be loaded: ${status.error.message}</p>`}
    ${status.truncated && html`<p class="muted">Showing the first 50,000 readings of this range; choose a shorter one to see the rest.</p>`}
    ${status.loading && html`<p class="loading">Loading telemetry…</p>`}
    ${!status.loading && !status.error && names.length === 0 && html`<p class="muted">No numeric telemetry in this time range${data.current.live ? "; new readings appear here as they arrive" : ""}.</p>`}
    <div class="charts">
      ${names.map((n) => html`<${MetricChart} key=${range.key + (range.from || "") + (range.to || "") + "/" + n} name=${n} series=${data.current.series.get(n)} version=${version}
        alerts=${latest.has(n) ? list.filter((a) => a.trusted && a.metric === n) : []} />`)}
    </div>
  </section>`;
}

// describe turns message m of device id's channel into a line of text
// (null: not shown among the events). An alert is the model's only when the
// device sent it (alerts.js); one posted by a person is shown as theirs.
function describe(m, id) {
  const data = m.data;
  if (data.alert === "anomaly") {
    const rest = { ...data };
    delete rest.alert;
    delete rest.type;
    const parts = Object.entries(rest).map(([k, v]) => `${k} ${typeof v === "object" ? JSON.stringify(v) : v}`);
    const s = m.sender || {};
    if (s.kind !== "device" || s.id !== id) {
      return { kind: "other", text: `Alert posted by ${s.id || "unknown"}, not from the model` + (parts.length ? ": " + parts.join(", ") : "") };
    }
    return { kind: "alert", text: "Anomaly" + (parts.length ? ": " + parts.join(", ") : "") };
  }
  switch (data.type) {
    case "status":
      return { kind: "status", text: data.online ? "Came online" : "Went offline" };
    case "command_result":
      return { kind: "command", text: `Command ${data.name || data.command_id}: ${data.status}` };
    case "telemetry":
    case "heartbeat":
      return null;
    default:
      return data.type ? { kind: "other", text: String(data.type) } : null;
  }
}

// Events lists the device's recent events (the device channel's last
// messages, then live ones), ML alerts highlighted.
function Events({ id, fleet }) {
  const { api } = useApp();
  const [items, setItems] = useState([]);
  const addItems = (msgs, front) =>
    setItems((list) => {
      const have = new Set(list.map((x) => x.id));
      const add = [];
      for (const m of msgs) {
        if (have.has(m.id) || !m.data || typeof m.data !== "object") continue;
        const d = describe(m, id);
        if (d) add.push({ id: m.id, at: m.created_at, ...d });
      }
      const next = front ? [...add, ...list] : [...list, ...add];
      return next.slice(0, 50);
    });
  useEffect(() => {
    setItems([]);
    api
      .rest("GET", `/channels/${encodeURIComponent("device:" + id)}/messages?limit=100`)
      .then((r) => addItems((r && r.messages) || [], false))
      .catch(() => {});
  }, [id]);
  useEvent(fleet, "event", (ev) => {
    if (ev.detail.id === id) addItems([ev.detail.message], true);
  });
  const alerts = items.filter((x) => x.kind === "alert").length;
  return html`<section class="dev-events" aria-labelledby="events-title">
    <h3 id="events-title">Recent events ${alerts > 0 && html`<span class="alert-count">${alerts} ${alerts === 1 ? "alert" : "alerts"}</span>`}</h3>
    <ul aria-label="Recent events" aria-live="polite" class="event-list">
      ${items.length === 0 && html`<li class="muted empty">No recent events.</li>`}
      ${items.map((x) => html`<li key=${x.id} class=${"event event-" + x.kind}>
        <time datetime=${x.at} class="muted">${formatTime(x.at)}</time>${" "}${x.kind === "alert" && html`<strong class="alert-label">Alert </strong>`}<span>${x.text}</span>
      </li>`)}
    </ul>
  </section>`;
}
