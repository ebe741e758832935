// ganforge dashboard: a hash-routed single page on the JSON API, no build step, no third-party code.
// Pages: #/signin, #/runs, #/runs/{id}, #/launch, #/datasets, #/tokens, #/workers. The token lives in localStorage and goes in an
// Authorization header on every call; images are fetched with it and shown through blob URLs.
"use strict";

const TOKEN_KEY = "ganforge.token";
const TERMINAL = new Set(["succeeded", "failed", "canceled"]);
const view = document.getElementById("view");
let cleanups = []; // run when leaving a page: timers, streams, blob URLs

// ----------------------------------------------------------------------------------------------------------
// DOM and API helpers

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

class ApiError extends Error {
  constructor(status, detail) {
    super(`${status}: ${detailText(detail)}`);
    this.status = status;
    this.detail = detail;
  }
}

// [field, message] pairs from a FastAPI detail; the config's cross-field checks say "field.path: reason".
function fieldErrors(detail) {
  const named = (field, msg) => {
    const m = /^([A-Za-z0-9_.]+): (.*)$/s.exec(msg);
    return m ? [m[1], m[2]] : [field, msg];
  };
  if (!Array.isArray(detail)) return [named("", typeof detail === "string" ? detail : JSON.stringify(detail))];
  return detail.map((item) => {
    if (typeof item !== "object" || item === null) return named("", String(item));
    const loc = (item.loc || []).filter((p) => !["body", "query", "path", "header"].includes(p)).join(".");
    return named(loc, String(item.msg || "").replace(/^Value error, /, ""));
  });
}

// Clears a form's field errors, then shows each [field, message] under its field (an element with
// data-error-for="field"), and the ones with no such field together in `box`.
function showFieldErrors(form, box, pairs) {
  for (const el of form.querySelectorAll(".field-error")) el.textContent = "";
  for (const el of form.querySelectorAll(".field.invalid")) el.classList.remove("invalid");
  const unplaced = [];
  for (const [field, message] of pairs) {
    const slot = field && form.querySelector(`[data-error-for="${CSS.escape(field)}"]`);
    if (slot) { slot.textContent = message; slot.closest(".field").classList.add("invalid"); }
    else unplaced.push(field ? `${field}: ${message}` : message);
  }
  if (unplaced.length) box.append(errorBox(unplaced.join("\n")));
}

function detailText(detail) {
  if (typeof detail === "string") return detail;
  return fieldErrors(detail).map(([f, m]) => (f ? `${f}: ${m}` : m)).join("; ");
}

function token() { return localStorage.getItem(TOKEN_KEY) || ""; }

async function api(path, options = {}) {
  const headers = Object.assign({ Authorization: `Bearer ${token()}` }, options.headers || {});
  let body = options.body;
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(options.json);
  }
  const response = await fetch(path, { method: options.method || "GET", headers, body, signal: options.signal });
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail; } catch (_) { /* not JSON */ }
    if (response.status === 401 && !options.noSignOut) signOut(`Signed out: ${detailText(detail)}`);
    throw new ApiError(response.status, detail);
  }
  if (options.raw) return response;
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  return type.includes("json") ? response.json() : response.blob();
}

async function blobUrl(path) {
  const blob = await api(path, { raw: false });
  const url = URL.createObjectURL(blob);
  cleanups.push(() => URL.revokeObjectURL(url));
  return url;
}

async function downloadFile(path, filename) {
  const blob = await api(path);
  const url = URL.createObjectURL(blob);
  const a = h("a", { href: url, download: filename });
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// Replace an element's children, skipping null/undefined/false (replaceChildren would print "null").
function put(el, ...children) {
  el.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

function every(ms, fn) {
  const id = setInterval(fn, ms);
  cleanups.push(() => clearInterval(id));
}

function errorBox(err) { return h("div", { class: "error-box", role: "alert" }, err instanceof Error ? err.message : String(err)); }

function badge(status) { return h("span", { class: `badge ${status}`, "data-status": status }, status); }

function progressBar(step, total, big) {
  const pct = total ? Math.min(100, (100 * step) / total) : 0;
  return h("div", { class: big ? "progress big" : "progress", role: "progressbar", "aria-valuenow": Math.round(pct), "aria-valuemin": 0, "aria-valuemax": 100 },
    h("div", { style: `width:${pct}%` }));
}

function fmtEta(s) {
  if (s === null || s === undefined) return "–";
  s = Math.max(0, Math.round(s));
  const hh = Math.floor(s / 3600), mm = Math.floor((s % 3600) / 60), ss = s % 60;
  return hh ? `${hh}:${String(mm).padStart(2, "0")}:${String(ss).padStart(2, "0")}` : `${mm}:${String(ss).padStart(2, "0")}`;
}

function fmtTime(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return d.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function fmtBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

// Server-sent events over fetch (EventSource cannot send an Authorization header).
// Resolves when the stream ends; rejects with ApiError on an error status.
async function streamEvents(path, { onEvent, signal, lastEventId }) {
  const headers = { Authorization: `Bearer ${token()}`, Accept: "text/event-stream" };
  if (lastEventId) headers["Last-Event-ID"] = lastEventId;
  const response = await fetch(path, { headers, signal, cache: "no-store" });
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail; } catch (_) { /* not JSON */ }
    throw new ApiError(response.status, detail);
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "", event = "", data = [], id = lastEventId || null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return id;
    buffer += value;
    let nl;
    while ((nl = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, nl).replace(/\r$/, "");
      buffer = buffer.slice(nl + 1);
      if (line === "") {
        if (data.length) {
          const text = data.join("\n");
          let payload = text;
          try { payload = JSON.parse(text); } catch (_) { /* plain text */ }
          onEvent({ event: event || "message", data: payload, id });
        }
        event = ""; data = [];
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const name = colon < 0 ? line : line.slice(0, colon);
      const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (name === "event") event = val;
      else if (name === "data") data.push(val);
      else if (name === "id") id = val;
    }
  }
}

// ----------------------------------------------------------------------------------------------------------
// Routing

function signOut(message) {
  localStorage.removeItem(TOKEN_KEY);
  sessionStorage.setItem("ganforge.signout", message || "");
  if (location.hash !== "#/signin") location.hash = "#/signin";
  else render();
}

async function render() {
  for (const fn of cleanups) { try { fn(); } catch (_) { /* ignore */ } }
  cleanups = [];
  const hash = location.hash || "#/runs";
  const nav = document.getElementById("nav");
  if (!token() && hash !== "#/signin") { location.hash = "#/signin"; return; }
  nav.hidden = !token();
  const [, page, id] = hash.split("/");
  for (const a of nav.querySelectorAll("a[data-nav]")) a.classList.toggle("active", a.dataset.nav === page);
  put(view);
  try {
    if (page === "signin") await signInPage();
    else if (page === "runs" && id) await runPage(decodeURIComponent(id));
    else if (page === "runs") await runsPage();
    else if (page === "launch") await launchPage();
    else if (page === "datasets") await datasetsPage();
    else if (page === "tokens") await tokensPage();
    else if (page === "workers") await workersPage();
    else location.hash = "#/runs";
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) view.append(errorBox(err));
  }
}

window.addEventListener("hashchange", render);
document.getElementById("signout").addEventListener("click", () => signOut("Signed out."));

// ----------------------------------------------------------------------------------------------------------
// Sign in

async function signInPage() {
  document.title = "Sign in · ganforge";
  const message = sessionStorage.getItem("ganforge.signout");
  sessionStorage.removeItem("ganforge.signout");
  const input = h("input", { id: "token", name: "token", type: "password", autocomplete: "current-password", required: true, placeholder: "paste your API token" });
  const error = h("div");
  const form = h("form", { class: "panel signin", id: "signin-form" },
    h("h1", {}, "Sign in"),
    h("p", { class: "muted small" }, "Use the admin token printed by the server on its first start (or GANFORGE_ADMIN_TOKEN), or a token an admin created with POST /tokens. It is kept in this browser only."),
    message ? h("div", { class: "note" }, message) : null,
    h("label", { for: "token" }, "API token"), input, error,
    h("div", { class: "row", style: "margin-top:0.75rem" }, h("button", { class: "primary", type: "submit" }, "Sign in")));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    put(error);
    localStorage.setItem(TOKEN_KEY, input.value.trim());
    try {
      await api("/runs?limit=1", { noSignOut: true });
      location.hash = "#/runs";
    } catch (err) {
      localStorage.removeItem(TOKEN_KEY);
      error.append(errorBox(err.status === 401 ? "That token was refused (401). Check it and try again." : err));
    }
  });
  view.append(form);
  input.focus();
}

// ----------------------------------------------------------------------------------------------------------
// Runs table

async function runsPage() {
  document.title = "Runs · ganforge";
  const tbody = h("tbody");
  const more = h("div");
  const status = h("select", { id: "status-filter", "aria-label": "Filter by status" },
    ["", "queued", "running", "succeeded", "failed", "canceled"].map((s) => h("option", { value: s }, s || "all statuses")));
  view.append(
    h("div", { class: "page-head" },
      h("div", {}, h("h1", {}, "Runs"), h("div", { class: "muted small" }, "Updates by itself every 2 seconds.")),
      h("div", { class: "row" }, status, h("a", { class: "button primary", href: "#/launch" }, "New run"))),
    h("div", { class: "panel table-wrap" },
      h("table", { id: "runs-table" },
        h("thead", {}, h("tr", {}, h("th", {}, "Run"), h("th", { class: "hide-narrow" }, "Dataset"), h("th", {}, "Status"),
          h("th", {}, "Progress"), h("th", { class: "hide-narrow" }, "Created"), h("th", {}, ""))),
        tbody),
      more));

  async function refresh() {
    const query = status.value ? `?limit=100&status=${status.value}` : "?limit=100";
    const page = await api(`/runs${query}`);
    const rows = page.items.map((run) => {
      const p = run.progress || {};
      const cancel = !TERMINAL.has(run.status)
        ? h("button", { class: "danger small", type: "button", onclick: async (ev) => {
          ev.target.disabled = true;
          try { await api(`/runs/${run.id}/cancel`, { method: "POST" }); await refresh(); } catch (err) { alert(err.message); }
        } }, "Cancel")
        : null;
      return h("tr", { "data-run-id": run.id },
        h("td", {}, h("a", { href: `#/runs/${run.id}` }, run.name || run.id), run.name ? h("div", { class: "muted small mono hide-narrow" }, run.id) : null),
        h("td", { class: "hide-narrow" }, run.config.dataset),
        h("td", {}, badge(run.status)),
        h("td", { class: "progress-cell" }, progressBar(p.step, p.total_steps), h("div", { class: "muted small" }, `${p.step} / ${p.total_steps}`)),
        h("td", { class: "hide-narrow small" }, fmtTime(run.created_at)),
        h("td", {}, cancel));
    });
    put(tbody, ...rows);
    if (!rows.length) tbody.append(h("tr", {}, h("td", { colspan: 6, class: "empty" }, "No runs yet. ", h("a", { href: "#/launch" }, "Launch one."))));
    put(more, page.next_cursor ? h("div", { class: "muted small" }, "Showing the newest 100 runs.") : "");
  }
  status.addEventListener("change", refresh);
  await refresh();
  every(2000, () => refresh().catch(() => {}));
}

// ----------------------------------------------------------------------------------------------------------
// One run: progress, charts, samples, checkpoints, generate

async function runPage(runId) {
  let run = await api(`/runs/${runId}`);
  document.title = `${run.name || run.id} · ganforge`;
  const abort = new AbortController();
  cleanups.push(() => abort.abort());

  // Header and progress.
  const head = h("div", { class: "page-head" });
  const progressPanel = h("section", { class: "panel", id: "progress-panel" });
  const actions = h("div", { class: "row" });
  const lossChart = h("div", { id: "loss-chart" });
  const metricCharts = h("div", { class: "charts", id: "metric-charts" });
  const metricsPanel = h("section", { class: "panel", hidden: true }, h("h2", {}, "Statistics and metrics"), metricCharts);
  const liveNote = h("span", { class: "muted small", id: "live-mode" }, "connecting…");
  const sampleImg = h("img", { id: "sample-img", alt: "sample grid" });
  const slider = h("input", { type: "range", id: "sample-slider", min: 0, max: 0, value: 0, "aria-label": "Sample step" });
  const sampleLabel = h("div", { class: "muted small", id: "sample-step" });
  const sampleBox = h("div", { class: "sample-box" });
  const ckptBody = h("tbody");
  const genPanel = h("section", { class: "panel", id: "generate-panel" });
  const warnings = h("div", { id: "warnings" });

  view.append(head, progressPanel, warnings,
    h("div", { class: "grid2" },
      h("section", { class: "panel" }, h("div", { class: "row", style: "justify-content:space-between" }, h("h2", {}, "Losses"), liveNote), lossChart),
      h("section", { class: "panel", id: "samples-panel" }, h("h2", {}, "Samples"), sampleBox)),
    metricsPanel,
    h("div", { class: "grid2" },
      h("section", { class: "panel" }, h("h2", {}, "Checkpoints"), h("div", { class: "table-wrap" }, h("table", { id: "checkpoints-table" },
        h("thead", {}, h("tr", {}, h("th", {}, "Step"), h("th", {}, "Size"), h("th", {}, ""))), ckptBody))),
      genPanel));

  function drawHead() {
    const p = run.progress || {};
    const canCancel = !TERMINAL.has(run.status);
    put(actions, 
      canCancel ? h("button", { class: "danger", id: "cancel-btn", type: "button", onclick: () => act("cancel") }, "Cancel") : null,
      !canCancel ? h("button", { id: "resume-btn", type: "button", onclick: () => { resumeForm.hidden = !resumeForm.hidden; } }, "Resume…") : null,
      h("button", { class: "danger", id: "delete-btn", type: "button", onclick: () => act("delete") }, "Delete"));
    put(head, 
      h("div", {}, h("h1", {}, run.name || run.id, " ", badge(run.status)),
        h("div", { class: "muted small mono" }, `${run.id} · ${run.config.dataset} · ${run.config.model?.arch || ""} · ${run.config.loss?.kind || ""}`)),
      actions);
    const pct = p.total_steps ? Math.floor((100 * p.step) / p.total_steps) : 0;
    put(progressPanel, 
      h("div", { class: "row", style: "justify-content:space-between" }, h("strong", { id: "progress-text" }, `${pct} %`), h("span", { class: "muted small" }, `step ${p.step} / ${p.total_steps}`)),
      progressBar(p.step, p.total_steps, true),
      h("div", { class: "stats" },
        h("div", { class: "stat" }, h("b", {}, p.images_per_sec != null ? Math.round(p.images_per_sec) : "–"), h("span", {}, "images/sec")),
        h("div", { class: "stat" }, h("b", {}, TERMINAL.has(run.status) ? "–" : fmtEta(p.eta_seconds)), h("span", {}, "ETA")),
        ...Object.entries(lastLosses).map(([k, v]) => h("div", { class: "stat" }, h("b", {}, v.toFixed(3)), h("span", {}, k))),
        ...Object.entries(run.latest_metrics || {}).filter(([k]) => !(k in lastLosses)).slice(0, 6).map(([k, v]) =>
          h("div", { class: "stat" }, h("b", {}, Number(v).toPrecision(4)), h("span", {}, k))),
        h("div", { class: "stat" }, h("b", {}, fmtTime(run.started_at)), h("span", {}, "started")),
        run.worker ? h("div", { class: "stat" }, h("b", { class: "small" }, run.worker), h("span", {}, "worker")) : null),
      run.error ? errorBox(run.error) : null);
  }

  async function act(what) {
    try {
      if (what === "delete") {
        if (!confirm("Delete this run and all its files?")) return;
        await api(`/runs/${runId}`, { method: "DELETE" });
        location.hash = "#/runs";
        return;
      }
      const options = { method: "POST" };
      if (what === "resume") {
        const more = resumeSteps.value.trim();
        options.json = { steps: more ? Number(more) : null };
      }
      put(actionError);
      await api(`/runs/${runId}/${what}`, options);
      resumeForm.hidden = true;
      run = await api(`/runs/${runId}`);
      drawHead();
      if (what === "resume") startLive();
    } catch (err) {
      put(actionError, errorBox(err));
    }
  }
  const actionError = h("div", { id: "action-error" });
  const resumeSteps = h("input", { id: "resume-steps", type: "number", min: 1, placeholder: "blank: finish the original steps", style: "max-width:260px" });
  const resumeForm = h("form", { class: "panel row", id: "resume-form", hidden: true },
    h("label", { for: "resume-steps", style: "margin:0" }, "Train more steps past the last checkpoint:"), resumeSteps,
    h("button", { class: "primary", type: "submit", id: "resume-submit" }, "Resume"));
  resumeForm.addEventListener("submit", (ev) => { ev.preventDefault(); act("resume"); });
  head.after(resumeForm, actionError);

  // Charts: losses (from progress events and the metrics route) and evaluation metrics.
  const series = {}; // name -> [[step, value]]
  let lastLosses = {};
  let chartQueued = false;
  function addPoint(name, step, value) {
    if (typeof value !== "number" || typeof step !== "number") return;
    const s = (series[name] = series[name] || []);
    let i = s.length; // keep the series sorted by step; a point at a known step replaces it
    while (i > 0 && s[i - 1][0] > step) i--;
    if (i > 0 && s[i - 1][0] === step) s[i - 1][1] = value;
    else s.splice(i, 0, [step, value]);
  }
  function drawCharts() {
    if (chartQueued) return;
    chartQueued = true;
    requestAnimationFrame(() => {
      chartQueued = false;
      const losses = {}, metrics = {};
      for (const [name, points] of Object.entries(series)) (name.startsWith("loss") ? losses : metrics)[name] = points;
      lineChart(lossChart, "Losses", losses);
      const names = Object.keys(metrics).sort();
      metricsPanel.hidden = names.length === 0;
      while (metricCharts.children.length > names.length) metricCharts.lastChild.remove();
      names.forEach((name, i) => {
        let box = metricCharts.children[i];
        if (!box) { box = h("div"); metricCharts.append(box); }
        lineChart(box, name, { [name]: metrics[name] }, { width: 380, height: 210 });
      });
    });
  }
  // Every series comes from GET /runs/{id}/metrics when the server has it (one source, so that lines do
  // not mix ~1 Hz progress ticks with per-step statistics); else from the progress ticks and latest_metrics.
  let metricsRoute = false;
  async function loadMetrics() {
    try {
      const data = await api(`/runs/${runId}/metrics`);
      metricsRoute = true;
      for (const [name, points] of Object.entries(data.series || {})) {
        series[name] = points.map(([s, v]) => [Number(s), Number(v)]).sort((a, b) => a[0] - b[0]);
      }
    } catch (err) {
      if (err.status !== 404) throw err;
    }
    drawCharts();
  }
  async function loadNewMetrics() {
    if (!metricsRoute) return;
    const lasts = Object.values(series).filter((p) => p.length).map((p) => p[p.length - 1][0]);
    const since = lasts.length ? Math.max(...lasts) : 0; // late evaluation results come as metric events
    const data = await api(`/runs/${runId}/metrics?since_step=${since}`);
    for (const [name, points] of Object.entries(data.series || {})) for (const [st, v] of points) addPoint(name, Number(st), Number(v));
    drawCharts();
  }

  // Samples: a slider over the steps, images fetched with the token.
  let samples = [];
  const imageCache = new Map();
  async function showSample(index) {
    const item = samples[index];
    if (!item) return;
    sampleLabel.textContent = `step ${item.step} (${index + 1} of ${samples.length})`;
    let url = imageCache.get(item.step);
    if (!url) { url = await blobUrl(item.url); imageCache.set(item.step, url); }
    if (Number(slider.value) === index) { sampleImg.src = url; sampleImg.dataset.step = String(item.step); }
  }
  async function loadSamples() {
    let data;
    try { data = await api(`/runs/${runId}/samples`); } catch (err) { if (err.status === 404) data = { items: [] }; else throw err; }
    const atEnd = Number(slider.value) >= samples.length - 1;
    samples = data.items;
    if (!samples.length) {
      put(sampleBox, h("div", { class: "empty" }, "No sample grid yet: the first one is written at step ", String(run.config.schedule?.sample_every ?? "?"), "."));
      return;
    }
    if (!sampleBox.contains(sampleImg)) put(sampleBox, sampleImg, slider, sampleLabel);
    slider.max = String(samples.length - 1);
    if (atEnd) slider.value = String(samples.length - 1);
    await showSample(Number(slider.value));
  }
  slider.addEventListener("input", () => showSample(Number(slider.value)).catch(() => {}));

  async function loadCheckpoints() {
    let data;
    try { data = await api(`/runs/${runId}/checkpoints`); } catch (err) { if (err.status === 404) data = { items: [] }; else throw err; }
    put(ckptBody, ...data.items.map((c) => h("tr", {},
      h("td", {}, c.step, c.best ? h("span", { class: "badge succeeded", style: "margin-left:0.4rem" }, "best") : null),
      h("td", {}, fmtBytes(c.size_bytes)),
      h("td", {}, h("button", { type: "button", class: "small", onclick: () => downloadFile(c.url, `${runId}-${c.step}.safetensors`).catch((e) => alert(e.message)) }, "Download")))));
    if (!data.items.length) ckptBody.append(h("tr", {}, h("td", { colspan: 3, class: "empty" }, "No checkpoint yet.")));
    for (const select of [genStep, trStep]) {
      put(select, h("option", { value: "latest" }, "latest"), ...data.items.map((c) => h("option", { value: c.step }, `step ${c.step}`)));
    }
  }

  // Generate form.
  const genStep = h("select", { id: "gen-step", name: "step" }, h("option", { value: "latest" }, "latest"));
  // The translate form's own: an element lives in one form only.
  const trStep = h("select", { id: "tr-step", name: "step" }, h("option", { value: "latest" }, "latest"));
  const genResult = h("div", { class: "result", id: "gen-result" });
  const tableRun = run.config.model?.arch === "ctgan";  // rows as CSV or Parquet, with conditions
  const genForm = h("form", { id: "generate-form" },
    h("div", { class: "form-grid" },
      h("div", { class: "field" }, h("label", { for: "gen-n" }, tableRun ? "Rows (n)" : "Samples (n)"), h("input", { id: "gen-n", name: "n", type: "number", min: 1, value: tableRun ? 100 : 64 })),
      h("div", { class: "field" }, h("label", { for: "gen-seed" }, "Seed"), h("input", { id: "gen-seed", name: "seed", type: "number", min: 0, value: 1 })),
      h("div", { class: "field" }, h("label", { for: "gen-step" }, "Checkpoint"), genStep),
      h("div", { class: "field" }, h("label", { for: "gen-format" }, "Format"), h("select", { id: "gen-format", name: "format" }, (tableRun ? ["csv", "parquet"] : ["png", "zip", "npz"]).map((f) => h("option", { value: f }, f)))),
      tableRun ? h("div", { class: "field" }, h("label", { for: "gen-conditions" }, "Conditions (column=value, comma-separated; blank: none)"),
        h("input", { id: "gen-conditions", name: "conditions", type: "text", placeholder: "target=benign" })) : null,
      tableRun ? null : h("div", { class: "field" }, h("label", { for: "gen-interp" }, "Interpolation steps (blank: none)"), h("input", { id: "gen-interp", name: "interpolate", type: "number", min: 2 })),
      tableRun ? null : h("div", { class: "field" }, h("label", { for: "gen-trunc" }, "Truncation (blank: none)"), h("input", { id: "gen-trunc", name: "truncation", type: "number", step: "any", min: 0 })),
      run.config.model?.conditional ? h("div", { class: "field" }, h("label", { for: "gen-labels" }, "Labels (comma-separated; blank: cycle)"),
        h("input", { id: "gen-labels", name: "labels", type: "text", placeholder: "0,1,2" })) : null,
      h("div", { class: "field" }, h("label", {}, "EMA generator"), h("label", { class: "row" }, h("input", { id: "gen-ema", name: "ema", type: "checkbox", checked: true }), "use it when present"))),
    h("div", { class: "row", style: "margin-top:0.75rem" }, h("button", { class: "primary", type: "submit", id: "gen-submit" }, "Generate")),
    genResult);
  // A translation run (pix2pix, cyclegan, srgan) translates uploaded images instead: its newest finished
  // translation is shown as input → output pairs.
  const translationRun = ["pix2pix", "cyclegan", "srgan"].includes(run.config.model?.arch);
  const trResult = h("div", { class: "result", id: "tr-result" });
  const trForm = h("form", { id: "translate-form" },
    h("div", { class: "form-grid" },
      h("div", { class: "field" }, h("label", { for: "tr-file" }, "Images (a ZIP, or an .npz)"), h("input", { id: "tr-file", name: "file", type: "file", accept: ".zip,.npz", required: true })),
      h("div", { class: "field" }, h("label", { for: "tr-step" }, "Checkpoint"), trStep),
      run.config.model?.arch === "cyclegan" ? h("div", { class: "field" }, h("label", { for: "tr-direction" }, "Direction"),
        h("select", { id: "tr-direction", name: "direction" }, h("option", { value: "AtoB" }, "A → B"), h("option", { value: "BtoA" }, "B → A"))) : null,
      // A cyclegan with a latent code renders B → A once per code: the seed picks the codes.
      run.config.model?.latent_dim ? h("div", { class: "field" }, h("label", { for: "tr-seed" }, "Seed (B → A codes)"),
        h("input", { id: "tr-seed", name: "seed", type: "number", min: 0, value: 0 })) : null),
    h("div", { class: "row", style: "margin-top:0.75rem" }, h("button", { class: "primary", type: "submit", id: "tr-submit" }, "Translate")),
    trResult);
  async function showTranslation(job) {
    const pairs = await blobUrl(job.pairs_url);
    const name = `${job.id}.${job.request.source}`;
    put(trResult,
      h("p", { class: "muted small" }, `Translation ${job.id} (step ${job.request.checkpoint_step}, ${job.request.num_images} images): input → output`),
      h("img", { src: pairs, alt: "input → output pairs", id: "tr-pairs", style: "width:100%;image-rendering:pixelated" }),
      h("p", {}, h("button", { type: "button", class: "small", id: "tr-download", onclick: () => downloadFile(job.result_url, name).catch((e) => alert(e.message)) }, `Download ${name}`)));
  }
  trForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = trForm.elements;
    const data = new FormData();
    data.append("file", f.file.files[0]);
    data.append("step", f.step.value);
    if (f.direction) data.append("direction", f.direction.value);
    if (f.seed) data.append("seed", f.seed.value);
    const submit = document.getElementById("tr-submit");
    submit.disabled = true;
    put(trResult, h("p", { class: "muted" }, "Uploading…"));
    try {
      let job = await api(`/runs/${runId}/translations`, { method: "POST", body: data });
      while (!TERMINAL.has(job.status)) {
        put(trResult, h("p", { class: "muted" }, `Translation ${job.id}: ${job.status}…`));
        await new Promise((r) => setTimeout(r, 700));
        if (abort.signal.aborted) return;
        job = await api(`/translations/${job.id}`);
      }
      if (job.status !== "succeeded") throw new Error(`Translation ${job.status}: ${job.error || "no reason given"}`);
      await showTranslation(job);
    } catch (err) {
      put(trResult, errorBox(err));
    } finally {
      submit.disabled = false;
    }
  });
  async function loadTranslations() {
    const data = await api(`/runs/${runId}/translations`);
    const done = data.items.find((t) => t.status === "succeeded");
    if (done) await showTranslation(done);
    else put(trResult, h("p", { class: "muted small" }, "No translation yet: upload a ZIP of images to translate them."));
  }
  if (translationRun) genPanel.append(h("h2", {}, "Translate images"), trForm);
  else genPanel.append(h("h2", {}, "Generate samples"), genForm);
  genForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = genForm.elements;
    const body = {
      n: Number(f.n.value), seed: Number(f.seed.value), step: f.step.value === "latest" ? "latest" : Number(f.step.value),
      ema: f.ema.checked, format: f.format.value,
    };
    if (!tableRun) body.truncation = f.truncation.value === "" ? null : Number(f.truncation.value);
    if (!tableRun && f.interpolate.value.trim()) body.interpolate = { steps: Number(f.interpolate.value) };
    if (tableRun && f.conditions.value.trim()) {
      body.conditions = Object.fromEntries(f.conditions.value.split(",").filter((c) => c.trim()).map((c) => {
        const at = c.indexOf("=");
        return at < 0 ? [c.trim(), ""] : [c.slice(0, at).trim(), c.slice(at + 1).trim()];
      }));
    }
    if (f.labels && f.labels.value.trim()) body.labels = f.labels.value.split(",").map((x) => Number(x.trim()));
    const submit = document.getElementById("gen-submit");
    submit.disabled = true;
    put(genResult, h("p", { class: "muted" }, "Queued…"));
    try {
      let gen = await api(`/runs/${runId}/generations`, { method: "POST", json: body });
      while (!TERMINAL.has(gen.status)) {
        put(genResult, h("p", { class: "muted" }, `Generation ${gen.id}: ${gen.status}…`));
        await new Promise((r) => setTimeout(r, 700));
        if (abort.signal.aborted) return;
        gen = await api(`/generations/${gen.id}`);
      }
      if (gen.status !== "succeeded") throw new Error(`Generation ${gen.status}: ${gen.error || "no reason given"}`);
      const resultPath = gen.result_url || `/generations/${gen.id}/result`;
      const url = await blobUrl(resultPath);
      const name = `${runId}-seed${body.seed}.${body.format}`;
      put(genResult,
        body.format === "png" ? h("img", { src: url, alt: "generated samples", id: "gen-image" }) : null,
        body.format === "csv" ? await csvPreview(url) : null,
        gen.made != null && gen.made < body.n ? h("p", { class: "note" }, `Made ${gen.made} of ${body.n} rows: the conditions are rare in what the model makes.`) : null,
        h("p", {}, h("a", { href: url, download: name, id: "gen-download" }, `Download ${name}`)));
    } catch (err) {
      put(genResult, errorBox(err.status === 404 && /Not Found/.test(err.message) ? "This server has no generations route yet." : err));
    } finally {
      submit.disabled = false;
    }
  });

  drawHead();
  await Promise.all([loadMetrics(), loadSamples(), loadCheckpoints(), translationRun ? loadTranslations().catch(() => {}) : null]);

  // Live updates: the event stream, reconnecting with Last-Event-ID; polling when the stream is not there.
  let polling = false;
  let lastSampleCount = samples.length;
  async function refreshRun() {
    run = await api(`/runs/${runId}`);
    drawHead();
  }
  function startPolling() {
    if (polling) return;
    polling = true;
    liveNote.textContent = "live (polling)";
    every(2000, async () => {
      if (TERMINAL.has(run.status) && run._final) return;
      try {
        await refreshRun();
        if (!metricsRoute) {
          for (const [k, v] of Object.entries(run.latest_metrics || {})) addPoint(k, run.progress.step, v);
          drawCharts();
        }
        await loadNewMetrics().catch(() => {});
        await loadSamples();
        if (samples.length !== lastSampleCount) { lastSampleCount = samples.length; await loadCheckpoints(); }
        if (TERMINAL.has(run.status)) { run._final = true; await loadCheckpoints(); liveNote.textContent = "finished"; }
      } catch (_) { /* try again next tick */ }
    });
  }
  let streaming = false;
  async function startLive() {
    if (streaming || polling) return;
    if (TERMINAL.has(run.status)) { liveNote.textContent = "finished"; return; }
    streaming = true;
    let lastId = null, failures = 0;
    // Per-step statistics are stored, not streamed: fetch the new points every few seconds while it trains.
    every(2000, async () => {
      if (!streaming || TERMINAL.has(run.status)) return;
      await loadNewMetrics().catch(() => {});
    });
    while (!abort.signal.aborted) {
      try {
        liveNote.textContent = "live";
        lastId = await streamEvents(`/runs/${runId}/events`, {
          signal: abort.signal, lastEventId: lastId,
          onEvent: (ev) => {
            failures = 0;
            const d = ev.data || {};
            if (ev.event === "progress") {
              run.progress = Object.assign({}, run.progress, { step: d.step, total_steps: d.total_steps, images_per_sec: d.images_per_sec, eta_seconds: d.eta_seconds });
              if (run.status === "queued") run.status = "running";
              lastLosses = d.losses || lastLosses;
              if (!metricsRoute) for (const [k, v] of Object.entries(d.losses || {})) addPoint(k, d.step, v);
              drawHead();
              drawCharts();
            } else if (ev.event === "metric") {
              addPoint(d.name, d.step, d.value); // an evaluation result: show it now
              drawCharts();
            } else if (ev.event === "stats") {
              if (!metricsRoute) for (const [k, v] of Object.entries(d.values || {})) addPoint(k, d.step, v);
              drawCharts();
            } else if (ev.event === "warning") {
              warnings.append(h("div", { class: "note" }, `step ${d.step}: ${d.message}`));
            } else if (ev.event === "sample") {
              loadSamples().catch(() => {});
            } else if (ev.event === "checkpoint") {
              loadCheckpoints().catch(() => {});
            } else if (ev.event === "status") {
              refreshRun().then(() => TERMINAL.has(run.status) && Promise.all([loadSamples(), loadCheckpoints(), loadMetrics()])).catch(() => {});
            }
          },
        });
      } catch (err) {
        if (abort.signal.aborted) return;
        if (err instanceof ApiError && err.status === 401) return;
        failures += 1;
        if ((err instanceof ApiError) || failures >= 3) { streaming = false; startPolling(); return; }
      }
      if (abort.signal.aborted) return;
      await refreshRun().catch(() => {});
      if (TERMINAL.has(run.status)) {
        await Promise.all([loadSamples(), loadCheckpoints(), loadMetrics()]).catch(() => {});
        liveNote.textContent = "finished";
        streaming = false;
        return;
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  startLive();
}

// The first rows of a generated CSV as a table (cells split on commas outside quotes).
async function csvPreview(url, limit = 10) {
  const text = await (await fetch(url)).text();
  const split = (line) => {
    const cells = [];
    let cell = "", quoted = false;
    for (let i = 0; i < line.length; i++) {
      const c = line[i];
      if (quoted && c === '"' && line[i + 1] === '"') { cell += '"'; i++; }
      else if (c === '"') quoted = !quoted;
      else if (c === "," && !quoted) { cells.push(cell); cell = ""; }
      else cell += c;
    }
    return [...cells, cell];
  };
  const lines = text.split("\n").filter((l) => l);
  const [head, ...rows] = lines.map(split);
  return h("div", { class: "table-wrap" }, h("table", { id: "gen-rows" },
    h("thead", {}, h("tr", {}, (head || []).map((c) => h("th", {}, c)))),
    h("tbody", {}, rows.slice(0, limit).map((r) => h("tr", {}, r.map((c) => h("td", {}, c)))))));
}

// ----------------------------------------------------------------------------------------------------------
// Launch form

const LAUNCH_FIELDS = [
  ["Run", [["name", "text", "Name"], ["seed", "number", "Seed"], ["preset", "select", "Preset", ["", "dcgan", "wgan-gp", "sngan-hinge"]]]],
  ["Model", [["model.arch", "select", "Architecture", ["mlp", "dcgan", "resnet", "biggan", "stylegan2", "pix2pix", "cyclegan", "ctgan"]], ["model.image_size", "number", "Image size (px)"],
    ["model.z_dim", "number", "Latent size (z_dim)"], ["model.width", "number", "Width"], ["model.depth", "number", "Layers (depth)"],
    ["model.pack", "number", "Pack (rows judged together)"], ["model.conditional", "checkbox", "Conditional"]]],
  ["Loss", [["loss.kind", "select", "Objective", ["minimax", "nonsaturating", "lsgan", "wgan", "wgan-gp", "hinge"]]]],
  ["Training", [["train.steps", "number", "Steps"], ["train.batch_size", "number", "Batch size"], ["train.lr_g", "number", "LR generator"],
    ["train.lr_d", "number", "LR discriminator"], ["train.n_critic", "number", "D steps per G step"], ["train.ema", "number", "EMA decay (blank: off)"],
    ["train.precision", "select", "Precision", ["auto", "fp32", "bf16"]]]],
  ["Schedule", [["schedule.sample_every", "number", "Sample every"], ["schedule.checkpoint_every", "number", "Checkpoint every"],
    ["schedule.eval_every", "number", "Evaluate every (0: never)"]]],
];

// Fields that mean nothing for one kind of data are hidden while a dataset of that kind is chosen: a table trains
// ctgan (rows, not pixels or class labels); images and points never take ctgan.
const TABLE_ONLY = new Set(["model.depth", "model.pack"]);
const NOT_FOR_TABLES = new Set(["model.image_size", "model.conditional"]);

function getPath(obj, path) { return path.split(".").reduce((o, k) => (o == null ? undefined : o[k]), obj); }
function setPath(obj, path, value) {
  const keys = path.split(".");
  let o = obj;
  for (const k of keys.slice(0, -1)) o = o[k] = o[k] || {};
  o[keys[keys.length - 1]] = value;
}
function deepMerge(base, over) {
  const out = JSON.parse(JSON.stringify(base));
  for (const [k, v] of Object.entries(over || {})) {
    if (v && typeof v === "object" && !Array.isArray(v) && out[k] && typeof out[k] === "object") out[k] = deepMerge(out[k], v);
    else out[k] = v;
  }
  return out;
}

async function launchPage() {
  document.title = "Launch · ganforge";
  const defaults = await (await fetch("/ui/config-defaults.json")).json();
  let datasets = Object.keys(defaults.datasets).filter((d) => !d.startsWith("_")).map((id) => ({ id, name: id, builtin: true }));
  try {
    const listed = await api("/datasets");
    const items = Array.isArray(listed) ? listed : listed.items;
    if (items && items.length) datasets = items.map((d) => ({ id: d.id || d.name, name: d.name, builtin: !!d.builtin, kind: d.kind }));
  } catch (err) { if (err.status !== 404) throw err; }

  const formError = h("div", { id: "form-error" });
  const datasetSelect = h("select", { id: "f-dataset", name: "dataset" },
    datasets.map((d) => h("option", { value: d.id }, d.builtin ? d.id : `${d.name} (${d.id})${d.kind === "table" ? " · table" : ""}`)));
  const inputs = {};
  const extra = h("textarea", { id: "f-extra", name: "extra", rows: 3, spellcheck: "false", placeholder: "{}" });
  const fieldsets = LAUNCH_FIELDS.map(([legend, fields]) => h("fieldset", {}, h("legend", {}, legend),
    h("div", { class: "form-grid" }, fields.map(([path, type, label, options]) => {
      const id = `f-${path.replace(".", "-")}`;
      let input;
      if (type === "select") input = h("select", { id, name: path }, options.map((o) => h("option", { value: o }, o || "none")));
      else if (type === "checkbox") input = h("input", { id, name: path, type: "checkbox" });
      else input = h("input", { id, name: path, type, step: type === "number" ? "any" : null });
      inputs[path] = input;
      return h("div", { class: "field", "data-field": path },
        h("label", { for: id }, label),
        input,
        h("div", { class: "field-error", "data-error-for": path }));
    }))));
  const form = h("form", { class: "panel", id: "launch-form", novalidate: true },
    h("div", { class: "field", "data-field": "dataset", style: "max-width:360px;margin-bottom:1rem" },
      h("label", { for: "f-dataset" }, "Dataset"), datasetSelect, h("div", { class: "field-error", "data-error-for": "dataset" })),
    ...fieldsets,
    h("details", { class: "field", "data-field": "extra" },
      h("summary", {}, "More fields (JSON)"),
      h("p", { class: "muted small" }, "Any other config field, merged over the form, e.g. ",
        h("code", {}, '{"loss": {"gp_weight": 5}, "train": {"diffaugment": "color,translation"}}'), ". See /docs for every field."),
      extra, h("div", { class: "field-error", "data-error-for": "extra" })),
    formError,
    h("div", { class: "row" }, h("button", { class: "primary", type: "submit", id: "launch-submit" }, "Launch run"),
      h("span", { class: "muted small" }, "Fields left at their defaults are not sent: the server fills them in.")));
  view.append(h("div", { class: "page-head" }, h("div", {}, h("h1", {}, "Launch a run"),
    h("div", { class: "muted small" }, "Defaults are each dataset's recommended configuration."))), form);

  const tableNote = h("p", { class: "muted small", id: "table-note", hidden: true },
    "A table trains ctgan: synthetic rows in the table's own columns, judged by quality, efficacy and privacy.");
  fieldsets[0].after(tableNote);
  function isTable() {
    const ds = datasetSelect.value;
    const listed = datasets.find((d) => d.id === ds);
    return ds.startsWith("tbl_") || (listed && listed.kind === "table") || getPath(defaults.datasets[ds] || {}, "model.arch") === "ctgan";
  }
  function showKind() {
    const table = isTable();
    tableNote.hidden = !table;
    for (const [path, input] of Object.entries(inputs)) {
      const hide = table ? NOT_FOR_TABLES.has(path) : TABLE_ONLY.has(path);
      input.closest(".field").hidden = hide;
      input.disabled = hide;
    }
    for (const option of inputs["model.arch"].options) option.hidden = table !== (option.value === "ctgan");
  }
  function baseline() {
    const ds = datasetSelect.value;
    const pairing = (ds.match(/^(paired|unpaired)_/) || [])[1];
    const base = defaults.datasets[ds] || (ds.startsWith("tbl_") ? defaults.datasets._uploaded_table : null)
      || (pairing ? defaults.datasets[`_uploaded_${pairing}`] : null) || defaults.datasets._uploaded;
    const preset = inputs.preset.value;
    return preset ? deepMerge(base, defaults.presets[preset] || {}) : base;
  }
  function fill() {
    showKind();
    const base = baseline();
    for (const [path, input] of Object.entries(inputs)) {
      if (path === "preset" || path === "name") continue;
      const v = getPath(base, path);
      if (input.type === "checkbox") input.checked = !!v;
      else input.value = v === null || v === undefined ? "" : String(v);
    }
  }
  function read(input) {
    if (input.type === "checkbox") return input.checked;
    if (input.type === "number") return input.value.trim() === "" ? null : Number(input.value);
    return input.value;
  }
  function clearErrors() {
    for (const el of form.querySelectorAll(".field-error")) el.textContent = "";
    for (const el of form.querySelectorAll(".field.invalid")) el.classList.remove("invalid");
    put(formError);
  }
  datasetSelect.addEventListener("change", fill);
  inputs.preset.addEventListener("change", fill);
  fill();

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors();
    const base = baseline();
    const body = { dataset: datasetSelect.value };
    for (const [path, input] of Object.entries(inputs)) {
      if (input.disabled) continue;
      const value = read(input);
      if (path === "name") { if (value) body.name = value; continue; }
      if (path === "preset") { if (value) body.preset = value; continue; }
      if (input.type === "number" && input.value.trim() !== "" && !Number.isFinite(value)) { setPath(body, path, input.value); continue; }
      if (JSON.stringify(value) !== JSON.stringify(getPath(base, path) ?? null)) setPath(body, path, value);
    }
    if (extra.value.trim()) {
      let more;
      try { more = JSON.parse(extra.value); } catch (err) { more = err; }
      if (!more || typeof more !== "object" || Array.isArray(more) || more instanceof Error) {
        const slot = form.querySelector('[data-error-for="extra"]');
        slot.textContent = more instanceof Error ? `Not JSON: ${more.message}` : "Write a JSON object of config fields.";
        slot.closest(".field").classList.add("invalid");
        return;
      }
      Object.assign(body, deepMerge(body, more));
    }
    const submit = document.getElementById("launch-submit");
    submit.disabled = true;
    try {
      const run = await api("/runs", { method: "POST", json: body });
      location.hash = `#/runs/${run.id}`;
    } catch (err) {
      if (err.status === 422 || err.status === 400) {
        showFieldErrors(form, formError, fieldErrors(err.detail));
        const first = form.querySelector(".field.invalid");
        if (first) first.scrollIntoView({ block: "center" });
      } else {
        formError.append(errorBox(err));
      }
    } finally {
      submit.disabled = false;
    }
  });
}

// ----------------------------------------------------------------------------------------------------------
// Datasets

async function datasetsPage() {
  document.title = "Datasets · ganforge";
  const cards = h("div", { class: "cards", id: "dataset-cards" });
  const uploadError = h("div");
  const fileInput = h("input", { id: "ds-file", name: "file", type: "file", accept: ".zip,.csv,.parquet,application/zip,text/csv", required: true });
  const nameInput = h("input", { id: "ds-name", name: "name", type: "text", placeholder: "my-faces" });
  const layoutInput = h("select", { id: "ds-layout", name: "layout" },
    h("option", { value: "auto" }, "auto: class folders, A/ and B/ pairs, or trainA/ and trainB/"),
    h("option", { value: "images" }, "images (folders are classes)"),
    h("option", { value: "AB" }, "side-by-side pairs (AB: input left, target right)"));
  const form = h("form", { class: "panel", id: "upload-form" },
    h("h2", {}, "Upload a dataset"),
    h("p", { class: "muted small" }, "A ZIP of images (put each class in its own folder; folders are optional), or a table: a CSV with a header row, or a Parquet file. For translation: A/ and B/ folders whose files share names (pix2pix pairs), side-by-side AB images, or CycleGAN's trainA/ and trainB/."),
    h("div", { class: "form-grid" },
      h("div", { class: "field" }, h("label", { for: "ds-file" }, "ZIP, CSV or Parquet file"), fileInput,
        h("div", { class: "field-error", "data-error-for": "file" })),
      h("div", { class: "field" }, h("label", { for: "ds-name" }, "Name"), nameInput,
        h("div", { class: "field-error", "data-error-for": "name" })),
      h("div", { class: "field" }, h("label", { for: "ds-layout" }, "Layout of a ZIP"), layoutInput,
        h("div", { class: "field-error", "data-error-for": "layout" }))),
    h("div", { class: "row", style: "margin-top:0.75rem" }, h("button", { class: "primary", type: "submit", id: "ds-submit" }, "Upload")),
    uploadError);
  view.append(h("div", { class: "page-head" }, h("h1", {}, "Datasets")), form, cards);

  async function refresh() {
    let items;
    try {
      const listed = await api("/datasets");
      items = Array.isArray(listed) ? listed : listed.items;
    } catch (err) {
      if (err.status !== 404) throw err;
      put(cards, h("div", { class: "note" }, "This server has no datasets route yet."));
      return;
    }
    put(cards, ...items.map((d) => {
      const id = d.id || d.name;
      const description = d.stats && d.stats.description;
      const media = h("div", { class: "card-media" }, d.kind === "points" ? description || "2-D points" : "loading preview…");
      if (d.kind !== "points") {
        blobUrl(`/datasets/${encodeURIComponent(id)}/preview.png`)
          .then((u) => put(media, h("img", { src: u, alt: `preview of ${d.name}` })))
          .catch(() => put(media, "no preview"));
      }
      const classes = Array.isArray(d.classes) ? d.classes.length : d.classes;
      return h("div", { class: "card", "data-dataset-id": id },
        media,
        h("h3", {}, d.name, " ", d.builtin ? h("span", { class: "badge" }, "built-in") : null),
        d.builtin ? null : h("div", { class: "muted small mono" }, id),
        d.kind === "table" ? h("div", { class: "muted small" }, [
          d.num_images != null ? `${d.num_images} rows` : null,
          d.columns && d.columns.length ? `${d.columns.length} columns` : null,
          d.target ? `target: ${d.target}` : null,
          d.builtin ? description : null,
        ].filter(Boolean).join(" · ")) : h("div", { class: "muted small" }, [
          d.kind === "paired" || d.kind === "unpaired" ? d.kind : null,
          d.num_images != null ? `${d.num_images} ${d.kind === "paired" ? "pairs" : "images"}` : null,
          d.image_size ? `${d.image_size} px` : null,
          d.channels != null ? `${d.channels} ch` : null,
          classes ? `${classes} classes` : null,
        ].filter(Boolean).join(" · ")),
        d.builtin ? null : h("div", { class: "row", style: "margin-top:0.5rem" },
          h("button", { class: "danger small", type: "button", onclick: async () => {
            if (!confirm(`Delete dataset ${d.name}?`)) return;
            try { await api(`/datasets/${encodeURIComponent(id)}`, { method: "DELETE" }); await refresh(); } catch (err) { alert(err.message); }
          } }, "Delete")));
    }));
  }

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    put(uploadError);
    showFieldErrors(form, uploadError, []);
    if (!fileInput.files.length) { uploadError.append(errorBox("Choose a ZIP, CSV or Parquet file first.")); return; }
    const data = new FormData();
    data.append("file", fileInput.files[0]);
    data.append("name", nameInput.value.trim() || fileInput.files[0].name.replace(/\.(zip|csv|parquet)$/i, ""));
    if (layoutInput.value !== "auto") data.append("layout", layoutInput.value);
    const submit = document.getElementById("ds-submit");
    submit.disabled = true;
    try {
      await api("/datasets", { method: "POST", body: data });
      form.reset();
      await refresh();
    } catch (err) {
      if (err.status === 422 || err.status === 400) showFieldErrors(form, uploadError, fieldErrors(err.detail));
      else uploadError.append(errorBox(err));
    } finally {
      submit.disabled = false;
    }
  });
  await refresh();
}

// ----------------------------------------------------------------------------------------------------------
// Tokens: who you are and your usage (GET /me), the tokens you may see, revoking; admins also create them.

async function tokensPage() {
  document.title = "Tokens · ganforge";
  const me = await api("/me");
  const usage = me.usage;
  const runs = Object.entries(usage.runs).map(([status, n]) => `${n} ${status}`).join(" · ");
  const jobs = Object.entries(usage.jobs_in_flight).map(([kind, n]) => `${n} ${kind}`).join(" · ");
  const tbody = h("tbody");
  const created = h("div");
  view.append(
    h("div", { class: "page-head" }, h("h1", {}, "Tokens")),
    h("section", { class: "panel", id: "me" },
      h("h2", {}, me.name, " ", me.is_admin ? h("span", { class: "badge" }, "admin") : null),
      h("div", { class: "muted small" }, `token ${me.id} · expires ${me.expires_at ? fmtTime(me.expires_at) : "never"}`),
      h("p", {}, `Runs: ${runs}`), h("p", {}, `Datasets: ${usage.datasets} (${fmtBytes(usage.dataset_bytes)})`),
      h("p", {}, `Jobs in flight: ${jobs}`),
      me.quotas ? h("p", { id: "quotas", class: "small" }, "Quotas: ", Object.entries(me.quotas).map(([name, q]) => {
        const n = (v) => (name.endsWith("_bytes") ? fmtBytes(v) : String(v));
        return `${name.replaceAll("_", " ")} ${n(q.used)} of ${n(q.limit)}`;
      }).join(" · ")) : h("p", { class: "muted small" }, "No quotas: admin tokens have none.")),
    h("div", { class: "panel table-wrap" },
      h("table", { id: "tokens-table" },
        h("thead", {}, h("tr", {}, h("th", {}, "ID"), h("th", {}, "Name"), h("th", {}, "Admin"),
          h("th", { class: "hide-narrow" }, "Created"), h("th", {}, "Expires"), h("th", { class: "hide-narrow" }, "Last used"),
          h("th", {}, "Revoked"), h("th", {}, ""))),
        tbody)));

  async function refresh() {
    const listed = await api("/tokens");
    put(tbody, ...listed.items.map((t) => h("tr", { "data-token-id": t.id },
      h("td", { class: "mono" }, String(t.id)), h("td", {}, t.name),
      h("td", {}, t.is_admin ? (t.bootstrap ? "bootstrap" : "yes") : ""),
      h("td", { class: "hide-narrow small" }, fmtTime(t.created_at)), h("td", { class: "small" }, fmtTime(t.expires_at)),
      h("td", { class: "hide-narrow small" }, fmtTime(t.last_used_at)), h("td", { class: "small" }, fmtTime(t.revoked_at)),
      h("td", {}, t.revoked_at ? null : h("button", { class: "danger small", type: "button", onclick: async () => {
        if (!confirm(`Revoke token ${t.id} (${t.name})? Its next request is refused.`)) return;
        try { await api(`/tokens/${t.id}`, { method: "DELETE" }); } catch (err) { alert(err.message); return; }
        if (t.id === me.id) signOut("Signed out: you revoked your own token."); else await refresh();
      } }, "Revoke")))));
  }

  if (me.is_admin) {
    const name = h("input", { id: "tok-name", name: "name", type: "text", required: true, placeholder: "ada" });
    const days = h("input", { id: "tok-days", name: "expires_in_days", type: "number", min: 1, placeholder: "never" });
    const admin = h("input", { id: "tok-admin", name: "admin", type: "checkbox" });
    const error = h("div");
    const form = h("form", { class: "panel", id: "token-form" },
      h("h2", {}, "Create a token"),
      h("div", { class: "form-grid" },
        h("div", { class: "field" }, h("label", { for: "tok-name" }, "Name"), name,
          h("div", { class: "field-error", "data-error-for": "name" })),
        h("div", { class: "field" }, h("label", { for: "tok-days" }, "Expires in days"), days,
          h("div", { class: "field-error", "data-error-for": "expires_in_days" })),
        h("div", { class: "field" }, h("label", { for: "tok-admin" }, admin, " admin"))),
      h("div", { class: "row", style: "margin-top:0.75rem" }, h("button", { class: "primary", type: "submit" }, "Create")),
      error, created);
    view.append(form);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      put(error); put(created);
      showFieldErrors(form, error, []);
      const body = { name: name.value.trim(), admin: admin.checked };
      if (days.value) body.expires_in_days = Number(days.value);
      try {
        const made = await api("/tokens", { method: "POST", json: body });
        form.reset();
        put(created, h("div", { class: "note" }, `Token for ${made.name} (shown once): `, h("code", { id: "new-token" }, made.token)));
        await refresh();
      } catch (err) {
        if (err.status === 422) showFieldErrors(form, error, fieldErrors(err.detail));
        else error.append(errorBox(err));
      }
    });
  }
  await refresh();
}

// ----------------------------------------------------------------------------------------------------------
// Workers (admins): every registered worker, live or lost, its host, devices, queues and current run or job.

async function workersPage() {
  document.title = "Workers · ganforge";
  const tbody = h("tbody");
  const note = h("p", { class: "muted small" });
  view.append(
    h("div", { class: "page-head" }, h("h1", {}, "Workers")),
    h("div", { class: "panel table-wrap" },
      h("table", { id: "workers-table" },
        h("thead", {}, h("tr", {}, h("th", {}, "Worker"), h("th", {}, "Status"), h("th", {}, "Host"),
          h("th", {}, "Devices"), h("th", {}, "Queues"), h("th", {}, "Current job"),
          h("th", { class: "hide-narrow" }, "Version"), h("th", { class: "hide-narrow" }, "Started"),
          h("th", {}, "Last heartbeat"))),
        tbody)),
    note);

  const device = (d) => d.kind === "cuda"
    ? `${d.name} (${d.memory_gb} GB)`
    : `CPU ${d.name}, ${d.cores} cores${d.memory_gb ? `, ${d.memory_gb} GB` : ""}`;
  async function refresh() {
    let listed;
    try { listed = await api("/workers"); } catch (err) {
      if (err.status === 403) { put(tbody); put(note, "Only admins see the workers."); return; }
      throw err;
    }
    put(note, listed.items.length ? "" : "No worker has registered: start one with `ganforge worker` (docs/deploy.md).");
    put(tbody, ...listed.items.map((w) => h("tr", { "data-worker-id": w.id, class: w.status },
      h("td", { class: "mono small" }, w.id),
      h("td", {}, h("span", { class: w.status === "live" ? "badge succeeded" : "badge failed" }, w.status)),
      h("td", {}, w.host),
      h("td", { class: "small" }, w.devices.map(device).join("; ")),
      h("td", { class: "mono small" }, w.queues.join(", ")),
      h("td", { class: "mono small" }, w.current_job
        ? (w.current_job.startsWith("run_") ? h("a", { href: `#/runs/${w.current_job}` }, w.current_job) : w.current_job)
        : ""),
      h("td", { class: "hide-narrow small" }, w.version),
      h("td", { class: "hide-narrow small" }, fmtTime(w.started_at)),
      h("td", { class: "small" }, fmtTime(w.heartbeat_at)))));
  }
  await refresh();
  const timer = setInterval(() => refresh().catch(() => {}), 5000);
  cleanups.push(() => clearInterval(timer));
}

render();
