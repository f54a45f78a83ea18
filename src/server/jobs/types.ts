// The job service: the seam between the HTTP routes and the durable queue + worker behind it.
import type { DurationPoint, JobDetail, JobEvent, JobOptions, JobStatus, JobSummary } from '../api/types.js';
import type { FastifyBaseLogger } from 'fastify';
import type { WorkerJobs } from './remote.js';

/** What a trigger enqueues: a job's identity as JobSummary shows it (`commit` a full id: triggers resolve branches first). */
export interface NewJob extends Pick<JobSummary, 'repo' | 'branch' | 'commit' | 'title' | 'author' | 'trigger' | 'pullRequestUrl'> {
  options?: Partial<JobOptions>;
}

export interface JobFilter {
  repo?: string | undefined;
  status?: JobStatus | undefined;
  /** Matches branch, commit prefix, title or author. */
  q?: string | undefined;
  limit?: number | undefined;
  /** Only jobs created before this job id's creation (paging). */
  before?: string | undefined;
}

export interface JobService {
  enqueue(job: NewJob): Promise<JobSummary>;
  list(filter: JobFilter): Promise<JobSummary[]>;
  get(id: string): Promise<JobDetail | null>;
  /** Cancels a queued or running job (a running one is aborted: machines destroyed, status CANCELLED). */
  cancel(id: string): Promise<JobSummary>;
  /** A new job for the same commit (trigger 'retry'). */
  retry(id: string, options: Partial<JobOptions>): Promise<JobSummary>;
  approveButton(jobId: string, buttonId: string, user: string): Promise<JobSummary>;
  durations(filter: { repo?: string | undefined; limit?: number | undefined }): Promise<DurationPoint[]>;
  /** Every stored event with seq > afterSeq, then live ones until the returned function is called. */
  subscribe(jobId: string, afterSeq: number, onEvent: (seq: number, event: JobEvent) => void): () => void;
  /** The plain-text log of a job (optionally one runner / step), ANSI kept. */
  log(jobId: string, filter: { runner?: string | undefined; step?: number | undefined }): Promise<string>;
  /**
   * Starts the worker loop. Jobs a crashed server left RUNNING (their lease expired) are re-queued once
   * with a note in their log, or set to ERROR with a clear message if they were re-queued before.
   */
  start(): void;
  /** Stops taking jobs; running ones are aborted and put back to NEW (re-run at the next start). */
  stop(): Promise<void>;
  /** Jobs run by `strata worker`s (the worker API); absent where the service has none. */
  readonly workerJobs?: WorkerJobs | undefined;
}

/** The part of the server's logger (ctx.log) the jobs, triggers and statuses use. */
export type JobsLog = Pick<FastifyBaseLogger, 'info' | 'warn' | 'error'>;
