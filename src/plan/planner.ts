// The planner: among the cached chains of a Layerfile, pick the snapshot to restore for a new commit.
// Pure: values in, a RestorePlan out (no I/O, no clock). The per-chain work is in invalidation.ts.
import { analyzeChain, type ChainAnalysis } from './invalidation.js';
import { comparePaths } from './paths.js';
import type {
  CachedChain,
  CopyRecord,
  ChainId,
  InvalidationCause,
  PlanCandidate,
  PlanInput,
  PlanStep,
  ReapplyEntry,
  RestorePlan,
  SnapshotName,
  StepExplanation,
} from './types.js';

/** Where one candidate would restore. */
interface RestorePoint {
  afterStep: number;
  snapshot: SnapshotName;
  /** First step to execute; null when none is left. */
  firstRerun: number | null;
  /** Restoring the REPEATABLE step's own previous state (afterStep === firstRerun). */
  repeatable: boolean;
}

interface Option {
  chain: CachedChain;
  order: number;
  analysis: ChainAnalysis;
  restorePoint: RestorePoint | null;
}

/**
 * Decide where the new run starts. Deepest wins: most steps not executed, then the later snapshot (a
 * REPEATABLE base over a plain restore), then fewer files to reapply, then the smaller chainId, so the
 * answer does not depend on the order of `candidates`.
 */
export function plan(input: PlanInput): RestorePlan {
  const { steps } = input;
  const inheritedCopies = input.inheritedCopies ?? [];
  const options: Option[] = input.candidates.map((candidate, order) => optionFor(steps, candidate, order, inheritedCopies));

  const restorable = options.filter((option) => option.restorePoint !== null).sort((a, b) => compareOptions(steps, a, b));
  const best = restorable[0];
  if (best?.restorePoint) return restoreFrom(steps, best, best.restorePoint);

  // Nothing to restore: describe the candidate that came closest, if any.
  const closest = [...options].sort(
    (a, b) =>
      b.analysis.firstInvalid - a.analysis.firstInvalid ||
      a.analysis.changeCount - b.analysis.changeCount ||
      comparePaths(a.chain.chainId, b.chain.chainId) ||
      a.order - b.order,
  )[0];
  if (closest === undefined) {
    const explanations = steps.map(
      (step, index): StepExplanation => ({
        step: index,
        status: 'rerun',
        cause: {
          kind: 'no-cache',
          path: null,
          machinePath: null,
          stepThatObserved: null,
          message: `no cached run of this Layerfile to restore from (step ${index + 1}, line ${step.line})`,
        },
      }),
    );
    return { kind: 'fresh', chainId: null, explanations };
  }
  return { kind: 'fresh', chainId: closest.chain.chainId, explanations: explain(steps, closest, null) };
}

function optionFor(steps: readonly PlanStep[], candidate: PlanCandidate, order: number, inheritedCopies: readonly CopyRecord[]): Option {
  const analysis = analyzeChain(steps, candidate.chain, candidate.changes, inheritedCopies);
  return { chain: candidate.chain, order, analysis, restorePoint: restorePointFor(steps, candidate.chain, analysis) };
}

function restorePointFor(steps: readonly PlanStep[], chain: CachedChain, analysis: ChainAnalysis): RestorePoint | null {
  const first = analysis.firstInvalid;
  const wanted = steps[first];
  const previous = chain.steps[first];
  // RUN REPEATABLE: rerun on top of the state after this same step's previous run, if that run of it
  // (same definition key: same instruction, same everything before) succeeded and was snapshotted.
  if (
    wanted?.repeatable &&
    previous !== undefined &&
    previous.repeatable &&
    previous.succeeded &&
    previous.trace !== null &&
    previous.snapshot !== null &&
    previous.definitionKey === wanted.definitionKey
  ) {
    return { afterStep: first, snapshot: previous.snapshot, firstRerun: first, repeatable: true };
  }
  // Otherwise the last snapshot before the first invalid step (snapshot-less steps rerun on top of it).
  for (let step = first - 1; step >= 0; step--) {
    const snapshot = chain.steps[step]?.snapshot ?? null;
    if (snapshot !== null) {
      return { afterStep: step, snapshot, firstRerun: step + 1 < steps.length ? step + 1 : null, repeatable: false };
    }
  }
  return null;
}

function compareOptions(steps: readonly PlanStep[], a: Option, b: Option): number {
  const cachedSteps = (option: Option): number => option.restorePoint?.firstRerun ?? steps.length;
  // RUN REPEATABLE builds on the state after the step's PREVIOUS run: among equally deep options the
  // most recent chain wins before anything else, or accumulated state would be lost.
  const repeatable = a.restorePoint?.repeatable === true && b.restorePoint?.repeatable === true;
  const recency = (b.chain.createdAt ?? 0) - (a.chain.createdAt ?? 0);
  return (
    cachedSteps(b) - cachedSteps(a) ||
    (b.restorePoint?.afterStep ?? -1) - (a.restorePoint?.afterStep ?? -1) ||
    (repeatable ? recency : 0) ||
    a.analysis.changeCount - b.analysis.changeCount ||
    recency ||
    comparePaths(a.chain.chainId, b.chain.chainId) ||
    a.order - b.order
  );
}

function restoreFrom(steps: readonly PlanStep[], option: Option, point: RestorePoint): RestorePlan {
  // Changed files that the restored machine received through copies up to the restored step; later
  // copies run again and copy the new commit themselves. In copy order, so a later copy wins.
  const reapply: ReapplyEntry[] = option.analysis.mapped
    .filter((entry) => entry.copyStep <= point.afterStep)
    .sort((a, b) => a.copyStep - b.copyStep || comparePaths(a.machinePath, b.machinePath))
    .map((entry) => ({
      source: entry.change.path,
      dest: entry.machinePath,
      change: entry.change.change,
      copyStep: entry.copyStep,
    }));
  return {
    kind: 'restore',
    chainId: option.chain.chainId,
    afterStep: point.afterStep,
    snapshot: point.snapshot,
    reapply,
    firstRerun: point.firstRerun,
    ...(point.repeatable ? { repeatableBase: { step: point.afterStep, snapshot: point.snapshot } } : {}),
    explanations: explain(steps, option, point),
  };
}

/** One explanation per step: cached with the snapshot used, or rerun with the first cause. */
function explain(steps: readonly PlanStep[], option: Option, point: RestorePoint | null): StepExplanation[] {
  const chainId: ChainId = option.chain.chainId;
  const { firstInvalid, cause } = option.analysis;
  const reused = point === null ? 0 : (point.firstRerun ?? steps.length);
  return steps.map((step, index): StepExplanation => {
    if (point !== null && index < reused) {
      return {
        step: index,
        status: 'cached',
        chainId,
        snapshot: point.snapshot,
        message: `cached: restored snapshot ${point.snapshot} (after step ${point.afterStep + 1})`,
      };
    }
    const rerun = (why: InvalidationCause): StepExplanation => ({ step: index, status: 'rerun', cause: why });
    if (index < firstInvalid) {
      const base = point === null ? 'the base' : `snapshot ${point.snapshot} (after step ${point.afterStep + 1})`;
      return rerun({
        kind: 'no-snapshot',
        path: null,
        machinePath: null,
        stepThatObserved: index,
        message: `step ${index + 1} (line ${step.line}) is unchanged, but ${chainId} kept no snapshot after it: it reruns on top of ${base}`,
      });
    }
    if (index === firstInvalid && cause !== null) {
      if (point?.repeatable) {
        return rerun({ ...cause, message: `${cause.message}; RUN REPEATABLE: runs again on top of its previous state (snapshot ${point.snapshot})` });
      }
      return rerun(cause);
    }
    return rerun({
      kind: 'after-rerun',
      path: null,
      machinePath: null,
      stepThatObserved: firstInvalid,
      message: `reruns because step ${firstInvalid + 1} (line ${steps[firstInvalid]?.line ?? 0}) reruns`,
    });
  });
}
