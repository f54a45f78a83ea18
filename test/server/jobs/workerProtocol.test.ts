// The server's side of jobs run by `strata worker`s, without machines: a worker leases a job (its repo
// URL and secrets come with it), reports engine events the server records, renews its lease, learns of a
// cancel and of approved BUTTONs, and ends the job; a job handed back or left by a server restart runs
// again; reports about a job that is not the worker's are refused. Real SQLite, real event files.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { test, type TestContext } from 'node:test';
import type { EngineDeps } from '../../../src/engine/ports.js';
import type { ServerConfig } from '../../../src/server/context.js';
import type { WorkerJobs } from '../../../src/server/jobs/remote.js';
import { createJobService } from '../../../src/server/jobs/service.js';
import { loadOrCreateServerKey } from '../../../src/server/repos/serverKey.js';
import { createRepoStore } from '../../../src/server/repos/store.js';
import type { WorkerEvent } from '../../../src/server/workers/protocol.js';
import { openDatabase } from '../../../src/store/database.js';
import { temporaryStore } from '../../helpers/store.js';

const quietLog = { info: () => {}, warn: () => {}, error: () => {} };

async function setup(t: TestContext, leaseMs = 5000) {
  const store = await temporaryStore(t);
  const database = await openDatabase(join(store, 'strata.db'));
  const repos = createRepoStore(database, loadOrCreateServerKey(store));
  await repos.add({ name: 'app', url: 'https://git.example.com/app.git' });
  await repos.setSecret('app', 'API_KEY', 's3cret');
  // Concurrency 0: the server runs nothing itself; only the "worker" below takes jobs.
  const config: ServerConfig = { storeRoot: store, host: '127.0.0.1', port: 0, publicUrl: 'http://strata.test', concurrency: 0, previewIdleMs: 60_000 };
  const jobs = createJobService({ config, db: database, engine: {} as unknown as EngineDeps, repos, log: quietLog, tickMs: 50, leaseMs });
  t.after(async () => {
    await jobs.stop();
    await database.close();
  });
  jobs.start();
  const enqueue = () => jobs.enqueue({ repo: 'app', branch: 'main', commit: 'c0ffee'.padEnd(40, '0'), title: '', author: '', trigger: 'manual' });
  return { jobs, remote: jobs.workerJobs as WorkerJobs, enqueue };
}

const runStart: WorkerEvent = {
  kind: 'runStart',
  event: { runId: 'run-1', repo: 'app', tree: 't', commit: 'c', runners: [{ runner: 'main-layerfile', layerfile: 'Layerfile', level: 1, steps: [{ index: 0, line: 2, text: 'RUN make' }] }] },
};

test('a worker leases a job with its repository and secrets; its events make the job\'s log and runner rows; its end ends the job', async (t) => {
  const { jobs, remote, enqueue } = await setup(t);
  const queued = await enqueue();
  await sleep(200);
  assert.equal((await jobs.get(queued.id))?.status, 'NEW', 'the server itself runs nothing (--concurrency 0)');
  const lease = await remote.lease('w1');
  assert.ok(lease);
  assert.equal(lease.job.id, queued.id);
  assert.deepEqual([lease.repo, lease.secrets], [{ name: 'app', url: 'https://git.example.com/app.git' }, { API_KEY: 's3cret' }]);
  assert.equal(await remote.lease('w2'), null, 'one job, one lease');
  assert.equal((await jobs.get(queued.id))?.worker, 'w1');

  await remote.report('w1', queued.id, [
    { kind: 'commit', title: 'Fix the build', author: 'ann' },
    runStart,
    { kind: 'runnerStart', event: { runner: 'main-layerfile', plan: 'running all 1 step(s)' } },
    { kind: 'stepStatus', event: { runner: 'main-layerfile', step: 0, status: 'running' } },
    { kind: 'stepOutput', event: { runner: 'main-layerfile', step: 0, stream: 'stdout', data: 'compiled\n', timeMs: 5 } },
    { kind: 'stepStatus', event: { runner: 'main-layerfile', step: 0, status: 'done', durationMs: 7, snapshot: 'snap-0' } },
    { kind: 'runnerEnd', event: { runner: 'main-layerfile', status: 'success' } },
  ]);
  await assert.rejects(remote.report('w2', queued.id, [runStart]), { code: 'STRATA_CONFLICT' }, 'another worker cannot report on it');
  assert.deepEqual(await remote.renew('w1', queued.id), { running: true, approved: [] });
  await remote.end('w1', queued.id, { status: 'success', message: null, stepsRan: 1, stepsCached: 0 });

  const job = await jobs.get(queued.id);
  assert.deepEqual([job?.status, job?.title, job?.author, job?.stepsRan, job?.worker], ['SUCCESS', 'Fix the build', 'ann', 1, 'w1']);
  assert.deepEqual(job?.runners.map((r) => [r.runner, r.status, r.steps.map((s) => [s.status, s.snapshot])]), [['main-layerfile', 'SUCCESS', [['done', true]]]]);
  assert.match(await jobs.log(queued.id, {}), /running on worker w1\n[\s\S]*compiled\n/);
  assert.deepEqual(await remote.renew('w1', queued.id), { running: false, approved: [] }, 'an ended job is not renewed');
});

test('a failure on a worker: the job\'s message comes from its runners; no debug terminal here for the worker\'s snapshot', async (t) => {
  const { jobs, remote, enqueue } = await setup(t);
  const queued = await enqueue();
  await remote.lease('w1');
  await remote.report('w1', queued.id, [
    runStart,
    { kind: 'runnerStart', event: { runner: 'main-layerfile', plan: 'running all 1 step(s)' } },
    { kind: 'stepStatus', event: { runner: 'main-layerfile', step: 0, status: 'failed', durationMs: 3, snapshot: 'snap-failed-0' } },
    { kind: 'runnerEnd', event: { runner: 'main-layerfile', status: 'failure', message: 'step 1 (line 2) exited with 2' } },
  ]);
  await remote.end('w1', queued.id, { status: 'failure', message: null, stepsRan: 1, stepsCached: 0 });
  const job = await jobs.get(queued.id);
  assert.deepEqual([job?.status, job?.message], ['FAILURE', 'main-layerfile: step 1 (line 2) exited with 2']);
  assert.deepEqual(job?.runners.map((r) => [r.status, r.debuggable, r.steps[0]?.snapshot]), [['FAILURE', false, true]]);
});

test('a cancel ends the job at once; the worker learns it at its next renewal and its reports are refused', async (t) => {
  const { jobs, remote, enqueue } = await setup(t);
  const queued = await enqueue();
  await remote.lease('w1');
  await remote.report('w1', queued.id, [runStart]);
  await jobs.cancel(queued.id);
  await sleep(100);
  assert.equal((await jobs.get(queued.id))?.status, 'CANCELLED');
  assert.deepEqual(await remote.renew('w1', queued.id), { running: false, approved: [] });
  await assert.rejects(remote.report('w1', queued.id, [runStart]), { code: 'STRATA_CONFLICT' });
  await remote.end('w1', queued.id, { status: 'cancelled', message: null });
  assert.equal((await jobs.get(queued.id))?.status, 'CANCELLED', 'the late end changes nothing');
});

test('a BUTTON waits on the worker until a person approves it on the server; the next renewal carries the approval', async (t) => {
  const { jobs, remote, enqueue } = await setup(t);
  const queued = await enqueue();
  await remote.lease('w1');
  await remote.report('w1', queued.id, [runStart, { kind: 'button', runner: 'main-layerfile', id: 'main-layerfile-L3', line: 3, message: 'Deploy?' }]);
  assert.deepEqual((await jobs.get(queued.id))?.runners[0]?.buttons, [{ id: 'main-layerfile-L3', line: 3, message: 'Deploy?', state: 'waiting' }]);
  await assert.rejects(jobs.approveButton(queued.id, 'main-layerfile-L9', 'ann'), { code: 'STRATA_CONFLICT' });
  await jobs.approveButton(queued.id, 'main-layerfile-L3', 'ann');
  assert.deepEqual(await remote.renew('w1', queued.id), { running: true, approved: ['main-layerfile-L3'] });
  assert.deepEqual(await remote.renew('w1', queued.id), { running: true, approved: [] }, 'given once');
  await remote.end('w1', queued.id, { status: 'success', message: null });
  assert.match(await jobs.log(queued.id, {}), /BUTTON "Deploy\?" \(main-layerfile, line 3\) approved by ann/);
});

test('a job handed back (the worker stops) or whose lease ran out runs again, on any worker; a worker\'s end of a job the server no longer follows re-queues it', async (t) => {
  const { jobs, remote, enqueue } = await setup(t, 300);
  const queued = await enqueue();
  await remote.lease('w1');
  await remote.end('w1', queued.id, { status: 'abandoned', message: null });
  assert.equal((await jobs.get(queued.id))?.status, 'NEW', 'handed back');
  const again = await remote.lease('w2');
  assert.equal(again?.job.id, queued.id);
  // w2 stops renewing: the lease runs out and the server's recovery queues it again.
  for (let i = 0; i < 50 && (await jobs.get(queued.id))?.status !== 'NEW'; i++) await sleep(100);
  assert.equal((await jobs.get(queued.id))?.status, 'NEW');
  assert.match(await jobs.log(queued.id, {}), /worker w2 stopped answering while this job ran: it was queued again/);
  await assert.rejects(remote.report('w2', queued.id, [runStart]), { code: 'STRATA_CONFLICT' }, 'the lost lease cannot be reported on');

  // A server restart forgets which jobs its workers run: the worker's end puts the job back in the queue.
  const third = await remote.lease('w3');
  assert.equal(third?.job.id, queued.id);
  await jobs.stop();
  await remote.end('w3', queued.id, { status: 'success', message: null });
  assert.equal((await jobs.get(queued.id))?.status, 'NEW', 'not trusted blindly: it runs again');
});
