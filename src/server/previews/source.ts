// What a preview is started from: a runner's final state in one run (the snapshot, the RUN BACKGROUND
// commands running in it) and its Layerfile's EXPOSE lines as of that run. The run log names the
// runner's Layerfile; the Layerfile's text comes from the run's source tree in git; the final snapshot
// and background commands come from the run's chain in the cache index (the run log has no snapshot
// for steps restored from the cache, the chain carries the restore point's).
import { StrataError } from '../../errors.js';
import { resolveLayerfilePath } from '../../layerfile/graph.js';
import { parseLayerfile, type Instruction } from '../../layerfile/index.js';
import { snapshotName, type SnapshotName, type SnapshotStore } from '../../snapshot/types.js';
import { readLayerfilesFromTree, type TreeId } from '../../source/git.js';
import type { BackgroundCommand, CacheIndex } from '../../store/cacheIndex.js';
import type { RunLog, RunRecord } from '../../store/runs.js';

export interface PreviewSource {
  runId: string;
  runner: string;
  /** Repo-relative path of the runner's Layerfile. */
  layerfile: string;
  instructions: Instruction[];
  snapshot: SnapshotName;
  background: BackgroundCommand[];
}

export interface PreviewSourceDeps {
  runLog: RunLog;
  snapshots: Pick<SnapshotStore, 'has'>;
  cacheIndex: Pick<CacheIndex, 'chainOfRun'>;
}

/** The runner's final state: the last snapshot and background list of its chain in this run. */
async function chainFinalState(cacheIndex: PreviewSourceDeps['cacheIndex'], runId: string, runner: string): Promise<{ snapshot: string | null; background: BackgroundCommand[] | null } | null> {
  const chain = await cacheIndex.chainOfRun(runId, runner);
  if (!chain) return null;
  const { steps } = chain;
  return {
    // A step without a snapshot (ENV, a disabled CHECKPOINT) leaves the machine as the previous one did.
    snapshot: [...steps].reverse().find((s) => s.snapshot !== null)?.snapshot ?? null,
    background: steps.at(-1)?.background ?? null,
  };
}

export async function resolvePreviewSource(deps: PreviewSourceDeps, runId: string, runner: string): Promise<PreviewSource> {
  const run = await deps.runLog.getRun(runId);
  if (!run) throw new StrataError('STRATA_NOT_FOUND', `no run ${runId}`);
  const record = run.runners.find((r) => r.runner === runner);
  if (!record) throw new StrataError('STRATA_NOT_FOUND', `no runner ${JSON.stringify(runner)} in ${runId}`, { hint: `runners: ${run.runners.map((r) => r.runner).join(', ')}` });
  if (record.status !== 'success') throw new StrataError('STRATA_NOT_FOUND', `runner ${runner} did not succeed in ${runId} (${record.status}): it has no preview`);

  const layerfiles = await readLayerfilesFromTree(run.repo, run.tree as TreeId).catch((cause: unknown) => {
    throw new StrataError('STRATA_GONE', `the sources of ${runId} can no longer be read from ${run.repo}`, { cause });
  });
  const instructionsOf = (path: string): Instruction[] => {
    const text = layerfiles.find((l) => l.path === path)?.text;
    if (text === undefined) throw new StrataError('STRATA_GONE', `${path} is not in the source tree of ${runId} any more`);
    return parseLayerfile(text, path).layerfile.instructions;
  };
  const instructions = instructionsOf(record.layerfile);
  if (!instructions.some((i) => i.kind === 'exposeWebsite')) {
    throw new StrataError('STRATA_NOT_FOUND', `${record.layerfile} (runner ${runner}) has no EXPOSE WEBSITE line: there is nothing to preview`);
  }

  const { snapshot, background } = await finalState(deps.cacheIndex, run, runner, record.layerfile, instructionsOf);
  if (!(await deps.snapshots.has(snapshot))) {
    throw new StrataError('STRATA_GONE', `the final snapshot of ${runner} in ${runId} (${snapshot}) is no longer in the store`, {
      hint: 'retention removed it (newer runs replaced it); run the job again for a new preview',
    });
  }
  return { runId, runner, layerfile: record.layerfile, instructions, snapshot, background };
}

/**
 * A runner none of whose own steps left a snapshot (a child Layerfile of only ENV lines, say) ends in
 * its parent's final state: follow FROM to the parent's runner in the same run.
 */
async function finalState(
  cacheIndex: PreviewSourceDeps['cacheIndex'],
  run: RunRecord,
  runner: string,
  layerfile: string,
  instructionsOf: (path: string) => Instruction[],
): Promise<{ snapshot: SnapshotName; background: BackgroundCommand[] }> {
  const gone = (): StrataError =>
    new StrataError('STRATA_GONE', `the final state of ${runner} in ${run.id} is no longer recorded`, { hint: 'retention forgot it (newer runs replaced it); run the job again for a new preview' });
  let current = { runner, layerfile };
  let inheritedBackground: BackgroundCommand[] | null = null;
  for (let depth = 0; depth < 64; depth++) {
    const state = await chainFinalState(cacheIndex, run.id, current.runner);
    if (!state) throw gone();
    const background: BackgroundCommand[] | null = inheritedBackground ?? state.background;
    if (state.snapshot !== null) return { snapshot: snapshotName(state.snapshot), background: background ?? [] };
    inheritedBackground = background;
    const from = instructionsOf(current.layerfile)[0];
    if (from?.kind !== 'from' || from.source.type !== 'layerfile') throw gone();
    const resolved = resolveLayerfilePath(current.layerfile, from.source.path);
    const parent = resolved.ok ? run.runners.find((r) => r.layerfile === resolved.path) : undefined;
    if (!parent) throw gone();
    current = { runner: parent.runner, layerfile: parent.layerfile };
  }
  throw gone();
}
