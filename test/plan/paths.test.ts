import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ancestorsOf,
  containsPath,
  hasPathUnder,
  mapThroughCopy,
  normalizeCopy,
  onSameLine,
  parentOf,
  toSortedPaths,
} from '../../src/plan/paths.js';

test('mapThroughCopy maps the copied path and what is under it, nothing else', () => {
  const root = { source: '', dest: '/root/app' };
  assert.equal(mapThroughCopy(root, 'src/a.ts'), '/root/app/src/a.ts');
  assert.equal(mapThroughCopy(root, ''), '/root/app');
  const sub = { source: 'web/src', dest: '/srv/src' };
  assert.equal(mapThroughCopy(sub, 'web/src'), '/srv/src');
  assert.equal(mapThroughCopy(sub, 'web/src/x/y.ts'), '/srv/src/x/y.ts');
  assert.equal(mapThroughCopy(sub, 'web/srcx/y.ts'), null);
  assert.equal(mapThroughCopy(sub, 'web'), null);
  assert.equal(mapThroughCopy({ source: 'etc', dest: '/' }, 'etc/hosts'), '/hosts');
});

test('normalizeCopy canonicalizes sources and destinations', () => {
  assert.deepEqual(normalizeCopy({ source: './', dest: '/root/app/' }), { source: '', dest: '/root/app' });
  assert.deepEqual(normalizeCopy({ source: './web/src/', dest: '//srv//src' }), { source: 'web/src', dest: '/srv/src' });
  assert.deepEqual(normalizeCopy({ source: '.', dest: '/' }), { source: '', dest: '/' });
});

test('parents and ancestors of machine paths', () => {
  assert.equal(parentOf('/a/b'), '/a');
  assert.equal(parentOf('/a'), '/');
  assert.equal(parentOf('/'), null);
  assert.deepEqual([...ancestorsOf('/a/b/c')], ['/a/b', '/a', '/']);
  assert.ok(onSameLine('/a/b', '/a'));
  assert.ok(onSameLine('/a', '/a/b'));
  assert.ok(!onSameLine('/a/b', '/a/bc'));
});

test('sorted path lookups: membership and "anything under"', () => {
  const sorted = toSortedPaths(['/a', '/a/b', '/a/b/c', '/ab', '/z']);
  assert.ok(containsPath(sorted, '/a/b'));
  assert.ok(!containsPath(sorted, '/a/c'));
  assert.ok(hasPathUnder(sorted, '/a'));
  assert.ok(hasPathUnder(sorted, '/a/b'));
  assert.ok(!hasPathUnder(sorted, '/a/b/c'));
  assert.ok(!hasPathUnder(sorted, '/z'));
  assert.ok(!hasPathUnder(toSortedPaths(['/ab', '/a-b']), '/a'));
  assert.ok(hasPathUnder(toSortedPaths(['/', '/x']), '/'));
  assert.ok(!hasPathUnder(toSortedPaths(['/']), '/'));
});

test('toSortedPaths keeps a canonical sorted list as is and repairs anything else', () => {
  const good = ['/a', '/b/c'];
  assert.equal(toSortedPaths(good), good);
  assert.deepEqual(toSortedPaths(['/b', '/a/', '//c']), ['/a', '/b', '/c']);
});
