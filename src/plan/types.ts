// The planner's model: what a previous run left behind (a cached chain), what changed in the sources
// since then, and the decision for the new run (a restore plan with one explanation per step).
// The engine builds PlanInput, the cache index (src/store/) stores CachedChain rows, and `strata why`
// prints StepExplanation. All paths with forward slashes; all step numbers are 0-based indices into the
// Layerfile's steps (the instructions after FROM that the engine executes, see isStep()).
import type { InstructionKind } from '../layerfile/types.js';
import type { SnapshotName } from '../snapshot/types.js';
import type { StepTrace } from '../trace/types.js';

export type { SnapshotName } from '../snapshot/types.js';

/** Identity of one cached chain (one previous run of one Layerfile) in the cache index. */
export type ChainId = string;

/**
 * One copy a COPY/CLONE step made, recorded by the engine when it executed the step. A source path p
 * maps to the machine path `dest + p.slice(source.length)` when `source` is p or an ancestor of p.
 */
export interface CopyRecord {
  /** Repo-relative posix path of what was copied (file or directory); '' is the repo root. No leading './', no trailing '/'. */
  source: string;
  /** Absolute machine path where `source` itself landed (for a directory: the directory its contents went into). */
  dest: string;
  /**
   * For a directory copy: the paths (relative to `dest`) that were in the machine already when the copy
   * wrote over them (files of the base image, of an earlier step). If their source is deleted, a fresh
   * run shows what was there before, so the copy must run again rather than delete them. Absent: none
   * (or a record from before this was kept).
   */
  shadowed?: string[] | undefined;
  /**
   * For a directory copy: the machine's entries under `dest` that the copied tree did not have (relative
   * to `dest`; only inside directories the tree had too), each standing for everything under it. A
   * later commit that adds such a path gets it written over them by a restore; deleting it again must
   * rerun the copy, so a fresh run's state (what was there before) shows again. Absent: none.
   */
  preexisting?: string[] | undefined;
  /**
   * The destination as the Layerfile named it (absolute), when symlinks in the machine made the copy
   * land elsewhere (`dest` is where it landed). A change on this path's line (the symlink itself, from
   * an earlier copy) reruns the copy. Absent: the same as `dest`.
   */
  requestedDest?: string | undefined;
}

/** One step of a previous run, as the cache index stores it. */
export interface CachedStep {
  /** The definition key the step ran under (src/plan/definitionKey.ts). */
  definitionKey: string;
  /** Committed snapshot of the machine right after this step; null when none was taken (ENV, CHECKPOINT disabled, pruned). */
  snapshot: SnapshotName | null;
  /**
   * What the step observed and wrote under the COPY/CLONE destinations; null when no trace was
   * recorded (the engine or tracer crashed): such a step is never reused.
   * For a COPY/CLONE step the copy itself is not traced (it is described by `copies`).
   */
  trace: StepTrace | null;
  /** The copies this step made (non-empty only for COPY/CLONE). */
  copies: CopyRecord[];
  /** Was this a RUN REPEATABLE step? */
  repeatable: boolean;
  /**
   * Did the step finish successfully? A failed step's effects are never reused (reusing them would
   * turn a red build green), but the succeeded steps before it are.
   */
  succeeded: boolean;
}

/**
 * A previous run's record. `steps[i]` is step i of that run; a run that stopped early (failure, crash,
 * SKIP REMAINING IF) has fewer steps than its Layerfile, and the missing ones are simply not cached.
 */
export interface CachedChain {
  chainId: ChainId;
  /** The source tree (git tree id or working-tree hash) the run copied from; changes are relative to it. */
  sourceTreeId: string;
  steps: CachedStep[];
  /** Did every step succeed? Informational: reuse is decided per step by `succeeded` and `trace`. */
  complete: boolean;
  /**
   * When the chain was recorded (any monotonic number; larger = newer). Breaks ties between equally
   * deep restores in favour of the newest, and decides which previous run a RUN REPEATABLE builds on.
   */
  createdAt?: number;
}

export type PathType = 'file' | 'dir' | 'symlink';

/** A path's state in a source tree. */
export interface PathState {
  type: PathType;
  /** Permission bits (and file type bits if the engine has them; only equality is used). */
  mode: number;
  /** Bytes for a file, target length for a symlink, 0 for a directory. */
  size: number;
  /** Blob id for a file, the target for a symlink, '' for a directory. */
  contentId: string;
}

/**
 * A difference between a chain's source tree and the new commit at one repo-relative posix path.
 * before = null: appeared; after = null: deleted. Every file is listed, and so is every directory that
 * appears or disappears (the engine derives those from the file list).
 */
export interface SourceChange {
  path: string;
  before: PathState | null;
  after: PathState | null;
}

/** One step of the new run, as the planner needs it. */
export interface PlanStep {
  definitionKey: string;
  /** 1-based Layerfile line of the instruction, for messages. */
  line: number;
  kind: InstructionKind;
  /** Canonical instruction text, for messages. */
  text: string;
  /** RUN REPEATABLE? */
  repeatable: boolean;
}

/** A cached chain with a matching FROM/parent, and the changes between its source tree and the new commit. */
export interface PlanCandidate {
  chain: CachedChain;
  changes: SourceChange[];
}

export interface PlanInput {
  steps: PlanStep[];
  candidates: PlanCandidate[];
  /**
   * Copies a parent Layerfile made before step 0 (`FROM ../parent`): changes map through them for every
   * step and are re-applied by every restore (their ReapplyEntry.copyStep is -1). A COPY of this
   * Layerfile over one of their destinations is a later copy like any other.
   */
  inheritedCopies?: CopyRecord[];
}

export type InvalidationKind =
  /** A file the step read (or a path it stat'ed) now has other content; for a symlink, another target. */
  | 'content-changed'
  /** A path the step read or stat'ed is gone (or a COPY source is gone). */
  | 'deleted'
  /** A path the step probed and did not find (or a path under one) now exists; or a read/stat'ed path newly appears in the sources. */
  | 'appeared'
  /** A path the step observed changed type (file / dir / symlink). */
  | 'type-changed'
  /** A file the step read or stat'ed changed permissions (e.g. chmod +x on a script it ran). */
  | 'mode-changed'
  /** An entry appeared in, disappeared from or changed type in a directory the step listed. */
  | 'listing-changed'
  /** The commit changes a path the step wrote (or a path a later COPY of this step overwrote). */
  | 'wrote-changed'
  /** The Layerfile (or anything in the definition key) differs at this step. */
  | 'definition-changed'
  /** An earlier step reruns, so this one does too. */
  | 'after-rerun'
  /** Between the restored snapshot and the first invalidated step: the chain kept no snapshot after this step. */
  | 'no-snapshot'
  /** Nothing reusable was recorded for this step (no chain, run stopped before it, failed, no trace). */
  | 'no-cache';

export interface InvalidationCause {
  kind: InvalidationKind;
  /** Repo-relative path of the change, when a change caused it. */
  path: string | null;
  /** Machine path the change maps to (what the step observed), when a change caused it. */
  machinePath: string | null;
  /** The step whose record was invalidated (for 'after-rerun': the first step that reruns for a reason of its own). */
  stepThatObserved: number | null;
  /** One line for people, e.g. "config/local.json appeared (was probed absent by step 4, line 6)". */
  message: string;
}

export type StepExplanation =
  | {
      step: number;
      status: 'cached';
      chainId: ChainId;
      /** The restored snapshot that contains this step's effects. */
      snapshot: SnapshotName;
      message: string;
    }
  | { step: number; status: 'rerun'; cause: InvalidationCause };

/** A changed source path to write into the restored machine before running on. */
export interface ReapplyEntry {
  /** Repo-relative path in the new commit. */
  source: string;
  /** Machine path it maps to. */
  dest: string;
  /** before/after of the path: after = null means delete `dest` (deleting a missing path is a no-op). */
  change: SourceChange;
  /** The COPY/CLONE step whose CopyRecord produced this mapping. */
  copyStep: number;
}

/** Start from the base image / parent Layerfile and run every step. */
export interface FreshPlan {
  kind: 'fresh';
  /** The candidate the explanations describe (the one that came closest), or null when there was none. */
  chainId: ChainId | null;
  explanations: StepExplanation[];
}

/**
 * Restore `snapshot` (taken after step `afterStep` of chain `chainId`), apply `reapply` in order, then
 * execute steps `firstRerun`..end. Normally firstRerun = afterStep + 1 (null when that is past the last
 * step: nothing runs). With `repeatableBase` (RUN REPEATABLE), the snapshot is the one taken after the
 * repeatable step itself and firstRerun = afterStep = repeatableBase.step: that step runs again on
 * top of its own previous state.
 */
export interface RestoreFromSnapshotPlan {
  kind: 'restore';
  chainId: ChainId;
  afterStep: number;
  snapshot: SnapshotName;
  /** Changes mapped through the CopyRecords of steps <= afterStep, ordered by copy step then path. */
  reapply: ReapplyEntry[];
  firstRerun: number | null;
  repeatableBase?: { step: number; snapshot: SnapshotName };
  explanations: StepExplanation[];
}

export type RestorePlan = FreshPlan | RestoreFromSnapshotPlan;
