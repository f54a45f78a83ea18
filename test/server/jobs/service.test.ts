// The job service without machines: what start() does with jobs a crashed server left RUNNING, cancel
// of a queued job, event subscriptions and the log. Real SQLite, real event files.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { test, type TestContext } from 'node:test';
import type { EngineDeps } from '../../../src/engine/ports.js';
import type { JobEvent } from '../../../src/server/api/types.js';
import type { ServerConfig } from '../../../src/server/context.js';
import { STOPPED_TWICE_MESSAGE } from '../../../src/server/jobs/queue.js';
import { createJobQueue } from '../../../src/server/jobs/sqlQueue.js';
import { createJobService } from '../../../src/server/jobs/service.js';
import type { JobService } from '../../../src/server/jobs/types.js';
import { loadOrCreateServerKey } from '../../../src/server/repos/serverKey.js';
import { createRepoStore } from '../../../src/server/repos/store.js';
import { openDatabase } from '../../../src/store/database.js';
import { temporaryStore } from '../../helpers/store.js';

const quietLog = { info: () => {}, warn: () => {}, error: () => {} };

async function setup(t: TestContext) {
  const store = await temporaryStore(t);
  const database = await openDatabase(join(store, 'strata.db'));
  const repos = createRepoStore(database, loadOrCreateServerKey(store));
  const config: ServerConfig = { storeRoot: store, host: '127.0.0.1', port: 0, publicUrl: 'http://strata.test', concurrency: 1, previewIdleMs: 60_000 };
  // No job here reaches the engine: they end before a checkout (unknown repository) or never run.
  const jobs = createJobService({ config, db: database, engine: {} as unknown as EngineDeps, repos, log: quietLog, tickMs: 50, leaseMs: 5000 });
  t.after(async () => {
    await jobs.stop();
    await database.close();
  });
  return { database, jobs, queue: createJobQueue(database) };
}

const types = (events: Array<{ event: JobEvent }>) => events.map(({ event }) => (event.type === 'job' || event.type === 'end' ? `${event.type}:${event.job.status}` : event.type));

/**
 * Whether the job's 'end' event was written. The service writes a job's final state before its 'end'
 * (and its status may read ERROR a moment before the 'end' is written): waiting for both sees it all.
 */
function hasEnded(jobs: JobService, jobId: string): boolean {
  let ended = false;
  jobs.subscribe(jobId, 0, (_seq, event) => {
    if (event.type === 'end') ended = true;
  })();
  return ended;
}

async function waitFor(condition: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await sleep(20);
  }
}

test('start(): a job a crashed server left RUNNING twice ends ERROR with the reason in its log', async (t) => {
  const { jobs, queue } = await setup(t);
  const job = await jobs.enqueue({ repo: 'gone', branch: 'main', commit: 'a'.repeat(40), title: 't', author: 'a', trigger: 'manual' });
  // Two claims whose leases expired: two servers died while running it.
  await queue.claim(Date.now() - 60_000, 1000, 1);
  await queue.recoverExpired(Date.now());
  await queue.claim(Date.now() - 60_000, 1000, 1);

  const seen: Array<{ seq: number; event: JobEvent }> = [];
  const unsubscribe = jobs.subscribe(job.id, 0, (seq, event) => seen.push({ seq, event }));
  t.after(unsubscribe);
  jobs.start();
  await waitFor(async () => hasEnded(jobs, job.id) && (await jobs.get(job.id))?.status === 'ERROR');
  const detail = await jobs.get(job.id);
  assert.equal(detail?.message, STOPPED_TWICE_MESSAGE);
  assert.notEqual(detail?.finishedAt, null);
  assert.deepEqual(types(seen), ['job:NEW', 'note', 'end:ERROR']);
  assert.deepEqual(seen.map((e) => e.seq), [1, 2, 3]);
  assert.match(await jobs.log(job.id, {}), /strata: the server stopped while this job ran \(twice\)/);
});

test('start(): a job left RUNNING once is re-queued with a note, then run again', async (t) => {
  const { jobs, queue } = await setup(t);
  const job = await jobs.enqueue({ repo: 'gone', branch: 'main', commit: 'b'.repeat(40), title: 't', author: 'a', trigger: 'manual' });
  await queue.claim(Date.now() - 60_000, 1000, 1);
  jobs.start();
  await waitFor(async () => hasEnded(jobs, job.id) && (await jobs.get(job.id))?.status === 'ERROR');
  const detail = await jobs.get(job.id);
  // It ran again: this time it fails on its own (the repository is not configured).
  assert.match(detail?.message ?? '', /repository gone is no longer configured/);
  const stored: Array<{ event: JobEvent }> = [];
  jobs.subscribe(job.id, 0, (_seq, event) => stored.push({ event }))();
  assert.deepEqual(types(stored), ['job:NEW', 'note', 'job:RUNNING', 'note', 'end:ERROR']);
  const [, requeued] = stored;
  assert.equal(requeued?.event.type === 'note' && requeued.event.message, 'the server stopped while this job ran: it was queued again');
  assert.equal((await queue.get(job.id))?.attempts, 2);
});

test('cancel of a queued job; subscribe resumes after a seq; unknown jobs are 404 errors', async (t) => {
  const { jobs } = await setup(t);
  const job = await jobs.enqueue({ repo: 'app', branch: 'main', commit: 'c'.repeat(40), title: 't', author: 'a', trigger: 'manual', options: { noCache: true } });
  assert.deepEqual(job.options, { noCache: true, noCacheDirs: false });
  const live: string[] = [];
  const unsubscribe = jobs.subscribe(job.id, 1, (seq, event) => live.push(`${seq}:${event.type}`));
  const cancelled = await jobs.cancel(job.id);
  unsubscribe();
  assert.equal(cancelled.status, 'CANCELLED');
  assert.deepEqual(live, ['2:end'], 'the stored event 1 was skipped, the live end came');
  await assert.rejects(jobs.cancel(job.id), { code: 'STRATA_CONFLICT' });
  await assert.rejects(jobs.cancel('job-nope'), { code: 'STRATA_NOT_FOUND' });
  await assert.rejects(jobs.approveButton(job.id, 'main-layerfile-L3', 'alice'), { code: 'STRATA_CONFLICT' });

  const retried = await jobs.retry(job.id, { noCacheDirs: true });
  assert.notEqual(retried.id, job.id);
  assert.deepEqual([retried.trigger, retried.commit, retried.status, retried.options], ['retry', job.commit, 'NEW', { noCache: false, noCacheDirs: true }]);
  assert.equal(retried.pullRequestUrl, undefined);
  const pullRequest = await jobs.enqueue({ repo: 'app', branch: 'feature', commit: 'd'.repeat(40), title: 't', author: 'a', trigger: 'pull_request', pullRequestUrl: 'https://github.com/team/app/pull/3' });
  assert.equal((await jobs.retry(pullRequest.id, {})).pullRequestUrl, 'https://github.com/team/app/pull/3', 'a retry builds the same pull request');
});
