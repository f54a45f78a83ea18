import { test } from 'node:test';
import assert from 'node:assert/strict';
import { slugify } from '../src/slug.js';

test('slugify keeps letters and digits, one dash between words', () => {
  assert.equal(slugify('Camp Stove 2000'), 'camp-stove-2000');
  assert.equal(slugify('  --Hello,   World!--  '), 'hello-world');
});

test('slugify drops accents', () => {
  assert.equal(slugify('Crème Brûlée'), 'creme-brulee');
});
