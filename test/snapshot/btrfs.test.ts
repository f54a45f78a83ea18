// The btrfs store passes the SnapshotStore conformance suite on a loop-mounted image in a temporary
// directory, plus the image lifecycle: create, mount, close (unmount + detach), remount, reuse of an
// already attached loop device, and use of a root that is already on btrfs.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { openBtrfsStore, isOnBtrfs } from '../../src/snapshot/btrfs.js';
import { snapshotKey as key, snapshotName as name, type SnapshotStore } from '../../src/snapshot/types.js';
import { exec, execOrThrow } from '../../src/util/exec.js';
import { requireRoot } from '../helpers/env.js';
import { snapshotStoreConformance } from './conformance.js';

const imageSizeBytes = 1024 ** 3; // sparse: takes only what is written

/** Unmounts anything mounted under `dir` and detaches loop devices backed by files under it. */
async function forceCleanup(dir: string): Promise<void> {
  const mounts = await readFile('/proc/self/mounts', 'utf8');
  const targets = mounts
    .split('\n')
    .map((line) => line.split(' ')[1]?.replace(/\\040/g, ' '))
    .filter((target): target is string => target !== undefined && target.startsWith(`${dir}/`))
    .reverse();
  for (const target of targets) await exec('umount', ['-l', target]);
  const loops = await exec('losetup', ['--noheadings', '--output', 'NAME,BACK-FILE', '--list']);
  for (const line of loops.stdout.split('\n')) {
    const [device, backing] = line.trim().split(/\s+/);
    if (device && backing?.startsWith(`${dir}/`)) await exec('losetup', ['--detach', device]);
  }
}

snapshotStoreConformance({
  label: 'btrfs',
  guard: requireRoot,
  open: (root) => openBtrfsStore({ root, imageSizeBytes }),
  simulateInterruptedCommit: async (_store, activePath, workPath) => {
    await execOrThrow('btrfs', ['-q', 'subvolume', 'snapshot', '-r', activePath, workPath]);
  },
  forceCleanup,
});

/** A temporary directory; stores passed to `closeLater` are closed (newest first) before it is removed. */
async function tempDir(t: TestContext): Promise<{ dir: string; closeLater: (store: SnapshotStore) => SnapshotStore }> {
  const dir = await mkdtemp(join(tmpdir(), 'strata-btrfs-'));
  const stores: SnapshotStore[] = [];
  t.after(async () => {
    try {
      for (const store of stores.reverse()) await store.close();
    } finally {
      await forceCleanup(dir);
      await rm(dir, { recursive: true, force: true });
    }
  });
  return { dir, closeLater: (store) => (stores.push(store), store) };
}

async function loopDevicesOf(image: string): Promise<string[]> {
  const result = await execOrThrow('losetup', ['--noheadings', '--output', 'NAME', '--associated', image]);
  return result.stdout.split('\n').filter((line) => line.trim() !== '');
}

async function isMountPoint(path: string): Promise<boolean> {
  return (await exec('mountpoint', ['-q', path])).exitCode === 0;
}

test('btrfs: creates a sparse image, mounts it, and close unmounts and detaches it', async (t) => {
  if (!requireRoot(t)) return;
  const { dir } = await tempDir(t);
  const root = join(dir, 'store');
  const store = await openBtrfsStore({ root, imageSizeBytes });
  const image = `${root}.img`;
  const imageStats = await stat(image);
  assert.equal(imageStats.size, imageSizeBytes);
  assert.ok(imageStats.blocks * 512 < imageSizeBytes / 4, 'the image file is sparse');
  assert.equal(await isOnBtrfs(root), true);
  assert.equal(await isMountPoint(root), true);
  assert.equal((await loopDevicesOf(image)).length, 1);
  await store.close();
  assert.equal(await isMountPoint(root), false);
  assert.deepEqual(await loopDevicesOf(image), []);
});

test('btrfs: reopening reuses a loop device still attached to the image', async (t) => {
  if (!requireRoot(t)) return;
  const { dir, closeLater } = await tempDir(t);
  const root = join(dir, 'store');
  const first = await openBtrfsStore({ root, imageSizeBytes });
  const { path } = await first.prepare(key('k'));
  await writeFile(join(path, 'f'), 'survives');
  await first.commit(key('k'), name('n'));
  await first.close();
  // As after a crash: the image is attached to a loop device but not mounted.
  const attached = (await execOrThrow('losetup', ['--find', '--show', `${root}.img`])).stdout.trim();
  const second = closeLater(await openBtrfsStore({ root, imageSizeBytes }));
  assert.deepEqual(await loopDevicesOf(`${root}.img`), [attached]);
  assert.equal(await readFile(join(second.path(name('n')), 'f'), 'utf8'), 'survives');
});

test('btrfs: a root already on btrfs is used directly and close leaves its mount alone', async (t) => {
  if (!requireRoot(t)) return;
  const { dir, closeLater } = await tempDir(t);
  // The outer store mounts a btrfs image at dir/outer; the inner store lives on that btrfs.
  closeLater(await openBtrfsStore({ root: join(dir, 'outer'), imageSizeBytes }));
  const innerRoot = join(dir, 'outer', 'nested-store');
  const inner = await openBtrfsStore({ root: innerRoot, imageSizeBytes });
  await inner.prepare(key('k'));
  await inner.commit(key('k'), name('n'));
  assert.equal((await inner.stat(name('n'))).kind, 'committed');
  await inner.close();
  assert.equal(await isMountPoint(join(dir, 'outer')), true);
  await assert.rejects(stat(`${innerRoot}.img`), { code: 'ENOENT' });
  // Committed snapshots are really read-only on btrfs.
  await assert.rejects(writeFile(join(inner.path(name('n')), 'x'), 'x'), { code: 'EROFS' });
});
