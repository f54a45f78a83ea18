// The durable job queue: rows of the `jobs` table (src/store/jobTables.ts). A worker claims the oldest
// NEW job with one UPDATE ... RETURNING that also sets a lease; while the job runs the worker renews the
// lease. A RUNNING job whose lease expired was left by a worker that died: it is re-queued once, and
// set to ERROR if that happens again, so no job stays RUNNING forever.
import { randomBytes } from 'node:crypto';
import type { Db } from '../../store/database.js';
import type { DurationPoint, JobOptions, JobStatus, JobSummary, JobTrigger } from '../api/types.js';
import type { JobFilter, NewJob } from './types.js';

/** A job left RUNNING by a dead worker this many times is not re-queued again. */
export const MAX_ATTEMPTS = 2;
export const STOPPED_TWICE_MESSAGE = 'the server stopped while this job ran (twice)';

interface JobRow {
  id: string;
  repo: string;
  branch: string;
  commit_id: string;
  title: string;
  author: string;
  trigger: JobTrigger;
  pull_request_url: string | null;
  status: JobStatus;
  no_cache: number;
  no_cache_dirs: number;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
  duration_ms: number | null;
  steps_ran: number;
  steps_cached: number;
  run_id: string | null;
  message: string | null;
  attempts: number;
  lease_until: number | null;
}

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
  insert(job: NewJob, now: number): QueuedJob;
  get(id: string): QueuedJob | undefined;
  /** Takes the oldest NEW job if fewer than `concurrency` jobs are RUNNING; undefined otherwise. */
  claim(now: number, leaseMs: number, concurrency: number): QueuedJob | undefined;
  /** Extends a RUNNING job's lease; false when the job is no longer RUNNING. */
  renewLease(id: string, leaseUntil: number): boolean;
  update(id: string, progress: JobProgress): void;
  /** Ends a job with a final status. */
  finish(id: string, status: Exclude<JobStatus, 'NEW' | 'RUNNING' | 'WAITING_PARENTS'>, now: number, progress?: JobProgress): QueuedJob;
  /** Cancels a job that has not been claimed yet; false when it is not NEW. */
  cancelIfNew(id: string, now: number): boolean;
  /** Puts a RUNNING job back to NEW without counting the attempt (the server is stopping, not dying). */
  requeue(id: string): void;
  /** RUNNING jobs whose lease expired: NEW again, or ERROR after MAX_ATTEMPTS. */
  recoverExpired(now: number): RecoveredJob[];
  list(filter: JobFilter): QueuedJob[];
  durations(filter: { repo?: string | undefined; limit?: number | undefined }): DurationPoint[];
}

export function newJobId(now: number): string {
  const stamp = new Date(now).toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  return `job-${stamp}-${randomBytes(3).toString('hex')}`;
}

function toJob(row: JobRow): QueuedJob {
  const options: JobOptions = { noCache: row.no_cache === 1, noCacheDirs: row.no_cache_dirs === 1 };
  return {
    id: row.id,
    repo: row.repo,
    branch: row.branch,
    commit: row.commit_id,
    title: row.title,
    author: row.author,
    trigger: row.trigger,
    // Left out, not null, when there is none: JobSummary declares the field optional.
    ...(row.pull_request_url !== null ? { pullRequestUrl: row.pull_request_url } : {}),
    status: row.status,
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

export function createJobQueue(db: Db): JobQueue {
  const selectJob = db.prepare<[string], JobRow>('SELECT * FROM jobs WHERE id = ?');
  const insertJob = db.prepare(`INSERT INTO jobs (id, repo, branch, commit_id, title, author, trigger, pull_request_url, status, no_cache, no_cache_dirs, created_at)
    VALUES (@id, @repo, @branch, @commit, @title, @author, @trigger, @pullRequestUrl, 'NEW', @noCache, @noCacheDirs, @createdAt)`);
  // One statement: choosing and taking the job cannot interleave with another worker's claim.
  const claimJob = db.prepare<{ now: number; leaseUntil: number; concurrency: number }, JobRow>(`
    UPDATE jobs SET status = 'RUNNING', started_at = @now, finished_at = NULL, duration_ms = NULL, lease_until = @leaseUntil, attempts = attempts + 1
    WHERE id = (SELECT id FROM jobs WHERE status = 'NEW' ORDER BY created_at, rowid LIMIT 1)
      AND (SELECT COUNT(*) FROM jobs WHERE status = 'RUNNING') < @concurrency
    RETURNING *`);
  const renew = db.prepare(`UPDATE jobs SET lease_until = ? WHERE id = ? AND status = 'RUNNING'`);
  const finishJob = db.prepare(`UPDATE jobs SET status = @status, finished_at = @now, lease_until = NULL,
    duration_ms = CASE WHEN started_at IS NULL THEN NULL ELSE @now - started_at END WHERE id = @id`);
  const cancelNew = db.prepare(`UPDATE jobs SET status = 'CANCELLED', finished_at = ? WHERE id = ? AND status = 'NEW'`);
  const requeueJob = db.prepare(`UPDATE jobs SET status = 'NEW', lease_until = NULL, started_at = NULL, attempts = MAX(attempts - 1, 0) WHERE id = ? AND status = 'RUNNING'`);
  const expired = db.prepare<[number], JobRow>(`SELECT * FROM jobs WHERE status = 'RUNNING' AND lease_until < ? ORDER BY created_at`);
  const requeueExpired = db.prepare(`UPDATE jobs SET status = 'NEW', lease_until = NULL, started_at = NULL WHERE id = ? AND status = 'RUNNING'`);
  const errorExpired = db.prepare(`UPDATE jobs SET status = 'ERROR', lease_until = NULL, finished_at = @now, message = @message,
    duration_ms = CASE WHEN started_at IS NULL THEN NULL ELSE @now - started_at END WHERE id = @id AND status = 'RUNNING'`);

  const get = (id: string) => {
    const row = selectJob.get(id);
    return row ? toJob(row) : undefined;
  };
  const must = (id: string) => {
    const job = get(id);
    if (!job) throw new Error(`job ${id} vanished from the queue`);
    return job;
  };

  const update = (id: string, progress: JobProgress) => {
    const columns: Record<keyof JobProgress, string> = { title: 'title', author: 'author', runId: 'run_id', stepsRan: 'steps_ran', stepsCached: 'steps_cached', message: 'message' };
    const entries = (Object.keys(progress) as Array<keyof JobProgress>).filter((key) => progress[key] !== undefined);
    if (entries.length === 0) return;
    const assignments = entries.map((key) => `${columns[key]} = @${key}`).join(', ');
    db.prepare(`UPDATE jobs SET ${assignments} WHERE id = @id`).run({ ...Object.fromEntries(entries.map((key) => [key, progress[key]])), id });
  };

  return {
    insert(job, now) {
      const id = newJobId(now);
      insertJob.run({
        id,
        repo: job.repo,
        branch: job.branch,
        commit: job.commit,
        title: job.title,
        author: job.author,
        trigger: job.trigger,
        pullRequestUrl: job.pullRequestUrl ?? null,
        noCache: job.options?.noCache ? 1 : 0,
        noCacheDirs: job.options?.noCacheDirs ? 1 : 0,
        createdAt: now,
      });
      return must(id);
    },
    get,
    claim(now, leaseMs, concurrency) {
      const row = claimJob.get({ now, leaseUntil: now + leaseMs, concurrency });
      return row ? toJob(row) : undefined;
    },
    renewLease(id, leaseUntil) {
      return renew.run(leaseUntil, id).changes === 1;
    },
    update,
    finish(id, status, now, progress = {}) {
      db.transaction(() => {
        update(id, progress);
        finishJob.run({ id, status, now });
      })();
      return must(id);
    },
    cancelIfNew(id, now) {
      return cancelNew.run(now, id).changes === 1;
    },
    requeue(id) {
      requeueJob.run(id);
    },
    recoverExpired(now) {
      return db.transaction(() =>
        expired.all(now).map((row): RecoveredJob => {
          if (row.attempts >= MAX_ATTEMPTS) {
            errorExpired.run({ id: row.id, now, message: STOPPED_TWICE_MESSAGE });
            return { id: row.id, outcome: 'errored' };
          }
          requeueExpired.run(row.id);
          return { id: row.id, outcome: 'requeued' };
        }),
      )();
    },
    list(filter) {
      const where: string[] = [];
      const params: Record<string, string | number> = {};
      if (filter.repo !== undefined) {
        where.push('repo = @repo');
        params.repo = filter.repo;
      }
      if (filter.status !== undefined) {
        where.push('status = @status');
        params.status = filter.status;
      }
      if (filter.q !== undefined && filter.q !== '') {
        // instr() rather than LIKE: the text is matched as it is, with no wildcard characters.
        where.push(`(instr(lower(branch), lower(@q)) > 0 OR commit_id LIKE @qPrefix OR instr(lower(title), lower(@q)) > 0 OR instr(lower(author), lower(@q)) > 0)`);
        params.q = filter.q;
        // A commit prefix only when the text could be one (LIKE '' matches no commit).
        params.qPrefix = /^[0-9a-f]+$/i.test(filter.q) ? `${filter.q.toLowerCase()}%` : '';
      }
      if (filter.before !== undefined) {
        where.push('rowid < (SELECT rowid FROM jobs WHERE id = @before)');
        params.before = filter.before;
      }
      params.limit = Math.min(Math.max(filter.limit ?? 50, 1), 500);
      const sql = `SELECT * FROM jobs ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY rowid DESC LIMIT @limit`;
      return db.prepare<Record<string, string | number>, JobRow>(sql).all(params).map(toJob);
    },
    durations(filter) {
      const limit = Math.min(Math.max(filter.limit ?? 100, 1), 1000);
      const rows = db
        .prepare<{ repo: string | null; limit: number }, JobRow>(
          `SELECT * FROM jobs WHERE duration_ms IS NOT NULL AND status IN ('SUCCESS', 'FAILURE') AND (@repo IS NULL OR repo = @repo)
           ORDER BY rowid DESC LIMIT @limit`,
        )
        .all({ repo: filter.repo ?? null, limit });
      return rows.reverse().map((row) => ({
        jobId: row.id,
        commit: row.commit_id,
        title: row.title,
        durationMs: row.duration_ms as number,
        stepsRan: row.steps_ran,
        stepsCached: row.steps_cached,
        status: row.status,
      }));
    },
  };
}
