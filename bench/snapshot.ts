// Snapshot store timings on btrfs (needs root): commit (read-only snapshot of a writable tree, the
// per-step cost) and clone (writable copy of a committed one, the restore/SPLIT cost) on a tree of
// ~50k entries, plus a metadata-only diff after a small change. Medians of 10.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openBtrfsStore } from '../src/snapshot/btrfs.js';
import { snapshotKey, snapshotName } from '../src/snapshot/types.js';
import { execOrThrow } from '../src/util/exec.js';
import type { BenchRow } from './types.js';
import { median } from './util.js';



async function timed(action: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await action();
  return performance.now() - start;
}

/** Bytes in use on the filesystem holding `path`, after flushing it. */
async function usedBytes(path: string): Promise<number> {
  await execOrThrow('sync', ['-f', path]);
  const usage = await execOrThrow('btrfs', ['filesystem', 'usage', '-b', path]);
  const used = /^\s*Used:\s+(\d+)/m.exec(usage.stdout);
  if (!used) throw new Error(`bench snapshot: no "Used:" in btrfs filesystem usage:\n${usage.stdout}`);
  return Number(used[1]);
}

/** 500 directories of 100 small files: 50,500 entries. */
async function fillTree(root: string): Promise<number> {
  let entries = 0;
  for (let d = 0; d < 500; d++) {
    const dir = join(root, `dir${d}`);
    await mkdir(dir);
    entries++;
    await Promise.all(
      Array.from({ length: 100 }, (_, f) => writeFile(join(dir, `file${f}.txt`), `content ${d}/${f}\n`)),
    );
    entries += 100;
  }
  return entries;
}

export async function benchSnapshot(runs = 10): Promise<BenchRow[]> {
  const dir = await mkdtemp(join(tmpdir(), 'strata-bench-snapshot-'));
  const store = await openBtrfsStore({ root: join(dir, 'store'), imageSizeBytes: 8 * 1024 ** 3 });
  try {
    const work = snapshotKey('work');
    const { path } = await store.prepare(work);
    const entries = await fillTree(path);
    // Steady state: the engine syncs a frozen machine before each snapshot; here the freshly written
    // tree would otherwise make the first snapshots flush 50k new inodes.
    await execOrThrow('sync', ['-f', path]);
    const label = `${Math.round(entries / 1000)}k entries`;

    const commits: number[] = [];
    const usedBefore = await usedBytes(path);
    for (let i = 0; i < runs; i++) {
      await writeFile(join(path, 'dir0', 'file0.txt'), `run ${i}\n`); // like a step that changed something
      commits.push(await timed(() => store.commit(work, snapshotName(`step-${i}`))));
    }
    // Disk per snapshot: what the filesystem's used bytes grew by, per commit (copied-on-write tree
    // nodes and the changed file; btrfs counts metadata in 16 KiB nodes).
    const perSnapshot = ((await usedBytes(path)) - usedBefore) / runs;
    const clones: number[] = [];
    for (let i = 0; i < runs; i++) {
      clones.push(await timed(() => store.clone(snapshotName('step-0'), snapshotKey(`restore-${i}`))));
    }
    const diffs: number[] = [];
    for (let i = 1; i < runs; i++) {
      diffs.push(await timed(() => store.diff(snapshotName(`step-${i - 1}`), snapshotName(`step-${i}`))));
    }
    const removes: number[] = [];
    for (let i = 0; i < runs; i++) removes.push(await timed(() => store.remove(snapshotKey(`restore-${i}`))));
    return [
      { name: `snapshot commit (read-only snapshot, ${label})`, medianMs: median(commits), goalMs: 20, note: `disk used per snapshot after a 1-file change: ${Math.round(perSnapshot / 1024)} KiB` },
      { name: `snapshot clone (writable copy, ${label})`, medianMs: median(clones), goalMs: 20 },
      { name: `snapshot diff (metadata-only send, 1 file changed, ${label})`, medianMs: median(diffs) },
      { name: `snapshot remove (${label})`, medianMs: median(removes) },
    ];
  } finally {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
}
