// The runners of a job (job_runners rows): each row holds the API's RunnerDetail as JSON, rewritten as
// the run progresses (step statuses, buttons, previews), so GET /api/jobs/:id never replays the log.
import type { StoreDatabase } from '../../store/database.js';
import type { JobStatus, RunnerDetail } from '../api/types.js';

export interface RunnerTable {
  save(jobId: string, position: number, detail: RunnerDetail): Promise<void>;
  list(jobId: string): Promise<RunnerDetail[]>;
  /** Forgets a job's runners (its run starts again after a re-queue). */
  clear(jobId: string): Promise<void>;
  /** Runners that never ended get `status` (the job ended without them: a crash, a cancel). */
  endOpen(jobId: string, status: JobStatus, message: string): Promise<void>;
}

const OPEN: ReadonlySet<JobStatus> = new Set(['NEW', 'WAITING_PARENTS', 'RUNNING']);

export function createRunnerTable(database: StoreDatabase): RunnerTable {
  const db = database.sql;
  const rows = (jobId: string) => db.selectFrom('job_runners').select(['position', 'detail']).where('job_id', '=', jobId).orderBy('position').execute();
  const save = async (jobId: string, position: number, detail: RunnerDetail): Promise<void> => {
    await db
      .insertInto('job_runners')
      .values({ job_id: jobId, runner: detail.runner, position, detail: JSON.stringify(detail) })
      .onConflict((oc) => oc.columns(['job_id', 'runner']).doUpdateSet((eb) => ({ detail: eb.ref('excluded.detail'), position: eb.ref('excluded.position') })))
      .execute();
  };
  return {
    save,
    async list(jobId) {
      return (await rows(jobId)).map((row) => JSON.parse(row.detail) as RunnerDetail);
    },
    async clear(jobId) {
      await db.deleteFrom('job_runners').where('job_id', '=', jobId).execute();
    },
    async endOpen(jobId, status, message) {
      for (const row of await rows(jobId)) {
        const detail = JSON.parse(row.detail) as RunnerDetail;
        if (!OPEN.has(detail.status)) continue;
        detail.status = status;
        detail.message = detail.message ?? message;
        for (const step of detail.steps) if (step.status === 'running' || step.status === 'pending') step.status = step.status === 'running' ? 'failed' : 'skipped';
        await save(jobId, row.position, detail);
      }
    },
  };
}
