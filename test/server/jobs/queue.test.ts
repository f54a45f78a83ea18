// The durable queue on a real SQLite database: claim order, leases, expiry, re-queue once then ERROR,
// the concurrency limit, cancel of a NEW job, listing and durations.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { createJobQueue, MAX_ATTEMPTS, STOPPED_TWICE_MESSAGE } from '../../../src/server/jobs/queue.js';
import type { NewJob } from '../../../src/server/jobs/types.js';
import { openDatabase } from '../../../src/store/database.js';
import { temporaryStore } from '../../helpers/store.js';

async function openQueue(t: TestContext) {
  const store = await temporaryStore(t);
  const database = await openDatabase(join(store, 'strata.db'));
  const db = database.raw;
  t.after(() => database.close());
  return { db, queue: createJobQueue(db) };
}

const job = (commit: string, extra: Partial<NewJob> = {}): NewJob => ({ repo: 'app', branch: 'main', commit, title: `commit ${commit}`, author: 'ann', trigger: 'push', ...extra });

test('claims the oldest NEW job with a lease, one UPDATE at a time, up to the concurrency limit', async (t) => {
  const { queue } = await openQueue(t);
  const first = queue.insert(job('a1'), 1000);
  const second = queue.insert(job('b2'), 1000); // same millisecond: insertion order decides
  const third = queue.insert(job('c3'), 2000);
  assert.equal(first.status, 'NEW');

  const claimed = queue.claim(5000, 30_000, 2);
  assert.equal(claimed?.id, first.id);
  assert.equal(claimed?.status, 'RUNNING');
  assert.equal(claimed?.attempts, 1);
  assert.equal(claimed?.leaseUntil, 35_000);
  assert.equal(claimed?.startedAt, 5000);

  assert.equal(queue.claim(5001, 30_000, 2)?.id, second.id);
  assert.equal(queue.claim(5002, 30_000, 2), undefined, 'two RUNNING jobs fill a limit of 2');
  assert.equal(queue.get(third.id)?.status, 'NEW');

  const finished = queue.finish(first.id, 'SUCCESS', 9000, { stepsRan: 3, stepsCached: 1 });
  assert.equal(finished.status, 'SUCCESS');
  assert.equal(finished.durationMs, 4000);
  assert.equal(finished.leaseUntil, null);
  assert.equal(queue.claim(9001, 30_000, 2)?.id, third.id, 'a finished job frees its slot');
  assert.equal(queue.claim(9002, 30_000, 5), undefined, 'nothing NEW is left');
});

test('a lease is renewed while the job runs and only while it runs', async (t) => {
  const { queue } = await openQueue(t);
  const { id } = queue.insert(job('a1'), 0);
  queue.claim(100, 1000, 1);
  assert.equal(queue.renewLease(id, 5000), true);
  assert.deepEqual(queue.recoverExpired(4000), [], 'the renewed lease has not expired at 4000');
  assert.equal(queue.get(id)?.status, 'RUNNING');
  queue.finish(id, 'FAILURE', 6000);
  assert.equal(queue.renewLease(id, 9000), false);
  assert.deepEqual(queue.recoverExpired(100_000), [], 'an ended job is never recovered');
});

test('an expired RUNNING job is re-queued once, then set to ERROR', async (t) => {
  const { queue } = await openQueue(t);
  const { id } = queue.insert(job('a1'), 0);
  queue.claim(1000, 100, 1);
  assert.deepEqual(queue.recoverExpired(1050), [], 'the lease still holds');
  assert.deepEqual(queue.recoverExpired(1101), [{ id, outcome: 'requeued' }]);
  const requeued = queue.get(id);
  assert.equal(requeued?.status, 'NEW');
  assert.equal(requeued?.attempts, 1);
  assert.equal(requeued?.leaseUntil, null);

  const again = queue.claim(2000, 100, 1);
  assert.equal(again?.attempts, MAX_ATTEMPTS);
  assert.deepEqual(queue.recoverExpired(3000), [{ id, outcome: 'errored' }]);
  const errored = queue.get(id);
  assert.equal(errored?.status, 'ERROR');
  assert.equal(errored?.message, STOPPED_TWICE_MESSAGE);
  assert.equal(errored?.finishedAt, 3000);
  assert.equal(queue.claim(4000, 100, 1), undefined, 'an ERROR job is not claimed again');
});

test('a graceful requeue (server stopping) does not count as an attempt', async (t) => {
  const { queue } = await openQueue(t);
  const { id } = queue.insert(job('a1'), 0);
  queue.claim(10, 100, 1);
  queue.requeue(id);
  assert.equal(queue.get(id)?.status, 'NEW');
  assert.equal(queue.get(id)?.attempts, 0);
  queue.claim(20, 100, 1);
  assert.deepEqual(queue.recoverExpired(500), [{ id, outcome: 'requeued' }], 'the first crash after a graceful stop still gets its re-queue');
});

test('only a NEW job is cancelled without a worker', async (t) => {
  const { queue } = await openQueue(t);
  const running = queue.insert(job('a1'), 0);
  assert.equal(queue.claim(5, 1000, 5)?.id, running.id);
  assert.equal(queue.cancelIfNew(running.id, 6), false);
  assert.equal(queue.get(running.id)?.status, 'RUNNING');
  const queued = queue.insert(job('b2'), 7);
  const next = queue.insert(job('c3'), 8);
  assert.equal(queue.cancelIfNew(queued.id, 9), true);
  assert.equal(queue.get(queued.id)?.status, 'CANCELLED');
  assert.equal(queue.claim(10, 1000, 5)?.id, next.id, 'the cancelled job is skipped');
});

test('a pull request job keeps its pull request URL through insert, claim, get and list; other jobs have none', async (t) => {
  const { queue } = await openQueue(t);
  const url = 'https://github.com/team/app/pull/12';
  const pr = queue.insert(job('a1', { trigger: 'pull_request', pullRequestUrl: url }), 1);
  const push = queue.insert(job('b2'), 2);
  assert.equal(pr.pullRequestUrl, url);
  assert.equal(queue.claim(10, 1000, 5)?.pullRequestUrl, url, 'the worker gets it with the claimed job');
  assert.equal(queue.get(pr.id)?.pullRequestUrl, url);
  assert.deepEqual(queue.list({}).map((j) => [j.id, j.pullRequestUrl]), [[push.id, undefined], [pr.id, url]]);
  assert.ok(!('pullRequestUrl' in push), 'absent, not null, for a push');
});

test('lists newest first with filters and paging; durations oldest first', async (t) => {
  const { queue } = await openQueue(t);
  const a = queue.insert(job('aaaa1111', { title: 'Fix login', branch: 'main' }), 1);
  const b = queue.insert(job('bbbb2222', { title: 'Add search', branch: 'feature/search', author: 'bob' }), 2);
  const c = queue.insert(job('cccc3333', { repo: 'other', title: 'Docs' }), 3);
  assert.deepEqual(queue.list({}).map((j) => j.id), [c.id, b.id, a.id]);
  assert.deepEqual(queue.list({ repo: 'app' }).map((j) => j.id), [b.id, a.id]);
  assert.deepEqual(queue.list({ q: 'search' }).map((j) => j.id), [b.id], 'title/branch text');
  assert.deepEqual(queue.list({ q: 'BOB' }).map((j) => j.id), [b.id], 'author, any case');
  assert.deepEqual(queue.list({ q: 'aaaa' }).map((j) => j.id), [a.id], 'commit prefix');
  assert.deepEqual(queue.list({ q: 'fix' }).map((j) => j.id), [a.id]);
  assert.deepEqual(queue.list({ q: '2222' }).map((j) => j.id), [], 'hex text matches commit prefixes only, not commits containing it');
  assert.deepEqual(queue.list({ before: c.id, limit: 1 }).map((j) => j.id), [b.id]);

  queue.claim(10, 1000, 5);
  queue.finish(a.id, 'SUCCESS', 110, { stepsRan: 2, stepsCached: 0 });
  queue.claim(200, 1000, 5);
  queue.finish(b.id, 'FAILURE', 250, { stepsRan: 1, stepsCached: 4 });
  assert.deepEqual(queue.list({ status: 'FAILURE' }).map((j) => j.id), [b.id]);
  assert.deepEqual(queue.durations({ repo: 'app' }), [
    { jobId: a.id, commit: 'aaaa1111', title: 'Fix login', durationMs: 100, stepsRan: 2, stepsCached: 0, status: 'SUCCESS' },
    { jobId: b.id, commit: 'bbbb2222', title: 'Add search', durationMs: 50, stepsRan: 1, stepsCached: 4, status: 'FAILURE' },
  ]);
  assert.deepEqual(queue.durations({ repo: 'app', limit: 1 }).map((p) => p.jobId), [b.id], 'the limit keeps the newest');
});
