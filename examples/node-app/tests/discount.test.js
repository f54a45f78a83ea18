import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dequal } from 'dequal';
import { addItem, applyCode, createCart, total } from '../src/cart.js';

const cart = addItem(addItem(createCart(), 'torch', 24.5), 'stove', 59);

test('codes apply in order and only once', () => {
  const discounted = applyCode(applyCode(applyCode(cart, 'TENOFF'), 'FIVER'), 'TENOFF');
  assert.ok(dequal(discounted.codes, ['TENOFF', 'FIVER']));
  assert.equal(total(discounted), 7015); // 8350 - 835 - 500
});

test('a discount never makes the total negative', () => {
  const small = applyCode(addItem(createCart(), 'sticker', 1), 'FIVER');
  assert.equal(total(small), 0);
  assert.throws(() => applyCode(cart, 'FREE'), /unknown discount code FREE/);
});
