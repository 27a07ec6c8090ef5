// The operator dashboard: GET /dashboard/data with the admin key every second, rendered into the
// page's tables. The key lives in this tab's sessionStorage only.
"use strict";

const KEY = "marketlog.admin-key";
const history = [];

function fmt(value, digits = 1) {
  if (value === null || value === undefined) return "–";
  if (typeof value !== "number") return String(value);
  return value.toLocaleString("en-US", { maximumFractionDigits: digits });
}

function fill(id, rows, cells) {
  const body = document.querySelector(`#${id} tbody`);
  body.replaceChildren(
    ...rows.map((row) => {
      const tr = document.createElement("tr");
      for (const [value, cls] of cells(row)) {
        const td = document.createElement("td");
        td.textContent = typeof value === "number" || value === null ? fmt(value) : value;
        if (cls) td.className = cls;
        tr.append(td);
      }
      return tr;
    }),
  );
}

function spark(values) {
  const canvas = document.getElementById("spark");
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const top = Math.max(1, ...values);
  ctx.strokeStyle = "#4fb3ff";
  ctx.lineWidth = 2;
  ctx.beginPath();
  values.forEach((v, i) => {
    const x = (i / Math.max(values.length - 1, 1)) * canvas.width;
    const y = canvas.height - 2 - (v / top) * (canvas.height - 4);
    if (i === 0) ctx.moveTo(x, y);
    else ctx.lineTo(x, y);
  });
  ctx.stroke();
}

let refreshes = 0; // figures rendered so far (the browser test waits on it)

function render(f) {
  refreshes += 1;
  document.body.dataset.refreshes = String(refreshes);
  const total = f.topics.reduce((sum, t) => sum + t.per_second, 0);
  history.push(total);
  if (history.length > 60) history.shift();
  document.getElementById("total-rate").textContent = fmt(total);
  spark(history);
  document.getElementById("open-orders").textContent = fmt(f.open_orders, 0);
  document.getElementById("accounts").textContent = fmt(f.accounts, 0);
  const g = f.gateway || {};
  document.getElementById("latency").textContent =
    `${fmt(g.decision_p50_ms)} / ${fmt(g.decision_p99_ms)} ms`;
  fill("topics", f.topics, (t) => [[t.topic], [t.partitions], [t.per_second], [t.end]]);
  fill("consumer-lag", f.consumer_lag, (r) => [
    [r.group], [r.partition], [r.committed], [r.end], [r.lag, r.lag > 1 ? "lagging" : ""],
  ]);
  fill("projection-lag", f.projection_lag, (r) => [
    [r.topic], [r.partition], [r.applied], [r.end], [r.lag, r.lag > 0 ? "lagging" : ""],
  ]);
  fill("commits", f.commits, (r) => [[r.service], [r.per_second], [r.mean_ms], [r.p99_ms], [r.total]]);
  fill("decisions", f.decisions, (r) => [[r.type], [r.per_second], [r.total]]);
  fill("orders", g.orders || [], (r) => [[r.surface], [r.per_second], [r.total]]);
  fill("replies", g.replies || [], (r) => [[r.outcome], [r.per_second], [r.total]]);
  fill("services", f.services, (r) => [[r.service], [r.metrics, r.metrics]]);
}

function status(text, cls) {
  const el = document.getElementById("status");
  el.textContent = text;
  el.className = `status ${cls || ""}`;
}

async function poll() {
  const key = sessionStorage.getItem(KEY);
  if (!key) return;
  try {
    const answer = await fetch("/dashboard/data", { headers: { Authorization: `Bearer ${key}` } });
    if (answer.status === 401 || answer.status === 403) {
      sessionStorage.removeItem(KEY);
      document.getElementById("figures").hidden = true;
      document.getElementById("login").hidden = false;
      status("the admin key was refused", "error");
      return;
    }
    if (!answer.ok) throw new Error(`HTTP ${answer.status}`);
    render(await answer.json());
    document.getElementById("figures").hidden = false;
    document.getElementById("login").hidden = true;
    status(`live · updated ${new Date().toLocaleTimeString()}`, "live");
  } catch (error) {
    status(`no figures: ${error.message}`, "error");
  }
  setTimeout(poll, 1000);
}

document.getElementById("login").addEventListener("submit", (event) => {
  event.preventDefault();
  const key = document.getElementById("key").value.trim();
  if (!key) return;
  sessionStorage.setItem(KEY, key);
  status("connecting…");
  poll();
});

poll();
