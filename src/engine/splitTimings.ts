// The machine side of strata-split's timings (the store side, and why the sets are frozen, is in
// src/store/splitTimings.ts). Every step machine gets a small host directory of its own, mounted at
// /run/strata inside (kept out of snapshots and traces, like CACHE dirs):
//   /run/strata/split-timings  read-only: the frozen timings of this copy's SPLIT, written when the
//                              first step after the SPLIT line runs ($STRATA_SPLIT_TIMINGS; empty before)
//   /run/strata/report/timings writable: `path seconds` lines the steps report ($STRATA_TIMINGS_OUT),
//                              stored when the runner ends
import { constants } from 'node:fs';
import { chmod, mkdir, mkdtemp, open, readdir, rm, rmdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseTimingsReport, type TimingEntry } from '../store/splitTimings.js';
import { isProcessAlive } from '../util/process.js';

export const SPLIT_TIMINGS_PATH = '/run/strata/split-timings';
export const TIMINGS_OUT_PATH = '/run/strata/report/timings';

/** A report larger than this is read up to here (the newest lines are at the end: they are kept). */
const MAX_REPORT_BYTES = 16 * 1024 * 1024;

export interface MachineRunDir {
  /** Bind mounts for EngineSandbox.start. */
  mounts: Array<{ source: string; destination: string; readOnly?: boolean }>;
  /** Puts the SPLIT's frozen timings in place (written in place: the file is bind-mounted). */
  provideSplitTimings(content: string): Promise<void>;
  /** The timings the machine reported (read once it is gone: nothing writes any more). */
  collectReport(): Promise<TimingEntry[]>;
  remove(): Promise<void>;
}

/**
 * Where the run dirs live: one folder per engine process (`<pid>-...`), so that the folders a killed
 * engine left behind are recognised (their process is gone) and removed when the next engine opens
 * (src/compose/engine.ts).
 */
export const RUN_DIRS = join(tmpdir(), 'strata-machine-dirs');

/** A new run dir of this process (the folder may vanish between mkdir and mkdtemp: another engine's close). */
async function makeRunDir(): Promise<string> {
  for (let attempt = 0; ; attempt++) {
    await mkdir(RUN_DIRS, { recursive: true, mode: 0o700 });
    try {
      return await mkdtemp(join(RUN_DIRS, `${process.pid}-`));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT' || attempt >= 3) throw error;
    }
  }
}

export async function createMachineRunDir(): Promise<MachineRunDir> {
  const dir = await makeRunDir();
  const timings = join(dir, 'split-timings');
  const report = join(dir, 'report');
  try {
    await writeFile(timings, '', { mode: 0o644 });
    // Any USER of the machine may report: the directory is sticky and world-writable, the file too.
    await mkdir(report);
    await chmod(report, 0o1777);
    await writeFile(join(report, 'timings'), '');
    await chmod(join(report, 'timings'), 0o666);
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    mounts: [
      { source: timings, destination: SPLIT_TIMINGS_PATH, readOnly: true },
      { source: report, destination: '/run/strata/report' },
    ],
    async provideSplitTimings(content) {
      await writeFile(timings, content);
    },
    async collectReport() {
      // The machine controlled this directory: never follow a link it left there.
      let handle;
      try {
        handle = await open(join(report, 'timings'), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
      } catch {
        return [];
      }
      try {
        const stat = await handle.stat();
        if (!stat.isFile() || stat.size === 0) return [];
        const length = Math.min(stat.size, MAX_REPORT_BYTES);
        const buffer = Buffer.alloc(length);
        await handle.read(buffer, 0, length, stat.size - length);
        const text = buffer.toString('utf8');
        // Read from the middle: the first line may be cut.
        return parseTimingsReport(length < stat.size ? text.slice(text.indexOf('\n') + 1) : text);
      } finally {
        await handle.close();
      }
    },
    async remove() {
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Removes the run dirs of engine processes that no longer exist (killed mid-run). */
export async function reapMachineRunDirs(): Promise<void> {
  await mkdir(RUN_DIRS, { recursive: true, mode: 0o700 });
  for (const name of await readdir(RUN_DIRS).catch(() => [])) {
    const pid = Number(name.split('-')[0]);
    if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid || isProcessAlive(pid)) continue;
    await rm(join(RUN_DIRS, name), { recursive: true, force: true }).catch(() => {});
  }
}

/** Removes the run dirs' folder when no engine uses it any more (an engine closing leaves no trace). */
export async function removeRunDirsIfEmpty(): Promise<void> {
  await rmdir(RUN_DIRS).catch(() => {});
}
