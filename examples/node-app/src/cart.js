import { cents } from './money.js';

// A cart: lines of (sku, unit price in cents, quantity), and discount codes.
export function createCart() {
  return { lines: [], codes: [] };
}

export function addItem(cart, sku, price, quantity = 1) {
  if (!Number.isInteger(quantity) || quantity < 1) throw new RangeError(`bad quantity for ${sku}: ${quantity}`);
  const existing = cart.lines.find((line) => line.sku === sku);
  if (existing) return { ...cart, lines: cart.lines.map((line) => (line === existing ? { ...line, quantity: line.quantity + quantity } : line)) };
  return { ...cart, lines: [...cart.lines, { sku, unit: cents(price), quantity }] };
}

export function subtotal(cart) {
  return cart.lines.reduce((sum, line) => sum + line.unit * line.quantity, 0);
}

const DISCOUNTS = {
  TENOFF: (amount) => Math.round(amount * 0.1),
  FIVER: (amount) => Math.min(amount, 500),
};

export function applyCode(cart, code) {
  if (!(code in DISCOUNTS)) throw new Error(`unknown discount code ${code}`);
  if (cart.codes.includes(code)) return cart;
  return { ...cart, codes: [...cart.codes, code] };
}

/** Subtotal minus each code's discount, in the order applied, never below zero. */
export function total(cart) {
  return cart.codes.reduce((amount, code) => Math.max(0, amount - DISCOUNTS[code](amount)), subtotal(cart));
}
