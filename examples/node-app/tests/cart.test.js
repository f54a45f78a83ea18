import { test } from 'node:test';
import assert from 'node:assert/strict';
import { addItem, createCart, subtotal } from '../src/cart.js';

test('adding the same SKU twice adds to its quantity', () => {
  let cart = addItem(createCart(), 'pan', 39.9);
  cart = addItem(cart, 'pan', 39.9, 2);
  assert.equal(cart.lines.length, 1);
  assert.equal(cart.lines[0].quantity, 3);
  assert.equal(subtotal(cart), 11970);
});

test('a quantity below one is refused', () => {
  assert.throws(() => addItem(createCart(), 'pan', 39.9, 0), /bad quantity for pan/);
});
