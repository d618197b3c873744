// One small uPlot chart of a metric, with its text alternative (the latest
// value, min and max, the number of readings) for screen readers and
// tests; data-points on the figure is the chart's data length. The model's
// alerts on the metric are ringed on the line, and the latest one's score
// is shown by the name (alerts.js).
import { html, useEffect, useRef } from "../lib.js";
import uPlot from "../../vendor/uplot.mjs";
import { formatValue, absoluteTime } from "./fleet.js";
import { clock, scoreText } from "./alerts.js";

let seq = 0;

function color(name, fallback) {
  const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return v || fallback;
}

// markAlerts is a uPlot draw hook: a ring at each alert's reading (drawn
// over the series, so the marks need no data of their own aligned to xs).
function markAlerts(marks, stroke) {
  return (u) => {
    const [x0, x1] = [u.scales.x.min, u.scales.x.max];
    const ctx = u.ctx;
    ctx.save();
    ctx.strokeStyle = stroke;
    ctx.lineWidth = 2 * devicePixelRatio;
    for (const a of marks.current) {
      const t = Date.parse(a.at) / 1000;
      if (a.value === null || isNaN(t) || t < x0 || t > x1) continue;
      const x = u.valToPos(t, "x", true);
      const y = u.valToPos(a.value, "y", true);
      ctx.beginPath();
      ctx.arc(x, y, 6 * devicePixelRatio, 0, 2 * Math.PI);
      ctx.stroke();
    }
    ctx.restore();
  };
}

// MetricChart draws series = {xs (Unix seconds, ascending), ys}; version
// changes whenever the arrays changed (they are appended in place).
// alerts are the model's alerts on this metric, newest first.
export function MetricChart({ name, series, version, alerts = [] }) {
  const box = useRef(null);
  const plot = useRef(null);
  const ids = useRef(null);
  const marks = useRef(alerts);
  marks.current = alerts;
  if (!ids.current) {
    seq++;
    ids.current = { cap: "chart-cap-" + seq, sum: "chart-sum-" + seq, score: "chart-score-" + seq };
  }
  useEffect(() => {
    const el = box.current;
    const width = Math.max(200, el.clientWidth || 300);
    const line = color("--accent", "#1f3a5f");
    const bad = color("--bad", "#b42318");
    const axis = { stroke: color("--muted", "#5b6573"), grid: { stroke: color("--line", "#d9dee5"), width: 1 }, ticks: { stroke: color("--line", "#d9dee5") } };
    const u = new uPlot(
      {
        width,
        height: 150,
        legend: { show: false },
        cursor: { drag: { x: false, y: false } },
        scales: { x: { time: true } },
        series: [{}, { label: name, stroke: line, width: 2, points: { show: series.xs.length < 60 }, spanGaps: true }],
        axes: [{ ...axis }, { ...axis, size: 50 }],
        hooks: { draw: [markAlerts(marks, bad)] },
      },
      [series.xs.slice(), series.ys.slice()],
      el,
    );
    plot.current = u;
    let ro = null;
    if (window.ResizeObserver) {
      ro = new ResizeObserver(() => {
        const w = Math.max(200, el.clientWidth);
        if (w !== u.width) u.setSize({ width: w, height: 150 });
      });
      ro.observe(el);
    }
    return () => {
      if (ro) ro.disconnect();
      u.destroy();
      plot.current = null;
    };
  }, []);
  useEffect(() => {
    const u = plot.current;
    if (!u) return;
    u.setData([series.xs.slice(), series.ys.slice()]);
  }, [version]);
  const top = alerts[0];
  useEffect(() => {
    if (plot.current) plot.current.redraw(false);
  }, [alerts.length, top && top.id]);
  const n = series.ys.length;
  let summary = "No readings in this time range.";
  if (n > 0) {
    let min = Infinity;
    let max = -Infinity;
    for (const v of series.ys) {
      if (v < min) min = v;
      if (v > max) max = v;
    }
    const at = absoluteTime(new Date(series.xs[n - 1] * 1000).toISOString());
    summary = `Latest: ${formatValue(series.ys[n - 1])} at ${at}. Min ${formatValue(min)}, max ${formatValue(max)}, ${n} ${n === 1 ? "reading" : "readings"}.`;
  }
  const described = top ? ids.current.sum + " " + ids.current.score : ids.current.sum;
  return html`<figure class="metric" aria-labelledby=${ids.current.cap} aria-describedby=${described} data-metric=${name} data-points=${n}>
    <figcaption><span id=${ids.current.cap}>${name}</span>${top && html`${" "}<span id=${ids.current.score} class=${"chart-score" + (top.label === "shift" ? " chart-score-shift" : "")} data-alert=${top.id}>
      <span class="visually-hidden">Latest ${top.label === "shift" ? "level shift" : "anomaly"}: </span>${scoreText(top)} · <time datetime=${top.at}>${clock(top.at)}</time>
    </span>`}</figcaption>
    <div class="chart" ref=${box} aria-hidden="true"></div>
    <p id=${ids.current.sum} class="chart-summary">${summary}</p>
  </figure>`;
}
