// A fake SnapshotStore on plain directories, for fast unit tests and hosts without btrfs. Copies are
// `cp -a --reflink=auto` (O(size), O(1) per file on reflink filesystems); committed trees are NOT
// made read-only (the kernel cannot enforce it on a plain directory tree); diff walks both trees.
// It passes the same conformance suite as the btrfs store.
import { lstat, mkdir, readdir, readlink, rm } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { join, resolve } from 'node:path';
import { execOrThrow } from '../util/exec.js';
import { openTreeStore, type TreeOps } from './tree-store.js';
import type { SnapshotChange, SnapshotStore } from './types.js';

export async function openDirStore(options: { root: string }): Promise<SnapshotStore> {
  const root = resolve(options.root);
  await mkdir(root, { recursive: true });
  return openTreeStore(root, dirTreeOps);
}

const dirTreeOps: TreeOps = {
  diffNeedsReadOnly: false,
  createEmpty: async (path) => {
    await mkdir(path);
  },
  copy: async (source, target) => {
    await execOrThrow('cp', ['-a', '--reflink=auto', source, target], { errorCode: 'STRATA_SNAPSHOT' });
  },
  destroy: (path) => rm(path, { recursive: true, force: true }),
  diff: walkDiff,
  close: async () => {},
};

interface Entry {
  stats: Stats;
  linkTarget?: string;
}

async function walk(base: string): Promise<Map<string, Entry>> {
  const entries = new Map<string, Entry>();
  const visit = async (relative: string): Promise<void> => {
    for (const name of await readdir(join(base, relative))) {
      const child = relative === '' ? name : `${relative}/${name}`;
      const stats = await lstat(join(base, child), { bigint: false });
      const entry: Entry = { stats };
      if (stats.isSymbolicLink()) entry.linkTarget = await readlink(join(base, child));
      entries.set(child, entry);
      if (stats.isDirectory()) await visit(child);
    }
  };
  await visit('');
  return entries;
}

/** Same rules as the btrfs diff (see SnapshotChange), from metadata: xattrs are not compared here. */
function differs(a: Entry, b: Entry): boolean {
  const x = a.stats;
  const y = b.stats;
  if ((x.mode & 0o170000) !== (y.mode & 0o170000)) return true; // file type
  if (x.mode !== y.mode || x.uid !== y.uid || x.gid !== y.gid) return true;
  if (x.isDirectory()) return false;
  return x.size !== y.size || x.mtimeMs !== y.mtimeMs || x.rdev !== y.rdev || a.linkTarget !== b.linkTarget;
}

async function walkDiff(fromPath: string, toPath: string): Promise<SnapshotChange[]> {
  const [before, after] = await Promise.all([walk(fromPath), walk(toPath)]);
  const changes: SnapshotChange[] = [];
  for (const [path, entry] of after) {
    const old = before.get(path);
    if (!old) changes.push({ path: `/${path}`, change: 'added' });
    else if (differs(old, entry)) changes.push({ path: `/${path}`, change: 'modified' });
  }
  for (const path of before.keys()) if (!after.has(path)) changes.push({ path: `/${path}`, change: 'deleted' });
  return changes.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}
