// The run log over the store's database (SQLite or Postgres, through Kysely).
import type { Selectable } from 'kysely';
import type { RunLog, RunRecord, RunStatus, StepOutcome, StepReason } from '../runs.js';
import type { StoreDatabase } from '../database.js';
import type { RunsTable } from './schema.js';

export function createRunLog(database: StoreDatabase): RunLog {
  const db = database.sql;

  const load = async (row: Selectable<RunsTable> | undefined): Promise<RunRecord | undefined> => {
    if (!row) return undefined;
    const [runners, steps] = await Promise.all([
      db.selectFrom('run_runners').select(['runner', 'layerfile', 'status', 'plan']).where('run_id', '=', row.id).orderBy('rowid').execute(),
      db.selectFrom('run_steps').selectAll().where('run_id', '=', row.id).orderBy('runner').orderBy('idx').execute(),
    ]);
    return {
      id: row.id,
      repo: row.repo,
      commit: row.commit_id,
      tree: row.tree,
      branch: row.branch,
      startedAt: row.started_at,
      finishedAt: row.finished_at,
      status: row.status as RunStatus,
      runners: runners.map((r) => ({
        ...r,
        steps: steps
          .filter((s) => s.runner === r.runner)
          .map((s) => ({
            runner: s.runner,
            index: s.idx,
            line: s.line,
            text: s.text,
            status: s.status as StepOutcome,
            reason: s.reason === null ? null : (JSON.parse(s.reason) as StepReason),
            durationMs: s.duration_ms,
            snapshot: s.snapshot,
          })),
      })),
    };
  };

  return {
    async createRun(run) {
      await db
        .insertInto('runs')
        .values({ id: run.id, repo: run.repo, commit_id: run.commit, tree: run.tree, branch: run.branch, started_at: run.startedAt, status: 'running' })
        // Idempotent: a worker retries a call whose answer it lost (run ids are unique per run).
        .onConflict((oc) => oc.column('id').doNothing())
        .execute();
    },
    async finishRun(id, status, finishedAt) {
      await db.updateTable('runs').set({ status, finished_at: finishedAt }).where('id', '=', id).execute();
    },
    async setRunner(runId, runner) {
      await db
        .insertInto('run_runners')
        .values({ run_id: runId, runner: runner.runner, layerfile: runner.layerfile, status: runner.status, plan: runner.plan ?? null })
        .onConflict((oc) =>
          oc.columns(['run_id', 'runner']).doUpdateSet((eb) => ({
            status: eb.ref('excluded.status'),
            plan: eb.fn.coalesce(eb.ref('excluded.plan'), eb.ref('run_runners.plan')),
          })),
        )
        .execute();
    },
    async setStep(runId, step) {
      const values = {
        run_id: runId,
        runner: step.runner,
        idx: step.index,
        line: step.line,
        text: step.text,
        status: step.status,
        reason: step.reason ? JSON.stringify(step.reason) : null,
        duration_ms: step.durationMs,
        snapshot: step.snapshot,
      };
      const { run_id: _run, runner: _runner, idx: _idx, ...update } = values;
      await db.insertInto('run_steps').values(values).onConflict((oc) => oc.columns(['run_id', 'runner', 'idx']).doUpdateSet(update)).execute();
    },
    async getRun(id) {
      return load(await db.selectFrom('runs').selectAll().where('id', '=', id).executeTakeFirst());
    },
    async lastRun(repo) {
      return load(await db.selectFrom('runs').selectAll().where('repo', '=', repo).orderBy('started_at', 'desc').orderBy('rowid', 'desc').limit(1).executeTakeFirst());
    },
  };
}
