// The JSON shapes of the server's API and event stream (docs/server-api.md). Shared by the server and
// the web UI (type-only imports), so the two cannot drift apart.

export type JobStatus = 'NEW' | 'WAITING_PARENTS' | 'RUNNING' | 'SUCCESS' | 'FAILURE' | 'ERROR' | 'CANCELLED';
export type StepStatus = 'pending' | 'cached' | 'running' | 'done' | 'failed' | 'skipped';
export type JobTrigger = 'push' | 'pull_request' | 'poll' | 'manual' | 'retry';

export interface Repo {
  name: string;
  /** A git URL or a local path. */
  url: string;
  defaultBranch: string;
  /** Poll the branches every this many seconds; null: webhooks / manual triggers only. */
  pollSeconds: number | null;
  publicPreviews: boolean;
  createdAt: number;
}

export interface JobOptions {
  noCache: boolean;
  noCacheDirs: boolean;
}

export interface JobSummary {
  id: string;
  repo: string;
  branch: string;
  commit: string;
  title: string;
  author: string;
  trigger: JobTrigger;
  /** The web page of the pull request the job builds (its steps' LAYERCI_PULL_REQUEST); absent when none. */
  pullRequestUrl?: string;
  status: JobStatus;
  createdAt: number;
  startedAt: number | null;
  finishedAt: number | null;
  durationMs: number | null;
  stepsRan: number;
  stepsCached: number;
  /** The engine's run id once the run started. */
  runId: string | null;
  options: JobOptions;
  /** The `strata worker` that runs (or ran) the job; absent when the server ran it itself. */
  worker?: string;
}

/** A `strata worker` as GET /api/workers shows it. */
export interface WorkerSummary {
  name: string;
  createdAt: number;
  revokedAt: number | null;
  lastSeenAt: number | null;
  /** What the worker reported at its last heartbeat: `host`, `running` (the ids of its jobs). */
  info: Record<string, unknown>;
}

export interface StepDetail {
  index: number;
  line: number;
  text: string;
  status: StepStatus;
  durationMs: number | null;
  /** A snapshot was taken after this step in this job. */
  snapshot: boolean;
  /** The `why` sentence: why it reran, or where it was restored from. */
  reason: string | null;
}

export interface ButtonDetail {
  id: string;
  line: number;
  message: string;
  state: 'waiting' | 'approved';
}

export interface PreviewDetail {
  url: string;
  target: string;
}

export interface RunnerDetail {
  runner: string;
  layerfile: string;
  level: number;
  status: JobStatus;
  durationMs: number | null;
  message: string | null;
  steps: StepDetail[];
  buttons: ButtonDetail[];
  previews: PreviewDetail[];
  /** Failed with a failure snapshot: the debug terminal is available. */
  debuggable: boolean;
}

export interface JobDetail extends JobSummary {
  runners: RunnerDetail[];
  message: string | null;
}

export interface DurationPoint {
  jobId: string;
  commit: string;
  title: string;
  durationMs: number;
  stepsRan: number;
  stepsCached: number;
  status: JobStatus;
}

export type JobEvent =
  | { type: 'job'; job: JobSummary }
  | { type: 'runStart'; runId: string; runners: { runner: string; layerfile: string; level: number; steps: { index: number; line: number; text: string }[] }[] }
  | { type: 'runnerStart'; runner: string; plan: string }
  | { type: 'stepStatus'; runner: string; step: number; status: StepStatus; durationMs?: number; reason?: string }
  | { type: 'output'; runner: string; step: number; stream: 'stdout' | 'stderr'; data: string; timeMs: number }
  | { type: 'runnerEnd'; runner: string; status: JobStatus; message?: string }
  | { type: 'button'; runner: string; id: string; line: number; message: string; state: 'waiting' | 'approved' }
  | { type: 'preview'; runner: string; url: string; target: string }
  /** A line from strata itself for the job's log: re-queued after a server stop, an error before the run started, a button approved by someone. */
  | { type: 'note'; message: string; timeMs: number }
  | { type: 'end'; job: JobSummary };

export interface ApiError {
  error: { code: string; message: string; hint?: string };
}
