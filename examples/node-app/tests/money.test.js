import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cents, formatCents } from '../src/money.js';

test('cents rounds to whole cents', () => {
  assert.equal(cents(0.1 + 0.2), 30);
  assert.equal(cents(19.999), 2000);
  assert.throws(() => cents(Number.NaN), TypeError);
});

test('formatCents pads and signs', () => {
  assert.equal(formatCents(1205), '12.05 EUR');
  assert.equal(formatCents(-7, 'USD'), '-0.07 USD');
});
