// Runs as history: what ran, what was cached and why. `strata why` and the server read this.

export type RunStatus = 'running' | 'success' | 'failure' | 'error' | 'cancelled';
export type StepOutcome = 'pending' | 'cached' | 'ran' | 'failed' | 'skipped';

export interface StepReason {
  message: string;
  path?: string | undefined;
  kind?: string | undefined;
}

export interface RunStepRecord {
  runner: string;
  index: number;
  line: number;
  text: string;
  status: StepOutcome;
  reason: StepReason | null;
  durationMs: number | null;
  snapshot: string | null;
}

export interface RunRunnerRecord {
  runner: string;
  layerfile: string;
  status: string;
  plan: string | null;
  steps: RunStepRecord[];
}

export interface RunRecord {
  id: string;
  repo: string;
  commit: string | null;
  tree: string;
  branch: string;
  startedAt: number;
  finishedAt: number | null;
  status: RunStatus;
  runners: RunRunnerRecord[];
}

/** Runs as history, in whichever database holds them; one conformance suite runs against each (test/store). */
export interface RunLog {
  /** Records a new run (recording the same run again changes nothing: every method here may be retried). */
  createRun(run: Omit<RunRecord, 'finishedAt' | 'status' | 'runners'>): Promise<void>;
  finishRun(id: string, status: RunStatus, finishedAt: number): Promise<void>;
  /** Adds the runner or updates its status (and its plan, when given). */
  setRunner(runId: string, runner: { runner: string; layerfile: string; status: string; plan?: string | null }): Promise<void>;
  /** Adds the step or replaces its record. */
  setStep(runId: string, step: RunStepRecord): Promise<void>;
  getRun(id: string): Promise<RunRecord | undefined>;
  lastRun(repo: string): Promise<RunRecord | undefined>;
}
