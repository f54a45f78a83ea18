// Pid lock files. One engine process per store at a time: opening a store reaps what a crashed
// predecessor left (half-made snapshots, machines, orphan snapshots), and doing that under another live
// process would destroy its work. CACHE directories use the same locks, one per directory. A lock is a
// file created with O_EXCL holding the owner's pid; a lock whose owner is dead is stale and taken over.
import { lstat, open, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { StrataError } from '../errors.js';
import { isProcessAlive } from '../util/process.js';
import { sleep } from '../util/sleep.js';

export interface FileLock {
  release(): Promise<void>;
}

/** Lock files held by this process (same pid, so the pid in the file cannot tell them apart). */
const heldHere = new Set<string>();

/**
 * Takes the lock file `file`, or returns the live holder's pid (this process's own pid when it already
 * holds it; 0 when the holder is unknown). A dead holder's lock is taken over. Known gap: two
 * processes taking over the same stale lock at the same instant can both succeed (one removes the
 * other's fresh lock); it needs a crash followed by two simultaneous starts.
 */
export async function tryLockFile(file: string): Promise<FileLock | { holder: number }> {
  for (let attempt = 0; attempt < 3; attempt++) {
    if (heldHere.has(file)) return { holder: process.pid };
    try {
      const handle = await open(file, 'wx');
      heldHere.add(file);
      await handle.writeFile(String(process.pid));
      await handle.close();
      let released = false;
      return {
        async release() {
          if (released) return;
          released = true;
          heldHere.delete(file);
          await rm(file, { force: true });
        },
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw new StrataError('STRATA_STORE', `cannot create the lock ${file}`, { cause: error });
    }
    const holder = Number((await readFile(file, 'utf8').catch(() => '')).trim());
    if (Number.isInteger(holder) && holder > 0 && isProcessAlive(holder)) return { holder };
    // A half-written lock (pid not yet written) is young: treat it as held rather than racing it.
    if (!Number.isInteger(holder) || holder <= 0) {
      const age = Date.now() - (await lstat(file).then((s) => s.mtimeMs, () => 0));
      if (age < 5_000) return { holder: 0 };
    }
    await rm(file, { force: true });
  }
  return { holder: 0 };
}


/**
 * Takes the store's lock, waiting up to `waitMs` for a live holder to finish (calling `onWait` once
 * with its pid). Throws STRATA_STORE when the wait runs out.
 */
export async function lockStore(root: string, options: { waitMs?: number; onWait?: (holderPid: number) => void } = {}): Promise<FileLock> {
  const file = join(root, 'lock');
  const deadline = Date.now() + (options.waitMs ?? 10 * 60_000);
  let told = false;
  for (;;) {
    const attempt = await tryLockFile(file);
    if ('release' in attempt) return attempt;
    const { holder } = attempt;
    if (holder === process.pid) throw new StrataError('STRATA_STORE', `this process already holds the lock of ${root}`);
    if (Date.now() > deadline) {
      throw new StrataError('STRATA_STORE', `the store ${root} is in use by process ${holder || 'unknown'}`, {
        hint: 'wait for that run to finish, or use another --store',
      });
    }
    if (!told && holder > 0) {
      options.onWait?.(holder);
      told = true;
    }
    await sleep(200);
  }
}
