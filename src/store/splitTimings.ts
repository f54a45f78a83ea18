// Timings for strata-split (machine-tools/bin/strata-split): how long each test file took in earlier
// runs, so a SPLIT's copies get shares balanced by time instead of by file size.
//
// Steps report timings by writing `path seconds` lines to $STRATA_TIMINGS_OUT (strata-split --run does
// it for you); the engine stores them here per repository + Layerfile when the runner ends (newest wins
// per path). The copies of a SPLIT must all compute their shares from the SAME timings, or a file could
// land in no copy while some copies are cached and others rerun (a wrong green). So the timings a SPLIT
// hands to its copies are frozen, when the SPLIT step runs, into an immutable set named by its digest;
// the SPLIT step's chain row keeps that digest, and the engine never lets a copy reuse steps computed
// with another set than copy 0's in the same run (src/engine/runLayerfile.ts).
import { createHash } from 'node:crypto';
import type { Db } from './database.js';

export interface TimingEntry {
  path: string;
  seconds: number;
}

export interface SplitTimings {
  /** Stores reported timings (the newest report of a path wins); returns how many were stored. */
  record(repo: string, layerfile: string, entries: readonly TimingEntry[], now: number): number;
  /** Freezes the current timings of (repo, layerfile) into an immutable set: its digest, or null when there are none. */
  freeze(repo: string, layerfile: string, now: number): string | null;
  /** A frozen set as `path seconds` lines, or undefined when it is gone. */
  content(digest: string): string | undefined;
  /** Whether a frozen set is still stored (without reading it). */
  has(digest: string): boolean;
  /**
   * Removes frozen sets no chain step names any more, once older than `minAgeMs` (a set frozen for a
   * SPLIT step that has not been recorded yet must survive); returns how many went.
   */
  pruneUnreferenced(now: number, minAgeMs: number): number;
}

/** Timings not reported again for this long are forgotten (renamed or deleted tests). */
const FORGET_AFTER_MS = 90 * 24 * 3600 * 1000;
/** At most this many paths per Layerfile are kept and frozen (a report's newest): a report is a hint, not a dump. */
const MAX_TIMING_PATHS = 100_000;

/**
 * Parses a timings report: one `path seconds` line per file (the path may contain spaces; the last
 * field is the time). Lines that do not parse, NUL bytes, negative or absurd times are ignored.
 */
export function parseTimingsReport(text: string): TimingEntry[] {
  const entries: TimingEntry[] = [];
  for (const raw of text.split('\n')) {
    const match = /^(.*\S)[ \t]+([0-9]+(?:\.[0-9]+)?)[ \t\r]*$/.exec(raw);
    if (!match) continue;
    const path = normalizePath(match[1] as string);
    const seconds = Number(match[2]);
    if (path === '' || path.includes('\0') || !Number.isFinite(seconds) || seconds > 7 * 24 * 3600) continue;
    entries.push({ path, seconds });
  }
  return entries;
}

/** `./tests/a.sh` and `tests/a.sh` are the same file to strata-split (it strips `./` the same way). */
function normalizePath(path: string): string {
  return path.trim().replace(/^(\.\/)+/, '');
}

export function createSplitTimings(db: Db): SplitTimings {
  const upsert = db.prepare<[string, string, string, number, number]>(`
    INSERT INTO split_timings (repo, layerfile, path, seconds, updated_at) VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (repo, layerfile, path) DO UPDATE SET seconds = excluded.seconds, updated_at = excluded.updated_at`);
  const forgetOld = db.prepare<[string, string, number]>('DELETE FROM split_timings WHERE repo = ? AND layerfile = ? AND updated_at < ?');
  const current = db.prepare<[string, string, number], { path: string; seconds: number }>(
    'SELECT path, seconds FROM split_timings WHERE repo = ? AND layerfile = ? ORDER BY updated_at DESC, path LIMIT ?',
  );
  const insertSet = db.prepare<[string, string, number]>(`
    INSERT INTO split_timing_sets (digest, content, created_at) VALUES (?, ?, ?)
    ON CONFLICT (digest) DO UPDATE SET created_at = excluded.created_at`);
  const selectSet = db.prepare<[string], { content: string }>('SELECT content FROM split_timing_sets WHERE digest = ?');
  const setExists = db.prepare<[string], { found: number }>('SELECT 1 AS found FROM split_timing_sets WHERE digest = ?');
  const pruneSets = db.prepare<[number]>(`
    DELETE FROM split_timing_sets WHERE created_at < ?
      AND digest NOT IN (SELECT split_timings FROM chain_steps WHERE split_timings IS NOT NULL)`);

  return {
    record(repo, layerfile, entries, now) {
      const newest = new Map<string, number>();
      for (const e of entries.slice(-MAX_TIMING_PATHS)) newest.set(e.path, e.seconds);
      db.transaction(() => {
        for (const [path, seconds] of newest) upsert.run(repo, layerfile, path, seconds, now);
        forgetOld.run(repo, layerfile, now - FORGET_AFTER_MS);
      })();
      return newest.size;
    },
    freeze(repo, layerfile, now) {
      const rows = current.all(repo, layerfile, MAX_TIMING_PATHS);
      if (rows.length === 0) return null;
      // Sorted by path: the same timings always freeze into the same set.
      rows.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
      const content = rows.map((r) => `${r.path} ${formatSeconds(r.seconds)}\n`).join('');
      const digest = createHash('sha256').update(content).digest('hex');
      insertSet.run(digest, content, now);
      return digest;
    },
    content(digest) {
      return selectSet.get(digest)?.content;
    },
    has(digest) {
      return setExists.get(digest) !== undefined;
    },
    pruneUnreferenced(now, minAgeMs) {
      return pruneSets.run(now - minAgeMs).changes;
    },
  };
}

function formatSeconds(seconds: number): string {
  return String(Math.round(seconds * 1000) / 1000);
}
