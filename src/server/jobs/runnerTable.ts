// The runners of a job (job_runners rows): each row holds the API's RunnerDetail as JSON, rewritten as
// the run progresses (step statuses, buttons, previews), so GET /api/jobs/:id never replays the log.
import type { Db } from '../../store/database.js';
import type { JobStatus, RunnerDetail } from '../api/types.js';

export interface RunnerTable {
  save(jobId: string, position: number, detail: RunnerDetail): void;
  list(jobId: string): RunnerDetail[];
  /** Forgets a job's runners (its run starts again after a re-queue). */
  clear(jobId: string): void;
  /** Runners that never ended get `status` (the job ended without them: a crash, a cancel). */
  endOpen(jobId: string, status: JobStatus, message: string): void;
}

const OPEN: ReadonlySet<JobStatus> = new Set(['NEW', 'WAITING_PARENTS', 'RUNNING']);

export function createRunnerTable(db: Db): RunnerTable {
  const upsert = db.prepare(`INSERT INTO job_runners (job_id, runner, position, detail) VALUES (?, ?, ?, ?)
    ON CONFLICT (job_id, runner) DO UPDATE SET detail = excluded.detail, position = excluded.position`);
  const select = db.prepare<[string], { position: number; detail: string }>('SELECT position, detail FROM job_runners WHERE job_id = ? ORDER BY position');
  const remove = db.prepare('DELETE FROM job_runners WHERE job_id = ?');
  const list = (jobId: string) => select.all(jobId).map((row) => JSON.parse(row.detail) as RunnerDetail);
  return {
    save(jobId, position, detail) {
      upsert.run(jobId, detail.runner, position, JSON.stringify(detail));
    },
    list,
    clear(jobId) {
      remove.run(jobId);
    },
    endOpen(jobId, status, message) {
      select.all(jobId).forEach((row) => {
        const detail = JSON.parse(row.detail) as RunnerDetail;
        if (!OPEN.has(detail.status)) return;
        detail.status = status;
        detail.message = detail.message ?? message;
        for (const step of detail.steps) if (step.status === 'running' || step.status === 'pending') step.status = step.status === 'running' ? 'failed' : 'skipped';
        upsert.run(jobId, detail.runner, row.position, JSON.stringify(detail));
      });
    },
  };
}
