// Runs one Layerfile (one runner): decide where to restore from (restorePlanning.ts), restore or start
// fresh, re-apply changed sources, execute the remaining steps in a machine with tracing
// (machineSession.ts, stepExecutors.ts), snapshot after each step and record the chain in the cache
// index (snapshot first, index row second).
import { randomUUID } from 'node:crypto';
import { posix } from 'node:path';
import { StrataError } from '../errors.js';
import type { GraphNode } from '../layerfile/graph.js';
import type { Instruction } from '../layerfile/types.js';
import { definitionKeys, imageIdentity, isStep, layerfileIdentity } from '../plan/definitionKey.js';
import type { CopyRecord, PlanStep } from '../plan/types.js';
import { snapshotKey, snapshotName, type SnapshotKey, type SnapshotName } from '../snapshot/types.js';
import type { CommitInfo, TreeId } from '../source/git.js';
import type { BackgroundCommand, ChainStepRecord } from '../store/cacheIndex.js';
import { normalizeStepTrace } from '../trace/recorder.js';
import { reapplyWithClones, resolveClones, type ChainClone } from './clone.js';
import { assertCopySources } from './copy.js';
import { MachineSession, runnerToken } from './machineSession.js';
import type { EngineDeps } from './ports.js';
import type { StepExplanation } from './reporter.js';
import { decideRestore, gatherCandidates, planSummary, splitTimingsFor, storedSplitTimings, type StepEntry } from './restorePlanning.js';
import { DEFAULT_MACHINE_MEMORY_BYTES, memoryLimitBefore } from './memory.js';
import { assertSecretsPresent, noSecrets, type Secrets } from './secrets.js';
import { applyToState, baseStepEnv, initialExecState, skipIndex, type ExecState, type JobFacts, type RunIdentity } from './stepEnv.js';
import { changesMachine, executeStep, throwIfCancelled } from './stepExecutors.js';


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
  /** The memory limit in force at its end (its parent's, raised by its MEMORY lines): a child starts with it. */
  memoryBytes?: number | undefined;
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
  /** RunOptions.job. */
  job?: JobFacts | undefined;
}


/** How much of one step's output reaches the reporters by default (RunOptions.maxStepOutputBytes). */
export const DEFAULT_MAX_STEP_OUTPUT_BYTES = 64 * 1024 * 1024;

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

export async function runLayerfile(ctx: RunContext, node: GraphNode, parent: LayerfileOutcome | null, copy?: SplitCopy): Promise<LayerfileOutcome> {
  const { deps } = ctx;
  const instructions = node.layerfile.instructions;
  const split = supportedSplit(node);
  const splitAt = split ? instructions.indexOf(split) : instructions.length;
  const copyIndex = copy?.index ?? 0;
  if (copyIndex > 0 && (!split || copyIndex >= split.count)) throw new StrataError('STRATA_INTERNAL', `${node.path}: no SPLIT copy ${copyIndex}`);
  const runner = copyRunnerId(node.runnerId, copyIndex);

  // A SECRET ENV without a value fails the runner before anything runs (runRepository checks the
  // whole run up front too).
  const secrets = ctx.secrets ?? noSecrets;
  assertSecretsPresent([{ path: node.path, instructions }], secrets);

  const start = await startingPoint(deps, node, parent, runner);

  // Before the SPLIT line every copy sees the same environment (copy 0's runner id, no SPLIT/SPLIT_NUM),
  // so the prefix a copy restores from copy 0 is what it would have built itself; from the SPLIT line
  // on it has its own SPLIT, SPLIT_NUM and RUNNER_ID.
  // RETRY_INDEX is 1 for a first attempt, as in the hosted product's reference.
  const identity: RunIdentity = { jobId: ctx.runId, runnerId: node.runnerId, repositoryName: posix.basename(ctx.repo), retryIndex: 1, commit: ctx.commit, job: ctx.job };
  const prefixEnv = baseStepEnv(identity);
  const splitEnv = split ? baseStepEnv({ ...identity, runnerId: runner, split: { index: copyIndex, count: split.count, unordered: split.unordered } }) : prefixEnv;
  const envAt = (instructionIndex: number): Record<string, string> => (instructionIndex >= splitAt ? splitEnv : prefixEnv);
  // BUILD ENV values come from the prefix environment: after the SPLIT line, what differs between
  // copies (SPLIT, SPLIT_NUM) is in the SPLIT step's own key (its count, and the index when ordered).
  // ENV values inherited from a parent count for BUILD ENV of a name they set (definitionKey.ts).
  const keys = definitionKeys(instructions, { parentIdentity: start.identity, buildEnv: prefixEnv, startEnv: start.state.env, secrets: secrets.values, splitIndices: [copyIndex] });
  const allSteps: StepEntry[] = [];
  instructions.forEach((instruction, instructionIndex) => {
    if (isStep(instruction)) allSteps.push({ step: allSteps.length, instructionIndex, instruction, definitionKey: keys[instructionIndex] as string });
  });
  // SKIP REMAINING IF depends only on the step environment (strata's variables and ENV), never on the
  // machine, so where this run stops is known before planning. Steps after a condition that holds are
  // skipped, not cached: the final state is the state before the condition.
  const skipAt = skipIndex(instructions, start.state, envAt);
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

  // Plan: where to restore from, and which steps run.
  const candidates = await gatherCandidates(deps, {
    repo: ctx.repo,
    runId: ctx.runId,
    repoDir: ctx.repoDir,
    tree: ctx.tree,
    noCache: ctx.noCache,
    runner,
    firstCopyRunner: node.runnerId,
    copyIndex,
    steps,
    clones,
  });
  const storedTimings = await storedSplitTimings(candidates, (digest) => deps.cacheIndex.splitTimings.has(digest));
  const decision = decideRestore({
    instructions,
    steps,
    planSteps,
    candidates,
    inheritedCopies: start.copies,
    runner,
    firstCopyRunner: node.runnerId,
    split,
    copyIndex,
    copyTimings: copy?.timings,
    timingsStored: (digest) => storedTimings.has(digest),
    fromCheckpoint: ctx.fromCheckpoint,
  });
  const { plan: restorePlan, sourceChain, firstToRun, restoredThrough, carriedThrough, splitStep, explainStep } = decision;
  const splitTimings = await splitTimingsFor({
    layerfilePath: node.path,
    decision,
    copyIndex,
    copyTimings: copy?.timings,
    freeze: () => deps.cacheIndex.splitTimings.freeze(ctx.repo, node.path, deps.now()),
  });

  // The background commands that ran when the starting state was snapshotted (the restore point's, or
  // the parent's final ones). A snapshot holds files, not processes: they are started again before
  // the first step runs (ARCHITECTURE decision 3), and stay in the list of every later step.
  const background: BackgroundCommand[] = [
    ...(restorePlan.kind === 'restore' ? (sourceChain?.steps[restorePlan.afterStep]?.background ?? []) : start.background),
  ];
  const relaunching = firstToRun < steps.length ? background.length : 0;

  const summary = planSummary(restorePlan, steps, relaunching);
  deps.reporter.onRunnerStart?.({ runner, plan: summary });
  await deps.runLog.setRunner(ctx.runId, { runner, layerfile: node.path, status: 'running', plan: summary });

  // Replay the metadata of the cached steps so later steps see the same ENV/WORKDIR/USER.
  let state = start.state;
  for (const s of steps.slice(0, firstToRun)) state = applyToState(state, s.instruction, envAt(s.instructionIndex));

  const chainId = await deps.cacheIndex.startChain({ repo: ctx.repo, runner, layerfile: node.path, tree: ctx.tree, runId: ctx.runId, clones }, deps.now());
  const copies: CopyRecord[] = [...start.copies];
  let stateId = start.identity;
  let lastSnapshot: SnapshotName | null = start.snapshot;
  // The snapshot recorded for the step just before the current one (null when it had none).
  let previousStepSnapshot: SnapshotName | null = null;
  let splitReached = false;
  const reachedSplit = (): void => {
    if (splitReached) return;
    splitReached = true;
    copy?.onSplitReached?.(splitTimings);
  };

  // Restore: the restored machine's files, brought up to date with this commit.
  let activeKey: SnapshotKey | null = null;
  // The writable copy exists from its clone on; until the machine session owns it (and removes it when
  // it closes), whatever fails must remove it here.
  const dropActive = async (error: unknown): Promise<never> => {
    if (activeKey) await deps.snapshots.remove(activeKey).catch(() => {});
    throw error;
  };
  const newName = (label: string): SnapshotName => snapshotName(`${ctx.runId}.${runnerToken(runner)}.${label}`);
  if (restorePlan.kind === 'restore') {
    activeKey = snapshotKey(`active.${randomUUID()}`);
    const restoreFrom = restorePlan.snapshot;
    const { path: rootfs } = await deps.snapshots.clone(restoreFrom, activeKey);
    await reapplyWithClones({ repoDir: ctx.repoDir, tree: ctx.tree }, deps.remotes, clones, rootfs, restorePlan.reapply).catch(dropActive);
    const restoredSnapshot = restorePlan.reapply.length === 0 ? restoreFrom : newName(`restored-${restorePlan.afterStep}`);
    if (restoredSnapshot !== restoreFrom) await deps.snapshots.commit(activeKey, restoredSnapshot).catch(dropActive);
    // Carry the cached steps into the new chain. Only the restore point keeps a snapshot: older
    // snapshots hold the old chain's sources and stay reachable through the old chain.
    for (const s of steps.slice(0, carriedThrough + 1)) {
      const old = sourceChain?.steps[s.step] as ChainStepRecord;
      const snapshot = s.step === restoredThrough ? restoredSnapshot : null;
      await deps.cacheIndex.addStep(chainId, { ...old, definitionKey: s.definitionKey, snapshot }).catch(dropActive);
      previousStepSnapshot = snapshot;
      for (const copy of old.copies) copies.push(copy);
      stateId = old.stateId;
      if (s.step === restoredThrough) lastSnapshot = restoredSnapshot;
    }
  }

  // Report the plan step by step.
  const stepsCached = await reportPlan(deps, { runId: ctx.runId, runner, steps, skippedSteps, firstToRun, explainStep, skipLine: instructions[skipAt]?.range.line });

  // The copied steps are in this run's chain: a SPLIT among them lets the other copies start now.
  if (splitStep !== undefined && splitStep < firstToRun) reachedSplit();

  // MEMORY: the limit starts at the parent's final one (else the default) and each MEMORY line raises it
  // from its line on (memory.ts). A child starts from the limit in force where this Layerfile stops.
  const initialMemory = parent?.memoryBytes ?? deps.defaultMemoryBytes ?? DEFAULT_MACHINE_MEMORY_BYTES;
  const memoryBytes = memoryLimitBefore(instructions, skipAt, initialMemory);
  const finish = async (status: LayerfileOutcome['status'], stepsRan: number, message?: string): Promise<LayerfileOutcome> => {
    await deps.runLog.setRunner(ctx.runId, { runner, layerfile: node.path, status });
    return { status, message, finalSnapshot: lastSnapshot, finalStateId: stateId, execState: state, copies, stepsRan, stepsCached, background, clones, memoryBytes };
  };

  // A BUTTON asks the person running (ctx.approveButton), unless --accept-buttons approved them all;
  // with no way to ask, or when declined, the run stops there.
  const requireApproval = async (button: Extract<Instruction, { kind: 'button' }>): Promise<void> => {
    if (ctx.acceptButtons) return;
    throwIfCancelled(ctx.signal);
    const where = `${node.path}:${button.range.line}`;
    if (!ctx.approveButton) {
      throw new StrataError('STRATA_ENGINE', `${where}: BUTTON "${button.message}" needs approval`, {
        hint: 'run on a terminal to be asked, or with --accept-buttons to approve every BUTTON of this run',
      });
    }
    const approved = await ctx.approveButton({ runner, layerfile: node.path, line: button.range.line, message: button.message });
    throwIfCancelled(ctx.signal);
    if (!approved) {
      throw new StrataError('STRATA_ENGINE', `${where}: BUTTON "${button.message}" was declined`);
    }
  };

  // Nothing left to run: the (re-applied) restore point is the final state.
  if (firstToRun >= steps.length) {
    for (const button of buttons) await requireApproval(button).catch(dropActive);
    if (activeKey) await deps.snapshots.remove(activeKey);
    if (skippedSteps.length === 0) await deps.cacheIndex.completeChain(chainId);
    return await finish('success', 0);
  }

  // Start the machine.
  if (!activeKey) {
    activeKey = snapshotKey(`active.${randomUUID()}`);
    await deps.snapshots.clone(start.snapshot, activeKey);
  }
  const rootfs = deps.snapshots.path(activeKey);
  const session = new MachineSession(deps, {
    runId: ctx.runId,
    repo: ctx.repo,
    layerfilePath: node.path,
    runner,
    copyIndex,
    activeKey,
    rootfs,
    secrets,
    outputLimit: ctx.maxStepOutputBytes ?? DEFAULT_MAX_STEP_OUTPUT_BYTES,
  });
  let stepsRan = 0;
  // The step reported 'running', until it is reported done or failed: if the engine itself fails
  // meanwhile (store full, tracer died), that step is reported failed, not left running.
  let runningStep: StepEntry | null = null;
  try {
    const firstStep = steps[firstToRun] as StepEntry;
    // A restored machine gets the limit in force at its first step to run, MEMORY lines before it included.
    let memoryLimit = memoryLimitBefore(instructions, firstStep.instructionIndex, initialMemory);
    await session.start({
      instructions: instructions.slice(0, skipAt),
      startState: start.state,
      splitEnv,
      memoryBytes: memoryLimit,
      noCacheDirs: ctx.noCacheDirs ?? false,
      firstStep: firstStep.step,
      copies,
    });
    // From the first step after the SPLIT line on, the machine sees its SPLIT's timings.
    const provideSplitTimings = async (instructionIndex: number): Promise<void> => {
      if (instructionIndex > splitAt) await session.provideSplitTimings(splitTimings);
    };
    await provideSplitTimings(firstStep.instructionIndex);
    // Re-launch the restored state's background commands, waiting for the ports that listened then.
    const expectedPorts = restorePlan.kind === 'restore' ? (sourceChain?.steps[restorePlan.afterStep]?.listening ?? []) : [];
    const relaunch = await session.relaunch(background, expectedPorts, firstStep.step);

    // Run the steps.
    let instructionCursor = steps[firstToRun]!.instructionIndex;
    // BUTTONs before the first step that runs still need their approval.
    for (const button of buttons) if (instructions.indexOf(button) < firstStep.instructionIndex) await requireApproval(button);
    let snapshotsEnabled = instructions.slice(0, instructionCursor).reduce((on, i) => (i.kind === 'checkpoint' ? i.mode !== 'disabled' : on), true);

    for (const s of steps.slice(firstToRun)) {
      throwIfCancelled(ctx.signal);
      // Instructions between the previous step and this one.
      for (; instructionCursor < s.instructionIndex; instructionCursor++) {
        const between = instructions[instructionCursor] as Instruction;
        if (between.kind === 'checkpoint') snapshotsEnabled = between.mode !== 'disabled';
        if (between.kind === 'button') await requireApproval(between);
        if (between.kind === 'memory' && between.bytes > memoryLimit) {
          await session.setMemoryLimit(between.bytes);
          memoryLimit = between.bytes;
        }
      }
      instructionCursor = s.instructionIndex + 1;
      await provideSplitTimings(s.instructionIndex);

      const explanation = explainStep(s.step);
      deps.reporter.onStepStatus?.({ runner, step: s.step, status: 'running', ...(explanation ? { explanation } : {}) });
      runningStep = s;
      const started = deps.now();
      const instruction = s.instruction;
      const outcome = await executeStep({
        session,
        step: s.step,
        instruction,
        state,
        baseEnv: envAt(s.instructionIndex),
        sources: { repoDir: ctx.repoDir, tree: ctx.tree, layerfilePath: node.path, remotes: deps.remotes, clones },
        signal: ctx.signal,
        stepTimeoutMs: ctx.stepTimeoutMs,
      });
      state = outcome.state;
      if (outcome.background) background.push(outcome.background);
      copies.push(...outcome.copies);
      const durationMs = deps.now() - started;
      const { trace, failure } = outcome;
      if (relaunch.failure) throw relaunch.failure;

      // Record the step: snapshot first, index row second.
      let snapshot: SnapshotName | null = null;
      if (changesMachine(instruction) || failure) {
        stateId = randomUUID();
        if (snapshotsEnabled || failure || s.step === steps.length - 1) {
          snapshot = newName(failure ? `failed-${s.step}` : `${s.step}`);
          if (!session.frozen) await session.freeze();
          await deps.snapshots.commit(activeKey, snapshot);
        }
      } else {
        stateId = `${stateId}+${s.definitionKey}`;
        // ENV, SETUP FILE, BUILD ENV, SECRET ENV, CACHE and SPLIT change nothing in the machine: record
        // the previous step's snapshot as the state after them too, so a later run restores after them
        // (a Layerfile that ends with ENV is fully cached; the post-split steps restore after the SPLIT
        // and do not show it as rerun). Restoring there equals restoring after the previous step:
        // touches by background processes since then belong to the next step's trace either way.
        snapshot = previousStepSnapshot;
      }
      await session.thawIfFrozen();
      // With background commands running, the ports listening now (the machine is frozen when a
      // snapshot was taken) are what a restore of this state waits for (see the re-launch above).
      const listening = background.length > 0 ? await session.listeningPorts() : [];
      const record: ChainStepRecord = {
        listening,
        index: s.step,
        definitionKey: s.definitionKey,
        snapshot,
        stateId,
        trace: trace === null ? null : normalizeStepTrace(trace),
        copies: outcome.copies,
        repeatable: instruction.kind === 'run' && instruction.mode === 'repeatable',
        succeeded: failure === null,
        background: [...background],
        ...(instruction.kind === 'split' ? { splitTimings } : {}),
      };
      await deps.cacheIndex.addStep(chainId, record);
      previousStepSnapshot = snapshot;
      if (s.step === splitStep) reachedSplit();
      stepsRan++;
      if (snapshot) lastSnapshot = snapshot;
      await deps.runLog.setStep(ctx.runId, { runner, index: s.step, line: instruction.range.line, text: instruction.canonical, status: failure ? 'failed' : 'ran', reason: explanation ?? null, durationMs, snapshot });
      deps.reporter.onStepStatus?.({ runner, step: s.step, status: failure ? 'failed' : 'done', durationMs, snapshot });
      runningStep = null;
      if (failure) {
        const message = `step ${s.step + 1} (line ${instruction.range.line}) ${failure}; the machine at failure is snapshot ${snapshot}`;
        return await finish('failure', stepsRan, message);
      }
    }
    // BUTTONs after the last step that ran (and before any SKIP REMAINING IF that held).
    for (const button of buttons) if (instructions.indexOf(button) >= instructionCursor) await requireApproval(button);
    await relaunch.done;
    if (skippedSteps.length === 0) await deps.cacheIndex.completeChain(chainId);
    return await finish('success', stepsRan);
  } catch (error) {
    if (runningStep) {
      const failed = runningStep;
      const cancelled = error instanceof StrataError && error.code === 'STRATA_CANCELLED';
      // A step that fills the store's disk ran into a limit of its own making: the step fails, not strata.
      const storeFull = error instanceof StrataError && error.code === 'STRATA_STORE_FULL';
      const what = error instanceof Error ? error.message : String(error);
      const reason = { message: cancelled ? 'cancelled while running' : storeFull ? `filled the snapshot store's disk: ${what}` : `strata failed during this step: ${what}` };
      deps.reporter.onStepStatus?.({ runner, step: failed.step, status: 'failed', explanation: { cached: false, message: reason.message } });
      await deps.runLog.setStep(ctx.runId, { runner, index: failed.step, line: failed.instruction.range.line, text: failed.instruction.canonical, status: 'failed', reason, durationMs: null, snapshot: null });
      if (storeFull) {
        const hint = (error as StrataError).hint ? ` (hint: ${(error as StrataError).hint})` : '';
        return await finish('failure', stepsRan, `step ${failed.step + 1} (line ${failed.instruction.range.line}) ${reason.message}${hint}`);
      }
    }
    throw error;
  } finally {
    await session.close();
  }
}

/** The Layerfile's SPLIT; throws for what this engine does not run (NOT_YET directives, a second SPLIT). */
function supportedSplit(node: GraphNode): SplitInstruction | undefined {
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
  return splits[0];
}

/** Where the Layerfile starts from: its FROM image, or the final state of the Layerfile it inherits from. */
async function startingPoint(
  deps: EngineDeps,
  node: GraphNode,
  parent: LayerfileOutcome | null,
  runner: string,
): Promise<{ snapshot: SnapshotName; identity: string; state: ExecState; copies: CopyRecord[]; background: BackgroundCommand[] }> {
  const from = node.layerfile.instructions[0];
  if (from?.kind !== 'from') throw new StrataError('STRATA_INTERNAL', `${node.path} has no FROM`);
  if (from.source.type === 'image') {
    const image = await deps.images.ensure(from.source.name, (line) =>
      deps.reporter.onStepOutput?.({ runner, step: 0, stream: 'stderr', data: line + '\n', timeMs: deps.now() }),
    );
    return { snapshot: image.snapshot, identity: imageIdentity(from.source.name, image.identity), state: initialExecState(), copies: [], background: [] };
  }
  if (!parent || parent.status !== 'success' || !parent.finalSnapshot) {
    throw new StrataError('STRATA_INTERNAL', `${node.path} started without its parent's final state`);
  }
  return { snapshot: parent.finalSnapshot, identity: layerfileIdentity(parent.finalStateId), state: parent.execState, copies: parent.copies, background: parent.background ?? [] };
}

/** Reports every step that does not run now (skipped, cached) and marks the others pending; returns how many are cached. */
async function reportPlan(
  deps: EngineDeps,
  plan: { runId: string; runner: string; steps: readonly StepEntry[]; skippedSteps: readonly StepEntry[]; firstToRun: number; explainStep: (step: number) => StepExplanation | undefined; skipLine: number | undefined },
): Promise<number> {
  const { runId, runner, firstToRun } = plan;
  let stepsCached = 0;
  for (const s of plan.skippedSteps) {
    const skipped = `SKIP REMAINING IF at line ${plan.skipLine} held`;
    deps.reporter.onStepStatus?.({ runner, step: s.step, status: 'skipped', explanation: { cached: false, message: skipped } });
    await deps.runLog.setStep(runId, { runner, index: s.step, line: s.instruction.range.line, text: s.instruction.canonical, status: 'skipped', reason: { message: skipped }, durationMs: null, snapshot: null });
  }
  for (const s of plan.steps) {
    const explanation = plan.explainStep(s.step);
    if (s.step < firstToRun) {
      stepsCached++;
      deps.reporter.onStepStatus?.({ runner, step: s.step, status: 'cached', ...(explanation ? { explanation } : {}) });
      await deps.runLog.setStep(runId, { runner, index: s.step, line: s.instruction.range.line, text: s.instruction.canonical, status: 'cached', reason: explanation ?? null, durationMs: null, snapshot: null });
    } else {
      await deps.runLog.setStep(runId, { runner, index: s.step, line: s.instruction.range.line, text: s.instruction.canonical, status: 'pending', reason: explanation ?? null, durationMs: null, snapshot: null });
    }
  }
  return stepsCached;
}
