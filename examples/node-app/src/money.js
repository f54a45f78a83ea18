// Amounts are integer cents: no floating-point drift when adding prices.
export function cents(amount) {
  if (typeof amount !== 'number' || !Number.isFinite(amount)) throw new TypeError(`not an amount: ${amount}`);
  return Math.round(amount * 100);
}

export function formatCents(value, currency = 'EUR') {
  const sign = value < 0 ? '-' : '';
  const abs = Math.abs(value);
  return `${sign}${Math.floor(abs / 100)}.${String(abs % 100).padStart(2, '0')} ${currency}`;
}

/** Splits `total` into `parts` integer shares that add up to it exactly (the first ones get the rest). */
export function allocate(total, parts) {
  if (!Number.isInteger(parts) || parts < 1) throw new RangeError(`cannot split into ${parts} parts`);
  const base = Math.floor(total / parts);
  const rest = total - base * parts;
  return Array.from({ length: parts }, (_, i) => base + (i < rest ? 1 : 0));
}
