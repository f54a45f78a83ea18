// The cache index: which snapshots exist for which chain of definition keys, against which source
// tree, with which traces. The engine writes a step's row only after its snapshot is committed
// (snapshot first, index second), so a crash leaves at worst an orphan snapshot, never a row naming a
// snapshot that does not exist.
import { randomUUID } from 'node:crypto';
import type { CopyRecord } from '../plan/types.js';
import type { StepTrace } from '../trace/types.js';
import type { Db } from './database.js';
import { createSplitTimings, type SplitTimings } from './splitTimings.js';

/** A RUN BACKGROUND command as it was started: what a restore needs to start it again the same way. */
export interface BackgroundCommand {
  /** The bash script actually run (SETUP FILE sourcing included). */
  command: string;
  /** The complete environment it ran with. */
  env: Record<string, string>;
  workdir: string;
  user: string;
  /** SECRET ENV names whose values are added to `env` at each (re-)launch; values are never stored. */
  secrets?: string[] | undefined;
}

export interface ChainStepRecord {
  index: number;
  definitionKey: string;
  /** Committed snapshot after this step, or null when the step has none (metadata-only, disabled). */
  snapshot: string | null;
  stateId: string;
  /** Null when the step did not finish recording (crash): the planner treats it as invalidated. */
  trace: StepTrace | null;
  copies: CopyRecord[];
  repeatable: boolean;
  /** A failed step is kept (its snapshot is what `strata shell` opens) but never reused. */
  succeeded: boolean;
  /** The background commands running after this step (inherited ones included), in start order. */
  background: BackgroundCommand[];
  /** TCP ports listening in the machine when the snapshot was taken (with background commands only). */
  listening?: number[] | undefined;
  /** On a SPLIT step: the digest of the frozen strata-split timings its copies used (null: none). */
  splitTimings?: string | null | undefined;
}

export interface ChainRecord {
  id: string;
  repo: string;
  runner: string;
  layerfile: string;
  tree: string;
  runId: string;
  createdAt: number;
  complete: boolean;
  steps: ChainStepRecord[];
  /** The remote trees CLONE steps copied from (inherited ones included); absent means none. */
  clones?: ChainClone[] | undefined;
}

/** One CLONEd remote as a chain saw it: its source namespace in the planner's paths and its tree then. */
export interface ChainClone {
  /** Prefix of its paths among the planner's source paths, e.g. '.git/clone/1a2b3c4d'. */
  namespace: string;
  url: string;
  branch: string;
  commit: string;
  tree: string;
}

export interface CacheIndex {
  /** Recent chains of `runner` in `repo` whose first step has `firstKey`, newest first. */
  candidates(repo: string, runner: string, firstKey: string, limit?: number): ChainRecord[];
  startChain(chain: Omit<ChainRecord, 'id' | 'steps' | 'complete' | 'createdAt'>, now: number): string;
  addStep(chainId: string, step: ChainStepRecord): void;
  completeChain(chainId: string): void;
  /** Every snapshot some chain still names (what garbage collection must keep). */
  referencedSnapshots(): Set<string>;
  /**
   * Forgets all but the newest `keep` chains of every runner of every repository; returns how many
   * were forgotten. Their snapshots become unreferenced and are removed with the other orphans.
   * Forgetting a chain can only make a later run restore less deep, never reuse something wrongly.
   */
  pruneChains(keep: number): number;
  /** strata-split's timings: reported ones, and the sets frozen for SPLIT steps (splitTimings.ts). */
  readonly splitTimings: SplitTimings;
}

interface ChainRow {
  id: string;
  repo: string;
  runner: string;
  layerfile: string;
  tree: string;
  run_id: string;
  created_at: number;
  complete: number;
  clones: string;
}

interface StepRow {
  chain_id: string;
  idx: number;
  definition_key: string;
  snapshot: string | null;
  state_id: string;
  trace: string | null;
  copies: string;
  repeatable: number;
  succeeded: number;
  background: string;
  listening: string;
  split_timings: string | null;
}

export function createCacheIndex(db: Db): CacheIndex {
  const selectChains = db.prepare<[string, string, string, number], ChainRow>(`
    SELECT c.* FROM chains c JOIN chain_steps s ON s.chain_id = c.id AND s.idx = 0
    WHERE c.repo = ? AND c.runner = ? AND s.definition_key = ?
    ORDER BY c.created_at DESC, c.rowid DESC LIMIT ?`);
  const selectSteps = db.prepare<[string], StepRow>('SELECT * FROM chain_steps WHERE chain_id = ? ORDER BY idx');
  const insertChain = db.prepare(
    'INSERT INTO chains (id, repo, runner, layerfile, tree, run_id, created_at, complete, clones) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?)',
  );
  const insertStep = db.prepare(
    `INSERT OR REPLACE INTO chain_steps (chain_id, idx, definition_key, snapshot, state_id, trace, copies, repeatable, succeeded, background, listening, split_timings)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const markComplete = db.prepare('UPDATE chains SET complete = 1 WHERE id = ?');
  const allSnapshots = db.prepare<[], { snapshot: string }>('SELECT DISTINCT snapshot FROM chain_steps WHERE snapshot IS NOT NULL');
  const pruneOld = db.prepare<[number]>(`
    DELETE FROM chains WHERE id IN (
      SELECT id FROM (
        SELECT id, ROW_NUMBER() OVER (PARTITION BY repo, runner ORDER BY created_at DESC, rowid DESC) AS newness FROM chains
      ) WHERE newness > ?
    )`);

  const toStep = (row: StepRow): ChainStepRecord => ({
    index: row.idx,
    definitionKey: row.definition_key,
    snapshot: row.snapshot,
    stateId: row.state_id,
    trace: row.trace === null ? null : (JSON.parse(row.trace) as StepTrace),
    copies: JSON.parse(row.copies) as CopyRecord[],
    repeatable: row.repeatable === 1,
    succeeded: row.succeeded === 1,
    background: JSON.parse(row.background) as BackgroundCommand[],
    listening: JSON.parse(row.listening) as number[],
    splitTimings: row.split_timings,
  });

  const splitTimings = createSplitTimings(db);
  return {
    splitTimings,
    candidates(repo, runner, firstKey, limit = 20) {
      return selectChains.all(repo, runner, firstKey, limit).map((row) => ({
        id: row.id,
        repo: row.repo,
        runner: row.runner,
        layerfile: row.layerfile,
        tree: row.tree,
        runId: row.run_id,
        createdAt: row.created_at,
        complete: row.complete === 1,
        steps: selectSteps.all(row.id).map(toStep),
        clones: JSON.parse(row.clones) as ChainClone[],
      }));
    },
    startChain(chain, now) {
      const id = randomUUID();
      insertChain.run(id, chain.repo, chain.runner, chain.layerfile, chain.tree, chain.runId, now, JSON.stringify(chain.clones ?? []));
      return id;
    },
    addStep(chainId, step) {
      insertStep.run(
        chainId,
        step.index,
        step.definitionKey,
        step.snapshot,
        step.stateId,
        step.trace === null ? null : JSON.stringify(step.trace),
        JSON.stringify(step.copies),
        step.repeatable ? 1 : 0,
        step.succeeded ? 1 : 0,
        JSON.stringify(step.background),
        JSON.stringify(step.listening ?? []),
        step.splitTimings ?? null,
      );
    },
    completeChain(chainId) {
      markComplete.run(chainId);
    },
    referencedSnapshots() {
      return new Set(allSnapshots.all().map((r) => r.snapshot));
    },
    pruneChains(keep) {
      const forgotten = pruneOld.run(Math.max(1, keep)).changes;
      // Timing sets frozen for SPLITs that no remaining chain step names (a day's grace: see splitTimings.ts).
      splitTimings.pruneUnreferenced(Date.now(), 24 * 3600 * 1000);
      return forgotten;
    },
  };
}
