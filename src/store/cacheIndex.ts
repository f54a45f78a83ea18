// The cache index's port: which snapshots exist for which chain of definition keys, against which
// source tree, with which traces. Implemented over the database in sql/cacheIndex.ts. The engine writes a step's row only after its snapshot is committed
// (snapshot first, index second), so a crash leaves at worst an orphan snapshot, never a row naming a
// snapshot that does not exist.
import type { CopyRecord } from '../plan/types.js';
import type { StepTrace } from '../trace/types.js';
import type { SplitTimings } from './splitTimings.js';

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

/**
 * The cache index, in whichever database holds it (SQLite on one machine, Postgres when many share it).
 * Asynchronous, so that one interface serves every implementation; one conformance suite
 * (test/store/cacheIndex.test.ts) runs against each.
 */
export interface CacheIndex {
  /** Recent chains of `runner` in `repo` whose first step has `firstKey`, newest first. */
  candidates(repo: string, runner: string, firstKey: string, limit?: number): Promise<ChainRecord[]>;
  /** The chain `runner` recorded in run `runId` (the newest, should there be several), with its steps. */
  chainOfRun(runId: string, runner: string): Promise<ChainRecord | undefined>;
  startChain(chain: Omit<ChainRecord, 'id' | 'steps' | 'complete' | 'createdAt'>, now: number): Promise<string>;
  /** Records a step (replacing an earlier record of the same index). Only after its snapshot is committed. */
  addStep(chainId: string, step: ChainStepRecord): Promise<void>;
  completeChain(chainId: string): Promise<void>;
  /** Every snapshot some chain still names (what garbage collection must keep). */
  referencedSnapshots(): Promise<Set<string>>;
  /**
   * Forgets all but the newest `keep` chains of every runner of every repository; returns how many
   * were forgotten. Their snapshots become unreferenced and are removed with the other orphans.
   * Forgetting a chain can only make a later run restore less deep, never reuse something wrongly.
   */
  pruneChains(keep: number): Promise<number>;
  /** strata-split's timings: reported ones, and the sets frozen for SPLIT steps (splitTimings.ts). */
  readonly splitTimings: SplitTimings;
}
