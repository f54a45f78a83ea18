// Where one runner restores from: the candidate chains (its own earlier runs, plus copy 0's for a SPLIT
// copy), the rules that shorten what a candidate may give (--from-checkpoint, strata-split timings),
// the planner's decision, and the per-step explanations the reporters and `strata why` show.
// Reads the cache index, the snapshot store and git to gather candidates; the rest is pure.
import type { Instruction } from '../layerfile/types.js';
import { plan as planRestore } from '../plan/planner.js';
import type { CachedChain, CopyRecord, PlanStep, ReapplyEntry, RestorePlan, SourceChange, StepExplanation as PlanExplanation } from '../plan/types.js';
import type { SnapshotName } from '../snapshot/types.js';
import { diffTrees, type TreeId } from '../source/git.js';
import type { ChainClone, ChainRecord } from '../store/cacheIndex.js';
import { StrataError } from '../errors.js';
import { cloneChanges } from './clone.js';
import type { EngineDeps } from './ports.js';
import type { StepExplanation } from './reporter.js';

/** One step of the Layerfile as the engine runs it. */
export interface StepEntry {
  /** Index among the Layerfile's steps (what the planner and the cache index count). */
  step: number;
  instructionIndex: number;
  instruction: Instruction;
  definitionKey: string;
}

/** A chain of the cache index the planner may restore from, with what changed since it ran. */
export interface Candidate {
  chain: CachedChain;
  changes: SourceChange[];
  record: ChainRecord;
}

/**
 * Candidates: earlier chains of this runner that start the same way, with what changed since.
 * A SPLIT copy > 0 also gets copy 0's chains, this run's included (copy 0 reached the SPLIT before
 * this copy plans): their keys equal this copy's up to the SPLIT, so with an ordered SPLIT they can
 * only give a restore point before it (the planner stops at the first differing key) and the prefix
 * runs once. With UNORDERED the keys stay equal after it too, and this copy may restore state copy 0
 * built after the SPLIT: allowed on purpose, unordered copies are interchangeable (same SPLIT_NUM,
 * no SPLIT). With --no-cache, only this run's chain of copy 0 is used (built now, from this tree).
 */
export async function gatherCandidates(
  deps: Pick<EngineDeps, 'cacheIndex' | 'snapshots' | 'remotes'>,
  input: {
    repo: string;
    runId: string;
    repoDir: string;
    tree: TreeId;
    noCache: boolean;
    runner: string;
    /** The Layerfile's own runner id: copy 0's. */
    firstCopyRunner: string;
    copyIndex: number;
    steps: readonly StepEntry[];
    clones: readonly ChainClone[];
  },
): Promise<Candidate[]> {
  const { steps } = input;
  const firstCopyChains = input.copyIndex > 0 && steps.length > 0 ? await deps.cacheIndex.candidates(input.repo, input.firstCopyRunner, steps[0]!.definitionKey) : [];
  const chains =
    steps.length === 0
      ? []
      : input.noCache
        ? firstCopyChains.filter((c) => c.runId === input.runId)
        : [...(await deps.cacheIndex.candidates(input.repo, input.runner, steps[0]!.definitionKey)), ...firstCopyChains];
  const compared = await Promise.all(
    chains.map(async (record): Promise<Candidate | null> => {
      // A snapshot the index names but the store lost (removed by hand, a damaged store) is simply
      // not restorable; the planner then restores an earlier one or starts fresh.
      const present = await Promise.all(record.steps.map((s) => (s.snapshot === null ? false : deps.snapshots.has(s.snapshot as SnapshotName))));
      const chain: CachedChain = {
        chainId: record.id,
        sourceTreeId: record.tree,
        complete: record.complete,
        createdAt: record.createdAt,
        steps: record.steps.map((s, i) => ({
          definitionKey: s.definitionKey,
          snapshot: present[i] ? (s.snapshot as SnapshotName) : null,
          trace: s.trace,
          copies: s.copies,
          repeatable: s.repeatable,
          succeeded: s.succeeded,
        })),
      };
      // A chain whose remotes' trees cannot be compared any more is not a safe candidate.
      const remoteChanges = await cloneChanges(deps.remotes, record.clones, input.clones);
      if (remoteChanges === null) return null;
      // The chain's tree may be gone from the repository (a working-tree id that `git gc` pruned, a
      // repository re-cloned): without a diff the chain cannot be checked, so it is not a candidate.
      const repoChanges = await diffTrees(input.repoDir, record.tree as TreeId, input.tree).catch(() => null);
      if (repoChanges === null) return null;
      return { chain, changes: [...repoChanges, ...remoteChanges], record };
    }),
  );
  return compared.filter((c): c is Candidate => c !== null);
}

/** The planner's decision for one runner, with what the engine derives from it. */
export interface RestoreDecision {
  plan: RestorePlan;
  /** The cache index record of the chain restored from (undefined: fresh). */
  sourceChain: ChainRecord | undefined;
  /** The first step that runs (steps.length: none). */
  firstToRun: number;
  /** The step whose snapshot is restored (-1: none). */
  restoredThrough: number;
  /** The last cached step carried into the new chain. */
  carriedThrough: number;
  /** The SPLIT's step index, when the steps have one. */
  splitStep: number | undefined;
  /** Why a step is cached or runs, for the reporters and the run log. */
  explainStep: (step: number) => StepExplanation | undefined;
}

/** The strata-split timing sets the candidates' SPLIT steps name that are still stored (for decideRestore). */
export async function storedSplitTimings(candidates: readonly Candidate[], has: (digest: string) => Promise<boolean>): Promise<ReadonlySet<string>> {
  const named = new Set(candidates.flatMap((c) => c.record.steps.map((s) => s.splitTimings ?? null)).filter((d): d is string => d !== null));
  const stored = await Promise.all([...named].map(async (digest) => ((await has(digest)) ? digest : null)));
  return new Set(stored.filter((d): d is string => d !== null));
}

/** Decides where a runner restores from, given its steps and the gathered candidates. */
export function decideRestore(input: {
  instructions: readonly Instruction[];
  steps: readonly StepEntry[];
  planSteps: PlanStep[];
  candidates: readonly Candidate[];
  inheritedCopies: CopyRecord[];
  runner: string;
  /** The Layerfile's own runner id: copy 0's. */
  firstCopyRunner: string;
  split: Extract<Instruction, { kind: 'split' }> | undefined;
  copyIndex: number;
  /** Copies > 0: the digest of the strata-split timings copy 0 uses in this run (SplitCopy.timings). */
  copyTimings: string | null | undefined;
  /** Are these strata-split timings still stored? (Asked of the candidates' SPLIT steps: storedSplitTimings.) */
  timingsStored: (digest: string) => boolean;
  fromCheckpoint: string | undefined;
}): RestoreDecision {
  const { instructions, steps, planSteps, inheritedCopies, copyIndex, split } = input;
  // --from-checkpoint NAME: the cached chains count only up to the named CHECKPOINT, so at best the
  // state before it is restored and every step after it runs again.
  const checkpointAt = input.fromCheckpoint === undefined ? -1 : instructions.findIndex((i) => i.kind === 'checkpoint' && i.mode === 'named' && i.name === input.fromCheckpoint);
  const stepsBeforeCheckpoint = checkpointAt < 0 ? Infinity : steps.filter((s) => s.instructionIndex < checkpointAt).length;
  // strata-split timings: a chain's steps after the SPLIT count only if its SPLIT step used the
  // timings every copy uses in this run (copy 0's; for copy 0 itself, any set still stored), so all
  // copies' shares come from one set. Otherwise the SPLIT and what follows run again.
  const splitStep = steps.find((s) => s.instruction.kind === 'split')?.step;
  const usableTimings = (digest: string | null): boolean => (copyIndex > 0 ? digest === (input.copyTimings ?? null) : digest === null || input.timingsStored(digest));
  const otherTimings = (record: ChainRecord): boolean =>
    splitStep !== undefined && record.steps.length > splitStep && !usableTimings(record.steps[splitStep]?.splitTimings ?? null);
  const usableUpTo = (c: Candidate, usable: number): Candidate =>
    c.chain.steps.length <= usable ? c : { ...c, chain: { ...c.chain, complete: false, steps: c.chain.steps.slice(0, usable) } };
  const beforeTimingsRule = input.candidates.map((c) => usableUpTo(c, stepsBeforeCheckpoint));
  const candidates = beforeTimingsRule.map((c) => (otherTimings(c.record) ? usableUpTo(c, Math.min(stepsBeforeCheckpoint, splitStep as number)) : c));
  const plannedRestore = planRestore({ steps: planSteps, candidates, inheritedCopies });
  // Did the rule cost this copy a deeper restore? (Said in the SPLIT step's explanation.)
  const firstRerunOf = (p: RestorePlan): number => (p.kind === 'fresh' ? 0 : (p.firstRerun ?? steps.length));
  const rerunForTimings =
    candidates.some((c, i) => c !== beforeTimingsRule[i]) &&
    firstRerunOf(planRestore({ steps: planSteps, candidates: beforeTimingsRule, inheritedCopies })) > firstRerunOf(plannedRestore);
  // git paths are decoded as UTF-8, so a changed name that is not valid UTF-8 cannot be written into a
  // restored machine by name (traces decode it the same lossy way: it still invalidates). Rather than
  // fail, such a Layerfile runs from the start: slower, never wrong.
  const unwritableChange: ReapplyEntry | undefined = plannedRestore.kind === 'restore' ? plannedRestore.reapply.find((e) => e.change.path.includes('\uFFFD')) : undefined;
  const restorePlan = unwritableChange ? planRestore({ steps: planSteps, candidates: [], inheritedCopies }) : plannedRestore;
  const sourceChain = restorePlan.kind === 'restore' ? candidates.find((c) => c.chain.chainId === restorePlan.chainId)?.record : undefined;

  const firstToRun = restorePlan.kind === 'fresh' ? 0 : (restorePlan.firstRerun ?? steps.length);
  const restoredThrough = restorePlan.kind === 'restore' ? restorePlan.afterStep : -1;
  const carriedThrough = Math.min(restoredThrough, firstToRun - 1);

  // A copy that restored copy 0's prefix reruns its SPLIT line because its index differs, not because
  // the Layerfile changed: say so.
  const prefixFrom = sourceChain !== undefined && sourceChain.runner !== input.runner ? sourceChain.runner : null;
  function explainStep(step: number): StepExplanation | undefined {
    if (rerunForTimings && step === splitStep && step === firstToRun) {
      return { cached: false, message: `SPLIT copy ${copyIndex} of ${split?.count}: its cached steps after the SPLIT used other strata-split timings than ${input.firstCopyRunner} uses in this run; every copy's share must come from the same timings` };
    }
    if (prefixFrom !== null && split && step === splitStep && step >= firstToRun) {
      return { cached: false, message: `SPLIT copy ${copyIndex} of ${split.count}: the steps before it were restored from ${prefixFrom}; this copy runs on its own from here` };
    }
    if (unwritableChange && step === 0) {
      return { cached: false, message: `the changed file ${JSON.stringify(unwritableChange.change.path)} has a name that is not valid UTF-8, which strata cannot update in a restored machine: running from the start`, path: unwritableChange.change.path };
    }
    if (checkpointAt >= 0 && step === firstToRun && step === stepsBeforeCheckpoint) {
      return { cached: false, message: `reruns from CHECKPOINT ${input.fromCheckpoint} (line ${instructions[checkpointAt]?.range.line}), as asked (--from-checkpoint)` };
    }
    return explanationOf(restorePlan.explanations[step]);
  }

  return { plan: restorePlan, sourceChain, firstToRun, restoredThrough, carriedThrough, splitStep, explainStep };
}

/**
 * The strata-split timings of this copy's SPLIT: copy 0's in this run for the other copies; for
 * copy 0, those its cached SPLIT step used, or the newest ones frozen now (`freeze`) when the SPLIT runs.
 */
export async function splitTimingsFor(input: {
  layerfilePath: string;
  decision: RestoreDecision;
  copyIndex: number;
  copyTimings: string | null | undefined;
  freeze: () => Promise<string | null>;
}): Promise<string | null> {
  const { splitStep, firstToRun, sourceChain } = input.decision;
  let splitTimings: string | null = null;
  if (splitStep !== undefined) {
    if (input.copyIndex > 0) splitTimings = input.copyTimings ?? null;
    else if (splitStep < firstToRun) splitTimings = sourceChain?.steps[splitStep]?.splitTimings ?? null;
    else splitTimings = await input.freeze();
    if (splitStep < firstToRun && (sourceChain?.steps[splitStep]?.splitTimings ?? null) !== splitTimings) {
      throw new StrataError('STRATA_INTERNAL', `${input.layerfilePath}: SPLIT copy ${input.copyIndex} would reuse steps computed with other strata-split timings than copy 0's`);
    }
  }
  return splitTimings;
}

function explanationOf(explanation: PlanExplanation | undefined): StepExplanation | undefined {
  if (!explanation) return undefined;
  if (explanation.status === 'cached') return { cached: true, message: explanation.message };
  return { cached: false, message: explanation.cause.message, path: explanation.cause.path ?? undefined, kind: explanation.cause.kind };
}

/** The one-line plan a runner announces when it starts. */
export function planSummary(restorePlan: RestorePlan, steps: readonly StepEntry[], relaunching: number): string {
  const relaunched = relaunching === 0 ? '' : `, re-launched ${relaunching} background process${relaunching === 1 ? '' : 'es'}`;
  if (restorePlan.kind === 'fresh') return steps.length === 0 ? 'nothing to run' : `running all ${steps.length} step(s)${relaunched}`;
  if (restorePlan.firstRerun === null) return `all ${steps.length} step(s) cached`;
  if (restorePlan.repeatableBase) return `restoring step ${restorePlan.afterStep + 1}'s previous state (REPEATABLE), rerunning from step ${restorePlan.firstRerun + 1}${relaunched}`;
  return `restoring after step ${restorePlan.afterStep + 1}, rerunning from step ${restorePlan.firstRerun + 1}${relaunched}`;
}
