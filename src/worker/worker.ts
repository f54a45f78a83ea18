// `strata worker`: a host that runs the server's jobs with its own engine and store. It leases a job
// when it has a free slot, renews the lease while the job runs (learning of a cancel or an approved
// BUTTON), sends the engine's events to the server as they happen, and ends the job there. Its engine
// plans against the server's cache index (remoteStores.ts); it holds no database credentials and shares
// no filesystem with the server: it clones each repository from its URL into its own store.
import { hostname } from 'node:os';
import { join } from 'node:path';
import { openWorkerEngine, storePaths, type WorkerEngine } from '../compose/engine.js';
import type { RunOptions } from '../engine/runRepository.js';
import { runRepository } from '../engine/runRepository.js';
import { Checkouts } from '../server/jobs/checkout.js';
import { describeRepoSecret } from '../server/repos/store.js';
import { buttonIdOf, errorMessage, jobFacts } from '../server/jobs/worker.js';
import type { WorkerJobEnd, WorkerLease, WorkerRenewal } from '../server/workers/protocol.js';
import { sleep } from '../util/sleep.js';
import { createWorkerClient, type WorkerClient } from './client.js';
import { createRemoteStores } from './remoteStores.js';
import { ForwardingReporter } from './reporter.js';

export interface WorkerOptions {
  server: string;
  token: string;
  store?: string | undefined;
  /** Jobs at once (default 1). */
  concurrency: number;
  /** Stops the worker: running jobs are abandoned (the server queues them again). */
  signal: AbortSignal;
  log: (line: string) => void;
}

const HEARTBEAT_MS = 10_000;
const IDLE_POLL_MS = 1_000;

/** A job this worker runs. */
interface Running {
  lease: WorkerLease;
  abort(reason: 'cancelled' | 'abandoned'): void;
  done: Promise<void>;
}

export async function runWorker(options: WorkerOptions): Promise<void> {
  const client = createWorkerClient({ server: options.server, token: options.token });
  const running = new Map<string, Running>();
  const heartbeat = () => client.post<{ worker: string }>('/api/worker/heartbeat', { info: { host: hostname(), running: [...running.keys()] } });
  const { worker } = await heartbeat();
  const engine = await openWorkerEngine({ store: options.store, reporter: {} }, createRemoteStores(client));
  const { root } = storePaths(options.store);
  options.log(`strata worker ${worker}: connected to ${client.server}, store ${root}, ${options.concurrency} job(s) at once`);
  const checkouts = new Checkouts(join(root, 'worker', 'checkouts'));
  const problems = onceEach(options.log);
  let lastBeat = Date.now();
  try {
    while (!options.signal.aborted) {
      if (Date.now() - lastBeat >= HEARTBEAT_MS) {
        lastBeat = Date.now();
        await heartbeat().then(
          () => problems.clear(),
          (error: unknown) => problems.say(`heartbeat failed: ${errorMessage(error)}`),
        );
      }
      const lease = running.size < options.concurrency ? await client.post<WorkerLease | null>('/api/worker/jobs/lease', {}).catch((error: unknown) => (problems.say(`cannot lease a job: ${errorMessage(error)}`), null)) : null;
      if (lease === null) {
        await Promise.race([sleep(IDLE_POLL_MS), ...[...running.values()].map((r) => r.done)]);
        continue;
      }
      const job = startJob({ client, engine, checkouts, lease, log: options.log });
      running.set(lease.job.id, job);
      void job.done.finally(() => running.delete(lease.job.id));
    }
  } finally {
    for (const job of running.values()) job.abort('abandoned');
    await Promise.allSettled([...running.values()].map((job) => job.done));
    await engine.close();
  }
}

/** Says each problem once while it lasts (a server down for minutes is one line, not one a second). */
function onceEach(log: (line: string) => void): { say(problem: string): void; clear(): void } {
  let last: string | undefined;
  return {
    say(problem) {
      if (problem !== last) log(`strata worker: ${problem}`);
      last = problem;
    },
    clear() {
      if (last !== undefined) log('strata worker: the server answers again');
      last = undefined;
    },
  };
}

function startJob(deps: { client: WorkerClient; engine: WorkerEngine; checkouts: Checkouts; lease: WorkerLease; log: (line: string) => void }): Running {
  const { client, lease } = deps;
  const { job } = lease;
  const path = `/api/worker/jobs/${encodeURIComponent(job.id)}`;
  const controller = new AbortController();
  let stopReason: 'cancelled' | 'abandoned' | null = null;
  const abort = (reason: 'cancelled' | 'abandoned') => {
    stopReason ??= reason;
    controller.abort();
    for (const resolve of buttons.values()) resolve(false);
    buttons.clear();
  };
  const buttons = new Map<string, (approved: boolean) => void>();
  const reporter = new ForwardingReporter(client, job.id, (error) => {
    deps.log(`job ${job.id}: the server refused its events (${errorMessage(error)}): stopping it`);
    abort('cancelled');
  });

  const renew = async (): Promise<void> => {
    const renewal = await client.post<WorkerRenewal>(`${path}/renew`, {}).catch(() => undefined);
    if (renewal === undefined) return; // the server is unreachable for now: try again at the next beat
    if (!renewal.running) abort('cancelled');
    for (const id of renewal.approved) {
      buttons.get(id)?.(true);
      buttons.delete(id);
    }
  };
  const approveButton: NonNullable<RunOptions['approveButton']> = (request) => {
    const id = buttonIdOf(request);
    reporter.send({ kind: 'button', runner: request.runner, id, line: request.line, message: request.message });
    void reporter.flush();
    if (controller.signal.aborted) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => buttons.set(id, resolve));
  };

  const run = async (): Promise<void> => {
    deps.log(`job ${job.id}: ${job.repo} ${job.branch} ${job.commit.slice(0, 12)}: running`);
    const heartbeat = setInterval(() => void renew(), Math.max(200, lease.leaseMs / 3));
    let end: WorkerJobEnd;
    try {
      end = await execute();
    } catch (error) {
      const message = errorMessage(error);
      reporter.send({ kind: 'note', message });
      end = { status: stopReason ?? (controller.signal.aborted ? 'cancelled' : 'error'), message };
    } finally {
      clearInterval(heartbeat);
    }
    await reporter.flush();
    await client.post(`${path}/end`, end, { retryForMs: 60_000 }).catch((error: unknown) => deps.log(`job ${job.id}: could not report its end (${errorMessage(error)}); its lease will run out and it runs again`));
    deps.log(`job ${job.id}: ${end.status}${end.message ? `: ${end.message.split('\n')[0]}` : ''}`);
  };

  const execute = async (): Promise<WorkerJobEnd> => {
    const checkout = await deps.checkouts.prepare(lease.repo, job.branch, job.commit);
    reporter.onRunStarted = checkout.release;
    try {
      if (job.title === '' || job.author === '') reporter.send({ kind: 'commit', title: job.title || checkout.title, author: job.author || checkout.author });
      const result = await runRepository(
        {
          repoDir: checkout.dir,
          commit: job.commit,
          repoKey: lease.repo.name,
          noCache: job.options.noCache,
          noCacheDirs: job.options.noCacheDirs,
          secrets: { values: new Map(Object.entries(lease.secrets)), describeLookup: describeRepoSecret(lease.repo.name) },
          approveButton,
          signal: controller.signal,
          job: jobFacts(job, lease.repo),
        },
        { ...deps.engine.deps, reporter },
      );
      const status = stopReason ?? (controller.signal.aborted ? 'cancelled' : result.status);
      // The message of a failure is the server's to write: its recorder has every runner's.
      return { status, message: null, stepsRan: result.stepsRan, stepsCached: result.stepsCached };
    } finally {
      checkout.release();
    }
  };

  return { lease, abort, done: run() };
}
