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
import { runLayerfile, type LayerfileOutcome, type RunContext } from './runLayerfile.js';
import { assertSecretsPresent, maskingReporter, noSecrets, SecretMasker, type Secrets } from './secrets.js';

export interface RunOptions {
  repoDir: string;
  /** A git revision to run; undefined runs the working tree as it is (tracked + untracked, not ignored). */
  commit?: string | undefined;
  noCache?: boolean;
  /** Run with empty, throwaway CACHE directories; the persistent ones are not touched. */
  noCacheDirs?: boolean | undefined;
  acceptButtons?: boolean;
  /**
   * Run only the Layerfiles under this repo-relative directory (and the Layerfiles they inherit from or
   * wait for, wherever those are). Default: `repoDir` relative to the repository root, i.e. running
   * `strata run services/api` runs that subtree.
   */
  subdir?: string | undefined;
  /** Values for SECRET ENV. They are masked in every event this run reports. */
  secrets?: Secrets | undefined;
}

export interface RunResult extends RunSummary {
  outcomes: Map<string, LayerfileOutcome>;
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
  if (problems.length > 0) throw new LayerfileProblems(problems);
  assertSecretsPresent(layerfiles, secrets);

  const runId = newRunId(started);
  const nodes = new Map(graph.nodes.map((n) => [n.path, n]));
  deps.runLog.createRun({ id: runId, repo, commit: options.commit !== undefined ? commit?.commit ?? null : null, tree, branch: commit?.branch ?? '', startedAt: started });
  deps.reporter.onRunStart?.({
    runId,
    repo,
    tree,
    commit: options.commit !== undefined ? commit?.commit ?? null : null,
    runners: graph.levels.flatMap((level, i) =>
      level.map((path) => {
        const node = nodes.get(path) as GraphNode;
        return {
          runner: node.runnerId,
          layerfile: node.path,
          level: i + 1,
          steps: node.layerfile.instructions.filter(isStep).map((instr, index) => ({ index, line: instr.range.line, text: instr.canonical })),
        };
      }),
    ),
  });

  const ctx: RunContext = { deps, runId, repo, repoDir: repo, tree, commit, noCache: options.noCache ?? false, acceptButtons: options.acceptButtons ?? false, secrets, noCacheDirs: options.noCacheDirs ?? false };
  const outcomes = new Map<string, LayerfileOutcome>();
  for (const level of graph.levels) {
    await mapLimited(level, deps.parallelism, async (path) => {
      const node = nodes.get(path) as GraphNode;
      outcomes.set(path, await runNode(ctx, node, outcomes));
    });
  }

  const all = [...outcomes.values()];
  const status: RunSummary['status'] = all.some((o) => o.status === 'error') ? 'error' : all.every((o) => o.status === 'success') ? 'success' : 'failure';
  const summary: RunSummary = {
    runId,
    status,
    durationMs: deps.now() - started,
    stepsRan: all.reduce((n, o) => n + o.stepsRan, 0),
    stepsCached: all.reduce((n, o) => n + o.stepsCached, 0),
  };
  deps.runLog.finishRun(runId, status, deps.now());
  deps.reporter.onRunEnd?.(summary);
  return { ...summary, outcomes };
}

async function runNode(ctx: RunContext, node: GraphNode, outcomes: Map<string, LayerfileOutcome>): Promise<LayerfileOutcome> {
  const { deps } = ctx;
  const blocked = node.dependsOn.find((dep) => outcomes.get(dep)?.status !== 'success');
  if (blocked) {
    const message = `not run: ${blocked} did not succeed`;
    deps.runLog.setRunner(ctx.runId, { runner: node.runnerId, layerfile: node.path, status: 'skipped', plan: message });
    deps.reporter.onRunnerEnd?.({ runner: node.runnerId, status: 'error', message });
    return { status: 'skipped', message, finalSnapshot: null, finalStateId: '', execState: { env: {}, workdir: '/root', user: 'root', setupFiles: [] }, copies: [], stepsRan: 0, stepsCached: 0 };
  }
  const parent = node.parent?.type === 'layerfile' ? (outcomes.get(node.parent.path) ?? null) : null;
  try {
    const outcome = await runLayerfile(ctx, node, parent);
    deps.reporter.onRunnerEnd?.({ runner: node.runnerId, status: outcome.status === 'success' ? 'success' : 'failure', ...(outcome.message ? { message: outcome.message } : {}) });
    return outcome;
  } catch (error) {
    const message = error instanceof StrataError ? `${error.message}${error.hint ? ` (hint: ${error.hint})` : ''}` : String(error instanceof Error ? (error.stack ?? error.message) : error);
    deps.runLog.setRunner(ctx.runId, { runner: node.runnerId, layerfile: node.path, status: 'error' });
    deps.reporter.onRunnerEnd?.({ runner: node.runnerId, status: 'error', message });
    return { status: 'error', message, finalSnapshot: null, finalStateId: '', execState: { env: {}, workdir: '/root', user: 'root', setupFiles: [] }, copies: [], stepsRan: 0, stepsCached: 0 };
  }
}

async function mapLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, async () => {
    while (next < items.length) await fn(items[next++] as T);
  });
  await Promise.all(workers);
}
