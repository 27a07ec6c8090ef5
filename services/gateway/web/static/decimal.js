// Amounts stay the API's decimal strings; these turn one into exact integer units (BigInt) for
// comparing and ordering, never into a float. Only the chart's pixel positions are floats.

export function units(text, scale) {
  const match = /^(-?)(\d+)(?:\.(\d+))?$/.exec(String(text));
  if (!match) return null;
  const [, sign, whole, fraction = ""] = match;
  const digits = (fraction + "0".repeat(scale)).slice(0, scale);
  const value = BigInt(whole) * 10n ** BigInt(scale) + BigInt(digits || "0");
  return sign ? -value : value;
}

export const PRICE_SCALE = 4; // services/common/money.py: price 0.0001

export function priceUnits(text) {
  return units(text, PRICE_SCALE);
}

export function compareUnits(a, b) {
  return a < b ? -1 : a > b ? 1 : 0;
}
