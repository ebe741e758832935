// A small SVG line chart: lineChart(container, title, {name: [[step, value], ...]}) redraws the container.
// No library: axes with "nice" ticks, one polyline per series, a legend. Long series are thinned for drawing.
"use strict";

const CHART_COLORS = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563"];
const SVG_NS = "http://www.w3.org/2000/svg";

function svgEl(tag, attrs) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) el.setAttribute(key, String(value));
  return el;
}

// About `count` round tick values covering [lo, hi].
function niceTicks(lo, hi, count) {
  if (!(hi > lo)) { hi = lo + 1; lo = lo - 1; }
  const raw = (hi - lo) / Math.max(1, count);
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

function formatTick(v) {
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e5 || a < 1e-3)) return v.toExponential(1);
  if (a >= 1000) return (v / 1000).toFixed(a >= 1e4 ? 0 : 1) + "k";
  return String(Number(v.toPrecision(3)));
}

// Keep at most `limit` points: every k-th point, always the last one.
function thin(points, limit) {
  if (points.length <= limit) return points;
  const k = Math.ceil(points.length / limit);
  const out = points.filter((_, i) => i % k === 0);
  if (out[out.length - 1] !== points[points.length - 1]) out.push(points[points.length - 1]);
  return out;
}

function lineChart(container, title, series, size) {
  const W = (size && size.width) || 560, H = (size && size.height) || 260, left = 52, right = 12, top = 28, bottom = 30;
  const names = Object.keys(series).filter((n) => series[n].length > 0);
  container.replaceChildren();
  container.classList.add("chart");
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title });
  const heading = svgEl("text", { x: left, y: 16, "font-size": 13, "font-weight": 600, fill: "#1f2937" });
  heading.textContent = title;
  svg.appendChild(heading);
  if (names.length === 0) {
    const empty = svgEl("text", { x: W / 2, y: H / 2, "text-anchor": "middle", fill: "#6b7280", "font-size": 13 });
    empty.textContent = "no data yet";
    svg.appendChild(empty);
    container.appendChild(svg);
    return;
  }
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (const n of names) {
    for (const [x, y] of series[n]) {
      if (!Number.isFinite(y)) continue;
      x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
    }
  }
  if (x1 === x0) { x1 = x0 + 1; }
  if (y1 === y0) { y1 = y0 + Math.max(1e-3, Math.abs(y0) * 0.1); y0 = y0 - Math.max(1e-3, Math.abs(y0) * 0.1); }
  const pad = (y1 - y0) * 0.05;
  y0 -= pad; y1 += pad;
  const sx = (x) => left + ((x - x0) / (x1 - x0)) * (W - left - right);
  const sy = (y) => top + (1 - (y - y0) / (y1 - y0)) * (H - top - bottom);

  for (const t of niceTicks(y0, y1, 5)) {
    if (t < y0 || t > y1) continue;
    svg.appendChild(svgEl("line", { x1: left, x2: W - right, y1: sy(t), y2: sy(t), stroke: "#e5e7eb" }));
    const label = svgEl("text", { x: left - 6, y: sy(t) + 4, "text-anchor": "end", "font-size": 11, fill: "#6b7280" });
    label.textContent = formatTick(t);
    svg.appendChild(label);
  }
  for (const t of niceTicks(x0, x1, 6)) {
    if (t < x0 || t > x1) continue;
    svg.appendChild(svgEl("line", { x1: sx(t), x2: sx(t), y1: H - bottom, y2: H - bottom + 4, stroke: "#9ca3af" }));
    const label = svgEl("text", { x: sx(t), y: H - bottom + 16, "text-anchor": "middle", "font-size": 11, fill: "#6b7280" });
    label.textContent = formatTick(t);
    svg.appendChild(label);
  }
  svg.appendChild(svgEl("line", { x1: left, x2: W - right, y1: H - bottom, y2: H - bottom, stroke: "#9ca3af" }));

  const legend = document.createElement("div");
  legend.className = "legend";
  names.forEach((n, i) => {
    const color = CHART_COLORS[i % CHART_COLORS.length];
    const pts = thin(series[n].filter(([, y]) => Number.isFinite(y)), 800);
    const d = pts.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(" ");
    svg.appendChild(svgEl("polyline", { points: d, fill: "none", stroke: color, "stroke-width": 1.6, "stroke-linejoin": "round" }));
    if (pts.length === 1) svg.appendChild(svgEl("circle", { cx: sx(pts[0][0]), cy: sy(pts[0][1]), r: 3, fill: color }));
    const item = document.createElement("span");
    const swatch = document.createElement("i");
    swatch.style.background = color;
    const last = series[n][series[n].length - 1][1];
    item.append(swatch, `${n} ${Number.isFinite(last) ? formatTick(last) : ""}`);
    legend.appendChild(item);
  });
  container.append(svg, legend);

  // Hover: a vertical rule at the nearest step and each series' value there.
  const rule = svgEl("line", { y1: top, y2: H - bottom, stroke: "#9ca3af", "stroke-dasharray": "3 3", visibility: "hidden" });
  const tip = svgEl("text", { y: top + 12, "font-size": 11, fill: "#1f2937", visibility: "hidden" });
  svg.append(rule, tip);
  svg.addEventListener("mousemove", (ev) => {
    const rect = svg.getBoundingClientRect();
    const vx = ((ev.clientX - rect.left) / rect.width) * W;
    if (vx < left || vx > W - right) { rule.setAttribute("visibility", "hidden"); tip.setAttribute("visibility", "hidden"); return; }
    const step = x0 + ((vx - left) / (W - left - right)) * (x1 - x0);
    const parts = [];
    let at = null;
    for (const n of names) {
      const pts = series[n];
      let lo = 0, hi = pts.length - 1;
      while (lo < hi) { const mid = (lo + hi) >> 1; if (pts[mid][0] < step) lo = mid + 1; else hi = mid; }
      const i = lo > 0 && Math.abs(pts[lo - 1][0] - step) < Math.abs(pts[lo][0] - step) ? lo - 1 : lo;
      at = at === null ? pts[i][0] : at;
      parts.push(`${n} ${formatTick(pts[i][1])}`);
    }
    const x = sx(at);
    rule.setAttribute("x1", x); rule.setAttribute("x2", x); rule.setAttribute("visibility", "visible");
    tip.textContent = `step ${at}: ${parts.join("  ")}`;
    const anchorRight = x > W / 2;
    tip.setAttribute("x", anchorRight ? x - 6 : x + 6);
    tip.setAttribute("text-anchor", anchorRight ? "end" : "start");
    tip.setAttribute("visibility", "visible");
  });
  svg.addEventListener("mouseleave", () => { rule.setAttribute("visibility", "hidden"); tip.setAttribute("visibility", "hidden"); });
}

window.lineChart = lineChart;
