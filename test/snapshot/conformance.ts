// The SnapshotStore conformance suite: every backend (btrfs, directories) must pass these same tests.
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readdir, readFile, rename, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { isStrataError } from '../../src/errors.js';
import {
  snapshotKey as key,
  snapshotName as name,
  type SnapshotId,
  type SnapshotStore,
} from '../../src/snapshot/types.js';

export interface StoreFactory {
  /** Backend name for test titles. */
  label: string;
  /** Whether the backend needs root; such tests call `guard` first. */
  guard: (t: TestContext) => boolean;
  /** Opens (or reopens) a store at `root`. */
  open(root: string): Promise<SnapshotStore>;
  /** Leaves what a commit interrupted by a crash leaves: a finished read-only copy in the work area. */
  simulateInterruptedCommit(store: SnapshotStore, activePath: string, workPath: string): Promise<void>;
  /** Undoes whatever a failed test left mounted under `dir` (the store's close is tried first). */
  forceCleanup?(dir: string): Promise<void>;
}

/** A fresh store in its own temporary directory, closed and deleted after the test, even on failure. */
async function freshStore(t: TestContext, factory: StoreFactory): Promise<{ store: SnapshotStore; dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'strata-snap-'));
  const handle = { store: undefined as SnapshotStore | undefined };
  t.after(async () => {
    try {
      await handle.store?.close();
    } finally {
      await factory.forceCleanup?.(dir);
      await rm(dir, { recursive: true, force: true });
    }
  });
  handle.store = await factory.open(join(dir, 'store'));
  // Reopening replaces the handle so that the cleanup closes the latest one.
  return {
    get store() {
      return handle.store!;
    },
    set store(s: SnapshotStore) {
      handle.store = s;
    },
    dir,
  };
}

async function assertStrataError(promise: Promise<unknown> | (() => unknown), pattern: RegExp): Promise<void> {
  try {
    await (typeof promise === 'function' ? promise() : promise);
  } catch (error) {
    assert.ok(isStrataError(error), `expected a StrataError, got ${String(error)}`);
    assert.equal(error.code, 'STRATA_SNAPSHOT');
    assert.match(error.message, pattern);
    return;
  }
  assert.fail(`expected an error matching ${pattern}`);
}

export function snapshotStoreConformance(factory: StoreFactory): void {
  const it = (title: string, body: (t: TestContext) => Promise<void>): void => {
    test(`${factory.label}: ${title}`, async (t) => {
      if (!factory.guard(t)) return;
      await body(t);
    });
  };

  it('prepare empty, write, commit, read back', async (t) => {
    const { store } = await freshStore(t, factory);
    const { path } = await store.prepare(key('work'));
    assert.deepEqual(await readdir(path), []);
    await writeFile(join(path, 'hello.txt'), 'hi');
    const info = await store.commit(key('work'), name('one'));
    assert.equal(info.kind, 'committed');
    assert.equal(info.id, 'one');
    assert.equal(await readFile(join(store.path(name('one')), 'hello.txt'), 'utf8'), 'hi');
  });

  it('commit keeps the active snapshot writable and later commits see later writes', async (t) => {
    const { store } = await freshStore(t, factory);
    const { path } = await store.prepare(key('machine'));
    await writeFile(join(path, 'step'), '1');
    await store.commit(key('machine'), name('after-step-1'));
    await writeFile(join(path, 'step'), '2');
    await store.commit(key('machine'), name('after-step-2'));
    assert.equal((await store.stat(key('machine'))).kind, 'active');
    assert.equal(await readFile(join(store.path(name('after-step-1')), 'step'), 'utf8'), '1');
    assert.equal(await readFile(join(store.path(name('after-step-2')), 'step'), 'utf8'), '2');
  });

  it('prepare from a parent and clone give independent writable copies', async (t) => {
    const { store } = await freshStore(t, factory);
    const { path } = await store.prepare(key('base'));
    await mkdir(join(path, 'etc'));
    await writeFile(join(path, 'etc', 'conf'), 'base');
    await store.commit(key('base'), name('base-1'));

    const a = await store.prepare(key('a'), name('base-1'));
    const b = await store.clone(name('base-1'), key('b'));
    assert.equal(await readFile(join(a.path, 'etc', 'conf'), 'utf8'), 'base');
    await writeFile(join(a.path, 'etc', 'conf'), 'changed in a');
    await writeFile(join(b.path, 'only-b'), 'b');
    assert.equal(await readFile(join(b.path, 'etc', 'conf'), 'utf8'), 'base');
    assert.deepEqual((await readdir(a.path)).sort(), ['etc']);
    assert.equal(await readFile(join(store.path(name('base-1')), 'etc', 'conf'), 'utf8'), 'base');
    assert.equal((await store.stat(key('a'))).parent, 'base-1');
    assert.equal((await store.stat(key('b'))).parent, 'base-1');
  });

  it('stat and list describe kinds, parents and creation times', async (t) => {
    const { store } = await freshStore(t, factory);
    const before = Date.now();
    await store.prepare(key('k1'));
    await store.commit(key('k1'), name('n1'));
    await store.clone(name('n1'), key('k2'));
    await store.commit(key('k2'), name('n2'));
    const n2 = await store.stat(name('n2'));
    assert.equal(n2.kind, 'committed');
    assert.equal(n2.parent, 'n1', 'a commit inherits the parent of its active snapshot');
    assert.equal((await store.stat(name('n1'))).parent, undefined);
    assert.ok(n2.createdAt.getTime() >= before - 1000 && n2.createdAt.getTime() <= Date.now() + 1000);
    const listed = (await store.list()).map((s) => `${s.kind}:${s.id}`);
    assert.deepEqual(listed, ['active:k1', 'active:k2', 'committed:n1', 'committed:n2']);
    assert.equal(await store.has(name('n1')), true);
    assert.equal(await store.has(name('nope')), false);
    await assertStrataError(store.stat(name('nope')), /no snapshot "nope"/);
  });

  it('remove deletes active and committed snapshots, and copies survive their parent', async (t) => {
    const { store } = await freshStore(t, factory);
    const { path } = await store.prepare(key('k'));
    await writeFile(join(path, 'f'), 'x');
    await store.commit(key('k'), name('n'));
    const copy = await store.clone(name('n'), key('copy'));
    await store.remove(name('n'));
    await store.remove(key('k'));
    assert.deepEqual((await store.list()).map((s) => s.id), ['copy']);
    assert.equal(await readFile(join(copy.path, 'f'), 'utf8'), 'x');
    await assertStrataError(store.remove(name('n')), /no snapshot/);
    assert.throws(() => store.path(name('n')), /no snapshot/);
    // The name is free again.
    await store.commit(key('copy'), name('n'));
    assert.equal(await readFile(join(store.path(name('n')), 'f'), 'utf8'), 'x');
  });

  it('refuses ids that exist, wrong kinds, and invalid names', async (t) => {
    const { store } = await freshStore(t, factory);
    await store.prepare(key('k'));
    await store.commit(key('k'), name('n'));
    await assertStrataError(store.prepare(key('k')), /already exists/);
    await assertStrataError(store.prepare(key('n')), /already exists/); // one namespace
    await assertStrataError(store.commit(key('k'), name('n')), /already exists/);
    await assertStrataError(store.commit(name('n') as unknown as ReturnType<typeof key>, name('m')), /is committed, expected active/);
    await assertStrataError(store.prepare(key('x'), key('k') as unknown as ReturnType<typeof name>), /is active, expected committed/);
    for (const bad of ['', '.', '..', 'a/b', '../x', 'a..b', '.hidden', '-flag', 'x'.repeat(201), 'sp ace']) {
      await assertStrataError(() => store.prepare(bad as ReturnType<typeof key>), /invalid snapshot/);
      await assertStrataError(() => store.path(bad as SnapshotId), /invalid snapshot/);
    }
    assert.throws(() => key('a/b'), /invalid snapshot key/);
    assert.deepEqual((await store.list()).map((s) => s.id), ['k', 'n']);
  });

  it('diff reports added, modified and deleted paths between committed and active snapshots', async (t) => {
    const { store } = await freshStore(t, factory);
    const { path } = await store.prepare(key('k'));
    await mkdir(join(path, 'src', 'deep'), { recursive: true });
    await mkdir(join(path, 'old-dir'));
    await mkdir(join(path, 'moved-dir'));
    await writeFile(join(path, 'src', 'same.c'), 'same');
    await writeFile(join(path, 'src', 'edit.c'), 'v1');
    await writeFile(join(path, 'src', 'gone.c'), 'bye');
    await writeFile(join(path, 'src', 'deep', 'renamed.c'), 'r');
    await writeFile(join(path, 'old-dir', 'inside'), 'i');
    await writeFile(join(path, 'moved-dir', 'child'), 'c');
    await writeFile(join(path, 'mode'), 'm');
    await store.commit(key('k'), name('before'));

    await writeFile(join(path, 'src', 'edit.c'), 'version two');
    await unlink(join(path, 'src', 'gone.c'));
    await writeFile(join(path, 'src', 'new.c'), 'new');
    await mkdir(join(path, 'new-dir'));
    await writeFile(join(path, 'new-dir', 'file'), 'f');
    await symlink('src/same.c', join(path, 'link'));
    await rename(join(path, 'src', 'deep', 'renamed.c'), join(path, 'src', 'deep', 'renamed2.c'));
    await rm(join(path, 'old-dir'), { recursive: true });
    await rename(join(path, 'moved-dir'), join(path, 'moved-dir2'));
    await chmod(join(path, 'mode'), 0o600);
    await store.commit(key('k'), name('after'));

    const expected = [
      { path: '/link', change: 'added' },
      { path: '/mode', change: 'modified' },
      { path: '/moved-dir', change: 'deleted' },
      { path: '/moved-dir/child', change: 'deleted' },
      { path: '/moved-dir2', change: 'added' },
      { path: '/moved-dir2/child', change: 'added' },
      { path: '/new-dir', change: 'added' },
      { path: '/new-dir/file', change: 'added' },
      { path: '/old-dir', change: 'deleted' },
      { path: '/old-dir/inside', change: 'deleted' },
      { path: '/src/deep/renamed.c', change: 'deleted' },
      { path: '/src/deep/renamed2.c', change: 'added' },
      { path: '/src/edit.c', change: 'modified' },
      { path: '/src/gone.c', change: 'deleted' },
      { path: '/src/new.c', change: 'added' },
    ];
    assert.deepEqual(await store.diff(name('before'), name('after')), expected);
    // An active side is diffed as it is now.
    assert.deepEqual(await store.diff(name('before'), key('k')), expected);
    await writeFile(join(path, 'later'), 'l');
    assert.deepEqual(await store.diff(name('after'), key('k')), [{ path: '/later', change: 'added' }]);
    assert.deepEqual(await store.diff(name('after'), name('after')), []);
    // The reverse direction swaps added and deleted.
    const reverse = await store.diff(name('after'), name('before'));
    assert.deepEqual(
      reverse.filter((c) => c.change !== 'modified').map((c) => `${c.change}:${c.path}`),
      expected
        .filter((c) => c.change !== 'modified')
        .map((c) => `${c.change === 'added' ? 'deleted' : 'added'}:${c.path}`),
    );
    // Diff leaves no temporary copies behind.
    assert.deepEqual((await store.list()).map((s) => s.id), ['after', 'before', 'k']);
    assert.deepEqual(await readdir(join(store.root, 'tmp')), []);
  });

  it('diff follows entries through moved directories, swaps, replacements and type changes', async (t) => {
    const { store } = await freshStore(t, factory);
    const { path } = await store.prepare(key('k'));
    await mkdir(join(path, 'd'));
    await writeFile(join(path, 'd', 'f'), 'f');
    await writeFile(join(path, 'd', 'h'), 'h');
    await writeFile(join(path, 'a'), 'short');
    await writeFile(join(path, 'b'), 'a longer text');
    await writeFile(join(path, 'replaced'), 'same');
    await writeFile(join(path, 'becomes-dir'), 'file');
    await writeFile(join(path, 'untouched'), 'u');
    await store.commit(key('k'), name('before'));

    await rename(join(path, 'd'), join(path, 'e'));
    await rename(join(path, 'e', 'f'), join(path, 'e', 'g'));
    await writeFile(join(path, 'e', 'h'), 'h2');
    await rename(join(path, 'a'), join(path, 'swap'));
    await rename(join(path, 'b'), join(path, 'a'));
    await rename(join(path, 'swap'), join(path, 'b'));
    await unlink(join(path, 'replaced'));
    await writeFile(join(path, 'replaced'), 'same, again');
    await unlink(join(path, 'becomes-dir'));
    await mkdir(join(path, 'becomes-dir'));
    await mkdir(join(path, 'n1', 'n2', 'n3'), { recursive: true });
    await writeFile(join(path, 'n1', 'n2', 'n3', 'file'), 'deep');
    await store.commit(key('k'), name('after'));

    assert.deepEqual(
      (await store.diff(name('before'), name('after'))).map((c) => `${c.change}:${c.path}`),
      [
        'modified:/a',
        'modified:/b',
        'modified:/becomes-dir',
        'deleted:/d',
        'deleted:/d/f',
        'deleted:/d/h',
        'added:/e',
        'added:/e/g',
        'added:/e/h',
        'added:/n1',
        'added:/n1/n2',
        'added:/n1/n2/n3',
        'added:/n1/n2/n3/file',
        'modified:/replaced',
      ],
    );
  });

  it('diff works between unrelated snapshots', async (t) => {
    const { store } = await freshStore(t, factory);
    const x = await store.prepare(key('x'));
    await writeFile(join(x.path, 'only-x'), 'x');
    await writeFile(join(x.path, 'both'), 'from x');
    const y = await store.prepare(key('y'));
    await writeFile(join(y.path, 'only-y'), 'y');
    await writeFile(join(y.path, 'both'), 'from y, longer');
    await store.commit(key('x'), name('x1'));
    await store.commit(key('y'), name('y1'));
    assert.deepEqual(
      (await store.diff(name('x1'), name('y1'))).map((c) => `${c.change}:${c.path}`),
      ['modified:/both', 'deleted:/only-x', 'added:/only-y'],
    );
  });

  it('a commit interrupted by a crash is reaped on open and never appears under its name', async (t) => {
    const handle = await freshStore(t, factory);
    const { path } = await handle.store.prepare(key('k'));
    await writeFile(join(path, 'f'), 'x');
    // Commits are made under a hidden name next to the final ones, then renamed.
    const committedDir = join(handle.store.root, 'committed');
    await factory.simulateInterruptedCommit(handle.store, path, join(committedDir, '.tmp-interrupted'));
    assert.deepEqual(await readdir(committedDir), ['.tmp-interrupted']);
    assert.deepEqual((await handle.store.list()).map((s) => s.id), ['k'], 'a leftover is never listed');
    await handle.store.close();
    handle.store = await factory.open(join(handle.dir, 'store'));
    assert.deepEqual(await readdir(committedDir), []);
    assert.deepEqual((await handle.store.list()).map((s) => s.id), ['k']);
  });

  it('snapshots persist across close and reopen', async (t) => {
    const handle = await freshStore(t, factory);
    const { path } = await handle.store.prepare(key('k'));
    await writeFile(join(path, 'f'), 'kept');
    await handle.store.commit(key('k'), name('n'));
    await handle.store.close();
    handle.store = await factory.open(join(handle.dir, 'store'));
    assert.equal(await readFile(join(handle.store.path(name('n')), 'f'), 'utf8'), 'kept');
    assert.equal((await handle.store.stat(name('n'))).kind, 'committed');
    await writeFile(join(handle.store.path(key('k')), 'g'), 'still writable');
  });
}
