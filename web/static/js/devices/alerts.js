// The ML bridge's alerts on a device page. The bridge posts an anomalous
// reading in device:<id> as the device itself (sender kind "device", id the
// device's), with data
//   {"alert":"anomaly","metric","value","score","model","label","ts?"}
// (label "anomaly" or "shift"). The owner and admins may post in that
// channel too, so only a message whose sender is the device counts as the
// model's: anything else that looks like an alert is listed as not from the
// model, and never sets a chart's score.
//
// useAlerts loads the alerts from the channel's history (newest first,
// paging back through the telemetry messages around them) and follows the
// live ones; Anomalies is the list; scoreText and clock are the chart's
// label.
import { html, useEffect, useRef, useState, useEvent } from "../lib.js";
import { useApp } from "../app.js";
import { formatValue, deviceChannel } from "./fleet.js";

// Enough alerts to read back over; the history is paged until this many
// are found or PAGES pages of the channel were read.
const KEEP = 50;
const PAGE = 200;
const PAGES = 5;

const num = (v) => (typeof v === "number" && isFinite(v) ? v : null);
const str = (v) => (typeof v === "string" && v !== "" ? v : null);

// alertOf reads message m of device id's channel as an alert (null when it
// is none). trusted tells whether the device sent it.
export function alertOf(m, id) {
  const d = m && !m.deleted && m.data;
  if (!d || typeof d !== "object" || d.alert !== "anomaly" || !str(d.metric)) return null;
  const s = m.sender || {};
  const ts = str(d.ts) && !isNaN(Date.parse(d.ts)) ? d.ts : null;
  return {
    id: m.id,
    offset: typeof m.offset === "number" ? m.offset : null,
    at: ts || m.created_at,
    metric: d.metric,
    value: num(d.value),
    score: num(d.score),
    model: str(d.model),
    label: str(d.label),
    trusted: s.kind === "device" && s.id === id,
    sender: str(s.id) || "unknown",
  };
}

// newer orders alerts newest first: by channel offset when both have one
// (the order the server stored them), else by time.
function newer(a, b) {
  if (a.offset !== null && b.offset !== null) return b.offset - a.offset;
  return Date.parse(b.at) - Date.parse(a.at);
}

// useAlerts returns {list (newest first), latest (metric → the newest
// trusted alert), loading, error}.
export function useAlerts(id, fleet) {
  const { api } = useApp();
  const [state, setState] = useState({ list: [], loading: true, error: null });
  const gen = useRef(0);

  const merge = (found) =>
    setState((st) => {
      const have = new Set(st.list.map((a) => a.id));
      const add = found.filter((a) => !have.has(a.id));
      if (add.length === 0) return st;
      return { ...st, list: [...st.list, ...add].sort(newer).slice(0, KEEP) };
    });

  const load = async () => {
    const g = ++gen.current;
    setState((st) => ({ ...st, loading: true, error: null }));
    const path = `/channels/${encodeURIComponent(deviceChannel(id))}/messages?limit=${PAGE}`;
    let before = "";
    let found = 0;
    try {
      for (let page = 0; page < PAGES && found < KEEP; page++) {
        const r = await api.rest("GET", path + before);
        if (gen.current !== g) return;
        const msgs = (r && r.messages) || [];
        const alerts = msgs.map((m) => alertOf(m, id)).filter(Boolean);
        found += alerts.length;
        merge(alerts);
        const last = msgs[msgs.length - 1];
        if (!r || !r.has_more || !last || !(last.offset > 1)) break;
        before = "&before=" + last.offset;
      }
      setState((st) => ({ ...st, loading: false }));
    } catch (e) {
      if (gen.current === g) setState((st) => ({ ...st, loading: false, error: e }));
    }
  };

  useEffect(() => {
    setState({ list: [], loading: true, error: null });
    load();
    return () => gen.current++;
  }, [id]);
  useEvent(fleet, "event", (ev) => {
    if (ev.detail.id !== id) return;
    const a = alertOf(ev.detail.message, id);
    if (a) merge([a]);
  });
  useEvent(fleet, "gap", (ev) => {
    if (ev.detail.id === id) load();
  });

  const latest = new Map();
  for (const a of state.list) if (a.trusted && !latest.has(a.metric)) latest.set(a.metric, a);
  return { ...state, latest };
}

// clock renders an RFC 3339 time as the local time of day with seconds
// (today), or date and time.
export function clock(ts) {
  const d = new Date(ts);
  if (isNaN(d)) return "";
  if (d.toDateString() === new Date().toDateString()) {
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }
  return d.toLocaleString([], { dateStyle: "medium", timeStyle: "medium" });
}

export const scoreText = (a) => (a.score === null ? "no score" : "score " + a.score.toFixed(1));

const kindText = (a) => (a.label === "shift" ? "Level shift" : "Anomaly");

// Anomalies lists the alerts, newest first.
export function Anomalies({ alerts }) {
  const { list, loading, error } = alerts;
  const trusted = list.filter((a) => a.trusted).length;
  return html`<section class="dev-anomalies" aria-labelledby="anomalies-title">
    <h3 id="anomalies-title">Anomalies</h3>
    ${error && html`<p role="alert" class="error">Alerts could not be loaded: ${error.message}</p>`}
    <p class="visually-hidden" role="status">${loading ? "" : trusted === 1 ? "1 alert from the model." : trusted + " alerts from the model."}</p>
    <ul aria-label="Anomalies" class="anomaly-list" tabindex="0">
      ${list.length === 0 && html`<li class="muted empty">${loading ? "Loading alerts…" : "No anomalies detected."}</li>`}
      ${list.map((a) => html`<${Alert} key=${a.id} a=${a} />`)}
    </ul>
  </section>`;
}

// Alert is one line of the list; the spaces between its parts are text, so
// that it reads as a sentence where it is not laid out (screen readers).
function Alert({ a }) {
  const value = a.value === null ? "—" : formatValue(a.value);
  const time = html`<time datetime=${a.at}>${clock(a.at)}</time>`;
  if (!a.trusted) {
    return html`<li class="anomaly anomaly-untrusted">
      <span class="anomaly-kind">Not from the model:</span>${" "}<span class="anomaly-line">posted by ${a.sender}, <span class="metric-name">${a.metric}</span> ${value}, ${scoreText(a)}</span>${" "}<span class="anomaly-meta muted">${time}</span>
    </li>`;
  }
  return html`<li class=${"anomaly anomaly-" + (a.label === "shift" ? "shift" : "point")}>
    <span class="anomaly-kind">${kindText(a)}:</span>${" "}<span class="anomaly-line"><span class="metric-name">${a.metric}</span> <span class="value">${value}</span>, <strong class="anomaly-score">${scoreText(a)}</strong></span>${" "}<span class="anomaly-meta muted">${a.model ? "model " + a.model + " · " : ""}${time}</span>
  </li>`;
}
