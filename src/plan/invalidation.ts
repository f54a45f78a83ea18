// Trace ∩ change: for one cached chain and the changes since its source tree, the first step of the new
// run that cannot be reused, with the first cause found for it. A wrong reuse is the worst bug strata can
// have, so every rule errs towards invalidating; a spurious rerun only costs time.
//
// Cost: O(steps) when nothing changed, the traces untouched. Otherwise each (change, copy) pair is looked
// up in each step's sorted trace lists by binary search, O(log trace size) per lookup; the only linear
// work is one pass per trace confirming it is sorted (memoized per trace object).
import type { StepTrace } from '../trace/types.js';
import {
  ancestorsOf,
  comparePaths,
  containsPath,
  hasPathUnder,
  isSameOrUnder,
  mapThroughCopy,
  normalizeCopy,
  normalizeMachinePath,
  normalizeSourcePath,
  onSameLine,
  parentOf,
  toSortedPaths,
} from './paths.js';
import type {
  CachedChain,
  CopyRecord,
  InvalidationCause,
  InvalidationKind,
  PathState,
  PlanStep,
  SourceChange,
} from './types.js';

/** A real change (both sides differ), with what the rules need to know about it. */
export interface ClassifiedChange {
  change: SourceChange;
  /** Normalized repo path. */
  path: string;
  existsAfter: boolean;
  /** Appeared, deleted or changed type: what a directory listing sees. */
  membership: boolean;
  /** The kind to report when the step observed this exact path. */
  kind: InvalidationKind;
  /** e.g. "content changed", "appeared", "mode changed (644 → 755)". */
  description: string;
}

/** A change mapped through one CopyRecord onto the machine. */
export interface MappedChange {
  change: ClassifiedChange;
  machinePath: string;
  copyStep: number;
  copy: CopyRecord;
}

export interface ChainAnalysis {
  /** First step that cannot be reused; steps.length when all can. */
  firstInvalid: number;
  /** Why firstInvalid cannot be reused; null when firstInvalid === steps.length. */
  cause: InvalidationCause | null;
  /** Every change mapped through the chain's copies (ordered by path, then copy step): the reapply source. */
  mapped: MappedChange[];
  /** Number of real changes. */
  changeCount: number;
}

export function classifyChange(change: SourceChange): ClassifiedChange | null {
  const { before, after } = change;
  const path = normalizeSourcePath(change.path);
  if (before === null && after === null) return null;
  const base = { change, path, existsAfter: after !== null };
  if (before === null) return { ...base, membership: true, kind: 'appeared', description: 'appeared' };
  if (after === null) return { ...base, membership: true, kind: 'deleted', description: 'was deleted' };
  if (before.type !== after.type) {
    return { ...base, membership: true, kind: 'type-changed', description: `changed type (${before.type} → ${after.type})` };
  }
  if (before.contentId !== after.contentId || before.size !== after.size) {
    const description =
      after.type === 'symlink' ? `symlink retargeted (${before.contentId} → ${after.contentId})` : 'content changed';
    return { ...base, membership: false, kind: 'content-changed', description };
  }
  if (before.mode !== after.mode) {
    return { ...base, membership: false, kind: 'mode-changed', description: `mode changed (${octal(before)} → ${octal(after)})` };
  }
  return null;
}

function octal(state: PathState): string {
  return (state.mode & 0o7777).toString(8);
}

/** A trace as canonical sorted lists, searched by binary search (no per-change scan, no Set building). */
interface IndexedTrace {
  read: readonly string[];
  statted: readonly string[];
  listed: readonly string[];
  absent: readonly string[];
  written: readonly string[];
}

const indexedTraces = new WeakMap<StepTrace, IndexedTrace>();

function indexTrace(trace: StepTrace): IndexedTrace {
  const known = indexedTraces.get(trace);
  if (known !== undefined) return known;
  const indexed: IndexedTrace = {
    read: toSortedPaths(trace.read),
    statted: toSortedPaths(trace.statted),
    listed: toSortedPaths(trace.listed),
    absent: toSortedPaths(trace.absent),
    written: toSortedPaths(trace.written),
  };
  indexedTraces.set(trace, indexed);
  return indexed;
}

interface Observer {
  step: number;
  line: number;
}

function at(observer: Observer): string {
  return `step ${observer.step + 1}, line ${observer.line}`;
}

function changeCause(mapped: MappedChange, kind: InvalidationKind, step: number, message: string): InvalidationCause {
  return { kind, path: mapped.change.path, machinePath: mapped.machinePath, stepThatObserved: step, message };
}

/**
 * Does this step's trace make it depend on this mapped change? Rules (ARCHITECTURE decision 4):
 * - read / stat'ed path: any change at it (content, type, mode, appearance, deletion). A stat sees size,
 *   mode and mtime, and the reapplied file gets a new mtime, so even a same-size edit counts.
 * - listed directory: an entry appeared, disappeared or changed type.
 * - absent path: it, or a path under it, now exists.
 * - written path: the commit changes it, a path under it (a directory the step created, removed or
 *   renamed), or, for an appearing/disappearing/retyped path, the path holds something the step wrote.
 */
function traceHit(trace: IndexedTrace, ownDests: readonly string[], mapped: MappedChange, observer: Observer): InvalidationCause | null {
  const { change, machinePath } = mapped;
  const step = observer.step;
  if (containsPath(trace.read, machinePath)) {
    return changeCause(mapped, change.kind, step, `${change.path} ${change.description} (read by ${at(observer)})`);
  }
  if (containsPath(trace.statted, machinePath)) {
    return changeCause(mapped, change.kind, step, `${change.path} ${change.description} (stat'ed by ${at(observer)})`);
  }
  const parent = parentOf(machinePath);
  if (change.membership && parent !== null && containsPath(trace.listed, parent)) {
    return changeCause(
      mapped,
      'listing-changed',
      step,
      `${change.path} ${change.description} (its directory ${parent} was listed by ${at(observer)})`,
    );
  }
  if (change.existsAfter) {
    if (containsPath(trace.absent, machinePath)) {
      return changeCause(mapped, 'appeared', step, `${change.path} ${change.description} (was probed absent by ${at(observer)})`);
    }
    for (const ancestor of ancestorsOf(machinePath)) {
      if (containsPath(trace.absent, ancestor)) {
        return changeCause(mapped, 'appeared', step, `${change.path} appeared (${ancestor} was probed absent by ${at(observer)})`);
      }
    }
  }
  // A COPY step's own copies are not "writes" that conflict with the files they copied.
  if (trace.written.length > 0 && !ownDests.some((dest) => isSameOrUnder(machinePath, dest))) {
    const written = writtenOverlap(trace, machinePath, change.membership);
    if (written !== null) {
      return changeCause(mapped, 'wrote-changed', step, `${change.path} ${change.description} (${written} was written by ${at(observer)})`);
    }
  }
  return null;
}

/** The written path that overlaps `machinePath` (itself, an ancestor, or for membership changes a descendant), or null. */
function writtenOverlap(trace: IndexedTrace, machinePath: string, membership: boolean): string | null {
  if (containsPath(trace.written, machinePath)) return machinePath;
  for (const ancestor of ancestorsOf(machinePath)) if (containsPath(trace.written, ancestor)) return ancestor;
  if (membership && hasPathUnder(trace.written, machinePath)) return `paths under ${machinePath}`;
  return null;
}

/**
 * What else may be at `machinePath` (or on its line: above or below it) before the copy whose source
 * `sourcePath` was deleted: an earlier copy of another source path, or a path an earlier step wrote.
 * Returns a description, or null when nothing earlier that strata knows of overlaps it.
 */
function uncoveredByDeletion(
  earlierCopies: ReadonlyArray<{ step: number; copy: CopyRecord }>,
  earlierSteps: ReadonlyArray<CachedChain['steps'][number]>,
  sourcePath: string,
  machinePath: string,
): string | null {
  for (const { step, copy } of earlierCopies) {
    if (!onSameLine(machinePath, copy.dest)) continue;
    // The same source path landing there through the earlier copy is deleted there too.
    if (mapThroughCopy(copy, sourcePath) === machinePath) continue;
    const what = copy.source === '' ? 'the repo root' : copy.source;
    return `${step < 0 ? 'the parent Layerfile' : `step ${step + 1}`} copied ${what} to ${copy.dest} before`;
  }
  for (const [step, cached] of earlierSteps.entries()) {
    if (cached.trace === null || cached.trace.written.length === 0) continue;
    const written = writtenOverlap(indexTrace(cached.trace), machinePath, true);
    if (written !== null) return `step ${step + 1} wrote ${written} before`;
  }
  return null;
}

/**
 * The machine path at or above `machinePath` (mapped through `copy`) that the machine held before the
 * copy ran (CopyRecord.shadowed: exactly that path; CopyRecord.preexisting: that path or an ancestor
 * below the destination), or null.
 */
function inMachineBeforeCopy(copy: CopyRecord, machinePath: string): string | null {
  if (machinePath === copy.dest) return null;
  const relative = machinePath.slice(copy.dest === '/' ? 1 : copy.dest.length + 1);
  if (copy.shadowed?.includes(relative)) return machinePath;
  const preexisting = copy.preexisting;
  if (preexisting === undefined) return null;
  for (let path = relative; path !== ''; path = path.includes('/') ? path.slice(0, path.lastIndexOf('/')) : '') {
    if (preexisting.includes(path)) return copy.dest === '/' ? `/${path}` : `${copy.dest}/${path}`;
  }
  return null;
}

/**
 * Analyze one candidate chain against the new run's steps. `inheritedCopies` are the copies the parent
 * Layerfile(s) made before this Layerfile's first step (FROM ../parent): they count as made at step -1,
 * so every step may have observed them and every restore re-applies their changes.
 */
export function analyzeChain(
  steps: readonly PlanStep[],
  chain: CachedChain,
  changes: readonly SourceChange[],
  inheritedCopies: readonly CopyRecord[] = [],
): ChainAnalysis {
  const relevantSteps = Math.min(steps.length, chain.steps.length);
  const classified = changes
    .map(classifyChange)
    .filter((c): c is ClassifiedChange => c !== null)
    .sort((a, b) => comparePaths(a.path, b.path));

  const copies: Array<{ step: number; copy: CopyRecord }> = inheritedCopies.map((copy) => ({ step: -1, copy: normalizeCopy(copy) }));
  for (let step = 0; step < relevantSteps; step++) {
    for (const copy of chain.steps[step]?.copies ?? []) copies.push({ step, copy: normalizeCopy(copy) });
  }

  const mapped: MappedChange[] = [];
  // Causes that belong to COPY steps themselves, first one per step (changes are in path order).
  const copyCauses = new Map<number, InvalidationCause>();
  const addCopyCause = (step: number, cause: InvalidationCause): void => {
    if (!copyCauses.has(step)) copyCauses.set(step, cause);
  };
  for (const change of classified) {
    for (const [index, { step, copy }] of copies.entries()) {
      const machinePath = mapThroughCopy(copy, change.path);
      if (machinePath === null) continue;
      const entry: MappedChange = { change, machinePath, copyStep: step, copy };
      mapped.push(entry);
      const line = steps[step]?.line ?? 0;
      // The copied path itself vanished, appeared or changed type: the COPY would fail or land elsewhere.
      if (copy.source !== '' && change.path === copy.source && change.membership) {
        addCopyCause(step, changeCause(entry, change.kind, step, `${change.path} ${change.description} (copied by step ${step + 1}, line ${line})`));
      }
      // A deletion under something an earlier copy (or a traced write of an earlier step) put there: in a
      // fresh run the earlier file shows again once this copy no longer covers it, but re-applying the
      // deletion would remove it. The copy step reruns instead, on the state from before it.
      if (!change.existsAfter && step >= 0) {
        // Or something that was in the machine before the copy wrote over it (the base image's file),
        // or before a restore wrote over it (the path was added by a later commit).
        const before = inMachineBeforeCopy(copy, machinePath);
        if (before !== null) {
          addCopyCause(step, changeCause(entry, 'deleted', step, `${change.path} ${change.description}, and ${before} was in the machine before step ${step + 1} (line ${line}) copied over it: the copy runs again`));
        }
        const uncovered = uncoveredByDeletion(copies.slice(0, index), chain.steps.slice(0, step), change.path, machinePath);
        if (uncovered !== null) {
          addCopyCause(step, changeCause(entry, 'deleted', step, `${change.path} ${change.description}, and ${uncovered}: step ${step + 1} (line ${line}) copies again`));
        }
      }
      // A later copy of something else over this machine path: reapplying would undo that later copy.
      for (let laterIndex = index + 1; laterIndex < copies.length; laterIndex++) {
        const later = copies[laterIndex] as { step: number; copy: CopyRecord };
        // Also when the later copy went through a symlink at this path (it would land elsewhere now).
        const requested = later.copy.requestedDest;
        if (!onSameLine(machinePath, later.copy.dest) && !(requested !== undefined && onSameLine(machinePath, requested))) continue;
        if (mapThroughCopy(later.copy, change.path) === machinePath) continue;
        const laterLine = steps[later.step]?.line ?? 0;
        const what = later.copy.source === '' ? 'the repo root' : later.copy.source;
        addCopyCause(
          later.step,
          changeCause(
            entry,
            'wrote-changed',
            later.step,
            `${change.path} ${change.description}, but step ${later.step + 1} (line ${laterLine}) copies ${what} over ${later.copy.dest}`,
          ),
        );
      }
    }
  }

  const result = (firstInvalid: number, cause: InvalidationCause | null): ChainAnalysis => ({
    firstInvalid,
    cause,
    mapped,
    changeCount: classified.length,
  });
  const noCache = (step: number, message: string): ChainAnalysis =>
    result(step, { kind: 'no-cache', path: null, machinePath: null, stepThatObserved: step, message });

  for (let step = 0; step < steps.length; step++) {
    const wanted = steps[step] as PlanStep;
    const cached = chain.steps[step];
    if (cached === undefined) return noCache(step, `the cached run ${chain.chainId} stopped before step ${step + 1} (line ${wanted.line})`);
    if (cached.definitionKey !== wanted.definitionKey) {
      return result(step, {
        kind: 'definition-changed',
        path: null,
        machinePath: null,
        stepThatObserved: step,
        message:
          wanted.kind === 'buildEnv' || wanted.kind === 'secretEnv'
            ? `Layerfile or the values it names changed at step ${step + 1} (line ${wanted.line}: ${wanted.text})`
            : `Layerfile changed at step ${step + 1} (line ${wanted.line}: ${wanted.text})`,
      });
    }
    if (!cached.succeeded) return noCache(step, `step ${step + 1} (line ${wanted.line}) failed in the cached run ${chain.chainId}`);
    if (cached.trace === null) return noCache(step, `step ${step + 1} (line ${wanted.line}) has no recorded trace in ${chain.chainId} (the run crashed)`);
    const copyCause = copyCauses.get(step);
    if (copyCause !== undefined) return result(step, copyCause);
    if (mapped.length === 0) continue;
    const observer: Observer = { step, line: wanted.line };
    const ownDests = cached.copies.map((copy) => normalizeMachinePath(copy.dest));
    let trace: IndexedTrace | null = null;
    for (const entry of mapped) {
      if (entry.copyStep > step) continue; // copied later: this step could not have seen it
      trace ??= indexTrace(cached.trace);
      const cause = traceHit(trace, ownDests, entry, observer);
      if (cause !== null) return result(step, cause);
    }
  }
  return result(steps.length, null);
}
