// One engine process per store at a time. Opening a store reaps what a crashed predecessor left
// (half-made snapshots, machines, orphan snapshots); doing that under another live process would
// destroy its work. The lock is a file created with O_EXCL holding the owner's pid; a lock whose
// owner is dead is stale and taken over.
import { open, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { StrataError } from '../errors.js';
import { isProcessAlive } from '../util/process.js';

export interface StoreLock {
  release(): Promise<void>;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Takes the store's lock, waiting up to `waitMs` for a live holder to finish (calling `onWait` once
 * with its pid). Throws STRATA_STORE when the wait runs out.
 */
export async function lockStore(root: string, options: { waitMs?: number; onWait?: (holderPid: number) => void } = {}): Promise<StoreLock> {
  const file = join(root, 'lock');
  const deadline = Date.now() + (options.waitMs ?? 10 * 60_000);
  let told = false;
  for (;;) {
    try {
      const handle = await open(file, 'wx');
      await handle.writeFile(String(process.pid));
      await handle.close();
      let released = false;
      return {
        async release() {
          if (released) return;
          released = true;
          await rm(file, { force: true });
        },
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw new StrataError('STRATA_STORE', `cannot lock the store ${root}`, { cause: error });
    }
    const holder = Number((await readFile(file, 'utf8').catch(() => '')).trim());
    if (!Number.isInteger(holder) || holder <= 0 || !isProcessAlive(holder)) {
      // Stale (its owner died) or half-written: remove it and try again. Known gap: two processes
      // taking over the same stale lock at the same instant can both succeed (one removes the
      // other's fresh lock); it needs a crash followed by two simultaneous starts.
      await rm(file, { force: true });
      continue;
    }
    if (holder === process.pid) throw new StrataError('STRATA_STORE', `this process already holds the lock of ${root}`);
    if (Date.now() > deadline) {
      throw new StrataError('STRATA_STORE', `the store ${root} is in use by process ${holder}`, {
        hint: 'wait for that run to finish, or use another --store',
      });
    }
    if (!told) {
      options.onWait?.(holder);
      told = true;
    }
    await sleep(200);
  }
}
