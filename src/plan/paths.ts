// Path helpers for the planner: mapping repo paths through CopyRecords onto machine paths, and the
// ancestor relations the invalidation rules need. Machine paths are absolute, '/'-separated and never
// end in '/' (except '/').
import type { CopyRecord } from './types.js';

/** Repo-relative path in canonical form: no leading './' or '/', no trailing '/', '' for the root. */
export function normalizeSourcePath(path: string): string {
  let normalized = path.replace(/\/+/g, '/');
  while (normalized.startsWith('./')) normalized = normalized.slice(2);
  if (normalized === '.') return '';
  return normalized.replace(/^\/+/, '').replace(/\/+$/, '');
}

/** Machine path in canonical form: absolute, no trailing '/' except for '/'. */
export function normalizeMachinePath(path: string): string {
  const collapsed = ('/' + path).replace(/\/+/g, '/');
  return collapsed.length > 1 ? collapsed.replace(/\/+$/, '') : collapsed;
}

export function normalizeCopy(copy: CopyRecord): CopyRecord {
  const normalized: CopyRecord = { source: normalizeSourcePath(copy.source), dest: normalizeMachinePath(copy.dest) };
  if (copy.shadowed && copy.shadowed.length > 0) normalized.shadowed = copy.shadowed;
  if (copy.preexisting && copy.preexisting.length > 0) normalized.preexisting = copy.preexisting;
  if (copy.requestedDest !== undefined) {
    const requested = normalizeMachinePath(copy.requestedDest);
    if (requested !== normalized.dest) normalized.requestedDest = requested;
  }
  return normalized;
}

/**
 * Source paths of CLONEd repositories live under this prefix (`.git/clone/<id>/<path>`, see
 * src/engine/clone.ts). Git never stores a `.git` path, so they cannot collide with the repository's
 * own paths; a copy of the repository root does not include them.
 */
export const CLONE_SOURCE_PREFIX = '.git/clone/';

/** Where `sourcePath` landed through `copy`, or null when the copy did not include it. Expects normalized values. */
export function mapThroughCopy(copy: CopyRecord, sourcePath: string): string | null {
  let relative: string;
  if (copy.source === '') {
    if (sourcePath.startsWith(CLONE_SOURCE_PREFIX)) return null;
    relative = sourcePath;
  } else if (sourcePath === copy.source) relative = '';
  else if (sourcePath.startsWith(copy.source + '/')) relative = sourcePath.slice(copy.source.length + 1);
  else return null;
  if (relative === '') return copy.dest;
  return copy.dest === '/' ? '/' + relative : copy.dest + '/' + relative;
}

/** Parent directory of a machine path; null for '/'. */
export function parentOf(machinePath: string): string | null {
  if (machinePath === '/') return null;
  const slash = machinePath.lastIndexOf('/');
  return slash <= 0 ? '/' : machinePath.slice(0, slash);
}

/** Strict ancestors of a machine path, nearest first, ending with '/'. */
export function* ancestorsOf(machinePath: string): Generator<string> {
  for (let parent = parentOf(machinePath); parent !== null; parent = parentOf(parent)) yield parent;
}

/** Is `path` equal to `ancestor` or inside it? */
export function isSameOrUnder(path: string, ancestor: string): boolean {
  if (ancestor === '/') return path.startsWith('/');
  return path === ancestor || path.startsWith(ancestor + '/');
}

/** Are the two paths on one line (one is the other or an ancestor of it)? */
export function onSameLine(a: string, b: string): boolean {
  return isSameOrUnder(a, b) || isSameOrUnder(b, a);
}

/** Code-unit order, the order `Array.prototype.sort()` gives strings; used for all sorted path arrays here. */
export function comparePaths(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function isCanonicalMachinePath(path: string): boolean {
  return path === '/' || (path.startsWith('/') && !path.endsWith('/') && !path.includes('//'));
}

/**
 * The paths as a canonical list in comparePaths order, for binary search. A trace already is one
 * (StepTrace's contract), which one cheap pass confirms and then the array itself is used; anything
 * else is normalized and sorted, because a list in another order would silently hide a read.
 */
export function toSortedPaths(paths: readonly string[]): readonly string[] {
  let previous: string | undefined;
  let ordered = true;
  for (const path of paths) {
    if (!isCanonicalMachinePath(path) || (previous !== undefined && previous > path)) {
      ordered = false;
      break;
    }
    previous = path;
  }
  return ordered ? paths : paths.map(normalizeMachinePath).sort(comparePaths);
}

/** Index of the first entry >= `target` in a sorted list. */
function lowerBound(sortedPaths: readonly string[], target: string): number {
  let low = 0;
  let high = sortedPaths.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if ((sortedPaths[middle] as string) < target) low = middle + 1;
    else high = middle;
  }
  return low;
}

/** Is `machinePath` in the sorted list? O(log n). */
export function containsPath(sortedPaths: readonly string[], machinePath: string): boolean {
  return sortedPaths[lowerBound(sortedPaths, machinePath)] === machinePath;
}

/** Does the sorted list hold a path strictly under `machinePath`? O(log n): such paths are contiguous. */
export function hasPathUnder(sortedPaths: readonly string[], machinePath: string): boolean {
  const prefix = machinePath === '/' ? '/' : machinePath + '/';
  let low = lowerBound(sortedPaths, prefix);
  // For '/', the path itself sorts first among those starting with the prefix: skip it.
  if (sortedPaths[low] === machinePath) low += 1;
  const candidate = sortedPaths[low];
  return candidate !== undefined && candidate.startsWith(prefix);
}
