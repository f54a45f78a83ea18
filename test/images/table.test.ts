// The image table: the site's table merged over the built-in one, derived recipes, names beyond vm/,
// and errors that name both files. Also the pieces of the Node.js recipes that need no network.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { isStrataError } from '../../src/errors.js';
import { alwaysIncluded, mmdebstrapArgs } from '../../src/images/ensure.js';
import { npmSpecFor, satisfiesRange } from '../../src/images/node.js';
import { bundledImageTablePath, findRecipe, loadImageTable, mergeImageTables, parseTableText, recipeHash } from '../../src/images/table.js';

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'strata-table-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function assertImageError(fn: () => unknown, ...fragments: string[]): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(isStrataError(error), String(error));
    assert.equal(error.code, 'STRATA_IMAGE');
    for (const fragment of fragments) assert.ok(error.message.includes(fragment), `"${error.message}" lacks "${fragment}"`);
    return true;
  });
}

const debian = { kind: 'mmdebstrap', suite: 'bookworm', mirror: 'http://deb.debian.org/debian', include: ['ca-certificates'] };

test('the bundled table has the vendor images, resolved onto vm/debian:12', async () => {
  const table = await loadImageTable(bundledImageTablePath, null);
  const base = findRecipe(table, 'vm/debian:12');
  for (const major of ['16', '18', '20', '22']) {
    const node = findRecipe(table, `webapp.io/node:${major}`);
    assert.equal(node.suite, base.suite);
    assert.equal(node.mirror, base.mirror);
    assert.deepEqual(node.node, { version: major });
    assert.ok(base.include.every((p) => node.include.includes(p)), 'the base packages are kept');
  }
  const docker = findRecipe(table, 'webapp.io/docker:20.10');
  for (const pkg of ['docker.io', 'docker-compose', 'uidmap']) assert.ok(docker.include.includes(pkg), pkg);
  assert.equal(docker.node, undefined);
  // Every entry is an image of its own.
  assert.equal(new Set([...table.images.values()].map(recipeHash)).size, table.images.size);
});

test('site entries win over built-in ones, and derived images follow a site\'s base', () => {
  const builtIn = parseTableText(
    JSON.stringify({
      'vm/debian:12': debian,
      'vm/ubuntu:18.04': { ...debian, suite: 'bionic', mirror: 'http://archive.ubuntu.com/ubuntu' },
      'webapp.io/node:18': { kind: 'derived', base: 'vm/debian:12', include: ['git'], node: { version: '18' } },
    }),
    'builtin.json',
  );
  const site = parseTableText(
    JSON.stringify({
      'vm/debian:12': { ...debian, mirror: 'http://mirror.example/debian' },
      // A host without the Ubuntu archive: Debian with what Ubuntu VMs had.
      'vm/ubuntu:18.04': { kind: 'derived', base: 'vm/debian:12', include: ['curl'] },
      'my-org/base:v1.0.0': { kind: 'derived', base: 'webapp.io/node:18', include: ['jq'] },
    }),
    'site.json',
  );
  const images = mergeImageTables(builtIn, site, 'builtin.json + site.json');
  assert.equal(images.get('vm/debian:12')?.mirror, 'http://mirror.example/debian');
  assert.equal(images.get('vm/ubuntu:18.04')?.suite, 'bookworm');
  assert.deepEqual(images.get('vm/ubuntu:18.04')?.include, ['ca-certificates', 'curl']);
  assert.equal(images.get('webapp.io/node:18')?.mirror, 'http://mirror.example/debian');
  const chained = images.get('my-org/base:v1.0.0');
  assert.deepEqual(chained?.include, ['ca-certificates', 'git', 'jq']);
  assert.deepEqual(chained?.node, { version: '18' });
  // Without a site table the built-in entries stand.
  assert.equal(mergeImageTables(builtIn, undefined, 'builtin.json').get('vm/debian:12')?.mirror, debian.mirror);
});

test('an invalid entry is an error naming both files and the entry', async (t) => {
  const dir = await tempDir(t);
  const builtIn = join(dir, 'images.json');
  const site = join(dir, 'site.json');
  await writeFile(builtIn, JSON.stringify({ 'vm/debian:12': debian }));

  await writeFile(site, JSON.stringify({ 'vm/ubuntu:18.04': { kind: 'derived', base: 'vm/debian:12', include: ['Not A Package'] } }));
  await assert.rejects(loadImageTable(builtIn, site), (error: unknown) => {
    assert.ok(isStrataError(error));
    for (const fragment of [builtIn, site, 'vm/ubuntu:18.04.include.0', 'Debian package']) assert.ok(error.message.includes(fragment), `"${error.message}" lacks "${fragment}"`);
    return true;
  });
  await writeFile(site, JSON.stringify({ 'webapp.io/node:18': { kind: 'derived', base: 'vm/alpine:3' } }));
  await assert.rejects(loadImageTable(builtIn, site), (error: unknown) => isStrataError(error) && [builtIn, site, 'vm/alpine:3', 'webapp.io/node:18'].every((f) => error.message.includes(f)));
  await writeFile(site, JSON.stringify({ 'Not An Image': debian }));
  await assert.rejects(loadImageTable(builtIn, site), (error: unknown) => isStrataError(error) && [site, 'Not An Image'].every((f) => error.message.includes(f)));
  await writeFile(site, '{ oops');
  await assert.rejects(loadImageTable(builtIn, site), (error: unknown) => isStrataError(error) && [builtIn, site, 'not JSON'].every((f) => error.message.includes(f)));

  // A missing site file is no error; a merged table's messages name both files.
  const plain = await loadImageTable(builtIn, join(dir, 'absent.json'));
  assert.equal(plain.path, builtIn);
  await writeFile(site, JSON.stringify({ 'vm/extra:1': { kind: 'derived', base: 'vm/debian:12' } }));
  const merged = await loadImageTable(builtIn, site);
  assertImageError(() => findRecipe(merged, 'vm/nope:1'), 'vm/nope:1', 'vm/extra:1', builtIn, site);
});

test('cycles among derived images are refused', () => {
  const entries = parseTableText(JSON.stringify({ 'a/x:1': { kind: 'derived', base: 'a/y:1' }, 'a/y:1': { kind: 'derived', base: 'a/x:1' } }), 't.json');
  assertImageError(() => mergeImageTables(entries, undefined, 't.json'), 'cycle', 'a/x:1', 'a/y:1');
});

test('STRATA_IMAGE_TABLE still replaces the built-in table', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'own.json');
  await writeFile(path, JSON.stringify({ 'vm/own:1': debian }));
  const { imageTablePath } = await import('../../src/images/table.js');
  const saved = process.env.STRATA_IMAGE_TABLE;
  process.env.STRATA_IMAGE_TABLE = path;
  t.after(() => (saved === undefined ? delete process.env.STRATA_IMAGE_TABLE : (process.env.STRATA_IMAGE_TABLE = saved)));
  const table = await loadImageTable(imageTablePath(), null);
  assert.deepEqual([...table.images.keys()], ['vm/own:1']);
});

test('every image gets sudo, apt that answers yes, passwordless sudo for USER\'s users, and the CA mountpoint', () => {
  const args = mmdebstrapArgs({ ...debian, variant: 'minbase', components: ['main'] } as Parameters<typeof mmdebstrapArgs>[0], '/tmp/out.tar');
  const include = args.find((a) => a.startsWith('--include='));
  for (const pkg of [...alwaysIncluded, 'ca-certificates']) assert.ok(include?.split(/[=,]/).includes(pkg), pkg);
  const hooks = args.filter((a) => a.startsWith('--customize-hook=')).join('\n');
  assert.match(hooks, /APT::Get::Assume-Yes "true";/);
  assert.match(hooks, /%root ALL=\(ALL:ALL\) NOPASSWD: ALL/);
  assert.match(hooks, /env_keep \+= "DEBIAN_FRONTEND TERM NODE_EXTRA_CA_CERTS/);
  assert.match(hooks, /etc\/strata\/host-ca/);
});

test('Node.js recipes: npm of the Node era, engines ranges as npm writes them', () => {
  assert.equal(npmSpecFor({ version: '16' }), '8');
  assert.equal(npmSpecFor({ version: '18.20.8' }), '10');
  assert.equal(npmSpecFor({ version: '24' }), '11');
  assert.equal(npmSpecFor({ version: '18', npm: '9' }), '9');
  assertImageError(() => npmSpecFor({ version: '7' }), 'Node.js 7');
  assert.ok(satisfiesRange('18.20.8', '^18.17.0 || >=20.5.0'));
  assert.ok(!satisfiesRange('18.16.1', '^18.17.0 || >=20.5.0'));
  assert.ok(!satisfiesRange('16.20.2', '^18.17.0 || >=20.5.0'));
  assert.ok(satisfiesRange('16.20.2', '^12.13.0 || ^14.15.0 || >=16'));
  assert.ok(satisfiesRange('22.12.0', '^20.17.0 || >=22.9.0'));
  assert.ok(!satisfiesRange('20.11.0', '^20.17.0 || >=22.9.0'));
  assert.ok(satisfiesRange('14.21.3', '>= 14.17.0'.replace('>= ', '>=')));
});
