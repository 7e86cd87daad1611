// The live status page: one EventSource on /api/status/events; every `status` event redraws.
// window.statusPage = { updates, last } is there for tests and the console.

const $ = (id) => document.getElementById(id);
const page = { updates: 0, last: null };
window.statusPage = page;

const NAMES = { workers: "workers (primary)", elevenlabs: "ElevenLabs", "edge-tts": "edge-tts", piper: "Piper", "espeak-ng": "espeak-ng", text: "text only" };
const name = (path) => NAMES[path] || path;
const pct = (v) => (v === null || v === undefined ? "–" : `${v.toFixed(3)}%`);

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  row.append(td);
  return td;
}

function renderVoice(s) {
  const overall = $("overall");
  overall.textContent = s.status;
  overall.className = s.status;
  const v = s.voice;
  const el = $("voice-now");
  if (v.primaryUp) {
    const engines = (v.primaryEngines || ["bark"]).map((e) => name(e === "bark" ? "Bark" : e)).join(", ");
    el.textContent = `Maya is speaking with her primary voice (${engines}).`;
    el.className = "";
  } else {
    const why = v.reason ? ` because ${v.reason}` : "";
    el.textContent = v.speakingWith === "text"
      ? `Maya cannot speak right now${why}: listeners get the text only.`
      : `Maya is speaking with a fallback voice (${name(v.speakingWith)})${why}.`;
    el.className = "fallback";
  }
}

function renderUptime(s) {
  const primary = (s.uptime && s.uptime.workers) || {};
  $("uptime-24h").textContent = pct(primary["24h"]);
  $("uptime-30d").textContent = pct(primary["30d"]);
  const m = s.month || {};
  if (m.budgetMinutes !== undefined) {
    $("budget").textContent = `${m.downtimeMinutes.toFixed(1)} min`;
    $("budget-label").textContent =
      `downtime this month, of a ${m.budgetMinutes.toFixed(1)} min budget at ${m.target}%`;
    const used = Math.min(100, (100 * m.downtimeMinutes) / Math.max(m.budgetMinutes, 1e-9));
    $("budget-used").style.width = `${used}%`;
    $("budget-used").style.background = used >= 100 ? "var(--bad)" : used >= 50 ? "var(--warn)" : "var(--ok)";
  }
}

function renderWorkers(s) {
  const body = $("workers").tBodies[0];
  body.replaceChildren();
  if (!s.workers.length) {
    const tr = body.insertRow();
    cell(tr, "no worker has been seen", "bad").colSpan = 7;
  }
  for (const w of s.workers) {
    const tr = body.insertRow();
    tr.dataset.worker = w.id;
    cell(tr, w.id);
    cell(tr, w.alive ? w.state : "offline", w.alive && w.state === "ready" ? "ok" : "bad").dataset.field = "state";
    cell(tr, w.rtf ? w.rtf.toFixed(2) : "–").dataset.field = "rtf";
    cell(tr, String(w.queueDepth)).dataset.field = "queue";
    cell(tr, String(w.jobsInFlight));
    cell(tr, String(w.restarts)).dataset.field = "restarts";
    cell(tr, w.reason || "", "muted");
  }
}

function renderTiers(s) {
  const body = $("tiers").tBodies[0];
  body.replaceChildren();
  for (const t of s.tiers) {
    const tr = body.insertRow();
    tr.dataset.tier = t.tier;
    cell(tr, name(t.tier));
    cell(tr, t.configured ? (t.available ? "yes" : "no") : "not configured", t.available ? "ok" : "bad").dataset.field = "available";
    cell(tr, t.operator || "–", t.operator === "disabled" ? "warn" : "").dataset.field = "operator";
    cell(tr, t.breaker, t.breaker === "closed" || t.breaker === "-" ? "" : "warn").dataset.field = "breaker";
    const p = t.lastProbe;
    cell(tr, p ? `${p.ok ? "ok" : "failed"}${p.latencyMs !== null ? ` ${Math.round(p.latencyMs)} ms` : ""} (${p.reason})` : "–",
      p ? (p.ok ? "ok" : "bad") : "").dataset.field = "probe";
    cell(tr, pct(((s.uptime || {})[t.tier] || {})["24h"]));
    cell(tr, t.reason || "", "muted");
  }
}

function renderFallbacks(s) {
  const body = $("fallbacks").tBodies[0];
  body.replaceChildren();
  const entries = Object.entries(s.fallbacks);
  if (!entries.length) cell(body.insertRow(), "none", "muted").colSpan = 2;
  for (const [engine, n] of entries) {
    const tr = body.insertRow();
    tr.dataset.engine = engine;
    cell(tr, name(engine));
    cell(tr, String(n));
  }
}

function renderTtfa(s) {
  const svg = $("ttfa-chart");
  const W = 600, H = 160, now = Date.parse(s.at);
  const pts = s.ttfa;
  const max = Math.max(100, ...pts.map((p) => p.p95));
  const x = (at) => W - ((now - Date.parse(at)) / 3600e3) * W;
  const y = (ms) => H - 14 - (ms / max) * (H - 24);
  const line = (key) => pts.map((p) => `${x(p.at).toFixed(1)},${y(p[key]).toFixed(1)}`).join(" ");
  svg.innerHTML =
    `<polyline class="p95" points="${line("p95")}"/><polyline class="p50" points="${line("p50")}"/>` +
    `<text x="4" y="12">${Math.round(max)} ms</text><text x="4" y="${H - 2}">-60 min</text>` +
    `<text x="${W - 28}" y="${H - 2}">now</text>`;
  svg.dataset.points = String(pts.length);
  $("ttfa-legend").textContent = pts.length
    ? `p50 (solid) and p95 (dashed) in 30 s buckets; latest p50 ${pts[pts.length - 1].p50} ms`
    : "no sentences spoken in the last hour";
}

function renderIncidents(s) {
  const list = $("incidents");
  list.replaceChildren();
  if (!s.incidents.length) {
    const li = document.createElement("li");
    li.className = "muted";
    li.textContent = "none yet";
    list.append(li);
  }
  for (const i of s.incidents) {
    const li = document.createElement("li");
    li.className = i.kind;
    li.dataset.kind = i.kind;
    const when = document.createElement("time");
    when.dateTime = i.at;
    when.textContent = new Date(i.at).toLocaleString();
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = ` ${i.kind}: ${i.text} `;
    li.append(when, text);
    list.append(li);
  }
}

function render(s) {
  page.updates += 1;
  page.last = s;
  renderVoice(s);
  renderUptime(s);
  renderWorkers(s);
  renderTiers(s);
  renderFallbacks(s);
  renderTtfa(s);
  renderIncidents(s);
  $("live").textContent = `live · updated ${new Date(s.at).toLocaleTimeString()}`;
}

// With auth on, the page is opened as /status?token=… (EventSource cannot send headers).
const source = new EventSource("/api/status/events" + location.search);
source.addEventListener("status", (e) => render(JSON.parse(e.data)));
source.addEventListener("open", () => $("live").classList.add("on"));
source.addEventListener("error", () => {
  $("live").classList.remove("on");
  $("live").textContent = "reconnecting…";
});
