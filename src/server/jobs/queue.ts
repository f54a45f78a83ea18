// The durable job queue's port: rows of the `jobs` table in the server's database (SQLite or Postgres;
// implemented in sqlQueue.ts). A worker claims the oldest NEW job with a lease and renews it while the
// job runs. A RUNNING job whose lease expired was left by a worker that died: it is re-queued once, and
// set to ERROR if that happens again, so no job stays RUNNING forever.
import { randomBytes } from 'node:crypto';
import type { Selectable } from 'kysely';
import type { JobsTable } from '../../store/sql/schema.js';
import type { DurationPoint, JobOptions, JobStatus, JobSummary, JobTrigger } from '../api/types.js';
import type { JobFilter, NewJob } from './types.js';

/** A job left RUNNING by a dead worker this many times is not re-queued again. */
export const MAX_ATTEMPTS = 2;
export const STOPPED_TWICE_MESSAGE = 'the server stopped while this job ran (twice)';

/** A row of the jobs table. */
export type JobRow = Selectable<JobsTable>;

/** A job as the queue knows it: the API summary plus the queue's own columns. */
export interface QueuedJob extends JobSummary {
  message: string | null;
  attempts: number;
  leaseUntil: number | null;
}

export type RecoveredJob = { id: string; outcome: 'requeued' | 'errored' };

/** Fields a worker sets while and after running a job. */
export interface JobProgress {
  title?: string;
  author?: string;
  runId?: string | null;
  stepsRan?: number;
  stepsCached?: number;
  message?: string | null;
}

export interface JobQueue {
  insert(job: NewJob, now: number): Promise<QueuedJob>;
  get(id: string): Promise<QueuedJob | undefined>;
  /**
   * Takes the oldest NEW job if fewer than `concurrency` jobs are RUNNING; undefined otherwise. `worker`:
   * the `strata worker` taking it (null: this server itself).
   */
  claim(now: number, leaseMs: number, concurrency: number, worker?: string | null): Promise<QueuedJob | undefined>;
  /** Extends a RUNNING job's lease; false when the job is no longer RUNNING. */
  renewLease(id: string, leaseUntil: number): Promise<boolean>;
  update(id: string, progress: JobProgress): Promise<void>;
  /** Ends a job with a final status. */
  finish(id: string, status: Exclude<JobStatus, 'NEW' | 'RUNNING' | 'WAITING_PARENTS'>, now: number, progress?: JobProgress): Promise<QueuedJob>;
  /** Cancels a job that has not been claimed yet; false when it is not NEW. */
  cancelIfNew(id: string, now: number): Promise<boolean>;
  /** Puts a RUNNING job back to NEW without counting the attempt (the server is stopping, not dying). */
  requeue(id: string): Promise<void>;
  /** RUNNING jobs whose lease expired: NEW again, or ERROR after MAX_ATTEMPTS. */
  recoverExpired(now: number): Promise<RecoveredJob[]>;
  list(filter: JobFilter): Promise<QueuedJob[]>;
  durations(filter: { repo?: string | undefined; limit?: number | undefined }): Promise<DurationPoint[]>;
}

export function newJobId(now: number): string {
  const stamp = new Date(now).toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  return `job-${stamp}-${randomBytes(3).toString('hex')}`;
}

export function toJob(row: JobRow): QueuedJob {
  const options: JobOptions = { noCache: row.no_cache === 1, noCacheDirs: row.no_cache_dirs === 1 };
  return {
    id: row.id,
    repo: row.repo,
    branch: row.branch,
    commit: row.commit_id,
    title: row.title,
    author: row.author,
    trigger: row.trigger as JobTrigger,
    // Left out, not null, when there is none: JobSummary declares the field optional.
    ...(row.pull_request_url !== null ? { pullRequestUrl: row.pull_request_url } : {}),
    ...(row.worker !== null ? { worker: row.worker } : {}),
    status: row.status as JobStatus,
    createdAt: row.created_at,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
    durationMs: row.duration_ms,
    stepsRan: row.steps_ran,
    stepsCached: row.steps_cached,
    runId: row.run_id,
    options,
    message: row.message,
    attempts: row.attempts,
    leaseUntil: row.lease_until,
  };
}

/** The API summary of a queued job (without the queue's columns). */
export function toSummary(job: QueuedJob): JobSummary {
  const { message: _message, attempts: _attempts, leaseUntil: _leaseUntil, ...summary } = job;
  return summary;
}
