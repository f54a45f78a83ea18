// Runs every Layerfile of a repository for one source state (a commit or the working tree): parse,
// build the graph, then run level by level — Layerfiles of one level in parallel (bounded), a child
// after its FROM parent (starting from the parent's final state) and after everything it WAITs for.
import { randomBytes } from 'node:crypto';
import { StrataError } from '../errors.js';
import { realpathSync } from 'node:fs';
import { join, relative, resolve, sep } from 'node:path';
import { buildGraph, resolveLayerfilePath, type GraphNode } from '../layerfile/graph.js';
import { parseLayerfile, type Layerfile } from '../layerfile/index.js';
import { isStep } from '../plan/definitionKey.js';
import { commitInfo, readLayerfilesFromTree, repoRoot, workingTreeId, type CommitInfo, type TreeId } from '../source/git.js';
import type { EngineDeps } from './ports.js';
import type { RunSummary } from './reporter.js';
import { copyRunnerId, runLayerfile, runnerIdsOf, splitOf, type LayerfileOutcome, type RunContext, type SplitCopy } from './runLayerfile.js';
import { assertSecretsPresent, maskingReporter, noSecrets, SecretMasker, type Secrets } from './secrets.js';
import type { JobFacts } from './stepEnv.js';

export interface RunOptions {
  /**
   * Names the repository in the cache index, the run log, strata-split timings and CACHE dirs instead
   * of its directory: a `strata worker` passes the server's name of the repository, so the chains all
   * workers record for it are one set, wherever each worker's checkout lives.
   */
  repoKey?: string | undefined;
  repoDir: string;
  /** A git revision to run; undefined runs the working tree as it is (tracked + untracked, not ignored). */
  commit?: string | undefined;
  noCache?: boolean;
  /** Run with empty, throwaway CACHE directories; the persistent ones are not touched. */
  noCacheDirs?: boolean | undefined;
  acceptButtons?: boolean;
  /** Asks a person to approve a BUTTON (see RunContext.approveButton). */
  approveButton?: RunContext['approveButton'];
  /**
   * Run only the Layerfiles under this repo-relative directory (and the Layerfiles they inherit from or
   * wait for, wherever those are). Default: `repoDir` relative to the repository root, i.e. running
   * `strata run services/api` runs that subtree.
   */
  subdir?: string | undefined;
  /** Values for SECRET ENV. They are masked in every event this run reports. */
  secrets?: Secrets | undefined;
  /**
   * Cancels the run: the running steps are killed, nothing of them is cached, machines are destroyed,
   * Layerfiles not started yet are skipped, and the run ends 'cancelled'.
   */
  signal?: AbortSignal | undefined;
  /** Kill a RUN step that takes longer than this (the step fails as timed out). */
  stepTimeoutMs?: number | undefined;
  /** How much of one step's output reaches the reporter; the rest is dropped after a marker line (default 64 MiB). */
  maxStepOutputBytes?: number | undefined;
  /**
   * `CHECKPOINT name`: in the Layerfiles that have it, the cache is used at most up to that line and
   * every step after it runs again (and so does every Layerfile that inherits from them).
   */
  fromCheckpoint?: string | undefined;
  /** What the caller knows about the job (LAYERCI_* variables in every step; never in a cache key unless BUILD ENV names one). */
  job?: JobFacts | undefined;
}

export interface RunResult extends RunSummary {
  outcomes: Map<string, LayerfileOutcome>;
  /** The Layerfiles that ran (by path in `outcomes`), e.g. for EXPOSE after the run. */
  nodes: GraphNode[];
}

/** Formats every Layerfile/graph error of a repo as one error, each with file:line:col. */
export class LayerfileProblems extends StrataError {
  constructor(readonly problems: string[]) {
    super('STRATA_LAYERFILE_SYNTAX', `the repository's Layerfiles have ${problems.length} problem(s):\n${problems.join('\n')}`, {
      hint: 'run `strata check` for the full report',
    });
  }
}

export function newRunId(now: number): string {
  const stamp = new Date(now).toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  return `run-${stamp}-${randomBytes(3).toString('hex')}`;
}

export async function runRepository(options: RunOptions, engineDeps: EngineDeps): Promise<RunResult> {
  const secrets = options.secrets ?? noSecrets;
  // Every event leaves the engine through this reporter: secret values never reach a log.
  const deps: EngineDeps = { ...engineDeps, reporter: maskingReporter(engineDeps.reporter, new SecretMasker(secrets.values.values()), engineDeps.now) };
  const started = deps.now();
  const repo = await repoRoot(options.repoDir);
  let commit: CommitInfo | null = null;
  let tree: TreeId;
  if (options.commit !== undefined) {
    commit = await commitInfo(repo, options.commit);
    tree = commit.tree;
  } else {
    tree = await workingTreeId(repo);
    commit = await commitInfo(repo, 'HEAD').catch(() => null);
  }

  const subdir = options.subdir ?? relative(repo, realpathSync(resolve(options.repoDir))).split(sep).join('/');
  const treeLayerfiles = await readLayerfilesFromTree(repo, tree);
  const inScope = (path: string) => subdir === '' || path.startsWith(`${subdir}/`);
  if (!treeLayerfiles.some((l) => inScope(l.path))) {
    throw new StrataError('STRATA_USAGE', `no Layerfile in ${join(repo, subdir)}`, { hint: 'a file named exactly "Layerfile" defines a pipeline' });
  }
  // Parse the selected Layerfiles, then whatever they inherit from or wait for, transitively.
  const byPath = new Map(treeLayerfiles.map((l) => [l.path, l.text]));
  const problems: string[] = [];
  const parsedByPath = new Map<string, Layerfile>();
  const queue = treeLayerfiles.filter((l) => inScope(l.path)).map((l) => l.path);
  while (queue.length > 0) {
    const path = queue.shift() as string;
    if (parsedByPath.has(path)) continue;
    const text = byPath.get(path);
    if (text === undefined) continue; // a missing parent: the graph reports it at the FROM/WAIT line
    const parsed = parseLayerfile(text, path);
    problems.push(...parsed.errors.map((e) => e.format()));
    parsedByPath.set(path, parsed.layerfile);
    for (const instruction of parsed.layerfile.instructions) {
      const refs = instruction.kind === 'from' && instruction.source.type === 'layerfile' ? [instruction.source.path] : instruction.kind === 'wait' ? instruction.paths : [];
      for (const ref of refs) {
        const resolved = resolveLayerfilePath(path, ref);
        if (resolved.ok) queue.push(resolved.path);
      }
    }
  }
  const layerfiles = [...parsedByPath.values()];
  const graph = buildGraph(layerfiles);
  problems.push(...graph.errors.map((e) => e.format()));
  // A SPLIT copy is a runner of its own (`<id>-2`, ...): its id must not be another Layerfile's.
  const runnerOwner = new Map(graph.nodes.map((n) => [n.runnerId, n.path]));
  for (const node of graph.nodes) {
    for (const id of runnerIdsOf(node).slice(1)) {
      const other = runnerOwner.get(id);
      if (other !== undefined) problems.push(`${node.path}:${splitOf(node)?.range.line}: SPLIT names a copy "${id}", which is already the runner of ${other} (rename one with LABEL display_name=...)`);
      runnerOwner.set(id, node.path);
    }
  }
  if (problems.length > 0) throw new LayerfileProblems(problems);
  assertSecretsPresent(layerfiles, secrets);
  if (options.fromCheckpoint !== undefined) assertCheckpointExists(layerfiles, options.fromCheckpoint);

  const runId = newRunId(started);
  const nodes = new Map(graph.nodes.map((n) => [n.path, n]));
  await deps.runLog.createRun({ id: runId, repo: options.repoKey ?? repo, commit: options.commit !== undefined ? commit?.commit ?? null : null, tree, branch: commit?.branch ?? '', startedAt: started });
  deps.reporter.onRunStart?.({
    runId,
    repo,
    tree,
    commit: options.commit !== undefined ? commit?.commit ?? null : null,
    runners: graph.levels.flatMap((level, i) =>
      level.flatMap((path) => {
        const node = nodes.get(path) as GraphNode;
        const steps = node.layerfile.instructions.filter(isStep).map((instr, index) => ({ index, line: instr.range.line, text: instr.canonical }));
        // Every SPLIT copy is a runner of its own, with the same steps.
        const statusLabel = statusLabelOf(node.layerfile);
        const split = splitOf(node) !== undefined;
        return runnerIdsOf(node).map((runner) => ({
          runner,
          layerfile: node.path,
          level: i + 1,
          steps,
          ...(statusLabel ? { statusLabel } : {}),
          ...(split ? { copyOf: node.runnerId } : {}),
        }));
      }),
    ),
  });

  const ctx: RunContext = { deps, runId, repo: options.repoKey ?? repo, repoDir: repo, tree, commit, noCache: options.noCache ?? false, acceptButtons: options.acceptButtons ?? false, approveButton: options.approveButton, secrets, noCacheDirs: options.noCacheDirs ?? false, signal: options.signal, stepTimeoutMs: options.stepTimeoutMs, maxStepOutputBytes: options.maxStepOutputBytes, fromCheckpoint: options.fromCheckpoint, job: options.job };
  const outcomes = new Map<string, LayerfileOutcome>();
  for (const level of graph.levels) {
    await mapLimited(level, deps.parallelism, async (path) => {
      const node = nodes.get(path) as GraphNode;
      outcomes.set(path, await runNode(ctx, node, outcomes));
    });
  }

  const all = [...outcomes.values()];
  const status: RunSummary['status'] = options.signal?.aborted
    ? 'cancelled'
    : all.some((o) => o.status === 'error')
      ? 'error'
      : all.every((o) => o.status === 'success')
        ? 'success'
        : 'failure';
  const summary: RunSummary = {
    runId,
    status,
    durationMs: deps.now() - started,
    stepsRan: all.reduce((n, o) => n + o.stepsRan, 0),
    stepsCached: all.reduce((n, o) => n + o.stepsCached, 0),
  };
  await deps.runLog.finishRun(runId, status, deps.now());
  deps.reporter.onRunEnd?.(summary);
  return { ...summary, outcomes, nodes: graph.nodes };
}

/** The last `LABEL status=...` of a Layerfile, if it is one the server acts on. */
function statusLabelOf(layerfile: Layerfile): 'merge' | 'hidden' | undefined {
  let found: 'merge' | 'hidden' | undefined;
  for (const instruction of layerfile.instructions) {
    if (instruction.kind !== 'label') continue;
    for (const entry of instruction.entries) if (entry.key === 'status' && (entry.value === 'merge' || entry.value === 'hidden')) found = entry.value;
  }
  return found;
}

function assertCheckpointExists(layerfiles: Layerfile[], name: string): void {
  const named = layerfiles.flatMap((l) => l.instructions.flatMap((i) => (i.kind === 'checkpoint' && i.mode === 'named' && i.name !== undefined ? [i.name] : [])));
  if (!named.includes(name)) {
    throw new StrataError('STRATA_USAGE', `no Layerfile of this run has CHECKPOINT ${name}`, {
      hint: named.length > 0 ? `named checkpoints: ${[...new Set(named)].join(', ')}` : 'mark a line with `CHECKPOINT <name>` first',
    });
  }
}

async function runNode(ctx: RunContext, node: GraphNode, outcomes: Map<string, LayerfileOutcome>): Promise<LayerfileOutcome> {
  if (ctx.signal?.aborted) {
    const skipped = await Promise.all(runnerIdsOf(node).map((runner) => skipRunner(ctx, node, runner, 'not run: the run was cancelled')));
    return skipped.length === 1 ? (skipped[0] as LayerfileOutcome) : combineCopies(node, skipped);
  }
  const blocked = node.dependsOn.find((dep) => outcomes.get(dep)?.status !== 'success');
  if (blocked) {
    const skipped = await Promise.all(runnerIdsOf(node).map((runner) => skipRunner(ctx, node, runner, `not run: ${blocked} did not succeed`)));
    return skipped.length === 1 ? (skipped[0] as LayerfileOutcome) : combineCopies(node, skipped);
  }
  const parent = node.parent?.type === 'layerfile' ? (outcomes.get(node.parent.path) ?? null) : null;
  const split = splitOf(node);
  if (!split) return runRunner(ctx, node, parent, node.runnerId);

  // SPLIT n: copy 0 runs first; the others plan once it has done its steps up to the SPLIT, so they
  // restore its pre-split snapshot instead of running the shared prefix again (runLayerfile).
  // They also get the strata-split timings copy 0's SPLIT used: every share comes from the same ones.
  let settlePrefix!: (prefix: { reached: boolean; timings: string | null }) => void;
  const prefixDone = new Promise<{ reached: boolean; timings: string | null }>((resolve) => (settlePrefix = resolve));
  const first = runRunner(ctx, node, parent, node.runnerId, { index: 0, onSplitReached: (timings) => settlePrefix({ reached: true, timings }) }).then((outcome) => {
    // Ended without reaching the SPLIT: a success means a SKIP REMAINING IF held before it, which
    // holds in every copy (same environment before the SPLIT); they run and skip the same way.
    settlePrefix({ reached: outcome.status === 'success', timings: null });
    return outcome;
  });
  const others = prefixDone.then(async ({ reached, timings }) => {
    const indices = Array.from({ length: split.count - 1 }, (_, i) => i + 1);
    const results: LayerfileOutcome[] = [];
    await mapLimited(indices, ctx.deps.parallelism, async (index) => {
      const runner = copyRunnerId(node.runnerId, index);
      results[index - 1] = reached
        ? await runRunner(ctx, node, parent, runner, { index, timings })
        : await skipRunner(ctx, node, runner, `not run: the steps before SPLIT failed in ${node.runnerId}`);
    });
    return results;
  });
  const [firstOutcome, otherOutcomes] = await Promise.all([first, others]);
  return combineCopies(node, [firstOutcome, ...otherOutcomes]);
}

/** Runs one runner (a Layerfile, or one SPLIT copy of it) to an outcome: never throws. */
async function runRunner(ctx: RunContext, node: GraphNode, parent: LayerfileOutcome | null, runner: string, copy?: SplitCopy): Promise<LayerfileOutcome> {
  const { deps } = ctx;
  try {
    const outcome = await runLayerfile(ctx, node, parent, copy);
    deps.reporter.onRunnerEnd?.({ runner, status: outcome.status === 'success' ? 'success' : 'failure', ...(outcome.message ? { message: outcome.message } : {}) });
    return outcome;
  } catch (error) {
    // A strata bug shows as one line (the UI, the --json stream and statuses carry it); the stack only with STRATA_DEBUG=1.
    const message =
      error instanceof StrataError
        ? `${error.message}${error.hint ? ` (hint: ${error.hint})` : ''}`
        : `strata internal error: ${error instanceof Error ? (process.env.STRATA_DEBUG === '1' ? (error.stack ?? error.message) : error.message) : String(error)}${process.env.STRATA_DEBUG === '1' ? '' : ' (STRATA_DEBUG=1 shows where)'}`;
    if (error instanceof StrataError && error.code === 'STRATA_CANCELLED') {
      await deps.runLog.setRunner(ctx.runId, { runner, layerfile: node.path, status: 'cancelled' });
      deps.reporter.onRunnerEnd?.({ runner, status: 'cancelled', message: error.message });
      return { status: 'skipped', message: error.message, finalSnapshot: null, finalStateId: '', execState: { env: {}, workdir: '/root', user: 'root', setupFiles: [] }, copies: [], stepsRan: 0, stepsCached: 0 };
    }
    await deps.runLog.setRunner(ctx.runId, { runner, layerfile: node.path, status: 'error' });
    deps.reporter.onRunnerEnd?.({ runner, status: 'error', message });
    return { status: 'error', message, finalSnapshot: null, finalStateId: '', execState: { env: {}, workdir: '/root', user: 'root', setupFiles: [] }, copies: [], stepsRan: 0, stepsCached: 0 };
  }
}

async function skipRunner(ctx: RunContext, node: GraphNode, runner: string, message: string): Promise<LayerfileOutcome> {
  await ctx.deps.runLog.setRunner(ctx.runId, { runner, layerfile: node.path, status: 'skipped', plan: message });
  ctx.deps.reporter.onRunnerEnd?.({ runner, status: 'skipped', message });
  return { status: 'skipped', message, finalSnapshot: null, finalStateId: '', execState: { env: {}, workdir: '/root', user: 'root', setupFiles: [] }, copies: [], stepsRan: 0, stepsCached: 0 };
}

/**
 * The outcome of a split Layerfile as a whole: it succeeds only if every copy did (so a WAIT on it
 * waits for all copies), and a child (`FROM ../it`) starts from copy 0's final state.
 */
function combineCopies(node: GraphNode, outcomes: LayerfileOutcome[]): LayerfileOutcome {
  const first = outcomes[0] as LayerfileOutcome;
  const status: LayerfileOutcome['status'] = outcomes.some((o) => o.status === 'error')
    ? 'error'
    : outcomes.every((o) => o.status === 'success')
      ? 'success'
      : outcomes.some((o) => o.status === 'failure')
        ? 'failure'
        : 'skipped';
  const messages = outcomes.flatMap((o, i) => (o.message ? [`${copyRunnerId(node.runnerId, i)}: ${o.message}`] : []));
  return {
    ...first,
    status,
    message: messages.length > 0 ? messages.join('; ') : undefined,
    stepsRan: outcomes.reduce((n, o) => n + o.stepsRan, 0),
    stepsCached: outcomes.reduce((n, o) => n + o.stepsCached, 0),
  };
}

async function mapLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, async () => {
    while (next < items.length) await fn(items[next++] as T);
  });
  await Promise.all(workers);
}
