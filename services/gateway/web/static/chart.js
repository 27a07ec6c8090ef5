// The candle chart on a <canvas>, drawn here (no charting library). `layout` is pure: candles in,
// rectangles out, so what is drawn follows from the data alone.

import { priceUnits } from "./decimal.js";

const PAD = { left: 8, right: 72, top: 10, bottom: 22 };

// Candles (newest last) -> bodies, wicks and the price range, in canvas pixels.
export function layout(candles, width, height) {
  if (!candles.length) return null;
  const parsed = candles.map((c) => ({
    candle: c,
    open: priceUnits(c.open),
    high: priceUnits(c.high),
    low: priceUnits(c.low),
    close: priceUnits(c.close),
  }));
  let hi = parsed[0].high;
  let lo = parsed[0].low;
  let hiText = parsed[0].candle.high;
  let loText = parsed[0].candle.low;
  for (const p of parsed) {
    if (p.high > hi) [hi, hiText] = [p.high, p.candle.high];
    if (p.low < lo) [lo, loText] = [p.low, p.candle.low];
  }
  const plotW = width - PAD.left - PAD.right;
  const plotH = height - PAD.top - PAD.bottom;
  const span = hi - lo;
  // one flat range (a single price) sits mid-height
  const y = (u) =>
    span === 0n ? PAD.top + plotH / 2 : PAD.top + (Number(hi - u) / Number(span)) * plotH;
  const slot = plotW / Math.max(parsed.length, 20);
  const bodyW = Math.max(1, Math.floor(slot * 0.7));
  const bars = parsed.map((p, i) => {
    const x = PAD.left + i * slot + (slot - bodyW) / 2;
    const top = y(p.open > p.close ? p.open : p.close);
    const bottom = y(p.open > p.close ? p.close : p.open);
    return {
      up: p.close >= p.open,
      body: { x, y: top, w: bodyW, h: Math.max(1, bottom - top) },
      wick: { x: x + bodyW / 2, y1: y(p.high), y2: y(p.low) },
    };
  });
  return { bars, hiText, loText, hiY: y(hi), loY: y(lo) };
}

function clock(ms) {
  return new Date(ms).toLocaleTimeString([], { hour12: false });
}

export function draw(canvas, candles) {
  const ctx = canvas.getContext("2d");
  const { width, height } = canvas;
  ctx.clearRect(0, 0, width, height);
  const shape = layout(candles, width, height);
  if (!shape) return;
  ctx.font = "12px system-ui, sans-serif";
  ctx.strokeStyle = "#d0d4da";
  ctx.beginPath();
  ctx.moveTo(PAD.left, shape.hiY);
  ctx.lineTo(width - PAD.right, shape.hiY);
  ctx.moveTo(PAD.left, shape.loY);
  ctx.lineTo(width - PAD.right, shape.loY);
  ctx.stroke();
  ctx.fillStyle = "#222";
  ctx.fillText(shape.hiText, width - PAD.right + 6, shape.hiY + 4);
  ctx.fillText(shape.loText, width - PAD.right + 6, shape.loY + 4);
  for (const bar of shape.bars) {
    const colour = bar.up ? "#0a7a3d" : "#b3261e";
    ctx.strokeStyle = colour;
    ctx.beginPath();
    ctx.moveTo(bar.wick.x, bar.wick.y1);
    ctx.lineTo(bar.wick.x, bar.wick.y2);
    ctx.stroke();
    ctx.fillStyle = colour;
    ctx.fillRect(bar.body.x, bar.body.y, bar.body.w, bar.body.h);
  }
  ctx.fillStyle = "#555";
  ctx.fillText(clock(candles[0].start), PAD.left, height - 6);
  const last = clock(candles[candles.length - 1].start);
  ctx.fillText(last, width - PAD.right - ctx.measureText(last).width, height - 6);
}
