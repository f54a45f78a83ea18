// Runs one claimed job: prepares the repo's checkout, runs the engine on the commit with a Reporter
// that turns engine events into JobEvents (event log + live subscribers) and runner rows, waits for
// BUTTON approvals, lists previews after a success, posts commit statuses, and ends the job's row.
import type { EngineDeps } from '../../engine/ports.js';
import type { Reporter, RunnerEndStatus, RunnerView, StepExplanation } from '../../engine/reporter.js';
import { runRepository, type RunOptions, type RunResult } from '../../engine/runRepository.js';
import type { JobFacts } from '../../engine/stepEnv.js';
import { isStrataError } from '../../errors.js';
import type { ExposeWebsiteTarget } from '../../layerfile/types.js';
import type { ServerConfig } from '../context.js';
import type { JobEvent, JobStatus, JobSummary, PreviewDetail, Repo, RunnerDetail } from '../api/types.js';
import type { RepoStore } from '../repos/types.js';
import { commitState, type StatusPoster } from '../statuses/poster.js';
import type { Checkouts } from './checkout.js';
import type { JobEventLog } from './eventLog.js';
import { toSummary, type JobQueue, type QueuedJob } from './queue.js';
import type { RunnerTable } from './runnerTable.js';
import type { JobsLog } from './types.js';

export interface WorkerDeps {
  config: ServerConfig;
  engine: EngineDeps;
  repos: RepoStore;
  log: JobsLog;
  queue: JobQueue;
  runners: RunnerTable;
  events: JobEventLog;
  checkouts: Checkouts;
  statuses: StatusPoster | undefined;
  now: () => number;
}

/** A job this process is running: how to cancel it, stop it (re-queue) or approve its buttons. */
export interface ActiveJob {
  readonly jobId: string;
  /** 'cancel': ends CANCELLED; 'stop': the server is stopping, the job goes back to NEW. */
  abort(reason: 'cancel' | 'stop'): void;
  /** Approves a waiting button; false when no such button waits. */
  approve(buttonId: string, user: string): boolean;
  readonly done: Promise<void>;
}

/** A runner's or a run's ending as a job status. */
export const ENGINE_STATUS: Record<RunnerEndStatus, JobStatus> = {
  success: 'SUCCESS',
  failure: 'FAILURE',
  error: 'ERROR',
  cancelled: 'CANCELLED',
  // A runner that never ran because what it waits for failed: the job has no status of its own for it.
  skipped: 'ERROR',
};

export function jobUrl(config: ServerConfig, jobId: string): string {
  return `${config.publicUrl.replace(/\/+$/, '')}/jobs/${jobId}`;
}

export function previewUrl(config: ServerConfig, jobId: string, runner: string, path = '/'): string {
  return `${config.publicUrl.replace(/\/+$/, '')}/preview/${jobId}/${encodeURIComponent(runner)}/${path.replace(/^\/+/, '')}`;
}

/** The status of several SPLIT copies as one: the worst ending, else running while any has not ended. */
export function mergeStatuses(statuses: JobStatus[]): JobStatus {
  for (const worst of ['ERROR', 'FAILURE', 'CANCELLED'] as const) if (statuses.includes(worst)) return worst;
  if (statuses.every((s) => s === 'SUCCESS')) return 'SUCCESS';
  return statuses.some((s) => s === 'RUNNING' || s === 'SUCCESS') ? 'RUNNING' : 'NEW';
}

/** Posts a job's (context `strata`) or one runner's (`strata/<runner>`) state, when statuses are on (in the background). */
export function postStatus(deps: Pick<WorkerDeps, 'config' | 'statuses' | 'repos' | 'log'>, job: JobSummary, status: JobStatus, runner?: string, description?: string): void {
  const state = commitState(status);
  const { statuses } = deps;
  if (!statuses || !state) return;
  void deps.repos.get(job.repo).then(
    (repo) => {
      if (repo) postRepoStatus(deps, statuses, repo, job, state, runner, status, description);
    },
    (error: unknown) => deps.log.warn(`commit status for ${job.id}: ${error instanceof Error ? error.message : String(error)}`),
  );
}

function postRepoStatus(
  deps: Pick<WorkerDeps, 'config'>,
  statuses: StatusPoster,
  repo: Repo,
  job: JobSummary,
  state: NonNullable<ReturnType<typeof commitState>>,
  runner: string | undefined,
  status: JobStatus,
  description: string | undefined,
): void {
  statuses.post({
    repo,
    sha: job.commit,
    state,
    context: runner === undefined ? 'strata' : `strata/${runner}`,
    description: description ?? `${runner ?? 'strata'}: ${status.toLowerCase().replace('_', ' ')}`,
    targetUrl: jobUrl(deps.config, job.id),
  });
}

/** What the engine knows of a job for its steps' LAYERCI_* variables; owner/name come from the repository's URL. */
export function jobFacts(job: JobSummary, repo: Pick<Repo, 'url'>): JobFacts {
  return { jobId: job.id, branch: job.branch, pullRequestUrl: job.pullRequestUrl, remoteUrl: repo.url };
}

/** A failure as one line for the job's message (a StrataError's hint included). */
export function errorMessage(error: unknown): string {
  return isStrataError(error) ? `${error.message}${error.hint ? ` (hint: ${error.hint})` : ''}` : error instanceof Error ? error.message : String(error);
}

/**
 * Ends a job that ran (here or on a `strata worker`): the runner rows it left open, its row with the
 * final status, the `end` event, the commit status. The recorder's writes are flushed first.
 */
export async function endJob(
  deps: WorkerDeps,
  recorder: JobRecorder,
  outcome: { status: JobStatus; message: string | null; stepsRan?: number | undefined; stepsCached?: number | undefined },
): Promise<void> {
  const { status, message } = outcome;
  const jobId = recorder.job.id;
  await recorder.flush();
  await deps.runners.endOpen(jobId, status === 'CANCELLED' ? 'CANCELLED' : 'ERROR', status === 'CANCELLED' ? 'cancelled' : 'the job ended before this runner');
  const ended = await deps.queue.finish(jobId, status as Exclude<JobStatus, 'NEW' | 'RUNNING' | 'WAITING_PARENTS'>, deps.now(), {
    stepsRan: outcome.stepsRan ?? recorder.totals().stepsRan,
    stepsCached: outcome.stepsCached ?? recorder.totals().stepsCached,
    message,
  });
  recorder.emit({ type: 'end', job: toSummary(ended) }, true);
  deps.events.close(jobId);
  postStatus(deps, ended, status, undefined, message ?? undefined);
}

/** A BUTTON's id in a job: its runner and line (what approvals name, here and on a `strata worker`). */
export function buttonIdOf(request: { runner: string; line: number }): string {
  return `${request.runner}-L${request.line}`;
}

export function startJob(deps: WorkerDeps, claimed: QueuedJob): ActiveJob {
  const controller = new AbortController();
  let abortReason: 'cancel' | 'stop' | null = null;
  const buttons = new Map<string, (approved: boolean) => void>();
  const recorder = new JobRecorder(deps, claimed);

  const approveButton: NonNullable<RunOptions['approveButton']> = (request) => {
    const id = buttonIdOf(request);
    recorder.button(request.runner, { id, line: request.line, message: request.message, state: 'waiting' });
    if (controller.signal.aborted) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => buttons.set(id, resolve));
  };

  const run = async (): Promise<void> => {
    const renew = () =>
      deps.queue.renewLease(claimed.id, deps.now() + leaseMsOf(claimed)).catch((error: unknown) => deps.log.warn(`job ${claimed.id}: renewing its lease failed: ${error instanceof Error ? error.message : String(error)}`));
    const heartbeat = setInterval(renew, Math.max(50, leaseMsOf(claimed) / 3));
    let job = claimed;
    let status: JobStatus = 'ERROR';
    let message: string | null = null;
    let result: RunResult | undefined;
    try {
      recorder.emit({ type: 'job', job: toSummary(job) });
      postStatus(deps, job, 'RUNNING');
      const repo = await deps.repos.get(job.repo);
      if (!repo) throw new Error(`repository ${job.repo} is no longer configured`);
      const checkout = await deps.checkouts.prepare(repo, job.branch, job.commit);
      recorder.onReadCommit = checkout.release;
      try {
        if (job.title === '' || job.author === '') {
          await deps.queue.update(job.id, { title: job.title || checkout.title, author: job.author || checkout.author });
          job = (await deps.queue.get(job.id)) ?? job;
          recorder.emit({ type: 'job', job: toSummary(job) });
        }
        result = await runRepository(
          {
            repoDir: checkout.dir,
            commit: job.commit,
            noCache: job.options.noCache,
            noCacheDirs: job.options.noCacheDirs,
            secrets: await deps.repos.secretsFor(job.repo),
            approveButton,
            signal: controller.signal,
            job: jobFacts(job, repo),
          },
          { ...deps.engine, reporter: recorder },
        );
      } finally {
        checkout.release();
      }
      status = controller.signal.aborted ? 'CANCELLED' : ENGINE_STATUS[result.status];
      message = status === 'SUCCESS' ? null : recorder.failureMessage();
      if (status === 'SUCCESS') recorder.listPreviews(result);
    } catch (error) {
      status = controller.signal.aborted ? 'CANCELLED' : 'ERROR';
      message = errorMessage(error);
      recorder.note(message);
      if (!isStrataError(error)) deps.log.error(error instanceof Error ? error : new Error(message), `job ${claimed.id} failed`);
    } finally {
      clearInterval(heartbeat);
      recorder.onReadCommit();
    }
    // The runner rows the run's events wrote, before the job's end is written after them.
    await recorder.flush();

    if (abortReason === 'stop') {
      await deps.queue.requeue(claimed.id);
      recorder.note('the server stopped: this job runs again when it starts');
      deps.events.close(claimed.id);
      return;
    }
    await endJob(deps, recorder, { status, message, stepsRan: result?.stepsRan, stepsCached: result?.stepsCached });
  };

  return {
    jobId: claimed.id,
    abort(reason) {
      abortReason ??= reason;
      controller.abort();
      for (const resolve of buttons.values()) resolve(false);
      buttons.clear();
    },
    approve(buttonId, user) {
      const resolve = buttons.get(buttonId);
      if (!resolve) return false;
      buttons.delete(buttonId);
      recorder.approved(buttonId, user);
      resolve(true);
      return true;
    },
    done: run(),
  };
}

/** Where inside the machine a preview goes: `http://localhost:8000`, plus a rewrite when there is one. */
function websiteTarget(target: ExposeWebsiteTarget): string {
  return `${target.scheme}://${target.host}:${target.port}${target.rewrite !== undefined ? target.rewrite : ''}`;
}

/** The lease the job was claimed with (claim time → lease_until). */
function leaseMsOf(job: QueuedJob): number {
  return job.leaseUntil !== null && job.startedAt !== null ? Math.max(1000, job.leaseUntil - job.startedAt) : 30_000;
}

/** Engine events → JobEvents (log + subscribers) and runner rows. */
export class JobRecorder implements Reporter {
  private readonly runners = new Map<string, { position: number; detail: RunnerDetail; startedAt: number | null; view: RunnerView }>();
  /** The database writes the (synchronous) engine events asked for, in their order. */
  private writes: Promise<void> = Promise.resolve();
  private readonly jobId: string;
  /** Set by the worker: releases the checkout once the engine has read the commit (at run start). */
  onReadCommit: () => void = () => {};

  constructor(
    private readonly deps: WorkerDeps,
    readonly job: JobSummary,
  ) {
    this.jobId = job.id;
  }

  /** Queues a database write after the earlier ones; a failed write is logged, not thrown into the engine. */
  private write(what: string, operation: () => Promise<unknown>): void {
    this.writes = this.writes.then(operation).then(
      () => {},
      (error: unknown) => this.deps.log.error(error instanceof Error ? error : new Error(String(error)), `job ${this.jobId}: ${what}`),
    );
  }

  /** Resolves once every write queued so far is done. */
  flush(): Promise<void> {
    return this.writes;
  }

  emit(event: JobEvent, sync = false): void {
    this.deps.events.append(this.jobId, event, { sync });
  }

  note(message: string): void {
    this.emit({ type: 'note', message, timeMs: this.deps.now() });
  }

  onRunStart(event: { runId: string; runners: RunnerView[] }): void {
    this.onReadCommit();
    this.write('recording the run id', () => this.deps.queue.update(this.jobId, { runId: event.runId }));
    this.write('clearing its runners', () => this.deps.runners.clear(this.jobId));
    this.runners.clear();
    event.runners.forEach((view, position) => {
      const detail: RunnerDetail = {
        runner: view.runner,
        layerfile: view.layerfile,
        level: view.level,
        // A runner with a FROM parent or WAIT targets (level > 1) waits for them to end.
        status: view.level > 1 ? 'WAITING_PARENTS' : 'NEW',
        durationMs: null,
        message: null,
        steps: view.steps.map((s) => ({ index: s.index, line: s.line, text: s.text, status: 'pending', durationMs: null, snapshot: false, reason: null })),
        buttons: [],
        previews: [],
        debuggable: false,
      };
      this.runners.set(view.runner, { position, detail, startedAt: null, view });
      this.save(view.runner);
    });
    this.emit({ type: 'runStart', runId: event.runId, runners: event.runners.map((r) => ({ runner: r.runner, layerfile: r.layerfile, level: r.level, steps: r.steps })) });
  }

  onRunnerStart(event: { runner: string; plan: string }): void {
    const entry = this.runners.get(event.runner);
    if (entry) {
      entry.detail.status = 'RUNNING';
      entry.startedAt = this.deps.now();
      this.save(event.runner);
      this.postRunner(event.runner, 'RUNNING');
    }
    this.emit({ type: 'runnerStart', runner: event.runner, plan: event.plan });
  }

  onStepStatus(event: { runner: string; step: number; status: RunnerDetail['steps'][number]['status']; durationMs?: number; explanation?: StepExplanation; snapshot?: string | null }): void {
    const step = this.runners.get(event.runner)?.detail.steps.find((s) => s.index === event.step);
    if (step) {
      step.status = event.status;
      if (event.durationMs !== undefined) step.durationMs = event.durationMs;
      // Which steps left a snapshot in this run (a failed one with a snapshot can be debugged in a terminal).
      if (event.snapshot !== undefined) step.snapshot = event.snapshot !== null;
      if (event.explanation) step.reason = event.explanation.message;
      this.save(event.runner);
    }
    this.emit({
      type: 'stepStatus',
      runner: event.runner,
      step: event.step,
      status: event.status,
      ...(event.durationMs !== undefined ? { durationMs: event.durationMs } : {}),
      ...(event.explanation ? { reason: event.explanation.message } : {}),
    });
  }

  onStepOutput(event: { runner: string; step: number; stream: 'stdout' | 'stderr'; data: string; timeMs: number }): void {
    this.emit({ type: 'output', runner: event.runner, step: event.step, stream: event.stream, data: event.data, timeMs: event.timeMs });
  }

  onRunnerEnd(event: { runner: string; status: RunnerEndStatus; message?: string }): void {
    const status = ENGINE_STATUS[event.status];
    const entry = this.runners.get(event.runner);
    if (entry) {
      const { detail } = entry;
      detail.status = status;
      detail.message = event.message ?? null;
      detail.durationMs = entry.startedAt === null ? null : this.deps.now() - entry.startedAt;
      for (const step of detail.steps) if (step.status === 'pending') step.status = 'skipped';
      // The failure snapshot of a worker's job is on the worker: no terminal for it here (yet).
      detail.debuggable = this.job.worker === undefined && status === 'FAILURE' && detail.steps.some((s) => s.status === 'failed' && s.snapshot);
      this.save(event.runner);
      const totals = this.totals();
      this.write('recording its totals', () => this.deps.queue.update(this.jobId, totals));
      this.postRunner(event.runner, status, event.message);
    }
    this.emit({ type: 'runnerEnd', runner: event.runner, status, ...(event.message !== undefined ? { message: event.message } : {}) }, true);
  }

  button(runner: string, button: RunnerDetail['buttons'][number]): void {
    const entry = this.runners.get(runner);
    if (entry) {
      entry.detail.buttons = [...entry.detail.buttons.filter((b) => b.id !== button.id), button];
      this.save(runner);
    }
    this.emit({ type: 'button', runner, ...button }, true);
  }

  approved(buttonId: string, user: string): void {
    for (const [runner, entry] of this.runners) {
      const button = entry.detail.buttons.find((b) => b.id === buttonId);
      if (!button) continue;
      this.note(`BUTTON "${button.message}" (${runner}, line ${button.line}) approved by ${user}`);
      this.button(runner, { ...button, state: 'approved' });
    }
  }

  /** After a success: a preview per EXPOSE WEBSITE line of each Layerfile that has one. */
  listPreviews(result: RunResult): void {
    for (const node of result.nodes) {
      if (result.outcomes.get(node.path)?.status !== 'success') continue;
      const previews: PreviewDetail[] = node.layerfile.instructions.flatMap((instruction) =>
        instruction.kind === 'exposeWebsite'
          ? [{ url: previewUrl(this.deps.config, this.jobId, node.runnerId, instruction.target.path), target: websiteTarget(instruction.target) }]
          : [],
      );
      const entry = this.runners.get(node.runnerId);
      if (previews.length === 0 || !entry) continue;
      entry.detail.previews = previews;
      this.save(node.runnerId);
      for (const preview of previews) this.emit({ type: 'preview', runner: node.runnerId, url: preview.url, target: preview.target });
    }
  }

  /** Steps that ran / were restored, over the runners so far. */
  totals(): { stepsRan: number; stepsCached: number } {
    let stepsRan = 0;
    let stepsCached = 0;
    for (const { detail } of this.runners.values()) {
      for (const step of detail.steps) {
        if (step.status === 'done' || step.status === 'failed') stepsRan++;
        if (step.status === 'cached') stepsCached++;
      }
    }
    return { stepsRan, stepsCached };
  }

  /** The job's message when it did not succeed: each unsuccessful runner's message. */
  failureMessage(): string | null {
    const lines = [...this.runners.values()].flatMap(({ detail }) => (detail.status !== 'SUCCESS' && detail.message ? [`${detail.runner}: ${detail.message}`] : []));
    return lines.length > 0 ? lines.join('\n') : null;
  }

  private save(runner: string): void {
    const entry = this.runners.get(runner);
    // Written as it is now (later events change the detail in place).
    const detail = entry ? (JSON.parse(JSON.stringify(entry.detail)) as RunnerDetail) : undefined;
    if (entry && detail) this.write(`saving runner ${runner}`, () => this.deps.runners.save(this.jobId, entry.position, detail));
  }

  /**
   * A runner's commit status: none for `LABEL status=hidden`; for `LABEL status=merge`, one status for
   * all SPLIT copies under the Layerfile's runner id, as bad as the worst copy (running while any runs).
   */
  private postRunner(runner: string, status: JobStatus, message?: string): void {
    const { job } = this;
    const view = this.runners.get(runner)?.view;
    if (view?.statusLabel === 'hidden') return;
    if (view?.statusLabel === 'merge' && view.copyOf !== undefined) {
      const copies = [...this.runners.values()].filter((r) => r.view.copyOf === view.copyOf).map((r) => (r.view.runner === runner ? status : r.detail.status));
      const merged = mergeStatuses(copies);
      const done = copies.filter((s) => s === 'SUCCESS').length;
      postStatus(this.deps, job, merged, view.copyOf, merged === 'SUCCESS' ? `${copies.length} copies passed` : `${done} of ${copies.length} copies passed${message ? `; ${runner}: ${message}` : ''}`);
      return;
    }
    postStatus(this.deps, job, status, runner, message);
  }
}
