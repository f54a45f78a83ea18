// Runs one Layerfile (one runner): decide where to restore from (planner), restore or start fresh,
// re-apply changed sources, execute the remaining steps in a machine with tracing, snapshot after each
// step and record the chain in the cache index (snapshot first, index row second).
import { randomUUID } from 'node:crypto';
import { lstat } from 'node:fs/promises';
import { posix } from 'node:path';
import { StrataError } from '../errors.js';
import type { GraphNode } from '../layerfile/graph.js';
import type { Instruction } from '../layerfile/types.js';
import { definitionKeys, imageIdentity, isStep, layerfileIdentity, sha256Hex } from '../plan/definitionKey.js';
import { isSameOrUnder } from '../plan/paths.js';
import { plan as planRestore } from '../plan/planner.js';
import type { CachedChain, CopyRecord, PlanStep, RestorePlan, StepExplanation as PlanExplanation } from '../plan/types.js';
import { snapshotKey, snapshotName, type SnapshotKey, type SnapshotName } from '../snapshot/types.js';
import { diffTrees, type CommitInfo, type TreeId } from '../source/git.js';
import type { BackgroundCommand, ChainRecord, ChainStepRecord } from '../store/cacheIndex.js';
import { normalizeStepTrace, type TraceSession } from '../trace/recorder.js';
import { emptyStepTrace, type StepTrace } from '../trace/types.js';
import { claimCacheDirs, machineCacheDirs, type CacheDirLease } from './cacheDirs.js';
import { cloneChanges, cloneIntoMachine, reapplyWithClones, resolveClones, type ChainClone } from './clone.js';
import { assertCopySources, copyIntoMachine } from './copy.js';
import { createMachineRunDir, type MachineRunDir } from './splitTimings.js';
import { machineDefaults } from './machineDefaults.js';
import { sleep } from '../util/sleep.js';
import type { EngineDeps, EngineMachine, StepExecResult } from './ports.js';
import type { StepExplanation } from './reporter.js';
import { resolveInRoot } from './rootfs.js';
import { assertSecretsPresent, noSecrets, secretValuesFor, type Secrets } from './secrets.js';
import { applyToState, baseStepEnv, execEnv, initialExecState, runScript, shellQuote, skipIndex, type ExecState } from './stepEnv.js';

/** What a finished Layerfile hands to the Layerfiles that inherit from it (`FROM ../this`). */
export interface LayerfileOutcome {
  status: 'success' | 'failure' | 'error' | 'skipped';
  message?: string | undefined;
  /** The machine state after the last step, consistent with the new commit's sources. */
  finalSnapshot: SnapshotName | null;
  /** Identity of that state: changes whenever any step that produced it ran again. */
  finalStateId: string;
  execState: ExecState;
  /** Every copy made into this machine, inherited ones included. */
  copies: CopyRecord[];
  stepsRan: number;
  stepsCached: number;
  /**
   * The RUN BACKGROUND commands running in the final state (inherited ones first), which a child
   * re-launches. Absent only on outcomes that never ran (skipped, errored): no child starts from those.
   */
  background?: BackgroundCommand[] | undefined;
  /** The CLONEd remotes' trees the final state holds (inherited ones included); a child inherits them. */
  clones?: ChainClone[] | undefined;
}

export interface RunContext {
  deps: EngineDeps;
  runId: string;
  repo: string;
  repoDir: string;
  tree: TreeId;
  commit: CommitInfo | null;
  noCache: boolean;
  acceptButtons: boolean;
  /**
   * Asks a person to approve a BUTTON (the CLI prompts on a terminal). Resolves true to go on. Without
   * it, and without acceptButtons, a BUTTON stops the run.
   */
  approveButton?: ((request: { runner: string; layerfile: string; line: number; message: string }) => Promise<boolean>) | undefined;
  /** --no-cache-dirs: CACHE directories start empty and are thrown away after the run. */
  noCacheDirs?: boolean | undefined;
  /** Values for SECRET ENV; none when absent. */
  secrets?: Secrets | undefined;
  /** Aborted: stop at once (see RunOptions.signal). */
  signal?: AbortSignal | undefined;
  /** RunOptions.stepTimeoutMs. */
  stepTimeoutMs?: number | undefined;
  /** RunOptions.maxStepOutputBytes. */
  maxStepOutputBytes?: number | undefined;
  /** RunOptions.fromCheckpoint. */
  fromCheckpoint?: string | undefined;
}

interface StepEntry {
  /** Index among the Layerfile's steps (what the planner and the cache index count). */
  step: number;
  instructionIndex: number;
  instruction: Instruction;
  definitionKey: string;
}

/** How much of one step's output reaches the reporters by default (RunOptions.maxStepOutputBytes). */
export const DEFAULT_MAX_STEP_OUTPUT_BYTES = 64 * 1024 * 1024;

function formatBytes(bytes: number): string {
  return bytes >= 1024 * 1024 ? `${Math.round((bytes / 1024 / 1024) * 10) / 10} MiB` : bytes >= 1024 ? `${Math.round(bytes / 1024)} KiB` : `${bytes} bytes`;
}

/** A RUN BACKGROUND command that exits non-zero within this long fails its step (or its re-launch). */
const BACKGROUND_CHECK_MS = 2000;

/** Directives the engine does not execute yet: refuse clearly rather than run them wrongly. */
const NOT_YET: Partial<Record<Instruction['kind'], string>> = {};

type SplitInstruction = Extract<Instruction, { kind: 'split' }>;

/**
 * One copy of a Layerfile with `SPLIT n`: every copy is a run of the whole Layerfile (its own runner,
 * its own cache chains) whose environment has SPLIT/SPLIT_NUM from the SPLIT line on. Copy 0 runs the
 * shared prefix; the others start after it reached the SPLIT and restore its pre-split snapshot
 * (runRepository orders that; here copies > 0 only add copy 0's chains to their candidates).
 */
export interface SplitCopy {
  /** 0..n-1; copy 0 keeps the Layerfile's runner id, copy i is `<id>-<i+1>`. */
  index: number;
  /**
   * Copy 0: called once its steps up to and including the SPLIT are done (ran or cached), with the
   * digest of the strata-split timings its SPLIT step used (null: none).
   */
  onSplitReached?: ((timings: string | null) => void) | undefined;
  /**
   * Copies > 0: that digest. Every copy must compute its share from the same timings as copy 0, or a
   * file could land in no share (src/store/splitTimings.ts).
   */
  timings?: string | null | undefined;
}

/** The Layerfile's SPLIT, when it has exactly one (more are refused by runLayerfile). */
export function splitOf(node: GraphNode): SplitInstruction | undefined {
  const splits = node.layerfile.instructions.filter((i): i is SplitInstruction => i.kind === 'split');
  return splits.length === 1 ? splits[0] : undefined;
}

export function copyRunnerId(runner: string, index: number): string {
  return index === 0 ? runner : `${runner}-${index + 1}`;
}

/** The runners a Layerfile appears as: its own id, plus `<id>-2` .. `<id>-n` for `SPLIT n`. */
export function runnerIdsOf(node: GraphNode): string[] {
  const split = splitOf(node);
  return split ? Array.from({ length: split.count }, (_, i) => copyRunnerId(node.runnerId, i)) : [node.runnerId];
}

function explanationOf(explanation: PlanExplanation | undefined): StepExplanation | undefined {
  if (!explanation) return undefined;
  if (explanation.status === 'cached') return { cached: true, message: explanation.message };
  return { cached: false, message: explanation.cause.message, path: explanation.cause.path ?? undefined, kind: explanation.cause.kind };
}

function planSummary(restorePlan: RestorePlan, steps: StepEntry[], relaunching: number): string {
  const relaunched = relaunching === 0 ? '' : `, re-launched ${relaunching} background process${relaunching === 1 ? '' : 'es'}`;
  if (restorePlan.kind === 'fresh') return steps.length === 0 ? 'nothing to run' : `running all ${steps.length} step(s)${relaunched}`;
  if (restorePlan.firstRerun === null) return `all ${steps.length} step(s) cached`;
  if (restorePlan.repeatableBase) return `restoring step ${restorePlan.afterStep + 1}'s previous state (REPEATABLE), rerunning from step ${restorePlan.firstRerun + 1}${relaunched}`;
  return `restoring after step ${restorePlan.afterStep + 1}, rerunning from step ${restorePlan.firstRerun + 1}${relaunched}`;
}

export async function runLayerfile(ctx: RunContext, node: GraphNode, parent: LayerfileOutcome | null, copy?: SplitCopy): Promise<LayerfileOutcome> {
  const { deps } = ctx;
  const instructions = node.layerfile.instructions;

  for (const instruction of instructions) {
    const name = NOT_YET[instruction.kind];
    if (name) {
      throw new StrataError('STRATA_ENGINE', `${node.path}:${instruction.range.line}: ${name} is not supported by this version of the engine yet`, {
        hint: 'the directive parses and is checked by `strata check`; executing it is planned work',
      });
    }
  }
  const splits = instructions.filter((i): i is SplitInstruction => i.kind === 'split');
  if (splits.length > 1) {
    throw new StrataError('STRATA_ENGINE', `${node.path}:${splits[1]!.range.line}: a second SPLIT (the first is at line ${splits[0]!.range.line}) is not supported yet`, {
      hint: 'split once per Layerfile; a child Layerfile (FROM ../this) may SPLIT again',
    });
  }
  const split = splits[0];
  const splitAt = split ? instructions.indexOf(split) : instructions.length;
  const copyIndex = copy?.index ?? 0;
  if (copyIndex > 0 && (!split || copyIndex >= split.count)) throw new StrataError('STRATA_INTERNAL', `${node.path}: no SPLIT copy ${copyIndex}`);
  const runner = copyRunnerId(node.runnerId, copyIndex);

  // A SECRET ENV without a value fails the runner before anything runs (runRepository checks the
  // whole run up front too).
  const secrets = ctx.secrets ?? noSecrets;
  assertSecretsPresent([{ path: node.path, instructions }], secrets);
  // Secrets join a process's environment only here, at exec time: never the machine's files, the
  // ExecState or the stored background commands (those keep the names).
  const withSecrets = (env: Record<string, string>, names: readonly string[] | undefined): Record<string, string> =>
    names && names.length > 0 ? { ...env, ...secretValuesFor(names, secrets, node.path) } : env;

  // Where the Layerfile starts from.
  let baseSnapshot: SnapshotName;
  let parentIdentity: string;
  let startState: ExecState;
  let inheritedCopies: CopyRecord[];
  let inheritedBackground: BackgroundCommand[];
  const from = instructions[0];
  if (from?.kind !== 'from') throw new StrataError('STRATA_INTERNAL', `${node.path} has no FROM`);
  if (from.source.type === 'image') {
    const image = await deps.images.ensure(from.source.name, (line) =>
      deps.reporter.onStepOutput?.({ runner, step: 0, stream: 'stderr', data: line + '\n', timeMs: deps.now() }),
    );
    baseSnapshot = image.snapshot;
    parentIdentity = imageIdentity(from.source.name, image.identity);
    startState = initialExecState();
    inheritedCopies = [];
    inheritedBackground = [];
  } else {
    if (!parent || parent.status !== 'success' || !parent.finalSnapshot) {
      throw new StrataError('STRATA_INTERNAL', `${node.path} started without its parent's final state`);
    }
    baseSnapshot = parent.finalSnapshot;
    parentIdentity = layerfileIdentity(parent.finalStateId);
    startState = parent.execState;
    inheritedCopies = parent.copies;
    inheritedBackground = parent.background ?? [];
  }

  // Before the SPLIT line every copy sees the same environment (copy 0's runner id, no SPLIT/SPLIT_NUM),
  // so the prefix a copy restores from copy 0 is what it would have built itself; from the SPLIT line
  // on it has its own SPLIT, SPLIT_NUM and RUNNER_ID.
  const identity = { jobId: ctx.runId, runnerId: node.runnerId, repositoryName: posix.basename(ctx.repo), retryIndex: 0, commit: ctx.commit };
  const prefixEnv = baseStepEnv(identity);
  const splitEnv = split ? baseStepEnv({ ...identity, runnerId: runner, split: { index: copyIndex, count: split.count, unordered: split.unordered } }) : prefixEnv;
  const envAt = (instructionIndex: number): Record<string, string> => (instructionIndex >= splitAt ? splitEnv : prefixEnv);
  // BUILD ENV values come from the prefix environment: after the SPLIT line, what differs between
  // copies (SPLIT, SPLIT_NUM) is in the SPLIT step's own key (its count, and the index when ordered).
  const keys = definitionKeys(instructions, { parentIdentity, buildEnv: prefixEnv, secrets: secrets.values, splitIndices: [copyIndex] });
  const allSteps: StepEntry[] = [];
  instructions.forEach((instruction, instructionIndex) => {
    if (isStep(instruction)) allSteps.push({ step: allSteps.length, instructionIndex, instruction, definitionKey: keys[instructionIndex] as string });
  });
  // SKIP REMAINING IF depends only on the step environment (strata's variables and ENV), never on the
  // machine, so where this run stops is known before planning. Steps after a condition that holds are
  // skipped, not cached: the final state is the state before the condition.
  const skipAt = skipIndex(instructions, startState, envAt);
  const steps = allSteps.filter((s) => s.instructionIndex < skipAt);
  const skippedSteps = allSteps.filter((s) => s.instructionIndex >= skipAt);
  // BUTTONs before the stop, in order: every one needs approval in every run, cached steps or not.
  const buttons = instructions.slice(0, skipAt).filter((i): i is Extract<Instruction, { kind: 'button' }> => i.kind === 'button');
  const planSteps: PlanStep[] = steps.map((s) => ({
    definitionKey: s.definitionKey,
    line: s.instruction.range.line,
    kind: s.instruction.kind,
    text: s.instruction.canonical,
    repeatable: s.instruction.kind === 'run' && s.instruction.mode === 'repeatable',
  }));

  // A COPY of a path the commit does not have fails at its line before anything runs.
  await assertCopySources(ctx.repoDir, ctx.tree, node.path, instructions.slice(0, skipAt).filter((i): i is Extract<Instruction, { kind: 'copy' }> => i.kind === 'copy'));

  // CLONE: every remote is fetched before planning (a failure fails the runner at its line), so what
  // changed in a remote counts like a change in the repository (see clone.ts).
  const clones = await resolveClones(
    { remotes: deps.remotes, run: ctx, repoDir: ctx.repoDir, branch: ctx.commit?.branch ?? '', layerfilePath: node.path },
    instructions,
    parent?.clones ?? [],
  );

  // Candidates: earlier chains of this runner that start the same way, with what changed since.
  // A SPLIT copy > 0 also gets copy 0's chains, this run's included (copy 0 reached the SPLIT before
  // this copy plans): their keys equal this copy's up to the SPLIT, so with an ordered SPLIT they can
  // only give a restore point before it (the planner stops at the first differing key) and the prefix
  // runs once. With UNORDERED the keys stay equal after it too, and this copy may restore state copy 0
  // built after the SPLIT: allowed on purpose, unordered copies are interchangeable (same SPLIT_NUM,
  // no SPLIT). With --no-cache, only this run's chain of copy 0 is used (built now, from this tree).
  const firstCopyChains = copyIndex > 0 && steps.length > 0 ? deps.cacheIndex.candidates(ctx.repo, node.runnerId, steps[0]!.definitionKey) : [];
  const chains =
    steps.length === 0
      ? []
      : ctx.noCache
        ? firstCopyChains.filter((c) => c.runId === ctx.runId)
        : [...deps.cacheIndex.candidates(ctx.repo, runner, steps[0]!.definitionKey), ...firstCopyChains];
  const compared = await Promise.all(
    chains.map(async (record) => {
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
      const remoteChanges = await cloneChanges(deps.remotes, record.clones, clones);
      if (remoteChanges === null) return null;
      // The chain's tree may be gone from the repository (a working-tree id that `git gc` pruned, a
      // repository re-cloned): without a diff the chain cannot be checked, so it is not a candidate.
      const repoChanges = await diffTrees(ctx.repoDir, record.tree as TreeId, ctx.tree).catch(() => null);
      if (repoChanges === null) return null;
      return { chain, changes: [...repoChanges, ...remoteChanges], record };
    }),
  );
  // --from-checkpoint NAME: the cached chains count only up to the named CHECKPOINT, so at best the
  // state before it is restored and every step after it runs again.
  const checkpointAt = ctx.fromCheckpoint === undefined ? -1 : instructions.findIndex((i) => i.kind === 'checkpoint' && i.mode === 'named' && i.name === ctx.fromCheckpoint);
  const stepsBeforeCheckpoint = checkpointAt < 0 ? Infinity : steps.filter((s) => s.instructionIndex < checkpointAt).length;
  // strata-split timings: a chain's steps after the SPLIT count only if its SPLIT step used the
  // timings every copy uses in this run (copy 0's; for copy 0 itself, any set still stored), so all
  // copies' shares come from one set. Otherwise the SPLIT and what follows run again.
  const splitStep = steps.find((s) => s.instruction.kind === 'split')?.step;
  const usableTimings = (digest: string | null): boolean =>
    copyIndex > 0 ? digest === (copy?.timings ?? null) : digest === null || deps.cacheIndex.splitTimings.content(digest) !== undefined;
  const otherTimings = (record: ChainRecord): boolean =>
    splitStep !== undefined && record.steps.length > splitStep && !usableTimings(record.steps[splitStep]?.splitTimings ?? null);
  const usableUpTo = (c: NonNullable<(typeof compared)[number]>, usable: number) =>
    c.chain.steps.length <= usable ? c : { ...c, chain: { ...c.chain, complete: false, steps: c.chain.steps.slice(0, usable) } };
  const beforeTimingsRule = compared.filter((c): c is NonNullable<typeof c> => c !== null).map((c) => usableUpTo(c, stepsBeforeCheckpoint));
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
  const unwritableChange = plannedRestore.kind === 'restore' ? plannedRestore.reapply.find((e) => e.change.path.includes('\uFFFD')) : undefined;
  const restorePlan = unwritableChange ? planRestore({ steps: planSteps, candidates: [], inheritedCopies }) : plannedRestore;
  const sourceChain = restorePlan.kind === 'restore' ? candidates.find((c) => c.chain.chainId === restorePlan.chainId)?.record : undefined;

  const firstToRun = restorePlan.kind === 'fresh' ? 0 : (restorePlan.firstRerun ?? steps.length);
  const restoredThrough = restorePlan.kind === 'restore' ? restorePlan.afterStep : -1;
  const carriedThrough = Math.min(restoredThrough, firstToRun - 1);

  // The strata-split timings of this copy's SPLIT: copy 0's in this run for the other copies; for
  // copy 0, those its cached SPLIT step used, or the newest ones frozen now when the SPLIT runs.
  let splitTimings: string | null = null;
  if (splitStep !== undefined) {
    if (copyIndex > 0) splitTimings = copy?.timings ?? null;
    else if (splitStep < firstToRun) splitTimings = sourceChain?.steps[splitStep]?.splitTimings ?? null;
    else splitTimings = deps.cacheIndex.splitTimings.freeze(ctx.repo, node.path, deps.now());
    if (splitStep < firstToRun && (sourceChain?.steps[splitStep]?.splitTimings ?? null) !== splitTimings) {
      throw new StrataError('STRATA_INTERNAL', `${node.path}: SPLIT copy ${copyIndex} would reuse steps computed with other strata-split timings than copy 0's`);
    }
  }

  // The background commands that ran when the starting state was snapshotted (the restore point's, or
  // the parent's final ones). A snapshot holds files, not processes: they are started again before
  // the first step runs (ARCHITECTURE decision 3), and stay in the list of every later step.
  const background: BackgroundCommand[] = [
    ...(restorePlan.kind === 'restore' ? (sourceChain?.steps[restorePlan.afterStep]?.background ?? []) : inheritedBackground),
  ];
  const relaunching = firstToRun < steps.length ? background.length : 0;

  const summary = planSummary(restorePlan, steps, relaunching);
  deps.reporter.onRunnerStart?.({ runner, plan: summary });
  deps.runLog.setRunner(ctx.runId, { runner, layerfile: node.path, status: 'running', plan: summary });

  // Replay the metadata of the cached steps so later steps see the same ENV/WORKDIR/USER.
  let state = startState;
  for (const s of steps.slice(0, firstToRun)) state = applyToState(state, s.instruction, envAt(s.instructionIndex));

  const chainId = deps.cacheIndex.startChain({ repo: ctx.repo, runner, layerfile: node.path, tree: ctx.tree, runId: ctx.runId, clones }, deps.now());
  const copies: CopyRecord[] = [...inheritedCopies];
  let stateId = parentIdentity;
  let lastSnapshot: SnapshotName | null = baseSnapshot;
  let stepsCached = 0;
  // The snapshot recorded for the step just before the current one (null when it had none).
  let previousStepSnapshot: SnapshotName | null = null;
  let splitReached = false;
  const reachedSplit = (): void => {
    if (splitReached) return;
    splitReached = true;
    copy?.onSplitReached?.(splitTimings);
  };

  // The restored machine's files, brought up to date with this commit.
  let activeKey: SnapshotKey | null = null;
  const newName = (label: string): SnapshotName => snapshotName(`${ctx.runId}.${runnerToken(runner)}.${label}`);
  if (restorePlan.kind === 'restore') {
    activeKey = snapshotKey(`active.${randomUUID()}`);
    const restoreFrom = restorePlan.snapshot;
    const { path: rootfs } = await deps.snapshots.clone(restoreFrom, activeKey);
    await reapplyWithClones({ repoDir: ctx.repoDir, tree: ctx.tree }, deps.remotes, clones, rootfs, restorePlan.reapply);
    const restoredSnapshot = restorePlan.reapply.length === 0 ? restoreFrom : newName(`restored-${restorePlan.afterStep}`);
    if (restoredSnapshot !== restoreFrom) await deps.snapshots.commit(activeKey, restoredSnapshot);
    // Carry the cached steps into the new chain. Only the restore point keeps a snapshot: older
    // snapshots hold the old chain's sources and stay reachable through the old chain.
    for (const s of steps.slice(0, carriedThrough + 1)) {
      const old = sourceChain?.steps[s.step] as ChainStepRecord;
      const snapshot = s.step === restoredThrough ? restoredSnapshot : null;
      deps.cacheIndex.addStep(chainId, { ...old, definitionKey: s.definitionKey, snapshot });
      previousStepSnapshot = snapshot;
      for (const copy of old.copies) copies.push(copy);
      stateId = old.stateId;
      if (s.step === restoredThrough) lastSnapshot = restoredSnapshot;
    }
  }

  // A copy that restored copy 0's prefix reruns its SPLIT line because its index differs, not because
  // the Layerfile changed: say so.
  const prefixFrom = sourceChain !== undefined && sourceChain.runner !== runner ? sourceChain.runner : null;
  function explainStep(step: number): StepExplanation | undefined {
    if (rerunForTimings && step === splitStep && step === firstToRun) {
      return { cached: false, message: `SPLIT copy ${copyIndex} of ${split?.count}: its cached steps after the SPLIT used other strata-split timings than ${node.runnerId} uses in this run; every copy's share must come from the same timings` };
    }
    if (prefixFrom !== null && split && step === splitStep && step >= firstToRun) {
      return { cached: false, message: `SPLIT copy ${copyIndex} of ${split.count}: the steps before it were restored from ${prefixFrom}; this copy runs on its own from here` };
    }
    if (unwritableChange && step === 0) {
      return { cached: false, message: `the changed file ${JSON.stringify(unwritableChange.change.path)} has a name that is not valid UTF-8, which strata cannot update in a restored machine: running from the start`, path: unwritableChange.change.path };
    }
    if (checkpointAt >= 0 && step === firstToRun && step === stepsBeforeCheckpoint) {
      return { cached: false, message: `reruns from CHECKPOINT ${ctx.fromCheckpoint} (line ${instructions[checkpointAt]?.range.line}), as asked (--from-checkpoint)` };
    }
    return explanationOf(restorePlan.explanations[step]);
  }

  // Report the plan step by step.
  for (const s of skippedSteps) {
    const skipped = `SKIP REMAINING IF at line ${instructions[skipAt]?.range.line} held`;
    deps.reporter.onStepStatus?.({ runner, step: s.step, status: 'skipped', explanation: { cached: false, message: skipped } });
    deps.runLog.setStep(ctx.runId, { runner, index: s.step, line: s.instruction.range.line, text: s.instruction.canonical, status: 'skipped', reason: { message: skipped }, durationMs: null, snapshot: null });
  }
  for (const s of steps) {
    const explanation = explainStep(s.step);
    if (s.step < firstToRun) {
      stepsCached++;
      deps.reporter.onStepStatus?.({ runner, step: s.step, status: 'cached', ...(explanation ? { explanation } : {}) });
      deps.runLog.setStep(ctx.runId, { runner, index: s.step, line: s.instruction.range.line, text: s.instruction.canonical, status: 'cached', reason: explanation ?? null, durationMs: null, snapshot: null });
    } else {
      deps.runLog.setStep(ctx.runId, { runner, index: s.step, line: s.instruction.range.line, text: s.instruction.canonical, status: 'pending', reason: explanation ?? null, durationMs: null, snapshot: null });
    }
  }

  // The copied steps are in this run's chain: a SPLIT among them lets the other copies start now.
  if (splitStep !== undefined && splitStep < firstToRun) reachedSplit();

  const finish = (status: LayerfileOutcome['status'], stepsRan: number, message?: string): LayerfileOutcome => {
    deps.runLog.setRunner(ctx.runId, { runner, layerfile: node.path, status });
    return { status, message, finalSnapshot: lastSnapshot, finalStateId: stateId, execState: state, copies, stepsRan, stepsCached, background, clones };
  };

  // A BUTTON asks the person running (ctx.approveButton), unless --accept-buttons approved them all;
  // with no way to ask, or when declined, the run stops there.
  const requireApproval = async (button: Extract<Instruction, { kind: 'button' }>): Promise<void> => {
    if (ctx.acceptButtons) return;
    throwIfCancelled(ctx);
    const where = `${node.path}:${button.range.line}`;
    if (!ctx.approveButton) {
      throw new StrataError('STRATA_ENGINE', `${where}: BUTTON "${button.message}" needs approval`, {
        hint: 'run on a terminal to be asked, or with --accept-buttons to approve every BUTTON of this run',
      });
    }
    const approved = await ctx.approveButton({ runner, layerfile: node.path, line: button.range.line, message: button.message });
    throwIfCancelled(ctx);
    if (!approved) {
      throw new StrataError('STRATA_ENGINE', `${where}: BUTTON "${button.message}" was declined`);
    }
  };

  // Nothing left to run: the (re-applied) restore point is the final state.
  if (firstToRun >= steps.length) {
    for (const button of buttons) await requireApproval(button);
    if (activeKey) await deps.snapshots.remove(activeKey);
    if (skippedSteps.length === 0) deps.cacheIndex.completeChain(chainId);
    return finish('success', 0);
  }

  if (!activeKey) {
    activeKey = snapshotKey(`active.${randomUUID()}`);
    await deps.snapshots.clone(baseSnapshot, activeKey);
  }
  const rootfs = deps.snapshots.path(activeKey);
  const memory = instructions.find((i): i is Extract<Instruction, { kind: 'memory' }> => i.kind === 'memory');
  let machine: EngineMachine | null = null;
  const sessions: Array<{ dir: string; session: TraceSession }> = [];
  let stepsRan = 0;
  // The step reported 'running', until it is reported done or failed: if the engine itself fails
  // meanwhile (store full, tracer died), that step is reported failed, not left running.
  let runningStep: StepEntry | null = null;
  let cacheLease: CacheDirLease | null = null;
  let runDir: MachineRunDir | null = null;
  try {
    // Each step's log is capped (an output flood must not fill the disk or the UI); past the cap one
    // marker line says so, and the rest is read and dropped while the step runs on.
    const outputLimit = ctx.maxStepOutputBytes ?? DEFAULT_MAX_STEP_OUTPUT_BYTES;
    const outputUsed = new Map<number, number>();
    const outputTo = (step: number) => (stream: 'stdout' | 'stderr', data: string): void => {
      const used = outputUsed.get(step) ?? 0;
      if (used > outputLimit) return;
      const bytes = Buffer.byteLength(data);
      if (used + bytes <= outputLimit) {
        outputUsed.set(step, used + bytes);
        deps.reporter.onStepOutput?.({ runner, step, stream, data, timeMs: deps.now() });
        return;
      }
      outputUsed.set(step, outputLimit + 1);
      const head = Buffer.from(data).subarray(0, outputLimit - used).toString();
      if (head) deps.reporter.onStepOutput?.({ runner, step, stream, data: head, timeMs: deps.now() });
      const marker = `\n[strata] output truncated: this step printed more than ${formatBytes(outputLimit)}; the rest is not shown (the step runs on)\n`;
      deps.reporter.onStepOutput?.({ runner, step, stream: 'stderr', data: marker, timeMs: deps.now() });
    };
    // CACHE dirs of the whole Layerfile (up to a SKIP that holds) are mounted when the machine starts:
    // see cacheDirs.ts for why, and for the lock held until the machine is gone.
    // (Resolved with the copy's post-SPLIT environment: a CACHE path depends on it only after the SPLIT.)
    const cacheDirs = await machineCacheDirs(instructions.slice(0, skipAt), startState, splitEnv, rootfs);
    if (cacheDirs.length > 0) {
      if (!deps.cacheDirs) throw new StrataError('STRATA_INTERNAL', `${node.path}: CACHE needs a cache dir store and the engine has none`);
      cacheLease = await deps.cacheDirs.acquire({ repo: ctx.repo, layerfile: node.path, paths: cacheDirs.map((d) => d.path), throwaway: ctx.noCacheDirs ?? false });
      for (const note of cacheLease.notes) outputTo(steps[firstToRun]!.step)('stderr', `strata: ${note}\n`);
    }
    runDir = await createMachineRunDir();
    machine = await deps.sandbox.start({ id: `${ctx.runId}-${runnerToken(runner)}`, rootfs, hostname: hostnameFor(runner), memoryBytes: memory?.bytes, ...machineDefaults([...runDir.mounts, ...(cacheLease?.mounts ?? [])]) });
    // From the first step after the SPLIT line on, the machine sees its SPLIT's timings.
    let splitTimingsProvided = false;
    const provideSplitTimings = async (instructionIndex: number): Promise<void> => {
      if (splitTimingsProvided || instructionIndex <= splitAt || splitTimings === null) return;
      const content = deps.cacheIndex.splitTimings.content(splitTimings);
      if (content === undefined) throw new StrataError('STRATA_STORE', `${node.path}: the strata-split timings ${splitTimings.slice(0, 12)} are gone from the database`, { hint: 'run again: the SPLIT then runs with new timings' });
      await (runDir as MachineRunDir).provideSplitTimings(content);
      splitTimingsProvided = true;
    };
    // Users of CACHE lines already behind us exist in the restored machine; later ones are claimed by their CACHE step.
    await claimCacheDirs(machine, cacheDirs, splitEnv);
    const traceCopies = async (records: CopyRecord[]): Promise<void> => {
      for (const record of records) await attachTracer(deps, machine as EngineMachine, sessions, record, rootfs);
    };
    await traceCopies(copies);

    // Re-launch with the tracers attached: what the commands touch now counts for the first step
    // that runs (a session attributes touches before a beginStep to that step).
    // Each command gets its ~2 s check before the next one starts (a later one may need an earlier
    // one up, as when they first ran). After the last one, the first step waits until the TCP ports
    // that listened when the restored snapshot was taken listen again, or until the check ends,
    // whichever comes first: later steps may rely on the services being up (the wait that got them
    // ready in the first run may be a cached step), but a restored database that is up in 300 ms is
    // used then, not 2 s later. A check still running fails the runner at the next step boundary,
    // before that step is recorded (or at the end, below).
    const firstStep = steps[firstToRun] as StepEntry;
    await provideSplitTimings(firstStep.instructionIndex);
    let relaunchCheck: Promise<void> = Promise.resolve();
    let relaunchFailure: unknown = null;
    for (const [i, command] of background.entries()) {
      const started = await machine.startBackground({ ...command, env: withSecrets(command.env, command.secrets), onOutput: outputTo(firstStep.step) });
      const check = started.exitedWithin(BACKGROUND_CHECK_MS).then((ended) => {
        if (ended && ended.exitCode !== 0) {
          throw new StrataError('STRATA_ENGINE', `${node.path}: re-launching background command \`${command.command}\` failed: it ${describeFailure(ended)} within ${BACKGROUND_CHECK_MS / 1000} s`, {
            hint: 'the restored snapshot was taken while it ran; a command that cannot start again on its own files (stale pid or lock files) should clean them up first, or run with --no-cache',
          });
        }
      });
      if (i < background.length - 1) {
        await check;
        continue;
      }
      relaunchCheck = check;
      check.catch((error: unknown) => (relaunchFailure = error));
      const expectedPorts = restorePlan.kind === 'restore' ? (sourceChain?.steps[restorePlan.afterStep]?.listening ?? []) : [];
      if (expectedPorts.length === 0) {
        await check;
      } else {
        // Until the ports listen or the check period ends; a command that exits 0 at once (it forked
        // a daemon) does not end the wait, a failing one does.
        const ready = { done: false };
        await Promise.race([portsListening(machine, expectedPorts, ready), sleep(BACKGROUND_CHECK_MS, { unref: true }), check.then(() => new Promise<void>(() => {}), () => {})]);
        ready.done = true;
      }
      if (relaunchFailure) throw relaunchFailure;
    }

    let instructionCursor = steps[firstToRun]!.instructionIndex;
    // BUTTONs before the first step that runs still need their approval.
    for (const button of buttons) if (instructions.indexOf(button) < firstStep.instructionIndex) await requireApproval(button);
    let snapshotsEnabled = instructions.slice(0, instructionCursor).reduce((on, i) => (i.kind === 'checkpoint' ? i.mode !== 'disabled' : on), true);

    for (const s of steps.slice(firstToRun)) {
      throwIfCancelled(ctx);
      // Instructions between the previous step and this one.
      for (; instructionCursor < s.instructionIndex; instructionCursor++) {
        const between = instructions[instructionCursor] as Instruction;
        if (between.kind === 'checkpoint') snapshotsEnabled = between.mode !== 'disabled';
        if (between.kind === 'button') await requireApproval(between);
      }
      instructionCursor = s.instructionIndex + 1;
      await provideSplitTimings(s.instructionIndex);
      // Strata's variables for this step (SPLIT/SPLIT_NUM only from the SPLIT line on).
      const baseEnv = envAt(s.instructionIndex);

      const explanation = explainStep(s.step);
      deps.reporter.onStepStatus?.({ runner, step: s.step, status: 'running', ...(explanation ? { explanation } : {}) });
      runningStep = s;
      const started = deps.now();
      // A background process keeps writing to its step's log after the step ended.
      const output = outputTo(s.step);

      // A step that does not run in the machine observes nothing there.
      let outcome: { trace: StepTrace | null; failure: string | null } = { trace: emptyStepTrace(), failure: null };
      let stepCopies: CopyRecord[] = [];
      const instruction = s.instruction;
      // Steps that change the machine end with it frozen: the trace is collected and the snapshot
      // taken while nothing inside can run, so whatever a background process does after the step's
      // command ended is either in this step's trace and snapshot or in the next step's, never split.
      let frozen = false;
      const freeze = async (): Promise<void> => {
        await (machine as EngineMachine).freeze();
        frozen = true;
      };
      const runInMachine = async (command: string, as: ExecState): Promise<typeof outcome> => {
        await Promise.all(sessions.map((t) => t.session.beginStep(s.step)));
        const result = await (machine as EngineMachine).exec({
          command: runScript(command, as),
          env: withSecrets(execEnv(baseEnv, as), as.secrets),
          workdir: as.workdir,
          user: as.user,
          onOutput: output,
          signal: ctx.signal,
          timeoutMs: ctx.stepTimeoutMs,
        });
        // A cancelled step ends here: nothing of it is recorded, the machine goes (finally, below).
        throwIfCancelled(ctx);
        await freeze();
        const traces = await Promise.all(sessions.map((t) => t.session.endStep()));
        const failure = result.exitCode === 0 ? null : result.timedOut && ctx.stepTimeoutMs !== undefined ? `timed out after ${Math.round(ctx.stepTimeoutMs / 100) / 10} s (the step timeout)` : describeFailure(result);
        return { trace: mergeTraces(traces), failure };
      };
      // RUN BACKGROUND: the step's window is the start plus the check; the process runs on after it.
      const startInMachine = async (command: BackgroundCommand): Promise<typeof outcome> => {
        await Promise.all(sessions.map((t) => t.session.beginStep(s.step)));
        const started = await (machine as EngineMachine).startBackground({ ...command, env: withSecrets(command.env, command.secrets), onOutput: output });
        const ended = await started.exitedWithin(BACKGROUND_CHECK_MS);
        await freeze();
        const traces = await Promise.all(sessions.map((t) => t.session.endStep()));
        // Exiting 0 at once is fine (a daemon that forks); the command is re-launched all the same.
        const failure = ended && ended.exitCode !== 0 ? `background command ${describeFailure(ended)} within ${BACKGROUND_CHECK_MS / 1000} s` : null;
        if (failure === null) background.push(command);
        return { trace: mergeTraces(traces), failure };
      };

      switch (instruction.kind) {
        case 'run':
          if (instruction.mode === 'background') {
            outcome = await startInMachine({ command: runScript(instruction.command, state), env: execEnv(baseEnv, state), workdir: state.workdir, user: state.user, ...(state.secrets?.length ? { secrets: state.secrets } : {}) });
          } else {
            outcome = await runInMachine(instruction.command, state);
          }
          break;
        case 'copy': {
          // Written from the host into the machine's root (resolved like the machine would), frozen so
          // nothing inside races the writes. The copy itself is not traced (its records describe it),
          // but what background processes (or a re-launch) touched since the previous step is: this
          // step's snapshot holds their effects.
          await Promise.all(sessions.map((t) => t.session.beginStep(s.step)));
          await freeze();
          outcome = { trace: mergeTraces(await Promise.all(sessions.map((t) => t.session.endStep()))), failure: null };
          stepCopies = await copyIntoMachine({ repoDir: ctx.repoDir, tree: ctx.tree, rootfs, layerfilePath: node.path, sources: instruction.sources, dest: instruction.dest, workdir: state.workdir });
          await traceCopies(stepCopies);
          copies.push(...stepCopies);
          break;
        }
        case 'clone': {
          // Like COPY (above), from the remote's tree fetched before planning.
          await Promise.all(sessions.map((t) => t.session.beginStep(s.step)));
          await freeze();
          outcome = { trace: mergeTraces(await Promise.all(sessions.map((t) => t.session.endStep()))), failure: null };
          stepCopies = await cloneIntoMachine({ remotes: deps.remotes, clones, layerfilePath: node.path, instruction, rootfs, workdir: state.workdir });
          await traceCopies(stepCopies);
          copies.push(...stepCopies);
          break;
        }
        case 'workdir': {
          state = applyToState(state, instruction, baseEnv);
          outcome = await runInMachine(`mkdir -p ${shellQuote(state.workdir)}`, { ...state, workdir: '/', setupFiles: [] });
          break;
        }
        case 'user': {
          const name = shellQuote(instruction.name);
          outcome = await runInMachine(
            `id -u ${name} >/dev/null 2>&1 || useradd --create-home --groups root ${name}`,
            { ...state, user: 'root', workdir: '/', setupFiles: [] },
          );
          state = applyToState(state, instruction, baseEnv);
          break;
        }
        case 'cache':
          // The directories are mounted already; give them to this line's user, who may be new.
          await claimCacheDirs(machine, cacheDirs.filter((d) => d.line === instruction.range.line), baseEnv);
          break;
        default:
          // ENV, SETUP FILE, BUILD ENV: they change how later steps run, not the machine.
          state = applyToState(state, instruction, baseEnv);
          break;
      }
      const durationMs = deps.now() - started;
      const { trace, failure } = outcome;
      if (relaunchFailure) throw relaunchFailure;

      const changesMachine = instruction.kind === 'run' || instruction.kind === 'copy' || instruction.kind === 'clone' || instruction.kind === 'workdir' || instruction.kind === 'user';
      let snapshot: SnapshotName | null = null;
      if (changesMachine || failure) {
        stateId = randomUUID();
        if (snapshotsEnabled || failure || s.step === steps.length - 1) {
          snapshot = newName(failure ? `failed-${s.step}` : `${s.step}`);
          if (!frozen) await freeze();
          await deps.snapshots.commit(activeKey, snapshot);
        }
      } else {
        stateId = `${stateId}+${s.definitionKey}`;
        // SPLIT changes nothing in the machine: record the previous step's snapshot as the state after
        // it too, so a later rerun of the post-split steps restores after the SPLIT (and does not show
        // the SPLIT line as rerun). Restoring there equals restoring after the previous step: touches
        // by background processes since then belong to the next step's trace either way.
        if (instruction.kind === 'split') snapshot = previousStepSnapshot;
      }
      if (frozen) await machine.thaw();
      // With background commands running, the ports listening now (the machine is frozen when a
      // snapshot was taken) are what a restore of this state waits for (see the re-launch above).
      const listening = background.length > 0 && machine.listeningPorts ? await machine.listeningPorts() : [];
      const record: ChainStepRecord = {
        listening,
        index: s.step,
        definitionKey: s.definitionKey,
        snapshot,
        stateId,
        trace: trace === null ? null : normalizeStepTrace(trace),
        copies: stepCopies,
        repeatable: instruction.kind === 'run' && instruction.mode === 'repeatable',
        succeeded: failure === null,
        background: [...background],
        ...(instruction.kind === 'split' ? { splitTimings } : {}),
      };
      deps.cacheIndex.addStep(chainId, record);
      previousStepSnapshot = snapshot;
      if (s.step === splitStep) reachedSplit();
      stepsRan++;
      if (snapshot) lastSnapshot = snapshot;
      deps.runLog.setStep(ctx.runId, { runner, index: s.step, line: instruction.range.line, text: instruction.canonical, status: failure ? 'failed' : 'ran', reason: explanation ?? null, durationMs, snapshot });
      deps.reporter.onStepStatus?.({ runner, step: s.step, status: failure ? 'failed' : 'done', durationMs });
      runningStep = null;
      if (failure) {
        const message = `step ${s.step + 1} (line ${instruction.range.line}) ${failure}; the machine at failure is snapshot ${snapshot}`;
        return finish('failure', stepsRan, message);
      }
    }
    // BUTTONs after the last step that ran (and before any SKIP REMAINING IF that held).
    for (const button of buttons) if (instructions.indexOf(button) >= instructionCursor) await requireApproval(button);
    await relaunchCheck;
    if (skippedSteps.length === 0) deps.cacheIndex.completeChain(chainId);
    return finish('success', stepsRan);
  } catch (error) {
    if (runningStep) {
      const failed = runningStep;
      const cancelled = error instanceof StrataError && error.code === 'STRATA_CANCELLED';
      const reason = { message: cancelled ? 'cancelled while running' : `strata failed during this step: ${error instanceof Error ? error.message : String(error)}` };
      deps.reporter.onStepStatus?.({ runner, step: failed.step, status: 'failed', explanation: { cached: false, message: reason.message } });
      deps.runLog.setStep(ctx.runId, { runner, index: failed.step, line: failed.instruction.range.line, text: failed.instruction.canonical, status: 'failed', reason, durationMs: null, snapshot: null });
    }
    throw error;
  } finally {
    for (const { session } of sessions) await session.detach().catch(() => {});
    if (machine) await machine.destroy().catch(() => {});
    await cacheLease?.release();
    if (runDir) {
      // What the steps reported, failed runs included (the tests that did run took that long).
      const reported = await runDir.collectReport().catch(() => []);
      if (reported.length > 0) deps.cacheIndex.splitTimings.record(ctx.repo, node.path, reported, deps.now());
      await runDir.remove().catch(() => {});
    }
    await deps.snapshots.remove(activeKey).catch(() => {});
  }
}

/**
 * Resolves once every port in `ports` listens in the machine (polled every 20 ms); never when the
 * machine cannot tell. Stops polling once `until.done` is set.
 */
async function portsListening(machine: EngineMachine, ports: readonly number[], until: { done: boolean }): Promise<void> {
  if (!machine.listeningPorts) return new Promise<void>(() => {});
  while (!until.done) {
    const listening = new Set(await machine.listeningPorts());
    if (ports.every((port) => listening.has(port))) return;
    await sleep(20);
  }
  return new Promise<void>(() => {});
}

function throwIfCancelled(ctx: RunContext): void {
  if (ctx.signal?.aborted) throw new StrataError('STRATA_CANCELLED', 'the run was cancelled');
}

function describeFailure(result: Pick<StepExecResult, 'exitCode' | 'signal' | 'timedOut' | 'oomKilled'>): string {
  if (result.oomKilled) return 'was killed: out of memory (MEMORY limit reached)';
  if (result.timedOut) return 'timed out';
  if (result.signal) return `was killed by ${result.signal}`;
  return `exited with code ${result.exitCode}`;
}

/** Traces the directory a copy landed in (or, for a single file, the directory holding it), once. */
async function attachTracer(deps: EngineDeps, machine: EngineMachine, sessions: Array<{ dir: string; session: TraceSession }>, record: CopyRecord, rootfs: string): Promise<void> {
  const isDir = await isDirectory(rootfs, record.dest);
  const dir = isDir ? record.dest : posix.dirname(record.dest);
  if (sessions.some((s) => isSameOrUnder(dir, s.dir))) return;
  if (dir === '/') {
    throw new StrataError('STRATA_ENGINE', 'COPY into / cannot be traced', { hint: 'copy into a directory such as /app or /root' });
  }
  const session = await deps.tracer.attach({ dir, machinePrefix: dir, mountNamespacePid: machine.pid });
  sessions.push({ dir, session });
}

async function isDirectory(rootfs: string, machinePath: string): Promise<boolean> {
  try {
    return (await lstat(await resolveInRoot(rootfs, machinePath))).isDirectory();
  } catch {
    return false;
  }
}

function mergeTraces(traces: StepTrace[]): StepTrace {
  const merged = emptyStepTrace();
  for (const t of traces) {
    merged.read.push(...t.read);
    merged.listed.push(...t.listed);
    merged.statted.push(...t.statted);
    merged.absent.push(...t.absent);
    merged.written.push(...t.written);
  }
  return merged;
}

function runnerToken(runner: string): string {
  const token = runner.replace(/[^A-Za-z0-9_-]/g, '_') || 'runner';
  // A long id keeps a digest of the whole id: `<id>` and its SPLIT copy `<id>-2` must not share a token.
  return token.length <= 60 ? token : `${token.slice(0, 51)}-${sha256Hex(runner).slice(0, 8)}`;
}

function hostnameFor(runner: string): string {
  return (runner.toLowerCase().replace(/[^a-z0-9-]/g, '-').replace(/^-+|-+$/g, '').slice(0, 63) || 'machine');
}
