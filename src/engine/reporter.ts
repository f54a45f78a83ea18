// Progress of a run as events. The terminal renderer, the `--json` stream and (later) the server's
// websocket are all Reporters: objects with optional on* hooks. The engine never prints.

export type StepStatus = 'pending' | 'cached' | 'running' | 'done' | 'failed' | 'skipped';

export interface StepView {
  index: number;
  line: number;
  text: string;
}

/** Why a step was not taken from the cache (or which snapshot it was taken from). */
export interface StepExplanation {
  cached: boolean;
  /** Human sentence, e.g. "file2 content changed (read by step 3)" or "restored from snapshot ...". */
  message: string;
  /** Repo-relative path that invalidated the step, when a path did. */
  path?: string | undefined;
  kind?: string | undefined;
}

export interface RunnerView {
  runner: string;
  layerfile: string;
  level: number;
  steps: StepView[];
  /** `LABEL status=merge` (one commit status for all SPLIT copies) or `status=hidden` (none). */
  statusLabel?: 'merge' | 'hidden' | undefined;
  /** A SPLIT copy (copy 0 included): the Layerfile's own runner id. */
  copyOf?: string | undefined;
}

export interface RunSummary {
  runId: string;
  status: 'success' | 'failure' | 'error' | 'cancelled';
  durationMs: number;
  stepsRan: number;
  stepsCached: number;
}

export type OutputStream = 'stdout' | 'stderr';

/** How a runner ended; `skipped`: it never ran (what it waits for or inherits from did not succeed). */
export type RunnerEndStatus = 'success' | 'failure' | 'error' | 'cancelled' | 'skipped';

export interface Reporter {
  onRunStart?(event: { runId: string; repo: string; tree: string; commit: string | null; runners: RunnerView[] }): void;
  onRunnerStart?(event: { runner: string; plan: string }): void;
  /** `snapshot`: with done and failed, the snapshot recorded as the state after the step (null: none). */
  onStepStatus?(event: { runner: string; step: number; status: StepStatus; durationMs?: number; explanation?: StepExplanation; snapshot?: string | null }): void;
  onStepOutput?(event: { runner: string; step: number; stream: OutputStream; data: string; timeMs: number }): void;
  onRunnerEnd?(event: { runner: string; status: RunnerEndStatus; message?: string; failedStep?: number }): void;
  onRunEnd?(event: RunSummary): void;
}

/** Fans events out to several reporters. */
export function combineReporters(...reporters: Reporter[]): Required<Reporter> {
  const call =
    <K extends keyof Reporter>(key: K) =>
    (event: Parameters<NonNullable<Reporter[K]>>[0]) => {
      for (const reporter of reporters) (reporter[key] as ((e: typeof event) => void) | undefined)?.call(reporter, event);
    };
  return {
    onRunStart: call('onRunStart'),
    onRunnerStart: call('onRunnerStart'),
    onStepStatus: call('onStepStatus'),
    onStepOutput: call('onStepOutput'),
    onRunnerEnd: call('onRunnerEnd'),
    onRunEnd: call('onRunEnd'),
  };
}
