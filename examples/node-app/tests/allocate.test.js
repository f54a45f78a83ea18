import { test } from 'node:test';
import assert from 'node:assert/strict';
import { allocate } from '../src/money.js';

test('allocate splits exactly, the first shares get the rest', () => {
  assert.deepEqual(allocate(1000, 3), [334, 333, 333]);
  assert.deepEqual(allocate(2, 4), [1, 1, 0, 0]);
});

test('allocate never loses a cent', () => {
  for (const [total, parts] of [[99, 7], [100_001, 13], [5, 5]]) {
    assert.equal(allocate(total, parts).reduce((a, b) => a + b, 0), total);
  }
  assert.throws(() => allocate(10, 0), RangeError);
});
