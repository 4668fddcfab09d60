// The clickstream dashboard: top stats, the main graph with the time boundary, breakdowns.
// It reads only the public JSON API (/v1/metrics, /v1/series); the period and the filters
// live in the page URL, so a view can be shared and reloaded. No framework: state -> fetch ->
// render, and every figure keeps its exact value in a data-value attribute.
"use strict";

const PERIODS = { "30m": 30 * 60e3, "24h": 24 * 3600e3, "7d": 7 * 86400e3, "30d": 30 * 86400e3 };
const REALTIME_PERIOD = "30m";
const REFRESH_MS = 5000;
const TOP_ROWS = 10;
const KEY_STORAGE = "clickstream.apiKey";
const RULE_TITLES = {
  "uap-core": "uap-core classifies the device as a spider",
  "crawler-user-agents": "a pattern of the crawler-user-agents list",
  "tools": "the project's list of tools (HTTP clients, feed parsers)",
  "unknown": "stored before the rule was recorded",
};

const $ = (selector) => document.querySelector(selector);

// ---- state: the page URL -------------------------------------------------------------------

function readState() {
  const params = new URLSearchParams(location.search);
  const period = params.get("period") || (params.get("from") ? "custom" : "24h");
  return {
    period: period in PERIODS || period === "custom" ? period : "24h",
    from: params.get("from"),
    to: params.get("to"),
    url: params.get("url") || null,
    country: params.get("country") ? params.get("country").toUpperCase() : null,
  };
}

function writeState(state) {
  const params = new URLSearchParams();
  params.set("period", state.period);
  if (state.period === "custom") {
    params.set("from", state.from);
    params.set("to", state.to);
  }
  if (state.url) params.set("url", state.url);
  if (state.country) params.set("country", state.country);
  history.pushState(null, "", `?${params}`);
  load();
}

// The range asked for: the last N minutes/hours/days up to now (rounded up to the minute, so
// reloads within a minute ask the same question), or the custom one.
function rangeOf(state) {
  if (state.period === "custom" && state.from && state.to) {
    return { from: Date.parse(state.from), to: Date.parse(state.to) };
  }
  const to = Math.ceil(Date.now() / 60e3) * 60e3;
  return { from: to - PERIODS[state.period], to };
}

const isoTime = (ms) => new Date(ms).toISOString().replace(".000Z", "Z");

// ---- formatting for people (the exact value stays in data-value) -----------------------------

function compact(n) {
  if (n === null || n === undefined) return "–";
  const abs = Math.abs(n);
  if (abs < 1000) return String(n);
  for (const [size, unit] of [[1e9, "b"], [1e6, "m"], [1e3, "k"]]) {
    if (abs >= size) return `${(n / size).toFixed(abs >= 10 * size ? 0 : 1).replace(/\.0$/, "")}${unit}`;
  }
  return String(n);
}

function duration(ms) {
  if (ms === null || ms === undefined) return "–";
  const seconds = Math.round(ms / 1000);
  if (seconds < 60) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m ${String(seconds % 60).padStart(2, "0")}s`;
  return `${Math.floor(minutes / 60)}h ${String(minutes % 60).padStart(2, "0")}m`;
}

const percent = (fraction) => (fraction === null ? "–" : `${(fraction * 100).toFixed(1)}%`);

// An axis tick in UTC, 24-hour clock: the date at midnight, else the time of day.
function tickLabel(seconds) {
  const text = new Date(seconds * 1000).toISOString();
  return text.slice(11, 16) === "00:00" ? text.slice(5, 10) : text.slice(11, 16);
}

function utcLabel(ms, bucket) {
  const text = new Date(ms).toISOString();
  if (bucket === "day") return text.slice(0, 10);
  return `${text.slice(0, 10)} ${text.slice(11, 16)} UTC`;
}

// ---- the API ---------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path, params) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== null && value !== undefined) query.set(name, value);
  }
  const headers = { Accept: "application/json" };
  const key = sessionStorage.getItem(KEY_STORAGE);
  if (key) headers.Authorization = `Bearer ${key}`;
  let response;
  try {
    response = await fetch(`${path}?${query}`, { headers });
  } catch (error) {
    throw new ApiError(0, `the API at ${location.host} cannot be reached (${error.message})`);
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const message = body && body.message ? body.message : `HTTP ${response.status}`;
    throw new ApiError(response.status, message);
  }
  return body;
}

// ---- rendering -------------------------------------------------------------------------------

function setFigure(element, value, text) {
  element.dataset.value = value === null || value === undefined ? "" : String(value);
  element.textContent = text;
}

function change(element, current, previous) {
  element.className = "change";
  if (current === null || previous === null || current === undefined || previous === undefined) {
    element.textContent = "";
    return;
  }
  element.dataset.previous = String(previous);
  if (previous === 0) {
    element.textContent = current === 0 ? "no change vs previous period" : "new vs previous period (0)";
    return;
  }
  const ratio = (current - previous) / previous;
  element.classList.add(ratio >= 0 ? "up" : "down");
  element.textContent = `${ratio >= 0 ? "↑" : "↓"} ${Math.abs(ratio * 100).toFixed(0)}% vs previous period`;
}

const avgOf = (m) => (m.time_spent_count ? m.time_spent_sum_ms / m.time_spent_count : null);
const botShareOf = (m) => (m.clicks + m.bot_clicks ? m.bot_clicks / (m.clicks + m.bot_clicks) : null);

function renderStats(now, before) {
  const total = now.total;
  const prev = before ? before.total : null;

  const clicks = $("#stat-clicks");
  setFigure(clicks.querySelector(".value"), total.clicks, compact(total.clicks));
  clicks.querySelector(".detail").textContent = `${total.clicks.toLocaleString("en")} clicks by people`;
  change(clicks.querySelector(".change"), total.clicks, prev && prev.clicks);

  const users = $("#stat-users");
  const u = total.unique_users;
  const value = users.querySelector(".value");
  setFigure(value, u.value, compact(u.value));
  value.dataset.exact = String(u.exact);
  value.dataset.lower = String(u.lower_bound);
  value.dataset.upper = String(u.upper_bound);
  const badge = document.createElement("span");
  badge.className = `badge ${u.exact ? "exact" : "estimate"}`;
  badge.textContent = u.exact ? "exact" : "estimate";
  value.append(badge);
  users.querySelector(".detail").textContent = u.exact
    ? `exact (${u.source})`
    : `${u.lower_bound.toLocaleString("en")}–${u.upper_bound.toLocaleString("en")} at ${Math.round(u.confidence * 100)}% confidence (${u.source})`;
  change(users.querySelector(".change"), u.value, prev && prev.unique_users.value);

  const time = $("#stat-time");
  const avg = avgOf(total);
  setFigure(time.querySelector(".value"), avg === null ? null : Math.round(avg), duration(avg));
  time.querySelector(".detail").textContent =
    `${total.clicks_without_time_spent.toLocaleString("en")} clicks without a time spent`;
  change(time.querySelector(".change"), avg, prev && avgOf(prev));

  const bots = $("#stat-bots");
  const share = botShareOf(total);
  setFigure(bots.querySelector(".value"), share, percent(share));
  const detail = bots.querySelector(".detail");
  detail.textContent = `${total.bot_clicks.toLocaleString("en")} clicks by bots`;
  // By the rule that flagged them (unknown: stored before the rule was recorded).
  for (const [rule, count] of Object.entries(total.bot_clicks_by_rule || {})) {
    if (!count && rule === "unknown") continue;
    const part = document.createElement("span");
    part.className = "rule";
    part.dataset.rule = rule;
    part.dataset.value = String(count);
    part.title = RULE_TITLES[rule] || rule;
    part.textContent = `${rule} ${compact(count)}`;
    detail.append(part);
  }
  change(bots.querySelector(".change"), share, prev && botShareOf(prev));
}

function renderTable(selector, answer, keyOf, labelOf, onPick) {
  const body = $(`${selector} tbody`);
  body.replaceChildren();
  if (!answer.groups.length) {
    const row = body.insertRow();
    row.className = "empty";
    const cell = row.insertCell();
    cell.colSpan = 3;
    cell.textContent = "no clicks in this range";
    return;
  }
  for (const group of answer.groups) {
    const row = body.insertRow();
    row.dataset.key = keyOf(group);
    const name = row.insertCell();
    name.className = selector === "#pages" ? "url" : "";
    const pick = document.createElement("button");
    pick.type = "button";
    pick.textContent = labelOf(group);
    pick.title = `Filter by ${labelOf(group)}`;
    pick.addEventListener("click", () => onPick(keyOf(group)));
    name.append(pick);
    const clicks = row.insertCell();
    clicks.className = "num clicks";
    setFigure(clicks, group.clicks, compact(group.clicks));
    const users = row.insertCell();
    users.className = "num users";
    setFigure(users, group.unique_users.value, compact(group.unique_users.value));
    users.dataset.exact = String(group.unique_users.exact);
  }
}

let chart = null;

function renderGraph(series) {
  $("#bucket").textContent = series.bucket;
  const xs = series.points.map((p) => p.start_ms / 1000);
  const batch = series.points.map((p) => p.batch_clicks);
  const total = series.points.map((p) => p.clicks);
  const box = $("#chart");
  const width = Math.max(box.clientWidth, 280);
  const bars = uPlot.paths.bars({ size: [0.85, 48], align: 1 });
  const options = {
    width,
    height: 220,
    legend: { show: false },
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"),
    cursor: { drag: { x: false, y: false } },
    scales: { x: { time: true, range: [xs[0], xs[xs.length - 1] + series.bucket_ms / 1000] } },
    axes: [
      { values: (_, ticks) => ticks.map(tickLabel), space: 60 },
      { values: (_, ticks) => ticks.map(compact), size: 50 },
    ],
    // Drawn in order: the whole bar in the speed colour, then its batch part over it.
    series: [
      {},
      { label: "speed", stroke: "#f59f00", fill: "#f59f00", paths: bars, points: { show: false } },
      { label: "batch", stroke: "#3b5bdb", fill: "#3b5bdb", paths: bars, points: { show: false } },
    ],
    hooks: { draw: [() => placeBoundary(series)] },
  };
  if (chart) chart.destroy();
  chart = new uPlot(options, [xs, total, batch], box);
  window.dashboard.chart = chart;
  const late = series.late_events_in_range;
  $("#late").textContent = late ? `${late.toLocaleString("en")} late events in this range wait for the next batch run` : "";
  $("#late").dataset.value = late === null ? "" : String(late);
}

// The boundary marker: a dashed line at the boundary's x, when the boundary is in the range.
function placeBoundary(series) {
  const marker = $("#boundary-marker");
  const boundary = series.boundary_ms;
  const from = series.points.length ? series.points[0].start_ms : null;
  const to = from === null ? null : from + series.points.length * series.bucket_ms;
  if (!chart || boundary === null || from === null || boundary <= from || boundary >= to) {
    marker.hidden = true;
    marker.dataset.ms = boundary === null ? "" : String(boundary);
    return;
  }
  const left = chart.over.offsetLeft + chart.valToPos(boundary / 1000, "x");
  marker.hidden = false;
  marker.dataset.ms = String(boundary);
  marker.style.left = `${left}px`;
  marker.style.top = `${chart.over.offsetTop}px`;
  marker.style.height = `${chart.over.clientHeight}px`;
  marker.title = `time boundary ${utcLabel(boundary, "minute")}: batch before, speed after`;
}

function renderFilters(state) {
  const holder = $("#filters");
  holder.replaceChildren();
  for (const [name, value] of [["url", state.url], ["country", state.country]]) {
    if (!value) continue;
    const chip = document.createElement("span");
    chip.className = "chip";
    chip.dataset.filter = name;
    chip.textContent = `${name === "url" ? "URL starts with" : "country"} ${value}`;
    const remove = document.createElement("button");
    remove.type = "button";
    remove.setAttribute("aria-label", `Remove the ${name} filter`);
    remove.textContent = "×";
    remove.addEventListener("click", () => writeState({ ...readState(), [name]: null }));
    chip.append(remove);
    holder.append(chip);
  }
  const form = $("#filter-form");
  form.url.value = state.url || "";
  form.country.value = state.country || "";
  for (const button of document.querySelectorAll("#periods button")) {
    button.setAttribute("aria-pressed", String(button.dataset.period === state.period));
  }
  $("#custom").hidden = state.period !== "custom";
}

function setStatus(text, isError = false) {
  const status = $("#status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}

// ---- loading ---------------------------------------------------------------------------------

let generation = 0;
let timer = null;

async function load() {
  const state = readState();
  const mine = ++generation;
  renderFilters(state);
  clearTimeout(timer);
  const range = rangeOf(state);
  if (!(range.from < range.to)) {
    setStatus("Choose a custom range whose end is after its start.", true);
    return;
  }
  const length = range.to - range.from;
  const base = { from: isoTime(range.from), to: isoTime(range.to), url: state.url, country: state.country };
  const previous = { ...base, from: isoTime(range.from - length), to: isoTime(range.from) };
  if (!document.body.dataset.loaded) setStatus("Loading…");
  document.body.dataset.state = "loading";
  try {
    const [now, before, series, pages, countries] = await Promise.all([
      api("/v1/metrics", base),
      api("/v1/metrics", previous).catch(() => null),
      api("/v1/series", base),
      api("/v1/metrics", { ...base, group_by: "url", top: TOP_ROWS }),
      api("/v1/metrics", { ...base, group_by: "country", top: TOP_ROWS }),
    ]);
    if (mine !== generation) return;
    $("#main").classList.remove("stale");
    $("#key-form").hidden = true;
    renderStats(now, before);
    renderGraph(series);
    renderTable("#pages", pages, (g) => g.url, (g) => g.url, (url) => writeState({ ...readState(), url }));
    renderTable("#countries", countries, (g) => g.country, (g) => (g.country === "ZZ" ? "ZZ (unknown)" : g.country),
      (country) => writeState({ ...readState(), country }));
    setStatus(freshness(now, state));
    document.body.dataset.loaded = "true";
    document.body.dataset.state = "ready";
    document.body.dataset.range = `${base.from}/${base.to}`;
  } catch (error) {
    if (mine !== generation) return;
    document.body.dataset.state = "error";
    $("#main").classList.add("stale");
    if (error.status === 401 || error.status === 403) {
      $("#key-form").hidden = false;
      setStatus(`The API refused the request (${error.message}): give an API key.`, true);
    } else if (error.status === 503) {
      setStatus(`Data unavailable: ${error.message}. The figures shown are the last ones loaded.`, true);
    } else {
      setStatus(`Could not load: ${error.message}`, true);
    }
  }
  if (state.period === REALTIME_PERIOD && mine === generation) timer = setTimeout(load, REFRESH_MS);
}

function freshness(answer, state) {
  const parts = [];
  if (answer.speed_until) {
    const behind = Math.max(0, Date.now() - Date.parse(answer.speed_until));
    parts.push(`speed layer holds data up to ${utcLabel(Date.parse(answer.speed_until), "minute")} (${duration(behind)} ago)`);
  } else {
    parts.push("no speed data yet");
  }
  parts.push(answer.boundary ? `batch views exact before ${utcLabel(Date.parse(answer.boundary), "minute")}` : "no batch run yet");
  if (answer.late_events_waiting) parts.push(`${answer.late_events_waiting.toLocaleString("en")} late events waiting`);
  if (state.period === REALTIME_PERIOD) parts.push(`refreshing every ${REFRESH_MS / 1000}s`);
  return parts.join(" · ");
}

// ---- wiring ----------------------------------------------------------------------------------

function toLocalInput(ms) {
  return new Date(ms).toISOString().slice(0, 16);
}

function wire() {
  for (const button of document.querySelectorAll("#periods button")) {
    button.addEventListener("click", () => {
      const state = readState();
      const period = button.dataset.period;
      if (period === "custom") {
        const range = rangeOf(state);
        const form = $("#custom");
        form.from.value = toLocalInput(range.from);
        form.to.value = toLocalInput(range.to);
        form.hidden = false;
        form.from.focus();
        return;
      }
      writeState({ ...state, period });
    });
  }
  $("#custom").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.target;
    writeState({ ...readState(), period: "custom", from: `${form.from.value}:00Z`, to: `${form.to.value}:00Z` });
  });
  $("#filter-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.target;
    writeState({ ...readState(), url: form.url.value.trim() || null, country: form.country.value.trim().toUpperCase() || null });
  });
  $("#key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY_STORAGE, event.target.key.value);
    event.target.key.value = "";
    load();
  });
  window.addEventListener("popstate", load);
  new ResizeObserver(() => {
    if (chart) chart.setSize({ width: Math.max($("#chart").clientWidth, 280), height: 220 });
  }).observe($("#graph"));
}

window.dashboard = { chart: null, load, readState };
wire();
load();
