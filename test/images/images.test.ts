// Base images: the table, the failure messages, and a real vm/debian:12 built with mmdebstrap into a
// btrfs store (through the host-wide image cache, so only the first run on a host downloads).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { access, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { isStrataError } from '../../src/errors.js';
import { ensureImage, imageSnapshotName, mmdebstrapArgs } from '../../src/images/ensure.js';
import { bundledImageTablePath, findRecipe, loadImageTable, recipeHash } from '../../src/images/table.js';
import { openBtrfsStore } from '../../src/snapshot/btrfs.js';
import { openDirStore } from '../../src/snapshot/dirstore.js';
import { snapshotKey, type SnapshotStore } from '../../src/snapshot/types.js';
import { exec } from '../../src/util/exec.js';
import { requireRoot } from '../helpers/env.js';

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'strata-images-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function rejectsWithImageError(promise: Promise<unknown>, ...fragments: string[]): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(isStrataError(error), `expected a StrataError, got ${String(error)}`);
    assert.equal(error.code, 'STRATA_IMAGE');
    for (const fragment of fragments) assert.ok(error.message.includes(fragment), `"${error.message}" lacks "${fragment}"`);
    return true;
  });
}

/** An HTTP server of our own answering 404 to everything. */
async function notFoundServer(t: TestContext): Promise<string> {
  const server: Server = createServer((_request, response) => {
    response.statusCode = 404;
    response.end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const address = server.address();
  assert.ok(address && typeof address === 'object');
  return `http://127.0.0.1:${address.port}/debian`;
}

/** A port on which nothing listens (a server of ours, opened then closed). */
async function closedPortUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  assert.ok(address && typeof address === 'object');
  return `http://127.0.0.1:${address.port}/debian`;
}

async function writeTable(dir: string, mirror: string): Promise<string> {
  const path = join(dir, 'images.json');
  await writeFile(
    path,
    JSON.stringify({ 'vm/test:1': { kind: 'mmdebstrap', suite: 'bookworm', mirror, include: ['bash'] } }),
  );
  return path;
}

test('the bundled table parses and every recipe gets its own image name', async () => {
  const table = await loadImageTable(bundledImageTablePath);
  for (const image of ['vm/debian:12', 'vm/ubuntu:18.04', 'vm/ubuntu:20.04', 'vm/ubuntu:22.04', 'vm/ubuntu:24.04']) {
    assert.ok(table.images.has(image), image);
  }
  const debian = findRecipe(table, 'vm/debian:12');
  assert.equal(debian.suite, 'bookworm');
  const names = new Set([...table.images].map(([image, recipe]) => imageSnapshotName(image, recipeHash(recipe))));
  assert.equal(names.size, table.images.size);
  // Any recipe change makes a new image; key order does not.
  const changed = { ...debian, include: [...debian.include, 'curl'] };
  assert.notEqual(recipeHash(changed), recipeHash(debian));
  const reordered = Object.fromEntries(Object.entries(debian).reverse()) as typeof debian;
  assert.equal(recipeHash(reordered), recipeHash(debian));
  const args = mmdebstrapArgs(debian, '/tmp/out.tar');
  assert.deepEqual(args.slice(-3), ['bookworm', '/tmp/out.tar', 'http://deb.debian.org/debian']);
  assert.ok(args.includes('--variant=minbase') && args.includes('--format=tar'));
});

test('an unknown image name is an error listing the known images and the table', async (t) => {
  const dir = await tempDir(t);
  const store = await openDirStore({ root: join(dir, 'store') });
  await rejectsWithImageError(
    ensureImage(store, 'vm/debian:99', { tablePath: bundledImageTablePath, cacheDir: join(dir, 'cache') }),
    'vm/debian:99',
    'vm/debian:12',
    'vm/ubuntu:24.04',
    bundledImageTablePath,
  );
});

test('an invalid table is an error naming the table and the problem', async (t) => {
  const dir = await tempDir(t);
  const tablePath = join(dir, 'bad.json');
  await writeFile(tablePath, JSON.stringify({ 'vm/x:1': { kind: 'mmdebstrap', suite: 'bookworm' } }));
  const store = await openDirStore({ root: join(dir, 'store') });
  await rejectsWithImageError(ensureImage(store, 'vm/x:1', { tablePath }), tablePath, 'mirror');
});

test('an unreachable mirror fails fast, naming the image, the table and the mirror', async (t) => {
  const dir = await tempDir(t);
  const store = await openDirStore({ root: join(dir, 'store') });
  const cacheDir = join(dir, 'cache');
  for (const mirror of [await notFoundServer(t), await closedPortUrl()]) {
    const tablePath = await writeTable(dir, mirror);
    await rejectsWithImageError(
      ensureImage(store, 'vm/test:1', { tablePath, cacheDir, mirrorTimeoutMs: 2000 }),
      'vm/test:1',
      tablePath,
      mirror,
      'unreachable',
    );
  }
  assert.deepEqual(await readdir(cacheDir), [], 'no tar, temp file or lock is left');
  assert.deepEqual(await store.list(), []);
});

test('a lock left by a dead builder is taken over', async (t) => {
  const dir = await tempDir(t);
  const store = await openDirStore({ root: join(dir, 'store') });
  const cacheDir = join(dir, 'cache');
  const tablePath = await writeTable(dir, await notFoundServer(t));
  const table = await loadImageTable(tablePath);
  const hash = recipeHash(findRecipe(table, 'vm/test:1'));
  const dead = spawnSync('true').pid; // exited: its pid names no live process (barring reuse)
  await mkdir(cacheDir);
  await writeFile(join(cacheDir, `${hash}.tar.lock`), String(dead));
  // Taking the lock over means reaching the mirror check (which fails) instead of waiting forever.
  await rejectsWithImageError(ensureImage(store, 'vm/test:1', { tablePath, cacheDir }), 'unreachable');
  assert.deepEqual(await readdir(cacheDir), []);
});

test('vm/ubuntu:18.04 fails with a clear error when this host cannot build it', async (t) => {
  const table = await loadImageTable(bundledImageTablePath);
  const keyring = findRecipe(table, 'vm/ubuntu:18.04').keyring;
  if (keyring && (await access(keyring).then(() => true, () => false))) {
    t.skip(`${keyring} is installed: this host can build Ubuntu images`);
    return;
  }
  const dir = await tempDir(t);
  const store = await openDirStore({ root: join(dir, 'store') });
  await rejectsWithImageError(
    ensureImage(store, 'vm/ubuntu:18.04', { tablePath: bundledImageTablePath, cacheDir: join(dir, 'cache') }),
    'vm/ubuntu:18.04',
    bundledImageTablePath,
  );
});

/** A btrfs store in a temporary directory, closed (unmounted, detached) after the test. */
async function btrfsStore(t: TestContext): Promise<SnapshotStore> {
  const dir = await mkdtemp(join(tmpdir(), 'strata-images-btrfs-'));
  const handle: { store?: SnapshotStore } = {};
  t.after(async () => {
    try {
      await handle.store?.close();
    } finally {
      if ((await exec('mountpoint', ['-q', join(dir, 'store')])).exitCode === 0) await exec('umount', ['-l', join(dir, 'store')]);
      await rm(dir, { recursive: true, force: true });
    }
  });
  handle.store = await openBtrfsStore({ root: join(dir, 'store'), imageSizeBytes: 8 * 1024 ** 3 });
  return handle.store;
}

test('vm/debian:12 builds (or comes from the host cache) into a usable machine root', { timeout: 15 * 60_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const store = await btrfsStore(t);
  const phases: string[] = [];
  const first = await ensureImage(store, 'vm/debian:12', { onProgress: (p) => phases.push(p.phase) });
  t.diagnostic(`image ${first.snapshot} from ${first.source}; phases ${phases.join(',')}`);
  assert.notEqual(first.source, 'store');
  assert.ok(phases.includes('extract') && phases.includes('commit'));
  const info = await store.stat(first.snapshot);
  assert.equal(info.kind, 'committed');
  assert.deepEqual((await store.list()).map((s) => s.id), [first.snapshot], 'the build key is gone');

  const root = store.path(first.snapshot);
  await access(join(root, 'bin', 'bash'));
  await access(join(root, 'usr', 'bin', 'apt-get'));
  assert.match(await readFile(join(root, 'etc', 'os-release'), 'utf8'), /VERSION_CODENAME=bookworm/);
  assert.match(await readFile(join(root, 'etc', 'resolv.conf'), 'utf8'), /^nameserver /m);
  assert.equal((await readFile(join(root, 'etc', 'hostname'), 'utf8')).trim(), 'strata');
  assert.match(await readFile(join(root, 'etc', 'hosts'), 'utf8'), /localhost/);
  const sources = await readFile(join(root, 'etc', 'apt', 'sources.list'), 'utf8').catch(() => '');
  assert.match(sources, /deb\.debian\.org\/debian\s+bookworm\s+main/);

  const again = await ensureImage(store, 'vm/debian:12');
  assert.equal(again.source, 'store');
  assert.equal(again.snapshot, first.snapshot);

  // The image is a working root: bash runs in it (chroot, no network needed).
  const clone = await store.clone(first.snapshot, snapshotKey('machine'));
  const run = await exec('chroot', [clone.path, '/bin/bash', '-c', 'echo ok from $(cat /etc/debian_version | cut -d. -f1)'], { timeoutMs: 30_000 });
  assert.equal(run.exitCode, 0, run.stderr);
  assert.equal(run.stdout.trim(), 'ok from 12');
  await store.remove(snapshotKey('machine'));
});

test('concurrent ensureImage calls on one store agree on one snapshot', { timeout: 15 * 60_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const store = await btrfsStore(t);
  const [a, b] = await Promise.all([ensureImage(store, 'vm/debian:12'), ensureImage(store, 'vm/debian:12')]);
  assert.equal(a.snapshot, b.snapshot);
  assert.deepEqual((await store.list()).map((s) => s.id), [a.snapshot]);
});
