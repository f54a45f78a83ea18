// What a `strata worker` and its server say to each other about jobs (JSON over HTTP, worker tokens):
// lease a job, renew its lease (and learn of a cancel or an approved BUTTON), report the engine's
// events as they happen, end it. The engine runs on the worker; the job's record, event log, runner
// rows and commit statuses stay the server's.
import type { Reporter } from '../../engine/reporter.js';
import type { JobSummary } from '../api/types.js';

export interface WorkerLease {
  job: JobSummary;
  repo: { name: string; url: string };
  /** SECRET ENV values of the repository (only for this job's run; never stored on the worker). */
  secrets: Record<string, string>;
  /** Renew before this long has passed since the last renewal (a third of it is a good period). */
  leaseMs: number;
}

type EventOf<K extends keyof Required<Reporter>> = Parameters<Required<Reporter>[K]>[0];

/** An engine event (one Reporter call), or what the worker learnt of the job. */
export type WorkerEvent =
  | { kind: 'runStart'; event: EventOf<'onRunStart'> }
  | { kind: 'runnerStart'; event: EventOf<'onRunnerStart'> }
  | { kind: 'stepStatus'; event: EventOf<'onStepStatus'> }
  | { kind: 'stepOutput'; event: EventOf<'onStepOutput'> }
  | { kind: 'runnerEnd'; event: EventOf<'onRunnerEnd'> }
  /** The commit's subject and author, when the job was queued without them (a poll). */
  | { kind: 'commit'; title: string; author: string }
  /** A BUTTON waits for a person's approval. */
  | { kind: 'button'; runner: string; id: string; line: number; message: string }
  | { kind: 'note'; message: string };

export interface WorkerRenewal {
  /** False: the job was cancelled (or the server no longer knows it): stop running it. */
  running: boolean;
  /** BUTTONs approved since the last renewal. */
  approved: string[];
}

export interface WorkerJobEnd {
  /** 'abandoned': the worker stops without finishing (it is shutting down): the job is queued again. */
  status: 'success' | 'failure' | 'error' | 'cancelled' | 'abandoned';
  message: string | null;
  stepsRan?: number | undefined;
  stepsCached?: number | undefined;
}
