// The day-trading screen (docs/daytrading.md over HTTP, /daytrade/*): ADD, QUOTE, BUY/SELL with
// the 60-second COMMIT/CANCEL countdown, SET_BUY/SET_SELL amounts and triggers, the summary and
// the DUMPLOG download.
//
// The countdown: the ledger lets a BUY or SELL be committed until 60 s after its record time,
// and COMMIT takes the most recent live one. The screen keeps the same stack: an entry counts
// down from when its request was sent (never later than its record time, so the screen never
// promises more time than the ledger gives), and the summary, when read, replaces the stack with
// the ledger's own pending entries and their expiry times.

import { ApiError, call, fetchBlob } from "./api.js";
import { $, act, announce, fill, formValues } from "./ui.js";

const WINDOW_MS = 60_000;
const pending = { buy: [], sell: [] }; // most recent last: {symbol, shares, price, funds, deadline}
let ticker = null;
let loaded = false;

function live(kind, now = Date.now()) {
  pending[kind] = pending[kind].filter((p) => p.deadline > now);
  return pending[kind][pending[kind].length - 1];
}

function renderPending() {
  const now = Date.now();
  for (const kind of ["buy", "sell"]) {
    const top = live(kind, now);
    const box = $(`#dt-pending-${kind}`);
    box.querySelector(".what").textContent = top
      ? `${top.shares} ${top.symbol} at ${top.price} = ${top.funds}`
      : "none";
    box.querySelector(".countdown").textContent = top
      ? `${Math.ceil((top.deadline - now) / 1000)} s left`
      : "";
    box.classList.toggle("live", Boolean(top));
    for (const button of box.querySelectorAll("button")) button.disabled = !top;
  }
}

function describe(answer) {
  const parts = [`${answer.command} (txn ${answer.txn})`];
  if (answer.symbol) parts.push(answer.symbol);
  if (answer.shares !== null && answer.shares !== undefined) parts.push(`${answer.shares} shares`);
  if (answer.price) parts.push(`price ${answer.price}`);
  if (answer.funds) parts.push(`dollars ${answer.funds}`);
  parts.push(`cash ${answer.cash}, held ${answer.cash_held}`);
  return parts.join(", ");
}

function answered(answer) {
  const text = describe(answer);
  $("#dt-answer").textContent = text;
  $("#dt-cash").textContent = answer.cash;
  $("#dt-held").textContent = answer.cash_held;
  announce(text);
  return answer;
}

async function command(method, path, body) {
  try {
    return answered(await call(method, path, body));
  } catch (err) {
    // the ledger has no live entry: the screen's stack is stale (expired, or another tab)
    if (err instanceof ApiError && /^no_pending_(buy|sell)/.test(err.message)) {
      pending[err.message.includes("buy") ? "buy" : "sell"] = [];
      renderPending();
    }
    throw err;
  }
}

async function buyOrSell(kind, symbol, amount) {
  const sent = Date.now();
  const answer = await command("POST", `/daytrade/${kind}`, { symbol, amount });
  pending[kind].push({
    symbol: answer.symbol,
    shares: answer.shares,
    price: answer.price,
    funds: answer.funds,
    deadline: sent + WINDOW_MS,
  });
  renderPending();
}

async function settle(kind, verb) {
  await command("POST", `/daytrade/${verb}-${kind}`);
  pending[kind].pop();
  renderPending();
}

async function refreshSummary() {
  const s = await call("GET", "/daytrade/summary");
  $("#dt-cash").textContent = s.cash;
  $("#dt-held").textContent = s.cash_held;
  fill($("#dt-holdings tbody"), Object.entries(s.holdings).map(([sym, n]) => [sym, String(n)]));
  const rows = [
    ...s.pending_buys.map((p) => ["BUY", p.symbol, String(p.shares), p.price, p.cost, String(p.txn)]),
    ...s.pending_sells.map((p) => ["SELL", p.symbol, String(p.shares), p.price, p.proceeds, String(p.txn)]),
  ];
  fill($("#dt-pendings tbody"), rows);
  fill($("#dt-settings tbody"), [
    ...s.buy_settings.map((b) => ["BUY", b.symbol, b.amount, b.trigger ?? "not set", ""]),
    ...s.sell_settings.map((b) => ["SELL", b.symbol, b.amount, b.trigger ?? "not set", String(b.reserved)]),
  ]);
  const entries = (list, funds) =>
    list
      .map((p) => ({ symbol: p.symbol, shares: p.shares, price: p.price, funds: p[funds], deadline: p.expires_ms }))
      .reverse(); // the summary lists the most recent first
  pending.buy = entries(s.pending_buys, "cost");
  pending.sell = entries(s.pending_sells, "proceeds");
  renderPending();
  announce(`Summary of ${s.user}: cash ${s.cash}, held ${s.cash_held}`);
}

async function dumplog(filename) {
  const written = await call("POST", "/daytrade/dumplog", { filename });
  const blob = await fetchBlob(written.url);
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = written.name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
  announce(`DUMPLOG ${written.name}: ${written.bytes} bytes (txn ${written.txn})`);
}

async function setting(action, v) {
  const base = `/daytrade/${v.kind}-settings/${encodeURIComponent(v.symbol)}`;
  if (action === "amount") await command("PUT", `${base}/amount`, { amount: v.amount });
  else if (action === "trigger") await command("PUT", `${base}/trigger`, { trigger: v.trigger });
  else await command("DELETE", base);
}

export function startDayTrading() {
  clearInterval(ticker);
  ticker = setInterval(renderPending, 250);
  renderPending();
  if (!loaded) {
    loaded = true;
    act(refreshSummary);
  }
}

export function stopDayTrading() {
  clearInterval(ticker);
  ticker = null;
  loaded = false;
  pending.buy = [];
  pending.sell = [];
}

function on(selector, handler) {
  $(selector).addEventListener("submit", (event) => {
    event.preventDefault();
    act(() => handler(formValues(event.target), event.submitter?.value));
  });
}

export function setUpDayTrading() {
  on("#dt-add", (v) => command("POST", "/daytrade/add", { amount: v.amount }));
  on("#dt-trade", async (v, action) => {
    if (action === "QUOTE") {
      const answer = await command("POST", `/daytrade/quote/${encodeURIComponent(v.symbol)}`);
      $("#dt-quote").textContent = `${answer.quote.symbol} ${answer.quote.price}`;
    } else {
      await buyOrSell(action === "BUY" ? "buy" : "sell", v.symbol, v.amount);
    }
  });
  on("#dt-set", (v, action) => setting(action, v));
  on("#dt-dumplog", (v) => dumplog(v.filename));
  $("#dt-refresh").addEventListener("click", () => act(refreshSummary));
  for (const kind of ["buy", "sell"]) {
    $(`#dt-commit-${kind}`).addEventListener("click", () => act(() => settle(kind, "commit")));
    $(`#dt-cancel-${kind}`).addEventListener("click", () => act(() => settle(kind, "cancel")));
  }
}
