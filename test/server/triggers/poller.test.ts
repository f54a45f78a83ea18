// Polling a real git repository (a local path as the repo URL): the first poll records the heads, a
// real `git commit` or a new branch makes a job, nothing changed makes none.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { test, type TestContext } from 'node:test';
import type { EngineDeps } from '../../../src/engine/ports.js';
import type { ServerConfig } from '../../../src/server/context.js';
import { createJobService } from '../../../src/server/jobs/service.js';
import { loadOrCreateServerKey } from '../../../src/server/repos/serverKey.js';
import { createRepoStore } from '../../../src/server/repos/store.js';
import { startPoller } from '../../../src/server/triggers/poller.js';
import { openDatabase } from '../../../src/store/database.js';
import { createGitRepo } from '../../helpers/engine.js';
import { temporaryStore } from '../../helpers/store.js';

const quietLog = { info: () => {}, warn: () => {}, error: () => {} };

async function setup(t: TestContext, pollSeconds: number | null) {
  const store = await temporaryStore(t);
  const db = await openDatabase(join(store, 'strata.db'));
  t.after(() => db.close());
  const repo = createGitRepo(t, { 'README.md': 'hello\n' });
  const repos = createRepoStore(db, loadOrCreateServerKey(store));
  await repos.add({ name: 'app', url: repo.dir, pollSeconds });
  const config: ServerConfig = { storeRoot: store, host: '127.0.0.1', port: 0, publicUrl: 'http://strata.test', concurrency: 1, previewIdleMs: 60_000 };
  // Not started: the jobs stay NEW, so no engine is needed.
  const jobs = createJobService({ config, db, engine: {} as unknown as EngineDeps, repos, log: quietLog });
  return { db, repo, repos, jobs };
}

test('the first poll records; a commit and a new branch make jobs; no change makes none', async (t) => {
  const { db, repo, repos, jobs } = await setup(t, null);
  const poller = startPoller({ db, repos, jobs, log: quietLog });
  t.after(() => poller.stop());
  const app = { name: 'app', url: repo.dir };

  assert.deepEqual(await poller.pollRepo(app), [], 'the first poll only records');
  assert.deepEqual(await poller.pollRepo(app), []);

  const second = repo.commit('second', { 'src.txt': 'code\n' });
  const made = await poller.pollRepo(app);
  assert.deepEqual(made.map((j) => [j.branch, j.commit, j.trigger, j.status]), [['main', second, 'poll', 'NEW']]);

  repo.git('branch', 'feature', second);
  const branched = await poller.pollRepo(app);
  assert.deepEqual(branched.map((j) => [j.branch, j.commit]), [['feature', second]]);
  assert.deepEqual(await poller.pollRepo(app), []);
  assert.equal((await jobs.list({ repo: 'app' })).length, 2);

  repo.git('branch', '-D', 'feature');
  assert.deepEqual(await poller.pollRepo(app), [], 'a deleted branch makes no job');
  const heads = await db.sql.selectFrom('poll_heads').select('branch').where('repo', '=', 'app').orderBy('branch').execute();
  assert.deepEqual(heads.map((h) => h.branch), ['', 'main'], 'and is forgotten (the marker row stays)');
});

test('the poller polls a repo with pollSeconds on its own and sees a real git commit', async (t) => {
  const { db, repo, repos, jobs } = await setup(t, 1);
  const poller = startPoller({ db, repos, jobs, log: quietLog }, { tickMs: 100 });
  t.after(() => poller.stop());
  // The first poll (at start) records the heads.
  await waitFor(async () => (await db.sql.selectFrom('poll_heads').select('commit_id').where('repo', '=', 'app').where('branch', '=', 'main').executeTakeFirst()) !== undefined);
  assert.equal((await jobs.list({})).length, 0);

  const next = repo.commit('next', { 'a.txt': 'a\n' });
  await waitFor(async () => (await jobs.list({})).length > 0);
  const [job] = await jobs.list({});
  assert.equal(job?.commit, next);
  assert.equal(job?.trigger, 'poll');
});

async function waitFor(condition: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await sleep(50);
  }
}
