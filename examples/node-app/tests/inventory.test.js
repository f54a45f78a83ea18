import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dequal } from 'dequal';
import { createInventory, lowStock, reserve } from '../src/inventory.js';

test('reservations take stock and fail when it is short', () => {
  const stock = createInventory({ pan: 3, torch: 1 });
  assert.ok(dequal(reserve(stock, 'pan', 2), { ok: true, left: 1 }));
  assert.ok(dequal(reserve(stock, 'pan', 2), { ok: false, missing: 1 }));
  assert.ok(dequal(reserve(stock, 'stove', 1), { ok: false, missing: 1 }));
});

test('lowStock lists SKUs at or below the threshold, sorted', () => {
  assert.deepEqual(lowStock(createInventory({ pan: 3, torch: 1, stove: 0 }), 1), ['stove', 'torch']);
});
