// Snapshot transfer between two (or three) independent btrfs stores, each in its own loop-mounted image
// in a temporary directory: full and incremental streams, chains across stores and back, broken
// streams, the staging directory's life, a measurement on a ~200 MB tree, and an end-to-end run through
// the S3 object store on a real S3-compatible server.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, chown, link, lstat, mkdir, mkdtemp, open, readdir, readFile, readlink, symlink, truncate, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { PassThrough, Readable, Transform } from 'node:stream';
import { test, type TestContext } from 'node:test';
import { zstdCompressSync, zstdDecompressSync } from 'node:zlib';
import { isStrataError } from '../../src/errors.js';
import { createS3ObjectStore } from '../../src/objects/s3.js';
import { openBtrfsStore, subvolumeFacts } from '../../src/snapshot/btrfs.js';
import { receiveSnapshot, sendSnapshot } from '../../src/snapshot/transfer.js';
import { snapshotKey as key, snapshotName as name, type BtrfsSnapshotStore } from '../../src/snapshot/types.js';
import { execOrThrow } from '../../src/util/exec.js';
import { requireRoot } from '../helpers/env.js';
import { startFaultProxy } from '../helpers/faultProxy.js';
import { startS3Server } from '../helpers/s3Server.js';
import { removeStore } from '../helpers/store.js';

const GiB = 1024 ** 3;

/** A btrfs store in a fresh temporary directory (image `snapshots.img`), closed and removed after the test, even on failure. */
async function openTempStore(t: TestContext, imageSizeBytes = 2 * GiB): Promise<{ store: BtrfsSnapshotStore; reopen: () => Promise<BtrfsSnapshotStore> }> {
  const dir = await mkdtemp(join(tmpdir(), 'strata-transfer-'));
  const root = join(dir, 'snapshots');
  const handle: { store?: BtrfsSnapshotStore } = {};
  t.after(async () => {
    try {
      await handle.store?.close();
    } finally {
      await removeStore(dir);
    }
  });
  handle.store = await openBtrfsStore({ root, imageSizeBytes });
  return {
    store: handle.store,
    reopen: async () => {
      await handle.store?.close();
      handle.store = undefined;
      handle.store = await openBtrfsStore({ root, imageSizeBytes });
      return handle.store;
    },
  };
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** The whole zstd stream of `snapshot` (incremental from `parent`). */
async function streamBytes(store: BtrfsSnapshotStore, snapshot: string, parent?: string): Promise<Buffer> {
  return readAll(await sendSnapshot(store, name(snapshot), parent === undefined ? {} : { parent: name(parent) }));
}

/** Sends `snapshot` from one store to the other, as a stream (nothing held in memory). */
async function transfer(from: BtrfsSnapshotStore, to: BtrfsSnapshotStore, snapshot: string, parent?: string): Promise<void> {
  const stream = await sendSnapshot(from, name(snapshot), parent === undefined ? {} : { parent: name(parent) });
  await receiveSnapshot(to, name(snapshot), stream, parent === undefined ? {} : { parent: name(parent) });
}

// --- trees -----------------------------------------------------------------------------------------

const xattrScript = `
import json, os, sys
command, root = sys.argv[1], sys.argv[2]
if command == 'set':
    for path, name, value in json.loads(sys.argv[3]):
        os.setxattr(os.path.join(root, path), name, bytes.fromhex(value), follow_symlinks=False)
else:
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for entry in ['.'] + dirnames + filenames:
            path = os.path.normpath(os.path.join(dirpath, entry))
            names = sorted(os.listxattr(path, follow_symlinks=False))
            if names:
                found[os.path.relpath(path, root)] = {n: os.getxattr(path, n, follow_symlinks=False).hex() for n in names}
    print(json.dumps(found, sort_keys=True))
`;

// CAP_NET_RAW, permitted and effective (struct vfs_cap_data, revision 2), as Debian's ping has.
const capNetRaw = '0100000200200000000000000000000000000000';

/** A tree with what machines hold: modes (setuid too), owners, symlinks, a hard link, a fifo, a sparse file, xattrs. */
async function populate(root: string): Promise<void> {
  await mkdir(join(root, 'etc', 'conf.d'), { recursive: true });
  await mkdir(join(root, 'usr', 'bin'), { recursive: true });
  await mkdir(join(root, 'home', 'user'), { recursive: true });
  await mkdir(join(root, 'empty-dir'));
  await writeFile(join(root, 'etc', 'hostname'), 'machine\n');
  await writeFile(join(root, 'etc', 'conf.d', 'a name with spaces and ü'), 'unicode\n');
  await writeFile(join(root, 'etc', 'shadow'), 'root:*:19000:0:99999:7:::\n');
  await chmod(join(root, 'etc', 'shadow'), 0o640);
  await chown(join(root, 'etc', 'shadow'), 0, 42);
  await writeFile(join(root, 'usr', 'bin', 'tool'), '#!/bin/sh\necho tool\n');
  await chmod(join(root, 'usr', 'bin', 'tool'), 0o755);
  await writeFile(join(root, 'usr', 'bin', 'ping'), randomBytes(5000));
  await writeFile(join(root, 'usr', 'bin', 'su'), randomBytes(3000));
  await chmod(join(root, 'usr', 'bin', 'su'), 0o4755);
  await writeFile(join(root, 'home', 'user', 'notes'), 'mine\n');
  await chown(join(root, 'home', 'user'), 1000, 1000);
  await chown(join(root, 'home', 'user', 'notes'), 1000, 1000);
  await writeFile(join(root, 'empty-file'), '');
  await symlink('hostname', join(root, 'etc', 'relative-link'));
  await symlink('/usr/bin/tool', join(root, 'absolute-link'));
  await symlink('/nowhere', join(root, 'dangling-link'));
  await link(join(root, 'usr', 'bin', 'tool'), join(root, 'usr', 'bin', 'tool-hardlink'));
  await execOrThrow('mkfifo', [join(root, 'fifo')]);
  await writeFile(join(root, 'sparse'), 'start');
  await truncate(join(root, 'sparse'), 64 * 1024 * 1024);
  await writeFile(join(root, 'big'), randomBytes(3 * 1024 * 1024));
  await setXattrs(root, [
    ['usr/bin/ping', 'security.capability', capNetRaw],
    ['etc/hostname', 'user.origin', Buffer.from('test').toString('hex')],
    ['etc', 'user.dir-attr', 'ff00ff'],
  ]);
}

async function setXattrs(root: string, attrs: Array<[string, string, string]>): Promise<void> {
  await execOrThrow('python3', ['-c', xattrScript, 'set', root, JSON.stringify(attrs)]);
}

/** Everything about a tree that a transfer must keep: per path its type, mode, owner, size, content hash or link target, mtime, hard-link group; and xattrs. */
async function manifest(root: string): Promise<{ entries: string[]; xattrs: unknown }> {
  const entries: string[] = [];
  const firstPathOfInode = new Map<bigint, string>();
  const visit = async (dir: string): Promise<void> => {
    for (const entry of (await readdir(dir)).sort()) {
      const path = join(dir, entry);
      const rel = relative(root, path);
      const stats = await lstat(path, { bigint: true });
      const type = stats.isDirectory() ? 'dir' : stats.isSymbolicLink() ? 'link' : stats.isFIFO() ? 'fifo' : stats.isFile() ? 'file' : 'other';
      const content =
        type === 'file' ? createHash('sha256').update(await readFile(path)).digest('hex').slice(0, 16) : type === 'link' ? await readlink(path) : '';
      const group = stats.nlink > 1n && type !== 'dir' ? firstPathOfInode.get(stats.ino) ?? (firstPathOfInode.set(stats.ino, rel), rel) : '';
      entries.push(`${rel} ${type} ${(Number(stats.mode) & 0o7777).toString(8)} ${stats.uid}:${stats.gid} ${stats.size} ${content} ${stats.mtimeNs} ${group}`);
      if (type === 'dir') await visit(path);
    }
  };
  await visit(root);
  const { stdout } = await execOrThrow('python3', ['-c', xattrScript, 'get', root]);
  return { entries, xattrs: JSON.parse(stdout) };
}

async function assertSameTree(a: string, b: string): Promise<void> {
  assert.deepEqual(await manifest(b), await manifest(a));
}

/** Makes committed `snapshot` in `store`: from `parent` (or empty), changed by `change`. Returns the active key's path. */
async function commitSnapshot(
  store: BtrfsSnapshotStore,
  snapshot: string,
  parent: string | undefined,
  change: (root: string) => Promise<void>,
): Promise<void> {
  const work = key(`work-${snapshot}`);
  const { path } = parent === undefined ? await store.prepare(work) : await store.clone(name(parent), work);
  await change(path);
  await store.commit(work, name(snapshot));
  await store.remove(work);
}

/** What a failed receive must leave: the same snapshots as before, an empty scratch area, no extra subvolume. */
async function storeState(store: BtrfsSnapshotStore): Promise<{ ids: string[]; tmp: string[]; subvolumes: number }> {
  const { stdout } = await execOrThrow('btrfs', ['subvolume', 'list', store.root]);
  return {
    ids: (await store.list()).map((info) => `${info.kind}:${info.id}`),
    tmp: await readdir(join(store.root, 'tmp')),
    subvolumes: stdout.split('\n').filter((line) => line.trim() !== '').length,
  };
}

async function assertSnapshotError(promise: Promise<unknown>, pattern: RegExp, code = 'STRATA_SNAPSHOT'): Promise<void> {
  await assert.rejects(promise, (error) => {
    assert.ok(isStrataError(error), `expected a StrataError, got ${String(error)}`);
    assert.equal(error.code, code);
    assert.match(error.message, pattern);
    return true;
  });
}

/** Pids of processes whose command line mentions `text`. */
async function processesMentioning(text: string): Promise<number[]> {
  const found: number[] = [];
  for (const pid of (await readdir('/proc')).filter((entry) => /^\d+$/.test(entry))) {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (Number(pid) !== process.pid && cmdline.split('\0').some((arg) => arg.includes(text))) found.push(Number(pid));
  }
  return found;
}

// --- the staging seam (BtrfsSnapshotStore) ---------------------------------------------------------

test('btrfs staging: a staging directory is on the store, and removing it deletes a received (read-only) subvolume in it', async (t) => {
  if (!requireRoot(t)) return;
  const { store } = await openTempStore(t);
  await commitSnapshot(store, 'a', undefined, async (root) => writeFile(join(root, 'f'), 'x'));
  const staging = await store.makeStagingDir();
  assert.ok(staging.startsWith(`${store.root}/`));
  assert.equal((await lstat(staging)).dev, (await lstat(store.root)).dev, 'same filesystem as the snapshots');
  assert.deepEqual(await readdir(staging), []);
  await execOrThrow('sh', ['-c', `btrfs -q send "$1" | btrfs -q receive "$2"`, 'sh', store.path(name('a')), staging]);
  assert.equal((await subvolumeFacts(join(staging, 'a'))).readOnly, true);
  await store.removeStagingDir(staging);
  await assert.rejects(lstat(staging), { code: 'ENOENT' });
  assert.deepEqual((await storeState(store)).tmp, []);
});

test('btrfs staging: a staging directory left by a crash (received and half-received subvolumes) is removed by the next open', async (t) => {
  if (!requireRoot(t)) return;
  const temp = await openTempStore(t);
  await commitSnapshot(temp.store, 'a', undefined, async (root) => writeFile(join(root, 'f'), 'x'));
  const staging = await temp.store.makeStagingDir();
  await execOrThrow('sh', ['-c', `btrfs -q send "$1" | btrfs -q receive "$2"`, 'sh', temp.store.path(name('a')), staging]);
  await execOrThrow('btrfs', ['-q', 'subvolume', 'create', join(staging, 'half-received')]);
  const store = await temp.reopen();
  assert.deepEqual(await readdir(join(store.root, 'tmp')), []);
  assert.deepEqual((await store.list()).map((info) => info.id), ['a']);
});

test('btrfs staging: commitReceived makes an ordinary committed snapshot that keeps the received UUID', async (t) => {
  if (!requireRoot(t)) return;
  const { store } = await openTempStore(t);
  await commitSnapshot(store, 'base', undefined, async (root) => writeFile(join(root, 'f'), 'base'));
  await commitSnapshot(store, 'a', 'base', async (root) => writeFile(join(root, 'f'), 'a'));
  const staging = await store.makeStagingDir();
  t.after(() => store.removeStagingDir(staging));
  await execOrThrow('sh', ['-c', `btrfs -q send "$1" | btrfs -q receive "$2"`, 'sh', store.path(name('a')), staging]);
  const received = join(staging, 'a');

  const info = await store.commitReceived(received, name('copy'), name('base'));
  assert.deepEqual([info.id, info.kind, info.parent], ['copy', 'committed', 'base']);
  assert.equal(await readFile(join(store.path(name('copy')), 'f'), 'utf8'), 'a');
  const facts = await subvolumeFacts(store.path(name('copy')));
  assert.equal(facts.readOnly, true);
  assert.equal(facts.receivedUuid, (await subvolumeFacts(store.path(name('a')))).uuid);
  await assert.rejects(writeFile(join(store.path(name('copy')), 'x'), 'x'), { code: 'EROFS' });
  // No placeholder stays behind, and the name is taken now.
  assert.deepEqual((await store.list()).map((i) => i.id), ['a', 'base', 'copy']);
  await assertSnapshotError(store.commitReceived(received, name('copy')), /already exists/);
  assert.deepEqual((await store.list()).map((i) => i.id), ['a', 'base', 'copy']);
});

test('btrfs staging: commitReceived refuses what is not a finished receive', async (t) => {
  if (!requireRoot(t)) return;
  const { store } = await openTempStore(t);
  await commitSnapshot(store, 'a', undefined, async (root) => writeFile(join(root, 'f'), 'x'));
  const staging = await store.makeStagingDir();
  t.after(() => store.removeStagingDir(staging));
  await execOrThrow('btrfs', ['-q', 'subvolume', 'create', join(staging, 'writable')]);
  await execOrThrow('btrfs', ['-q', 'subvolume', 'snapshot', '-r', store.path(name('a')), join(staging, 'read-only-not-received')]);
  await writeFile(join(staging, 'plain-file'), 'x');
  await assertSnapshotError(store.commitReceived(join(staging, 'writable'), name('n1')), /not a finished receive \(read-only: false/);
  await assertSnapshotError(store.commitReceived(join(staging, 'read-only-not-received'), name('n2')), /not a finished receive .*received UUID: none/);
  await assertSnapshotError(store.commitReceived(join(staging, 'plain-file'), name('n3')), /is not a btrfs subvolume/);
  assert.deepEqual((await store.list()).map((i) => i.id), ['a']);
});

// --- transfer --------------------------------------------------------------------------------------

test('transfer: a full stream recreates the snapshot exactly (content, modes, owners, links, fifo, sparse file, xattrs, times)', async (t) => {
  if (!requireRoot(t)) return;
  const one = (await openTempStore(t)).store;
  const two = (await openTempStore(t)).store;
  await commitSnapshot(one, 'a', undefined, populate);
  await transfer(one, two, 'a');
  await assertSameTree(one.path(name('a')), two.path(name('a')));
  const info = await two.stat(name('a'));
  assert.deepEqual([info.kind, info.parent], ['committed', undefined]);
  await assert.rejects(writeFile(join(two.path(name('a')), 'x'), 'x'), { code: 'EROFS' }, 'a received snapshot is read-only');
  // It is used like any other: cloned writable, independent of the original.
  const { path } = await two.clone(name('a'), key('machine'));
  await writeFile(join(path, 'etc', 'hostname'), 'changed\n');
  assert.equal(await readFile(join(two.path(name('a')), 'etc', 'hostname'), 'utf8'), 'machine\n');
  assert.deepEqual((await storeState(two)).tmp, []);
});

test('transfer: a chain A→B→C sent incrementally to an independent store, on to a third, and a local snapshot sent back', async (t) => {
  if (!requireRoot(t)) return;
  const one = (await openTempStore(t)).store;
  const two = (await openTempStore(t)).store;
  const three = (await openTempStore(t)).store;
  await commitSnapshot(one, 'A', undefined, populate);
  await commitSnapshot(one, 'B', 'A', async (root) => {
    await writeFile(join(root, 'etc', 'hostname'), 'renamed\n');
    await unlink(join(root, 'etc', 'relative-link'));
    await mkdir(join(root, 'var', 'log'), { recursive: true });
    await writeFile(join(root, 'var', 'log', 'step-b'), randomBytes(100_000));
    await chmod(join(root, 'usr', 'bin', 'tool'), 0o700);
  });
  await commitSnapshot(one, 'C', 'B', async (root) => {
    await writeFile(join(root, 'var', 'log', 'step-c'), 'c');
    await chown(join(root, 'var', 'log'), 1000, 1000);
    await setXattrs(root, [['var/log/step-c', 'user.step', 'cc']]);
  });

  const fullSize = (await streamBytes(one, 'A')).length;
  const incrementalSize = (await streamBytes(one, 'B', 'A')).length;
  assert.ok(incrementalSize < fullSize / 10, `incremental ${incrementalSize} bytes, full ${fullSize}`);

  await transfer(one, two, 'A');
  await transfer(one, two, 'B', 'A');
  await transfer(one, two, 'C', 'B');
  for (const snapshot of ['A', 'B', 'C']) await assertSameTree(one.path(name(snapshot)), two.path(name(snapshot)));
  assert.equal((await two.stat(name('C'))).parent, 'B');
  // Every copy of a snapshot has the same identity: its origin's UUID.
  const origin = (await subvolumeFacts(one.path(name('C')))).uuid;
  assert.equal((await subvolumeFacts(two.path(name('C')))).receivedUuid, origin);

  // Store two forwards what it received: incremental streams of received snapshots apply on store three.
  await transfer(two, three, 'A');
  await transfer(two, three, 'B', 'A');
  await transfer(two, three, 'C', 'B');
  await assertSameTree(one.path(name('C')), three.path(name('C')));
  assert.equal((await subvolumeFacts(three.path(name('C')))).receivedUuid, origin);

  // A snapshot made on store two on top of a received one (clone, change, commit) goes back to store
  // one incrementally: its parent is found there by UUID (store one holds the original of C).
  await commitSnapshot(two, 'D', 'C', async (root) => {
    await writeFile(join(root, 'var', 'log', 'step-d'), 'made on store two');
    await unlink(join(root, 'big'));
  });
  assert.equal((await subvolumeFacts(two.path(name('D')))).receivedUuid, undefined, 'made locally');
  await transfer(two, one, 'D', 'C');
  await assertSameTree(two.path(name('D')), one.path(name('D')));
  // And what store one builds on it travels back again, and to store three, which got C from two.
  await commitSnapshot(one, 'E', 'D', async (root) => writeFile(join(root, 'var', 'log', 'step-e'), 'e'));
  await transfer(one, two, 'E', 'D');
  await transfer(two, three, 'D', 'C');
  await transfer(one, three, 'E', 'D');
  await assertSameTree(one.path(name('E')), two.path(name('E')));
  await assertSameTree(one.path(name('E')), three.path(name('E')));
  for (const store of [one, two, three]) assert.deepEqual((await storeState(store)).tmp, []);
});

test('transfer: an incremental stream whose parent the store lacks fails cleanly, with a hint', async (t) => {
  if (!requireRoot(t)) return;
  const one = (await openTempStore(t)).store;
  const two = (await openTempStore(t)).store;
  await commitSnapshot(one, 'A', undefined, async (root) => writeFile(join(root, 'f'), 'a'));
  await commitSnapshot(one, 'B', 'A', async (root) => writeFile(join(root, 'f'), 'b'));
  // Store two has an 'A' of its own, with the same name and content but another identity.
  await commitSnapshot(two, 'A', undefined, async (root) => writeFile(join(root, 'f'), 'a'));
  const before = await storeState(two);
  await assert.rejects(transfer(one, two, 'B', 'A'), (error) => {
    assert.ok(isStrataError(error));
    assert.equal(error.code, 'STRATA_SNAPSHOT');
    assert.match(error.message, /could not receive snapshot "B": .*cannot find parent subvolume/);
    assert.match(error.hint ?? '', /receive the parent first, or send this one in full/);
    return true;
  });
  assert.deepEqual(await storeState(two), before);
});

test('transfer: a truncated or corrupt stream leaves no snapshot and no staging leftovers', async (t) => {
  if (!requireRoot(t)) return;
  const one = (await openTempStore(t)).store;
  const two = (await openTempStore(t)).store;
  await commitSnapshot(one, 'A', undefined, populate);
  await commitSnapshot(one, 'B', 'A', async (root) => writeFile(join(root, 'etc', 'hostname'), 'b\n'));
  await transfer(one, two, 'A');
  const full = await streamBytes(one, 'A');
  const incremental = await streamBytes(one, 'B', 'A');
  const before = await storeState(two);

  const broken: Array<[string, string, Buffer]> = [
    ['A2', 'empty', Buffer.alloc(0)],
    ['A2', 'header only', full.subarray(0, 20)],
    ['A2', 'half', full.subarray(0, full.length / 2)],
    ['A2', 'last byte missing', full.subarray(0, full.length - 1)],
    ['A2', 'a flipped byte', flipByte(full, Math.floor(full.length / 3))],
    ['A2', 'garbage after the end', Buffer.concat([full, randomBytes(100)])],
    ['B', 'incremental, half', incremental.subarray(0, incremental.length / 2)],
    ['B', 'incremental, a flipped byte', flipByte(incremental, incremental.length - 10)],
  ];
  for (const [snapshot, label, bytes] of broken) {
    await assertSnapshotError(receiveSnapshot(two, name(snapshot), Readable.from([bytes])), /could not receive snapshot/, 'STRATA_SNAPSHOT').catch((error: unknown) => {
      throw new Error(`${label}: ${String(error)}`);
    });
    assert.deepEqual(await storeState(two), before, label);
  }
  // An input that fails midway (a download that broke) is refused the same way.
  async function* failing(): AsyncGenerator<Buffer> {
    yield full.subarray(0, full.length / 2);
    throw new Error('the download broke');
  }
  await assertSnapshotError(receiveSnapshot(two, name('A2'), Readable.from(failing())), /could not receive snapshot "A2": the input failed: the download broke/);
  assert.deepEqual(await storeState(two), before);
  // The store is fine afterwards: the whole streams apply.
  await receiveSnapshot(two, name('B'), Readable.from([incremental]));
  await assertSameTree(one.path(name('B')), two.path(name('B')));
});

test('transfer: a btrfs stream cut between two commands and compressed whole is refused too', async (t) => {
  if (!requireRoot(t)) return;
  const one = (await openTempStore(t)).store;
  const two = (await openTempStore(t)).store;
  await commitSnapshot(one, 'A', undefined, populate);
  const raw = zstdDecompressSync(await streamBytes(one, 'A'));
  const boundaries = commandBoundaries(raw);
  assert.ok(boundaries.length > 20);
  const before = await storeState(two);
  // Before the end command, and midway: a well-formed zstd frame of a btrfs stream that stops early.
  for (const cut of [boundaries.at(-2)!, boundaries[Math.floor(boundaries.length / 2)]!]) {
    const stream = Readable.from([zstdCompressSync(raw.subarray(0, cut))]);
    await assertSnapshotError(receiveSnapshot(two, name('A'), stream), /could not receive snapshot "A"/);
    assert.deepEqual(await storeState(two), before);
  }
});

/** Offsets at which a send command starts (after the 17-byte header: le32 length, le16 command, le32 crc, payload). */
function commandBoundaries(stream: Buffer): number[] {
  const starts: number[] = [];
  for (let offset = 17; offset + 10 <= stream.length; offset += 10 + stream.readUInt32LE(offset)) starts.push(offset);
  return starts;
}

function flipByte(bytes: Buffer, at: number): Buffer {
  const copy = Buffer.from(bytes);
  copy[at] = copy[at]! ^ 0xff;
  return copy;
}

test('transfer: refuses active, missing and existing snapshots before any stream flows', async (t) => {
  if (!requireRoot(t)) return;
  const { store } = await openTempStore(t);
  await commitSnapshot(store, 'A', undefined, async (root) => writeFile(join(root, 'f'), 'a'));
  await store.prepare(key('active'));
  await assertSnapshotError(sendSnapshot(store, name('active')), /could not send snapshot "active": "active" is an active snapshot/);
  await assertSnapshotError(sendSnapshot(store, name('missing')), /no snapshot "missing"/);
  await assertSnapshotError(sendSnapshot(store, name('A'), { parent: name('missing') }), /no snapshot "missing"/);
  const stream = new PassThrough();
  await assertSnapshotError(receiveSnapshot(store, name('A'), stream), /could not receive snapshot "A": snapshot "A" already exists/);
  assert.equal(stream.destroyed, true, 'the input is released');
  await assertSnapshotError(receiveSnapshot(store, name('B'), new PassThrough(), { parent: name('missing') }), /no snapshot "missing"/);
  assert.deepEqual((await storeState(store)).tmp, []);
});

test('transfer: destroying a send stream early stops btrfs send and zstd', async (t) => {
  if (!requireRoot(t)) return;
  const { store } = await openTempStore(t);
  await commitSnapshot(store, 'A', undefined, async (root) => writeFile(join(root, 'big'), randomBytes(64 * 1024 * 1024)));
  const stream = await sendSnapshot(store, name('A'));
  await new Promise<void>((resolve) => stream.once('readable', resolve));
  assert.ok((await processesMentioning(store.path(name('A')))).length > 0, 'btrfs send runs');
  stream.destroy();
  for (let waited = 0; (await processesMentioning(store.path(name('A')))).length > 0; waited += 50) {
    assert.ok(waited < 5000, 'btrfs send still runs 5 s after the stream was destroyed');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  // The snapshot can go now (btrfs refuses to delete a subvolume while it is being sent).
  await store.remove(name('A'));
});

test('transfer: when btrfs send dies, the stream errors instead of ending, so an upload of it fails and leaves nothing', async (t) => {
  if (!requireRoot(t)) return;
  const { store } = await openTempStore(t);
  const server = await startS3Server(t);
  const objects = createS3ObjectStore({ ...server, forcePathStyle: true, partSizeBytes: 5 * 1024 * 1024 });
  t.after(() => objects.close());
  await commitSnapshot(store, 'A', undefined, async (root) => writeFile(join(root, 'big'), randomBytes(64 * 1024 * 1024)));
  const stream = await sendSnapshot(store, name('A'));
  await new Promise<void>((resolve) => stream.once('readable', resolve));
  // zstd then sees a clean end of its input and writes a well-formed frame: only btrfs send's exit says it is short.
  for (const pid of await processesMentioning(store.path(name('A')))) process.kill(pid, 'SIGKILL');
  await assert.rejects(objects.put('snapshots/A', stream), (error) => {
    assert.ok(isStrataError(error));
    assert.match(error.message, /could not send snapshot "A": btrfs -q send .* was killed by SIGKILL/);
    return true;
  });
  assert.equal(await objects.head('snapshots/A'), undefined);
  assert.deepEqual(await server.pendingUploads(), []);
});

test('transfer: a receive into a full store fails as STRATA_STORE_FULL and leaves the store usable', async (t) => {
  if (!requireRoot(t)) return;
  const one = (await openTempStore(t)).store;
  const small = (await openTempStore(t, 256 * 1024 * 1024)).store;
  await commitSnapshot(one, 'big', undefined, async (root) => {
    for (let i = 0; i < 6; i++) await writeFile(join(root, `f${i}`), randomBytes(50 * 1024 * 1024));
  });
  await commitSnapshot(one, 'small', undefined, async (root) => writeFile(join(root, 'f'), 'fits'));
  const before = await storeState(small);
  await assertSnapshotError(transfer(one, small, 'big'), /could not receive snapshot "big": the snapshot store is full/, 'STRATA_STORE_FULL');
  assert.deepEqual(await storeState(small), before);
  // At once: the failed receive returned only when the space it took was free again.
  await transfer(one, small, 'small');
  assert.equal(await readFile(join(small.path(name('small')), 'f'), 'utf8'), 'fits');
});

// --- measurement -----------------------------------------------------------------------------------

/** ~200 MB like a machine's root: half compressible (text), half not (binaries, archives), in ~1800 files. */
async function machineLikeTree(root: string): Promise<void> {
  const text = Buffer.from(Array.from({ length: 20_000 }, (_, i) => `line ${i}: the quick brown fox ${i % 97} jumps over the lazy dog\n`).join(''));
  for (let d = 0; d < 30; d++) {
    const dir = join(root, 'usr', 'share', `pkg${d}`);
    await mkdir(dir, { recursive: true });
    for (let f = 0; f < 50; f++) await writeFile(join(dir, `doc${f}.txt`), text.subarray(0, 60_000 + ((d * 50 + f) % 7) * 1000));
  }
  for (let f = 0; f < 20; f++) {
    await mkdir(join(root, 'usr', 'lib'), { recursive: true });
    await writeFile(join(root, 'usr', 'lib', `lib${f}.so`), randomBytes(5 * 1024 * 1024));
  }
}

test('transfer: measured on a ~200 MB tree, a small change travels as a small incremental stream', async (t) => {
  if (!requireRoot(t)) return;
  const one = (await openTempStore(t)).store;
  const two = (await openTempStore(t)).store;
  await commitSnapshot(one, 'base', undefined, machineLikeTree);
  await commitSnapshot(one, 'step', 'base', async (root) => {
    await writeFile(join(root, 'usr', 'share', 'pkg3', 'doc7.txt'), 'edited\n', { flag: 'a' });
    await writeFile(join(root, 'etc-new-config'), 'key = value\n');
    await unlink(join(root, 'usr', 'share', 'pkg4', 'doc1.txt'));
    const lib = join(root, 'usr', 'lib', 'lib5.so');
    const handle = await open(lib, 'r+');
    await handle.write(randomBytes(4096), 0, 4096, 1024 * 1024);
    await handle.close();
  });
  const { stdout: du } = await execOrThrow('du', ['-sb', one.path(name('base'))]);
  const treeBytes = Number(du.split('\t')[0]);

  const rawFull = await rawSendBytes(one.path(name('base')));
  const rawIncremental = await rawSendBytes(one.path(name('step')), one.path(name('base')));
  const full = await timedTransfer(one, two, 'base');
  const incremental = await timedTransfer(one, two, 'step', 'base');
  await assertSameTree(one.path(name('step')), two.path(name('step')));

  const mb = (bytes: number): string => `${(bytes / 1e6).toFixed(1)} MB`;
  t.diagnostic(`tree ${mb(treeBytes)} (du -sb)`);
  t.diagnostic(`full send: ${mb(rawFull)} btrfs stream, ${mb(full.bytes)} with zstd -3; send+receive ${full.ms} ms`);
  t.diagnostic(`incremental send: ${rawIncremental} bytes btrfs stream, ${incremental.bytes} bytes with zstd; send+receive ${incremental.ms} ms`);
  assert.ok(treeBytes > 190e6, `tree ${treeBytes} bytes`);
  assert.ok(full.bytes < rawFull, 'zstd shrinks the full stream');
  assert.ok(incremental.bytes < 64 * 1024, `incremental stream ${incremental.bytes} bytes`);
});

test('transfer: measured on compressed extents, --compressed-data ships them as stored, and they arrive intact', async (t) => {
  if (!requireRoot(t)) return;
  const one = (await openTempStore(t)).store;
  const two = (await openTempStore(t)).store;
  // Files made under a directory with the compression property are stored zstd-compressed, as on a
  // store mounted with compress=zstd.
  await commitSnapshot(one, 'compressed', undefined, async (root) => {
    await execOrThrow('btrfs', ['property', 'set', root, 'compression', 'zstd']);
    await machineLikeTree(root);
  });
  const path = one.path(name('compressed'));
  const plain = await timed(() => rawSendBytes(path, undefined, ['--proto', '1']));
  const encoded = await timed(() => rawSendBytes(path));
  const plainZstd = await timed(() => rawSendBytes(path, undefined, ['--proto', '1'], '| zstd -q -c -3 -T0'));
  const transferred = await timedTransfer(one, two, 'compressed');
  await assertSameTree(path, two.path(name('compressed')));

  const mb = (bytes: number): string => `${(bytes / 1e6).toFixed(1)} MB`;
  t.diagnostic(`compressed extents, send without --compressed-data: ${mb(plain.value)} in ${plain.ms} ms; with zstd -3: ${mb(plainZstd.value)} in ${plainZstd.ms} ms`);
  t.diagnostic(`compressed extents, send --compressed-data: ${mb(encoded.value)} in ${encoded.ms} ms; sendSnapshot (with zstd) + receive: ${mb(transferred.bytes)} in ${transferred.ms} ms`);
  assert.ok(encoded.value < plain.value, 'extents travel compressed');
});

async function timed<T>(run: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = performance.now();
  const value = await run();
  return { value, ms: Math.round(performance.now() - started) };
}

/** Bytes of `btrfs send` of `path` (from `parentPath`), with `--compressed-data` unless other flags are given, through `filter` if any. */
async function rawSendBytes(path: string, parentPath?: string, flags = ['--compressed-data'], filter = ''): Promise<number> {
  const parent = parentPath === undefined ? '' : '-p "$2"';
  const { stdout } = await execOrThrow('sh', ['-c', `btrfs -q send ${flags.join(' ')} ${parent} "$1" ${filter} | wc -c`, 'sh', path, parentPath ?? '']);
  return Number(stdout.trim());
}

async function timedTransfer(from: BtrfsSnapshotStore, to: BtrfsSnapshotStore, snapshot: string, parent?: string): Promise<{ bytes: number; ms: number }> {
  const started = performance.now();
  const stream = await sendSnapshot(from, name(snapshot), parent === undefined ? {} : { parent: name(parent) });
  let bytes = 0;
  const counted = stream.pipe(
    new Transform({
      transform(chunk: Buffer, _encoding, done) {
        bytes += chunk.length;
        done(null, chunk);
      },
    }),
  );
  stream.on('error', (error) => counted.destroy(error));
  await receiveSnapshot(to, name(snapshot), counted, parent === undefined ? {} : { parent: name(parent) });
  return { bytes, ms: Math.round(performance.now() - started) };
}

// --- end to end through object storage -------------------------------------------------------------

test('transfer: through the S3 object store on a real S3-compatible server, full then incremental', async (t) => {
  if (!requireRoot(t)) return;
  const one = (await openTempStore(t)).store;
  const two = (await openTempStore(t)).store;
  const server = await startS3Server(t);
  const proxy = await startFaultProxy(t, server.endpoint);
  const objects = createS3ObjectStore({ ...server, endpoint: proxy.endpoint, forcePathStyle: true, partSizeBytes: 5 * 1024 * 1024 });
  t.after(() => objects.close());
  await commitSnapshot(one, 'A', undefined, async (root) => {
    await populate(root);
    await writeFile(join(root, 'payload'), randomBytes(12 * 1024 * 1024)); // several parts
  });
  await commitSnapshot(one, 'B', 'A', async (root) => {
    await writeFile(join(root, 'etc', 'hostname'), 'after a step\n');
    await symlink('payload', join(root, 'payload-link'));
  });

  const uploadedA = await objects.put('snapshots/A.full.zst', await sendSnapshot(one, name('A')));
  const uploadedB = await objects.put('snapshots/B.from-A.zst', await sendSnapshot(one, name('B'), { parent: name('A') }));
  assert.deepEqual(await objects.list('snapshots/'), ['snapshots/A.full.zst', 'snapshots/B.from-A.zst']);
  assert.deepEqual(await objects.head('snapshots/A.full.zst'), uploadedA);
  assert.ok(uploadedA.sizeBytes > 12 * 1024 * 1024 && uploadedB.sizeBytes < 64 * 1024, `A ${uploadedA.sizeBytes}, B ${uploadedB.sizeBytes}`);

  // A download that breaks midway fails the receive, which leaves nothing behind.
  const before = await storeState(two);
  proxy.inject({ fault: { kind: 'cutResponse', afterBytes: 3 * 1024 * 1024 }, match: (request) => request.method === 'GET' });
  await assertSnapshotError(
    receiveSnapshot(two, name('A'), (await objects.get('snapshots/A.full.zst'))!),
    /could not receive snapshot "A": the input failed: get snapshots\/A.full.zst .*broke after \d+ of \d+ bytes/,
  );
  assert.deepEqual(await storeState(two), before);

  await receiveSnapshot(two, name('A'), (await objects.get('snapshots/A.full.zst'))!);
  await receiveSnapshot(two, name('B'), (await objects.get('snapshots/B.from-A.zst'))!, { parent: name('A') });
  await assertSameTree(one.path(name('A')), two.path(name('A')));
  await assertSameTree(one.path(name('B')), two.path(name('B')));
  assert.equal((await two.stat(name('B'))).parent, 'A');
});
