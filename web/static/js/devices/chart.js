// One small uPlot chart of a metric, with its text alternative (the latest
// value, min and max, the number of readings) for screen readers and
// tests; data-points on the figure is the chart's data length.
import { html, useEffect, useRef } from "../lib.js";
import uPlot from "../../vendor/uplot.mjs";
import { formatValue, absoluteTime } from "./fleet.js";

let seq = 0;

function color(name, fallback) {
  const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return v || fallback;
}

// MetricChart draws series = {xs (Unix seconds, ascending), ys}; version
// changes whenever the arrays changed (they are appended in place).
export function MetricChart({ name, series, version }) {
  const box = useRef(null);
  const plot = useRef(null);
  const ids = useRef(null);
  if (!ids.current) {
    seq++;
    ids.current = { cap: "chart-cap-" + seq, sum: "chart-sum-" + seq };
  }
  useEffect(() => {
    const el = box.current;
    const width = Math.max(200, el.clientWidth || 300);
    const line = color("--accent", "#1f3a5f");
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
  return html`<figure class="metric" aria-labelledby=${ids.current.cap} aria-describedby=${ids.current.sum} data-metric=${name} data-points=${n}>
    <figcaption id=${ids.current.cap}>${name}</figcaption>
    <div class="chart" ref=${box} aria-hidden="true"></div>
    <p id=${ids.current.sum} class="chart-summary">${summary}</p>
  </figure>`;
}
