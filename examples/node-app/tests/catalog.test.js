import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { byTag, loadCatalog } from '../src/catalog.js';

const catalog = loadCatalog(fileURLToPath(new URL('./fixtures/catalog.json', import.meta.url)));

test('every product gets a slug', () => {
  assert.deepEqual(catalog.map((p) => p.slug), ['creme-brulee-torch', 'cast-iron-pan-28-cm', 'camp-stove']);
});

test('byTag finds products by tag', () => {
  assert.deepEqual(byTag(catalog, 'fire'), ['creme-brulee-torch', 'camp-stove']);
});
