// A job page's state: the JobDetail from GET /api/jobs/:id, kept current by the job's event stream, plus
// the log chunks per runner. Pure (no DOM, no fetch) so it is unit-tested in test/ui/jobState.test.ts.
//
// The stream replays every stored event from the start before the live ones, so applying an event must
// be idempotent with respect to the detail it started from: runStart only adds runners it does not know,
// buttons and previews are upserted, and output is only taken from events (the detail has none).
import type { JobDetail, JobEvent, RunnerDetail, StepStatus } from '../server/api/types.js';

export interface LogChunk {
  step: number;
  stream: 'stdout' | 'stderr';
  data: string;
}

export interface JobState {
  job: JobDetail;
  /** Log chunks per runner, in arrival order. */
  logs: Record<string, LogChunk[]>;
  /** strata's own log lines about the job (re-queued, approved by ..., errors before the run). */
  notes: { message: string; timeMs: number }[];
  /** The sequence number of the last applied event (for resuming the stream). */
  lastSeq: number;
}

export const initialJobState = (job: JobDetail): JobState => ({ job, logs: {}, notes: [], lastSeq: 0 });

export function applyEvent(state: JobState, seq: number, event: JobEvent): JobState {
  if (seq <= state.lastSeq) return state; // already applied (a reconnect resumed before it)
  const next: JobState = { ...state, lastSeq: seq };
  const job = state.job;
  switch (event.type) {
    case 'job':
    case 'end':
      next.job = { ...job, ...event.job };
      return next;
    case 'runStart': {
      const known = new Set(job.runners.map((r) => r.runner));
      const added: RunnerDetail[] = event.runners
        .filter((r) => !known.has(r.runner))
        .map((r) => ({
          runner: r.runner,
          layerfile: r.layerfile,
          level: r.level,
          status: 'NEW',
          durationMs: null,
          message: null,
          steps: r.steps.map((s) => ({ ...s, status: 'pending' as StepStatus, durationMs: null, snapshot: false, reason: null })),
          buttons: [],
          previews: [],
          debuggable: false,
        }));
      next.job = { ...job, runId: job.runId ?? event.runId, runners: [...job.runners, ...added] };
      return next;
    }
    case 'runnerStart':
      next.job = updateRunner(job, event.runner, (r) => (r.status === 'NEW' || r.status === 'WAITING_PARENTS' ? { ...r, status: 'RUNNING' } : r));
      return next;
    case 'stepStatus':
      next.job = updateRunner(job, event.runner, (r) => ({
        ...r,
        status: r.status === 'NEW' || r.status === 'WAITING_PARENTS' ? 'RUNNING' : r.status,
        steps: r.steps.map((s) =>
          s.index === event.step
            ? { ...s, status: event.status, durationMs: event.durationMs ?? s.durationMs, reason: event.reason ?? s.reason }
            : s,
        ),
      }));
      return next;
    case 'output': {
      const chunk: LogChunk = { step: event.step, stream: event.stream, data: event.data };
      next.logs = { ...state.logs, [event.runner]: [...(state.logs[event.runner] ?? []), chunk] };
      return next;
    }
    case 'runnerEnd':
      next.job = updateRunner(job, event.runner, (r) => ({ ...r, status: event.status, message: event.message ?? r.message }));
      return next;
    case 'button':
      next.job = updateRunner(job, event.runner, (r) => {
        const button = { id: event.id, line: event.line, message: event.message, state: event.state };
        const exists = r.buttons.some((b) => b.id === event.id);
        return { ...r, buttons: exists ? r.buttons.map((b) => (b.id === event.id ? button : b)) : [...r.buttons, button] };
      });
      return next;
    case 'preview':
      next.job = updateRunner(job, event.runner, (r) =>
        r.previews.some((p) => p.url === event.url) ? r : { ...r, previews: [...r.previews, { url: event.url, target: event.target }] },
      );
      return next;
    case 'note':
      next.notes = [...state.notes, { message: event.message, timeMs: event.timeMs }];
      return next;
    default: {
      const unknown: never = event;
      void unknown;
      return state; // an event type this UI does not know yet: ignore it
    }
  }
}

function updateRunner(job: JobDetail, runner: string, update: (r: RunnerDetail) => RunnerDetail): JobDetail {
  return { ...job, runners: job.runners.map((r) => (r.runner === runner ? update(r) : r)) };
}

const FINISHED = new Set(['SUCCESS', 'FAILURE', 'ERROR', 'CANCELLED']);

/**
 * Takes a freshly fetched detail into the state. A finished job's detail is final and taken whole. While
 * the job runs, events may have been applied after the server answered, so only what events never
 * carry is taken from it: runner durations, messages, `debuggable`, and which steps left a snapshot.
 */
export function mergeDetail(state: JobState, detail: JobDetail): JobState {
  if (FINISHED.has(detail.status)) return { ...state, job: detail };
  const fresh = new Map(detail.runners.map((r) => [r.runner, r]));
  const runners = state.job.runners.map((runner) => {
    const update = fresh.get(runner.runner);
    if (!update) return runner;
    const snapshots = new Map(update.steps.map((s) => [s.index, s.snapshot]));
    return {
      ...runner,
      durationMs: update.durationMs ?? runner.durationMs,
      message: update.message ?? runner.message,
      debuggable: update.debuggable,
      steps: runner.steps.map((s) => ({ ...s, snapshot: snapshots.get(s.index) ?? s.snapshot })),
    };
  });
  const known = new Set(runners.map((r) => r.runner));
  return { ...state, job: { ...state.job, message: detail.message, runners: [...runners, ...detail.runners.filter((r) => !known.has(r.runner))] } };
}

/** The runners grouped by DAG level, levels ascending, runners by name within a level. */
export function runnersByLevel(runners: RunnerDetail[]): { level: number; runners: RunnerDetail[] }[] {
  const levels = new Map<number, RunnerDetail[]>();
  for (const runner of runners) levels.set(runner.level, [...(levels.get(runner.level) ?? []), runner]);
  return [...levels.entries()]
    .sort(([a], [b]) => a - b)
    .map(([level, list]) => ({ level, runners: list.sort((a, b) => a.runner.localeCompare(b.runner)) }));
}

/** The runner to show first: a failed one, else a running one, else a waiting button, else the first. */
export function defaultRunner(runners: RunnerDetail[]): string | null {
  const pick =
    runners.find((r) => r.buttons.some((b) => b.state === 'waiting')) ??
    runners.find((r) => r.status === 'FAILURE' || r.status === 'ERROR') ??
    runners.find((r) => r.status === 'RUNNING') ??
    runnersByLevel(runners)[0]?.runners[0];
  return pick?.runner ?? null;
}
