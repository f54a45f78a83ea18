// The durable queue's conformance suite, on SQLite and a real Postgres (test/store/databases.ts): claim
// order, leases, expiry, re-queue once then ERROR, the concurrency limit, cancel of a NEW job, listing
// and durations; on Postgres also claims racing from several connections.
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { MAX_ATTEMPTS, STOPPED_TWICE_MESSAGE } from '../../../src/server/jobs/queue.js';
import { createJobQueue } from '../../../src/server/jobs/sqlQueue.js';
import type { NewJob } from '../../../src/server/jobs/types.js';
import { eachDatabase, type DatabaseFactory } from '../../store/databases.js';


const job = (commit: string, extra: Partial<NewJob> = {}): NewJob => ({ repo: 'app', branch: 'main', commit, title: `commit ${commit}`, author: 'ann', trigger: 'push', ...extra });

eachDatabase((fresh: DatabaseFactory) => {
  const openQueue = async (t: TestContext) => {
    const db = await (await fresh(t)).open();
    return { db, queue: createJobQueue(db) };
  };

  test('claims racing from several connections take each job once, and never more than the limit', async (t) => {
    const database = await fresh(t);
    // Postgres: three pools, as three servers would have. SQLite: one connection (one process owns a
    // store), its claims interleaving as concurrent requests do.
    const shared = database.kind === 'sqlite' ? await database.open() : undefined;
    const queues = await Promise.all([1, 2, 3].map(async () => createJobQueue(shared ?? (await database.open()))));
    const [first] = queues as [ReturnType<typeof createJobQueue>];
    const ids = new Set<string>();
    for (let i = 0; i < 12; i++) ids.add((await first.insert(job(`c${i}`), i)).id);
    const claimed = (await Promise.all(queues.flatMap((q) => Array.from({ length: 8 }, (_, i) => q.claim(100 + i, 60_000, 9))))).filter((j) => j !== undefined);
    assert.equal(claimed.length, 9, 'as many as the limit allows');
    assert.equal(new Set(claimed.map((j) => j.id)).size, 9, 'no job taken twice');
    assert.ok(claimed.every((j) => ids.has(j.id) && j.attempts === 1));
    assert.equal((await first.list({ status: 'RUNNING' })).length, 9);
  });

  test('a search text is matched literally: % and _ are not wildcards', async (t) => {
    const { queue } = await openQueue(t);
    const pct = await queue.insert(job('a1', { title: '100% done' }), 1);
    await queue.insert(job('b2', { title: '100 percent' }), 2);
    const under = await queue.insert(job('c3', { branch: 'fix_login' }), 3);
    await queue.insert(job('d4', { branch: 'fixXlogin' }), 4);
    assert.deepEqual((await queue.list({ q: '0%' })).map((j) => j.id), [pct.id]);
    assert.deepEqual((await queue.list({ q: 'x_l' })).map((j) => j.id), [under.id]);
  });

  test('claims the oldest NEW job with a lease, one UPDATE at a time, up to the concurrency limit', async (t) => {
    const { queue } = await openQueue(t);
    const first = await queue.insert(job('a1'), 1000);
    const second = await queue.insert(job('b2'), 1000); // same millisecond: insertion order decides
    const third = await queue.insert(job('c3'), 2000);
    assert.equal(first.status, 'NEW');

    const claimed = await queue.claim(5000, 30_000, 2);
    assert.equal(claimed?.id, first.id);
    assert.equal(claimed?.status, 'RUNNING');
    assert.equal(claimed?.attempts, 1);
    assert.equal(claimed?.leaseUntil, 35_000);
    assert.equal(claimed?.startedAt, 5000);

    assert.equal((await queue.claim(5001, 30_000, 2))?.id, second.id);
    assert.equal(await queue.claim(5002, 30_000, 2), undefined, 'two RUNNING jobs fill a limit of 2');
    assert.equal((await queue.get(third.id))?.status, 'NEW');

    const finished = await queue.finish(first.id, 'SUCCESS', 9000, { stepsRan: 3, stepsCached: 1 });
    assert.equal(finished.status, 'SUCCESS');
    assert.equal(finished.durationMs, 4000);
    assert.equal(finished.leaseUntil, null);
    assert.equal((await queue.claim(9001, 30_000, 2))?.id, third.id, 'a finished job frees its slot');
    assert.equal(await queue.claim(9002, 30_000, 5), undefined, 'nothing NEW is left');
  });

  test('a lease is renewed while the job runs and only while it runs', async (t) => {
    const { queue } = await openQueue(t);
    const { id } = await queue.insert(job('a1'), 0);
    await queue.claim(100, 1000, 1);
    assert.equal(await queue.renewLease(id, 5000), true);
    assert.deepEqual(await queue.recoverExpired(4000), [], 'the renewed lease has not expired at 4000');
    assert.equal((await queue.get(id))?.status, 'RUNNING');
    await queue.finish(id, 'FAILURE', 6000);
    assert.equal(await queue.renewLease(id, 9000), false);
    assert.deepEqual(await queue.recoverExpired(100_000), [], 'an ended job is never recovered');
  });

  test('an expired RUNNING job is re-queued once, then set to ERROR', async (t) => {
    const { queue } = await openQueue(t);
    const { id } = await queue.insert(job('a1'), 0);
    await queue.claim(1000, 100, 1);
    assert.deepEqual(await queue.recoverExpired(1050), [], 'the lease still holds');
    assert.deepEqual(await queue.recoverExpired(1101), [{ id, outcome: 'requeued' }]);
    const requeued = await queue.get(id);
    assert.equal(requeued?.status, 'NEW');
    assert.equal(requeued?.attempts, 1);
    assert.equal(requeued?.leaseUntil, null);

    const again = await queue.claim(2000, 100, 1);
    assert.equal(again?.attempts, MAX_ATTEMPTS);
    assert.deepEqual(await queue.recoverExpired(3000), [{ id, outcome: 'errored' }]);
    const errored = await queue.get(id);
    assert.equal(errored?.status, 'ERROR');
    assert.equal(errored?.message, STOPPED_TWICE_MESSAGE);
    assert.equal(errored?.finishedAt, 3000);
    assert.equal(await queue.claim(4000, 100, 1), undefined, 'an ERROR job is not claimed again');
  });

  test('a graceful requeue (server stopping) does not count as an attempt', async (t) => {
    const { queue } = await openQueue(t);
    const { id } = await queue.insert(job('a1'), 0);
    await queue.claim(10, 100, 1);
    await queue.requeue(id);
    assert.equal((await queue.get(id))?.status, 'NEW');
    assert.equal((await queue.get(id))?.attempts, 0);
    await queue.claim(20, 100, 1);
    assert.deepEqual(await queue.recoverExpired(500), [{ id, outcome: 'requeued' }], 'the first crash after a graceful stop still gets its re-queue');
  });

  test('only a NEW job is cancelled without a worker', async (t) => {
    const { queue } = await openQueue(t);
    const running = await queue.insert(job('a1'), 0);
    assert.equal((await queue.claim(5, 1000, 5))?.id, running.id);
    assert.equal(await queue.cancelIfNew(running.id, 6), false);
    assert.equal((await queue.get(running.id))?.status, 'RUNNING');
    const queued = await queue.insert(job('b2'), 7);
    const next = await queue.insert(job('c3'), 8);
    assert.equal(await queue.cancelIfNew(queued.id, 9), true);
    assert.equal((await queue.get(queued.id))?.status, 'CANCELLED');
    assert.equal((await queue.claim(10, 1000, 5))?.id, next.id, 'the cancelled job is skipped');
  });

  test('a pull request job keeps its pull request URL through insert, claim, get and list; other jobs have none', async (t) => {
    const { queue } = await openQueue(t);
    const url = 'https://github.com/team/app/pull/12';
    const pr = await queue.insert(job('a1', { trigger: 'pull_request', pullRequestUrl: url }), 1);
    const push = await queue.insert(job('b2'), 2);
    assert.equal(pr.pullRequestUrl, url);
    assert.equal((await queue.claim(10, 1000, 5))?.pullRequestUrl, url, 'the worker gets it with the claimed job');
    assert.equal((await queue.get(pr.id))?.pullRequestUrl, url);
    assert.deepEqual((await queue.list({})).map((j) => [j.id, j.pullRequestUrl]), [[push.id, undefined], [pr.id, url]]);
    assert.ok(!('pullRequestUrl' in push), 'absent, not null, for a push');
  });

  test('lists newest first with filters and paging; durations oldest first', async (t) => {
    const { queue } = await openQueue(t);
    const a = await queue.insert(job('aaaa1111', { title: 'Fix login', branch: 'main' }), 1);
    const b = await queue.insert(job('bbbb2222', { title: 'Add search', branch: 'feature/search', author: 'bob' }), 2);
    const c = await queue.insert(job('cccc3333', { repo: 'other', title: 'Docs' }), 3);
    assert.deepEqual((await queue.list({})).map((j) => j.id), [c.id, b.id, a.id]);
    assert.deepEqual((await queue.list({ repo: 'app' })).map((j) => j.id), [b.id, a.id]);
    assert.deepEqual((await queue.list({ q: 'search' })).map((j) => j.id), [b.id], 'title/branch text');
    assert.deepEqual((await queue.list({ q: 'BOB' })).map((j) => j.id), [b.id], 'author, any case');
    assert.deepEqual((await queue.list({ q: 'aaaa' })).map((j) => j.id), [a.id], 'commit prefix');
    assert.deepEqual((await queue.list({ q: 'fix' })).map((j) => j.id), [a.id]);
    assert.deepEqual((await queue.list({ q: '2222' })).map((j) => j.id), [], 'hex text matches commit prefixes only, not commits containing it');
    assert.deepEqual((await queue.list({ before: c.id, limit: 1 })).map((j) => j.id), [b.id]);

    await queue.claim(10, 1000, 5);
    await queue.finish(a.id, 'SUCCESS', 110, { stepsRan: 2, stepsCached: 0 });
    await queue.claim(200, 1000, 5);
    await queue.finish(b.id, 'FAILURE', 250, { stepsRan: 1, stepsCached: 4 });
    assert.deepEqual((await queue.list({ status: 'FAILURE' })).map((j) => j.id), [b.id]);
    assert.deepEqual(await queue.durations({ repo: 'app' }), [
      { jobId: a.id, commit: 'aaaa1111', title: 'Fix login', durationMs: 100, stepsRan: 2, stepsCached: 0, status: 'SUCCESS' },
      { jobId: b.id, commit: 'bbbb2222', title: 'Add search', durationMs: 50, stepsRan: 1, stepsCached: 4, status: 'FAILURE' },
    ]);
    assert.deepEqual((await queue.durations({ repo: 'app', limit: 1 })).map((p) => p.jobId), [b.id], 'the limit keeps the newest');
  });
});
