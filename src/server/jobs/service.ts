// The JobService (types.ts): the durable queue (queue.ts) plus a worker loop in this process that claims
// jobs up to ServerConfig.concurrency and runs each with worker.ts. Expired leases (a server that died
// mid-job) are recovered on every tick: re-queued once with a note in the job's log, then ERROR.
import { join } from 'node:path';
import type { EngineDeps } from '../../engine/ports.js';
import { StrataError } from '../../errors.js';
import type { StoreDatabase } from '../../store/database.js';
import type { JobDetail, JobEvent } from '../api/types.js';
import type { ServerConfig } from '../context.js';
import type { RepoStore } from '../repos/types.js';
import { createStatusPoster, type StatusPoster } from '../statuses/poster.js';
import { Checkouts } from './checkout.js';
import { JobEventLog } from './eventLog.js';
import { STOPPED_TWICE_MESSAGE, toSummary, type QueuedJob } from './queue.js';
import { createJobQueue } from './sqlQueue.js';
import { createRunnerTable } from './runnerTable.js';
import type { JobService, JobsLog } from './types.js';
import { postStatus, startJob, type ActiveJob, type WorkerDeps } from './worker.js';
import { createWorkerJobs, RemoteJob } from './remote.js';

export interface JobServiceDeps {
  config: ServerConfig;
  db: StoreDatabase;
  engine: EngineDeps;
  repos: RepoStore;
  log: JobsLog;
  /** Default: a poster for config.statusApi when it is set, else none. */
  statuses?: StatusPoster | undefined;
  /** How long a claim holds without a heartbeat (default 30 s; renewed every third of it). */
  leaseMs?: number | undefined;
  /** How often the worker loop looks for jobs and expired leases (default 1 s; enqueue also wakes it). */
  tickMs?: number | undefined;
  now?: (() => number) | undefined;
}

export function createJobService(deps: JobServiceDeps): JobService & { readonly statuses: StatusPoster | undefined } {
  const now = deps.now ?? (() => Date.now());
  const leaseMs = deps.leaseMs ?? 30_000;
  const tickMs = deps.tickMs ?? 1000;
  const queue = createJobQueue(deps.db);
  const runners = createRunnerTable(deps.db);
  const events = new JobEventLog(join(deps.config.storeRoot, 'jobs'));
  const statuses = deps.statuses ?? (deps.config.statusApi ? createStatusPoster({ statusApi: deps.config.statusApi, log: deps.log }) : undefined);
  const worker: WorkerDeps = {
    config: deps.config,
    engine: deps.engine,
    repos: deps.repos,
    log: deps.log,
    queue,
    runners,
    events,
    checkouts: new Checkouts(join(deps.config.storeRoot, 'server', 'checkouts')),
    statuses,
    now,
  };
  const active = new Map<string, ActiveJob>();
  // Queuing a job (its row, then its NEW event) and taking one (the claim, then the worker's first
  // events) take turns, so a job's event log always starts with it queued.
  let turn: Promise<unknown> = Promise.resolve();
  const inTurn = <T>(operation: () => Promise<T>): Promise<T> => {
    const mine = turn.then(operation);
    turn = mine.catch(() => {});
    return mine;
  };
  let timer: NodeJS.Timeout | undefined;
  let running = false;

  const mustGet = async (id: string): Promise<QueuedJob> => {
    const job = await queue.get(id);
    if (!job) throw new StrataError('STRATA_NOT_FOUND', `no job ${id}`);
    return job;
  };

  /** One job event outside a run (the file is closed again: no worker holds it). */
  const appendOutsideRun = (jobId: string, event: JobEvent, sync = false) => {
    events.append(jobId, event, { sync });
    if (!active.has(jobId)) events.close(jobId);
  };

  const recover = async () => {
    for (const { id, outcome } of await queue.recoverExpired(now())) {
      // A worker's job whose lease ran out: the worker is gone (or cut off); forget its recorder.
      const remote = active.get(id);
      if (remote instanceof RemoteJob) {
        remote.close();
        active.delete(id);
        await remote.recorder.flush();
      }
      if (outcome === 'requeued') {
        const who = remote instanceof RemoteJob ? `worker ${remote.worker} stopped answering` : 'the server stopped';
        appendOutsideRun(id, { type: 'note', message: `${who} while this job ran: it was queued again`, timeMs: now() });
        continue;
      }
      await runners.endOpen(id, 'ERROR', STOPPED_TWICE_MESSAGE);
      const job = toSummary(await mustGet(id));
      events.append(id, { type: 'note', message: STOPPED_TWICE_MESSAGE, timeMs: now() });
      appendOutsideRun(id, { type: 'end', job }, true);
      postStatus(worker, job, 'ERROR', undefined, STOPPED_TWICE_MESSAGE);
    }
  };

  // One tick at a time: a tick asked for while one runs (a job ended, one was queued) runs after it.
  let ticking: Promise<void> | undefined;
  let again = false;
  const tick = (): void => {
    if (ticking) {
      again = true;
      return;
    }
    ticking = tickOnce().finally(() => {
      ticking = undefined;
      if (again) {
        again = false;
        tick();
      }
    });
  };

  const tickOnce = async (): Promise<void> => {
    if (!running) return;
    try {
      await recover();
      // --concurrency 0: jobs run only on `strata worker`s.
      while (running && deps.config.concurrency > 0) {
        const started = await inTurn(async () => {
          const claimed = await queue.claim(now(), leaseMs, deps.config.concurrency);
          if (!claimed) return undefined;
          if (!running) {
            // stop() came while the claim was on its way: the job waits for the next start.
            await queue.requeue(claimed.id);
            return undefined;
          }
          return { claimed, job: startJob(worker, claimed) };
        });
        if (!started) break;
        const { claimed, job } = started;
        active.set(claimed.id, job);
        void job.done
          .catch((error: unknown) => deps.log.error(error instanceof Error ? error : new Error(String(error)), `job ${claimed.id}: worker failed`))
          .finally(() => {
            active.delete(claimed.id);
            // A slot is free: take the next job now rather than at the next tick.
            setImmediate(tick);
          });
      }
    } catch (error) {
      deps.log.error(error instanceof Error ? error : new Error(String(error)), 'job worker loop');
    }
  };

  const workerJobs = createWorkerJobs({ worker, active, inTurn, leaseMs });
  const service: JobService & { readonly statuses: StatusPoster | undefined } = {
    statuses,
    workerJobs,
    async enqueue(newJob) {
      const job = await inTurn(async () => {
        const queued = toSummary(await queue.insert(newJob, now()));
        appendOutsideRun(queued.id, { type: 'job', job: queued });
        return queued;
      });
      postStatus(worker, job, 'NEW', undefined, 'queued');
      if (running) setImmediate(tick);
      return job;
    },
    async list(filter) {
      return (await queue.list(filter)).map(toSummary);
    },
    async get(id): Promise<JobDetail | null> {
      const job = await queue.get(id);
      if (!job) return null;
      return { ...toSummary(job), runners: await runners.list(id), message: job.message };
    },
    async cancel(id) {
      const job = await mustGet(id);
      const mine = active.get(id);
      if (mine) {
        mine.abort('cancel');
        return toSummary(job);
      }
      // Not claimed yet, or RUNNING under a lease no live worker of this process holds.
      if (job.status === 'NEW' || job.status === 'RUNNING') {
        const cancelled = job.status === 'NEW' && (await queue.cancelIfNew(id, now())) ? await mustGet(id) : await queue.finish(id, 'CANCELLED', now(), { message: 'cancelled' });
        await runners.endOpen(id, 'CANCELLED', 'cancelled');
        appendOutsideRun(id, { type: 'end', job: toSummary(cancelled) }, true);
        postStatus(worker, cancelled, 'CANCELLED', undefined, 'cancelled');
        return toSummary(cancelled);
      }
      throw new StrataError('STRATA_CONFLICT', `job ${id} already ended (${job.status})`);
    },
    async retry(id, options) {
      const job = await mustGet(id);
      return service.enqueue({
        repo: job.repo,
        branch: job.branch,
        commit: job.commit,
        title: job.title,
        author: job.author,
        trigger: 'retry',
        // A retry still builds the pull request its job built: its steps keep LAYERCI_PULL_REQUEST.
        pullRequestUrl: job.pullRequestUrl,
        options: { noCache: options.noCache ?? false, noCacheDirs: options.noCacheDirs ?? false },
      });
    },
    async approveButton(jobId, buttonId, user) {
      const job = await mustGet(jobId);
      const mine = active.get(jobId);
      if (!mine || !mine.approve(buttonId, user)) throw new StrataError('STRATA_CONFLICT', `job ${jobId} has no button ${buttonId} waiting for approval`);
      return toSummary(job);
    },
    async durations(filter) {
      return queue.durations(filter);
    },
    subscribe(jobId, afterSeq, onEvent) {
      return events.subscribe(jobId, afterSeq, onEvent);
    },
    async log(jobId, filter) {
      await mustGet(jobId);
      let text = '';
      for (const { event } of events.read(jobId)) {
        if (event.type === 'output' && (filter.runner === undefined || event.runner === filter.runner) && (filter.step === undefined || event.step === filter.step)) text += event.data;
        else if (event.type === 'note' && filter.runner === undefined) text += `${text === '' || text.endsWith('\n') ? '' : '\n'}strata: ${event.message}\n`;
      }
      return text;
    },
    start() {
      if (running) return;
      running = true;
      timer = setInterval(tick, tickMs);
      tick();
    },
    async stop() {
      running = false;
      if (timer) clearInterval(timer);
      timer = undefined;
      const jobs = [...active.values()];
      for (const job of jobs) job.abort('stop');
      await Promise.allSettled(jobs.map((job) => job.done));
      await ticking;
      events.closeAll();
    },
  };
  return service;
}
