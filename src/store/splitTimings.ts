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

export interface TimingEntry {
  path: string;
  seconds: number;
}

export interface SplitTimings {
  /** Stores reported timings (the newest report of a path wins); returns how many were stored. */
  record(repo: string, layerfile: string, entries: readonly TimingEntry[], now: number): Promise<number>;
  /** Freezes the current timings of (repo, layerfile) into an immutable set: its digest, or null when there are none. */
  freeze(repo: string, layerfile: string, now: number): Promise<string | null>;
  /** A frozen set as `path seconds` lines, or undefined when it is gone. */
  content(digest: string): Promise<string | undefined>;
  /** Whether a frozen set is still stored (without reading it). */
  has(digest: string): Promise<boolean>;
  /**
   * Removes frozen sets no chain step names any more, once older than `minAgeMs` (a set frozen for a
   * SPLIT step that has not been recorded yet must survive); returns how many went.
   */
  pruneUnreferenced(now: number, minAgeMs: number): Promise<number>;
}

/** Timings not reported again for this long are forgotten (renamed or deleted tests). */
export const FORGET_AFTER_MS = 90 * 24 * 3600 * 1000;
/** At most this many paths per Layerfile are kept and frozen (a report's newest): a report is a hint, not a dump. */
export const MAX_TIMING_PATHS = 100_000;

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
