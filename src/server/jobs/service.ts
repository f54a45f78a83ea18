// The JobService (types.ts): the durable queue (queue.ts) plus a worker loop in this process that claims
// jobs up to ServerConfig.concurrency and runs each with worker.ts. Expired leases (a server that died
// mid-job) are recovered on every tick: re-queued once with a note in the job's log, then ERROR.
import { join } from 'node:path';
import type { EngineDeps } from '../../engine/ports.js';
import { StrataError } from '../../errors.js';
import type { Db } from '../../store/database.js';
import type { JobDetail, JobEvent } from '../api/types.js';
import type { ServerConfig } from '../context.js';
import type { RepoStore } from '../repos/types.js';
import { createStatusPoster, type StatusPoster } from '../statuses/poster.js';
import { Checkouts } from './checkout.js';
import { JobEventLog } from './eventLog.js';
import { createJobQueue, STOPPED_TWICE_MESSAGE, toSummary, type QueuedJob } from './queue.js';
import { createRunnerTable } from './runnerTable.js';
import type { JobService, JobsLog } from './types.js';
import { postStatus, startJob, type ActiveJob, type WorkerDeps } from './worker.js';

export interface JobServiceDeps {
  config: ServerConfig;
  db: Db;
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
  let timer: NodeJS.Timeout | undefined;
  let running = false;

  const mustGet = (id: string): QueuedJob => {
    const job = queue.get(id);
    if (!job) throw new StrataError('STRATA_NOT_FOUND', `no job ${id}`);
    return job;
  };

  /** One job event outside a run (the file is closed again: no worker holds it). */
  const appendOutsideRun = (jobId: string, event: JobEvent, sync = false) => {
    events.append(jobId, event, { sync });
    if (!active.has(jobId)) events.close(jobId);
  };

  const recover = () => {
    for (const { id, outcome } of queue.recoverExpired(now())) {
      if (outcome === 'requeued') {
        appendOutsideRun(id, { type: 'note', message: 'the server stopped while this job ran: it was queued again', timeMs: now() });
        continue;
      }
      runners.endOpen(id, 'ERROR', STOPPED_TWICE_MESSAGE);
      const job = toSummary(mustGet(id));
      events.append(id, { type: 'note', message: STOPPED_TWICE_MESSAGE, timeMs: now() });
      appendOutsideRun(id, { type: 'end', job }, true);
      postStatus(worker, job, 'ERROR', undefined, STOPPED_TWICE_MESSAGE);
    }
  };

  const tick = () => {
    if (!running) return;
    try {
      recover();
      for (;;) {
        const claimed = queue.claim(now(), leaseMs, Math.max(1, deps.config.concurrency));
        if (!claimed) break;
        const job = startJob(worker, claimed);
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

  const service: JobService & { readonly statuses: StatusPoster | undefined } = {
    statuses,
    enqueue(newJob) {
      const job = toSummary(queue.insert(newJob, now()));
      appendOutsideRun(job.id, { type: 'job', job });
      postStatus(worker, job, 'NEW', undefined, 'queued');
      if (running) setImmediate(tick);
      return job;
    },
    list(filter) {
      return queue.list(filter).map(toSummary);
    },
    get(id): JobDetail | null {
      const job = queue.get(id);
      if (!job) return null;
      return { ...toSummary(job), runners: runners.list(id), message: job.message };
    },
    cancel(id) {
      const job = mustGet(id);
      const mine = active.get(id);
      if (mine) {
        mine.abort('cancel');
        return toSummary(job);
      }
      // Not claimed yet, or RUNNING under a lease no live worker of this process holds.
      if (job.status === 'NEW' || job.status === 'RUNNING') {
        const cancelled = job.status === 'NEW' && queue.cancelIfNew(id, now()) ? mustGet(id) : queue.finish(id, 'CANCELLED', now(), { message: 'cancelled' });
        runners.endOpen(id, 'CANCELLED', 'cancelled');
        appendOutsideRun(id, { type: 'end', job: toSummary(cancelled) }, true);
        postStatus(worker, cancelled, 'CANCELLED', undefined, 'cancelled');
        return toSummary(cancelled);
      }
      throw new StrataError('STRATA_CONFLICT', `job ${id} already ended (${job.status})`);
    },
    retry(id, options) {
      const job = mustGet(id);
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
    approveButton(jobId, buttonId, user) {
      const job = mustGet(jobId);
      const mine = active.get(jobId);
      if (!mine || !mine.approve(buttonId, user)) throw new StrataError('STRATA_CONFLICT', `job ${jobId} has no button ${buttonId} waiting for approval`);
      return toSummary(job);
    },
    durations(filter) {
      return queue.durations(filter);
    },
    subscribe(jobId, afterSeq, onEvent) {
      return events.subscribe(jobId, afterSeq, onEvent);
    },
    log(jobId, filter) {
      mustGet(jobId);
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
      events.closeAll();
    },
  };
  return service;
}
