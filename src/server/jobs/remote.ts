// Jobs run by `strata worker`s: a worker leases a job (the claim names it), the server keeps the job's
// recorder (event log, runner rows, commit statuses) and feeds it the engine events the worker reports,
// the worker renews its lease (learning of a cancel or an approved BUTTON), and ends the job. A worker
// that dies stops renewing: the lease expires and the job is queued again (service.ts's recovery), as for
// a server that died. Cancelling ends the job here at once; the worker learns it at its next renewal.
import { StrataError } from '../../errors.js';
import type { WorkerEvent, WorkerJobEnd, WorkerLease, WorkerRenewal } from '../workers/protocol.js';
import { toSummary, type QueuedJob } from './queue.js';
import { endJob, ENGINE_STATUS, JobRecorder, postStatus, type ActiveJob, type WorkerDeps } from './worker.js';

/** RUNNING jobs never hold a worker's lease back: each worker asks only when it has a free slot. */
const NO_LIMIT = 1_000_000;

export interface WorkerJobs {
  /** Claims the oldest queued job for `worker`; null when none waits. */
  lease(worker: string): Promise<WorkerLease | null>;
  renew(worker: string, jobId: string): Promise<WorkerRenewal>;
  report(worker: string, jobId: string, events: readonly WorkerEvent[]): Promise<void>;
  end(worker: string, jobId: string, end: WorkerJobEnd): Promise<void>;
}

/** A job some worker runs, as the service's list of active jobs holds it. */
export class RemoteJob implements ActiveJob {
  /** BUTTON ids waiting for approval, and those approved since the worker last renewed. */
  readonly waiting = new Set<string>();
  private approvedIds: string[] = [];
  private settle!: () => void;
  readonly done = new Promise<void>((resolve) => (this.settle = resolve));
  /** Set once the job ended here (cancelled, recovered, stopped): the worker's reports are refused. */
  closed = false;

  constructor(
    readonly jobId: string,
    readonly worker: string,
    readonly recorder: JobRecorder,
    private readonly onCancel: () => void,
  ) {}

  abort(reason: 'cancel' | 'stop'): void {
    // 'stop': this server stops; the job runs on, and the worker finds the server did not keep it.
    if (reason === 'cancel' && !this.closed) this.onCancel();
    this.close();
  }

  approve(buttonId: string, user: string): boolean {
    if (this.closed || !this.waiting.delete(buttonId)) return false;
    this.approvedIds.push(buttonId);
    this.recorder.approved(buttonId, user);
    return true;
  }

  takeApproved(): string[] {
    const ids = this.approvedIds;
    this.approvedIds = [];
    return ids;
  }

  close(): void {
    this.closed = true;
    this.settle();
  }
}

export function createWorkerJobs(deps: {
  worker: WorkerDeps;
  active: Map<string, ActiveJob>;
  inTurn: <T>(operation: () => Promise<T>) => Promise<T>;
  leaseMs: number;
}): WorkerJobs {
  const { worker: workerDeps, active, inTurn, leaseMs } = deps;
  const { queue, now } = workerDeps;

  const remoteJob = (worker: string, jobId: string): RemoteJob | undefined => {
    const job = active.get(jobId);
    return job instanceof RemoteJob && job.worker === worker && !job.closed ? job : undefined;
  };
  const drop = (job: RemoteJob): void => {
    job.close();
    if (active.get(job.jobId) === job) active.delete(job.jobId);
  };
  const finish = async (job: RemoteJob, outcome: Parameters<typeof endJob>[2]): Promise<void> => {
    drop(job);
    await endJob(workerDeps, job.recorder, outcome);
  };

  const start = (claimed: QueuedJob, worker: string): RemoteJob => {
    const recorder = new JobRecorder(workerDeps, claimed);
    const job: RemoteJob = new RemoteJob(claimed.id, worker, recorder, () => {
      void finish(job, { status: 'CANCELLED', message: 'cancelled' }).catch((error: unknown) => workerDeps.log.error(error instanceof Error ? error : new Error(String(error)), `job ${claimed.id}: cancelling`));
    });
    active.set(claimed.id, job);
    recorder.emit({ type: 'job', job: toSummary(claimed) });
    recorder.note(`running on worker ${worker}`);
    return job;
  };

  const apply = async (job: RemoteJob, event: WorkerEvent): Promise<void> => {
    const { recorder } = job;
    switch (event.kind) {
      case 'runStart':
        return recorder.onRunStart(event.event);
      case 'runnerStart':
        return recorder.onRunnerStart(event.event);
      case 'stepStatus':
        return recorder.onStepStatus(event.event);
      case 'stepOutput':
        return recorder.onStepOutput(event.event);
      case 'runnerEnd':
        return recorder.onRunnerEnd(event.event);
      case 'note':
        return recorder.note(event.message);
      case 'button':
        job.waiting.add(event.id);
        return recorder.button(event.runner, { id: event.id, line: event.line, message: event.message, state: 'waiting' });
      case 'commit': {
        await queue.update(job.jobId, { title: event.title, author: event.author });
        const updated = await queue.get(job.jobId);
        if (updated) recorder.emit({ type: 'job', job: toSummary(updated) });
        return;
      }
    }
  };

  return {
    async lease(worker) {
      const job = await inTurn(async () => {
        const claimed = await queue.claim(now(), leaseMs, NO_LIMIT, worker);
        return claimed ? start(claimed, worker) : undefined;
      });
      if (!job) return null;
      const summary = job.recorder.job;
      postStatus(workerDeps, summary, 'RUNNING');
      const repo = await workerDeps.repos.get(summary.repo);
      if (!repo) {
        await finish(job, { status: 'ERROR', message: `repository ${summary.repo} is no longer configured` });
        return null;
      }
      const secrets = await workerDeps.repos.secretsFor(summary.repo);
      return { job: summary, repo: { name: repo.name, url: repo.url }, secrets: Object.fromEntries(secrets.values), leaseMs };
    },
    async renew(worker, jobId) {
      const job = remoteJob(worker, jobId);
      if (!job || !(await queue.renewLease(jobId, now() + leaseMs))) {
        if (job) drop(job);
        return { running: false, approved: [] };
      }
      return { running: true, approved: job.takeApproved() };
    },
    async report(worker, jobId, events) {
      const job = remoteJob(worker, jobId);
      if (!job) throw new StrataError('STRATA_CONFLICT', `job ${jobId} is not running on worker ${worker} (cancelled, or the lease ran out)`);
      for (const event of events) await apply(job, event);
      // Answered once recorded: what the worker reported is in the job's rows when it hears back.
      await job.recorder.flush();
    },
    async end(worker, jobId, end) {
      const job = remoteJob(worker, jobId);
      if (!job || end.status === 'abandoned') {
        if (job) {
          drop(job);
          await job.recorder.flush();
          job.recorder.note(`worker ${worker} stopped: this job is queued again`);
          workerDeps.events.close(jobId);
        }
        // A job this server does not follow (it restarted meanwhile) but that is still RUNNING under this
        // worker runs again; one that ended here (cancelled, or re-queued when the lease ran out) is left.
        const queued = await queue.get(jobId);
        if (queued?.status === 'RUNNING' && queued.worker === worker) await queue.requeue(jobId);
        return;
      }
      const status = ENGINE_STATUS[end.status];
      const message = end.message ?? (status === 'SUCCESS' ? null : job.recorder.failureMessage());
      await finish(job, { status, message, stepsRan: end.stepsRan, stepsCached: end.stepsCached });
    },
  };
}
