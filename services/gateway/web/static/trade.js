// The trading screen: order entry, the live book and trades of one symbol (/ws/market), the
// candle chart (polled), and the account's open orders, fills, balance and positions, re-read
// whenever /ws/orders says something happened to one of its orders.

import { call, stream } from "./api.js";
import { draw } from "./chart.js";
import { compareUnits, priceUnits } from "./decimal.js";
import { $, act, announce, debounce, fill, formValues, timeOf } from "./ui.js";

const SYMBOL = "marketlog.symbol";
const TRADES_SHOWN = 30;
const CANDLES = 60;

let stopMarket = null;
let stopOrders = null;
let candleTimer = null;
let watched = null;

// --- the account ---------------------------------------------------------------------------

async function refreshAccount() {
  const [orders, fills, balance, positions] = await Promise.all([
    call("GET", "/orders?status=open&limit=100"),
    call("GET", "/executions?limit=50"),
    call("GET", "/account/balance"),
    call("GET", "/account/positions"),
  ]);
  fill(
    $("#orders tbody"),
    orders.map((o) => [
      String(o.order_id), o.symbol, o.side, o.price ?? "market", o.open_qty, o.executed_qty, o.tif,
      cancelButton(o.order_id),
    ]),
  );
  fill(
    $("#fills tbody"),
    fills.map((f) => [String(f.order_id), f.symbol, f.side, f.price, f.qty, f.role]),
  );
  $("#cash-available").textContent = balance.cash_available;
  $("#cash-held").textContent = balance.cash_held;
  fill($("#positions tbody"), positions.map((p) => [p.symbol, p.available, p.held]));
}

const refreshSoon = debounce(() => act(refreshAccount), 100);

function cancelButton(orderId) {
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = "Cancel";
  button.setAttribute("aria-label", `Cancel order ${orderId}`);
  button.addEventListener("click", () =>
    act(async () => {
      button.disabled = true;
      await call("DELETE", `/orders/${orderId}`);
      announce(`Order ${orderId} cancelled`);
      await refreshAccount();
    }).finally(() => (button.disabled = false)),
  );
  return button;
}

function describe(message) {
  const order = `Order ${message.order_id ?? ""}`.trim();
  switch (message.type) {
    case "filled":
      return `${order} filled: ${message.side} ${message.qty} ${message.symbol} at ${message.price}`;
    case "closed":
      return `${order} closed (${message.reason})`;
    case "accepted":
      return `${order} accepted`;
    case "reduced":
      return `${order} reduced`;
    default:
      return `${order} ${message.type}: ${message.reason ?? ""}`.trim();
  }
}

// --- order entry ---------------------------------------------------------------------------

function orderBody(form) {
  const v = formValues(form);
  const body = { symbol: watched, side: v.side, type: v.type, qty: v.qty };
  if (v.type === "LIMIT") {
    if (v.price !== undefined && v.price !== "") body.price = v.price;
    body.tif = v.tif;
    body.post_only = $("#order-post-only").checked;
  } else {
    body.tif = v.tif;
    if (v.side === "BUY" && v.budget) body.budget = v.budget;
  }
  return body;
}

// MARKET orders are IOC or FOK and have no price; a MARKET BUY has a budget; post-only is GTC
// LIMIT only: the form offers what the API accepts (the API still says no to the rest).
function shapeForm() {
  const market = $("#order-type").value === "MARKET";
  const buy = new FormData($("#order")).get("side") === "BUY";
  const tif = $("#order-tif");
  $("#order-price").disabled = market;
  $("#order-budget").disabled = !(market && buy);
  tif.options[0].disabled = market;
  if (market && tif.value === "GTC") tif.value = "IOC";
  const post = $("#order-post-only");
  post.disabled = market || tif.value !== "GTC";
  if (post.disabled) post.checked = false;
}

async function placeOrder(event) {
  event.preventDefault();
  if (!watched) {
    announce("Choose a symbol first");
    return;
  }
  await act(async () => {
    const decision = await call("POST", "/orders", orderBody(event.target));
    announce(`Order ${decision.order_id} ${decision.event === "OrderAccepted" ? "accepted" : decision.event}`);
    await refreshAccount();
  });
}

// --- the market ----------------------------------------------------------------------------

const book = { seq: -1, bids: new Map(), asks: new Map() };
let trades = [];

function renderBook() {
  const side = (levels, best) =>
    [...levels.values()]
      .sort((a, b) => best * compareUnits(a.units, b.units))
      .map((l) => [l.price, l.qty]);
  fill($("#bids tbody"), side(book.bids, -1));
  fill($("#asks tbody"), side(book.asks, 1));
}

function setLevel(levels, price, qty) {
  const key = String(priceUnits(price));
  if (priceUnits(qty) === 0n) levels.delete(key);
  else levels.set(key, { price, qty, units: priceUnits(price) });
}

function renderTrades() {
  fill(
    $("#trades tbody"),
    trades.map((t) => [timeOf(t.ts), t.price, t.qty, t.taker_side]),
  );
}

function onMarket(message) {
  if (message.type === "snapshot") {
    book.seq = message.seq;
    book.bids.clear();
    book.asks.clear();
    for (const l of message.bids) setLevel(book.bids, l.price, l.qty);
    for (const l of message.asks) setLevel(book.asks, l.price, l.qty);
    renderBook();
    return;
  }
  if (message.seq <= book.seq && message.type === "level") return; // already in the snapshot
  if (message.type === "level") {
    book.seq = message.seq;
    setLevel(message.side === "BUY" ? book.bids : book.asks, message.price, message.qty);
    renderBook();
  } else if (message.type === "trade") {
    book.seq = Math.max(book.seq, message.seq);
    if (!trades.some((t) => t.seq === message.seq)) {
      trades = [message, ...trades].slice(0, TRADES_SHOWN);
      renderTrades();
      announce(`Trade ${message.qty} ${watched} at ${message.price}`);
    }
  }
}

async function loadTrades(symbol) {
  const recent = await call("GET", `/markets/${encodeURIComponent(symbol)}/trades?limit=${TRADES_SHOWN}`);
  const seen = new Set(trades.map((t) => t.seq));
  trades = [...trades, ...recent.filter((t) => !seen.has(t.seq))]
    .sort((a, b) => b.seq - a.seq)
    .slice(0, TRADES_SHOWN);
  renderTrades();
}

// --- candles (GET /markets/{symbol}/candles, newest last) ---------------------------------

async function pollCandles() {
  const symbol = watched;
  const interval = $("#interval").value;
  let candles = [];
  try {
    candles =
      (await call(
        "GET",
        `/markets/${encodeURIComponent(symbol)}/candles?interval=${interval}&limit=${CANDLES}`,
      )) ?? [];
  } catch (err) {
    // 404: no candles for this symbol yet (or no analytics serving them): an empty chart
    if (err.status !== 404) {
      $("#candle-note").textContent = `candles: ${err.status} ${err.message}`;
      return;
    }
  }
  if (symbol !== watched) return;
  const chart = $("#chart");
  draw(chart, candles);
  chart.dataset.candles = String(candles.length);
  if (!candles.length) {
    chart.setAttribute("aria-label", "Candle chart: no candles yet");
    $("#candle-note").textContent = "no candles yet";
    return;
  }
  const c = candles[candles.length - 1];
  const text =
    `${candles.length} candles of ${interval}; last: open ${c.open}, high ${c.high}, ` +
    `low ${c.low}, close ${c.close}, volume ${c.volume}, VWAP ${c.vwap}, ${c.trades} trades`;
  chart.setAttribute("aria-label", `Candle chart: ${text}`);
  $("#candle-note").textContent = text;
}

function scheduleCandles() {
  clearTimeout(candleTimer);
  if (!watched) return;
  candleTimer = setTimeout(async () => {
    await pollCandles();
    scheduleCandles();
  }, 1000);
}

// --- watching a symbol ---------------------------------------------------------------------

async function watch(symbol) {
  if (stopMarket) stopMarket();
  stopMarket = null;
  clearTimeout(candleTimer);
  watched = null;
  trades = [];
  book.seq = -1;
  book.bids.clear();
  book.asks.clear();
  renderBook();
  renderTrades();
  await loadTrades(symbol); // 404 for an unknown symbol, shown as the API says it
  watched = symbol;
  sessionStorage.setItem(SYMBOL, symbol);
  $("#book-symbol").textContent = symbol;
  stopMarket = stream(`/ws/market/${encodeURIComponent(symbol)}`, {
    onMessage: onMarket,
    onOpen: () => act(() => loadTrades(symbol)),
  });
  await pollCandles();
  scheduleCandles();
}

export function startTrading() {
  stopOrders = stream("/ws/orders", {
    withKey: true,
    onMessage: (message) => {
      announce(describe(message));
      refreshSoon();
    },
    onOpen: refreshSoon,
  });
  const symbol = sessionStorage.getItem(SYMBOL);
  if (symbol) {
    $("#symbol").value = symbol;
    act(() => watch(symbol));
  }
}

export function stopTrading() {
  for (const stop of [stopMarket, stopOrders]) if (stop) stop();
  stopMarket = stopOrders = null;
  clearTimeout(candleTimer);
  watched = null;
}

export function setUpTrading() {
  $("#watch").addEventListener("submit", (event) => {
    event.preventDefault();
    act(() => watch($("#symbol").value.trim()));
  });
  $("#order").addEventListener("submit", placeOrder);
  $("#order").addEventListener("change", shapeForm);
  $("#interval").addEventListener("change", () => watched && pollCandles());
  shapeForm();
}
