// Runs as history: what ran, what was cached and why. `strata why` and the server read this.
import type { Db } from './database.js';

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

export interface RunLog {
  createRun(run: Omit<RunRecord, 'finishedAt' | 'status' | 'runners'>): void;
  finishRun(id: string, status: RunStatus, finishedAt: number): void;
  setRunner(runId: string, runner: { runner: string; layerfile: string; status: string; plan?: string | null }): void;
  setStep(runId: string, step: RunStepRecord): void;
  getRun(id: string): RunRecord | undefined;
  lastRun(repo: string): RunRecord | undefined;
}

interface RunRow { id: string; repo: string; commit_id: string | null; tree: string; branch: string; started_at: number; finished_at: number | null; status: RunStatus }
interface RunnerRow { runner: string; layerfile: string; status: string; plan: string | null }
interface StepRow { runner: string; idx: number; line: number; text: string; status: StepOutcome; reason: string | null; duration_ms: number | null; snapshot: string | null }

export function createRunLog(db: Db): RunLog {
  const insertRun = db.prepare('INSERT INTO runs (id, repo, commit_id, tree, branch, started_at, status) VALUES (?, ?, ?, ?, ?, ?, ?)');
  const updateRun = db.prepare('UPDATE runs SET status = ?, finished_at = ? WHERE id = ?');
  const upsertRunner = db.prepare(`INSERT INTO run_runners (run_id, runner, layerfile, status, plan) VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (run_id, runner) DO UPDATE SET status = excluded.status, plan = COALESCE(excluded.plan, run_runners.plan)`);
  const upsertStep = db.prepare(`INSERT OR REPLACE INTO run_steps (run_id, runner, idx, line, text, status, reason, duration_ms, snapshot)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`);
  const selectRun = db.prepare<[string], RunRow>('SELECT * FROM runs WHERE id = ?');
  const selectLast = db.prepare<[string], RunRow>('SELECT * FROM runs WHERE repo = ? ORDER BY started_at DESC, rowid DESC LIMIT 1');
  const selectRunners = db.prepare<[string], RunnerRow>('SELECT runner, layerfile, status, plan FROM run_runners WHERE run_id = ? ORDER BY rowid');
  const selectSteps = db.prepare<[string], StepRow>('SELECT * FROM run_steps WHERE run_id = ? ORDER BY runner, idx');

  const load = (row: RunRow | undefined): RunRecord | undefined => {
    if (!row) return undefined;
    const steps = selectSteps.all(row.id);
    return {
      id: row.id,
      repo: row.repo,
      commit: row.commit_id,
      tree: row.tree,
      branch: row.branch,
      startedAt: row.started_at,
      finishedAt: row.finished_at,
      status: row.status,
      runners: selectRunners.all(row.id).map((r) => ({
        ...r,
        steps: steps
          .filter((s) => s.runner === r.runner)
          .map((s) => ({
            runner: s.runner,
            index: s.idx,
            line: s.line,
            text: s.text,
            status: s.status,
            reason: s.reason === null ? null : (JSON.parse(s.reason) as StepReason),
            durationMs: s.duration_ms,
            snapshot: s.snapshot,
          })),
      })),
    };
  };

  return {
    createRun(run) {
      insertRun.run(run.id, run.repo, run.commit, run.tree, run.branch, run.startedAt, 'running');
    },
    finishRun(id, status, finishedAt) {
      updateRun.run(status, finishedAt, id);
    },
    setRunner(runId, runner) {
      upsertRunner.run(runId, runner.runner, runner.layerfile, runner.status, runner.plan ?? null);
    },
    setStep(runId, step) {
      upsertStep.run(runId, step.runner, step.index, step.line, step.text, step.status, step.reason ? JSON.stringify(step.reason) : null, step.durationMs, step.snapshot);
    },
    getRun(id) {
      return load(selectRun.get(id));
    },
    lastRun(repo) {
      return load(selectLast.get(repo));
    },
  };
}
