// The triggers' own bookkeeping against SQLite and a real Postgres: webhook delivery ids (a replay is
// refused, an old id forgotten) and the poller's known branch heads (poll_heads).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { JobSummary } from '../../../src/server/api/types.js';
import type { NewJob } from '../../../src/server/jobs/types.js';
import { advancePollHeads, startPoller } from '../../../src/server/triggers/poller.js';
import { DELIVERY_MEMORY_MS, firstDelivery } from '../../../src/server/triggers/webhooks.js';
import type { StoreDatabase } from '../../../src/store/database.js';
import { createGitRepo } from '../../helpers/engine.js';
import { eachDatabase } from '../../store/databases.js';

const quietLog = { info: () => {}, warn: () => {}, error: () => {} };
const NOW = 1_800_000_000_000;

async function storedHeads(db: StoreDatabase, repo: string): Promise<Record<string, string>> {
  const rows = await db.sql.selectFrom('poll_heads').select(['branch', 'commit_id']).where('repo', '=', repo).orderBy('branch').execute();
  return Object.fromEntries(rows.map((row) => [row.branch, row.commit_id]));
}

eachDatabase((fresh) => {
  test('a delivery id is first once; a repeat is not; an old one is forgotten', async (t) => {
    const db = await (await fresh(t)).open();
    assert.equal(await firstDelivery(db, 'd-1', 'app', NOW), true, 'the first delivery');
    assert.equal(await firstDelivery(db, 'd-1', 'app', NOW + 1000), false, 'the same id again');
    assert.equal(await firstDelivery(db, 'd-1', 'other', NOW + 2000), false, 'ids are global, whatever the repo');
    assert.equal(await firstDelivery(db, 'd-2', 'app', NOW + 3000), true, 'another id');

    // Still remembered at exactly the memory's end; forgotten just after it.
    assert.equal(await firstDelivery(db, 'd-1', 'app', NOW + DELIVERY_MEMORY_MS), false);
    assert.equal(await firstDelivery(db, 'd-1', 'app', NOW + DELIVERY_MEMORY_MS + 1), true, 'an old delivery is forgotten');
    const rows = await db.sql.selectFrom('webhook_deliveries').select(['delivery_id', 'received_at']).orderBy('delivery_id').execute();
    assert.deepEqual(rows, [
      { delivery_id: 'd-1', received_at: NOW + DELIVERY_MEMORY_MS + 1 },
      { delivery_id: 'd-2', received_at: NOW + 3000 },
    ]);
  });

  test('of concurrent deliveries of one id exactly one is first', async (t) => {
    const db = await (await fresh(t)).open();
    const results = await Promise.all(Array.from({ length: 8 }, () => firstDelivery(db, 'same', 'app', NOW)));
    assert.equal(results.filter(Boolean).length, 1);
  });

  test('poll heads: the first poll records only; moved and new branches change; a deleted branch is forgotten', async (t) => {
    const db = await (await fresh(t)).open();
    const a = 'a'.repeat(40);
    const b = 'b'.repeat(40);
    const c = 'c'.repeat(40);

    assert.deepEqual(await advancePollHeads(db, 'app', new Map([['main', a], ['dev', a]])), [], 'the first poll makes no jobs');
    assert.deepEqual(await storedHeads(db, 'app'), { '': '', dev: a, main: a });
    assert.deepEqual(await advancePollHeads(db, 'app', new Map([['main', a], ['dev', a]])), [], 'nothing changed');

    assert.deepEqual(await advancePollHeads(db, 'app', new Map([['main', b], ['dev', a]])), [['main', b]], 'a moved branch');
    assert.deepEqual(await advancePollHeads(db, 'app', new Map([['main', b], ['dev', a], ['feature', c]])), [['feature', c]], 'a new branch');
    assert.deepEqual(await storedHeads(db, 'app'), { '': '', dev: a, feature: c, main: b });

    assert.deepEqual(await advancePollHeads(db, 'app', new Map([['main', b], ['feature', c]])), [], 'a deleted branch makes no job');
    assert.deepEqual(await storedHeads(db, 'app'), { '': '', feature: c, main: b }, 'and is gone from the table');

    // Every branch deleted, then one pushed again: the repo was polled before, so that is a change.
    assert.deepEqual(await advancePollHeads(db, 'app', new Map()), []);
    assert.deepEqual(await storedHeads(db, 'app'), { '': '' });
    assert.deepEqual(await advancePollHeads(db, 'app', new Map([['main', b]])), [['main', b]]);

    // Repos are kept apart.
    assert.deepEqual(await advancePollHeads(db, 'other', new Map([['main', a]])), [], "another repo's first poll");
    assert.deepEqual(await storedHeads(db, 'app'), { '': '', main: b });
  });

  test('poll heads: stale rows a crash left behind are cleaned up; many branches are recorded in chunks', async (t) => {
    const db = await (await fresh(t)).open();
    const a = 'a'.repeat(40);
    await advancePollHeads(db, 'app', new Map([['main', a]]));
    // As if a crash came between the upsert and the delete of a poll that saw `gone` deleted.
    await db.sql.insertInto('poll_heads').values({ repo: 'app', branch: 'gone', commit_id: a }).execute();
    assert.deepEqual(await advancePollHeads(db, 'app', new Map([['main', a]])), []);
    assert.deepEqual(await storedHeads(db, 'app'), { '': '', main: a });

    const many = new Map(Array.from({ length: 1234 }, (_, i) => [`branch-${String(i).padStart(4, '0')}`, a] as const));
    assert.equal((await advancePollHeads(db, 'app', many)).length, 1234);
    assert.equal(Object.keys(await storedHeads(db, 'app')).length, 1235, 'the 1234 branches and the marker (main was deleted)');
    assert.deepEqual(await advancePollHeads(db, 'app', new Map([['main', a]])), [['main', a]]);
    assert.deepEqual(await storedHeads(db, 'app'), { '': '', main: a });
  });

  test('pollRepo on a real git repository enqueues the changed branches', async (t) => {
    const db = await (await fresh(t)).open();
    const repo = createGitRepo(t, { 'README.md': 'hello\n' });
    const enqueued: NewJob[] = [];
    let id = 0;
    const jobs = {
      enqueue: async (job: NewJob) => {
        enqueued.push(job);
        return { id: `job-${++id}`, ...job } as unknown as JobSummary;
      },
    };
    const poller = startPoller({ db, repos: { list: async () => [] }, jobs, log: quietLog });
    t.after(() => poller.stop());
    const app = { name: 'app', url: repo.dir };

    assert.deepEqual(await poller.pollRepo(app), []);
    const second = repo.commit('second');
    repo.git('branch', 'feature', second);
    const made = await poller.pollRepo(app);
    assert.deepEqual(made.map((j) => j.id), ['job-1', 'job-2']);
    assert.deepEqual(
      enqueued.map((j) => [j.branch, j.commit, j.trigger]).sort(),
      [['feature', second, 'poll'], ['main', second, 'poll']],
    );
    repo.git('branch', '-D', 'feature');
    assert.deepEqual(await poller.pollRepo(app), []);
    assert.deepEqual(Object.keys(await storedHeads(db, 'app')), ['', 'main']);
  });
});
