// Workers (`strata worker`): the store of their names and tokens on SQLite and Postgres, and what their
// tokens open: the worker API and nothing else, until revoked; a user's token never opens it.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CREDENTIAL_ATTEMPTS } from '../../src/server/auth/rateLimit.js';
import { createWorkerStore, WORKER_TOKEN_PREFIX } from '../../src/server/workers/store.js';
import { runStrata } from '../helpers/cli.js';
import { temporaryStore } from '../helpers/store.js';
import { eachDatabase } from '../store/databases.js';
import { errorOf, startTestServer } from './harness.js';

eachDatabase((fresh) => {
  test('worker store: add shows the token once (only its hash is kept), revoke refuses it, list and heartbeats', async (t) => {
    const database = await (await fresh(t)).open();
    let clock = 1000;
    const workers = createWorkerStore(database, () => clock);
    const token = await workers.add('builder-1');
    assert.ok(token.startsWith(WORKER_TOKEN_PREFIX) && token.length > WORKER_TOKEN_PREFIX.length + 40);
    const stored = await database.sql.selectFrom('workers').select('token_hash').execute();
    assert.equal(stored.length, 1);
    assert.ok(!JSON.stringify(stored).includes(token.slice(WORKER_TOKEN_PREFIX.length)), 'the token itself is not stored');
    await assert.rejects(workers.add('builder-1'), { code: 'STRATA_CONFLICT' });
    await assert.rejects(workers.add('-bad name'), { code: 'STRATA_USAGE' });
    const other = await workers.add('builder-0');
    assert.notEqual(other, token);

    assert.deepEqual(await workers.workerForToken(token), { name: 'builder-1' });
    assert.equal(await workers.workerForToken(`${token}x`), null);
    assert.equal(await workers.workerForToken(token.replace(WORKER_TOKEN_PREFIX, 'strata_')), null, 'only worker tokens name workers');

    clock = 2000;
    await workers.seen('builder-1', { host: 'ci-7', running: ['job-1'] }, 1500);
    assert.deepEqual(await workers.list(), [
      { name: 'builder-0', createdAt: 1000, revokedAt: null, lastSeenAt: null, info: {} },
      { name: 'builder-1', createdAt: 1000, revokedAt: null, lastSeenAt: 1500, info: { host: 'ci-7', running: ['job-1'] } },
    ]);
    await workers.revoke('builder-1');
    assert.equal(await workers.workerForToken(token), null, 'a revoked token names no worker');
    await workers.revoke('builder-1'); // revoking again is fine
    assert.equal((await workers.list())[1]?.revokedAt, 2000);
    await assert.rejects(workers.revoke('nobody'), { code: 'STRATA_NOT_FOUND' });
    assert.deepEqual(await workers.workerForToken(other), { name: 'builder-0' }, 'other workers are untouched');
  });
});

test('worker tokens open the worker API only; user tokens never do; a revoked or wrong one is refused and counts as a guess', async (t) => {
  const server = await startTestServer(t, { stores: true });
  const token = await server.workers.add('w1');
  const asWorker = (path: string, init: { method?: string; json?: unknown } = {}) => server.api(path, { ...init, headers: { authorization: `Bearer ${token}` } });

  const beat = await asWorker('/api/worker/heartbeat', { method: 'POST', json: { info: { host: 'h1' } } });
  assert.equal(beat.status, 200, await beat.clone().text());
  assert.deepEqual(await beat.json(), { worker: 'w1' });
  const store = await asWorker('/api/worker/store/runLog/lastRun', { method: 'POST', json: { args: ['/nowhere'] } });
  assert.deepEqual(await store.json(), { result: null });

  // Not a user: the rest of the API stays closed to it.
  for (const path of ['/api/jobs', '/api/repos', '/api/me', '/api/workers']) {
    const denied = await asWorker(path);
    assert.ok(denied.status === 401 || (path === '/api/me' && (await denied.clone().json()).user === null), `${path}: ${denied.status}`);
  }
  // A user's token does not open the worker API.
  const asUser = await server.api('/api/worker/heartbeat', { method: 'POST', json: {} });
  assert.equal(asUser.status, 401);
  assert.match((await errorOf(asUser)).message, /worker token/);
  // Only the listed store methods are reachable.
  for (const path of ['/api/worker/store/runLog/constructor', '/api/worker/store/__proto__/toString', '/api/worker/store/cacheIndex/splitTimings']) {
    const nope = await asWorker(path, { method: 'POST', json: { args: [] } });
    assert.equal(nope.status, 404, path);
  }

  // People see the workers and when they were last seen.
  const listed = (await (await server.api('/api/workers')).json()) as { workers: Array<{ name: string; lastSeenAt: number | null; info: unknown }> };
  assert.deepEqual(listed.workers.map((w) => [w.name, typeof w.lastSeenAt, w.info]), [['w1', 'number', { host: 'h1' }]]);

  await server.workers.revoke('w1');
  const revoked = await asWorker('/api/worker/heartbeat', { method: 'POST', json: {} });
  assert.equal(revoked.status, 401);
  // Wrong worker tokens are guesses like wrong user tokens: past the limit, 429.
  const statuses: number[] = [];
  for (let i = 0; i < CREDENTIAL_ATTEMPTS + 1; i++) {
    statuses.push((await server.api('/api/worker/heartbeat', { method: 'POST', json: {}, headers: { authorization: `Bearer ${WORKER_TOKEN_PREFIX}guess${i}` } })).status);
  }
  assert.equal(statuses.at(-1), 429);
});

test('strata worker add | list | revoke on the store\'s database', async (t) => {
  const store = await temporaryStore(t);
  const added = await runStrata(['worker', 'add', 'build-box', '--store', store]);
  assert.equal(added.code, 0, added.stderr);
  assert.match(added.stdout.trim(), new RegExp(`^${WORKER_TOKEN_PREFIX}[A-Za-z0-9_-]{40,}$`));
  const again = await runStrata(['worker', 'add', 'build-box', '--store', store]);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /worker build-box already exists/);
  const listed = await runStrata(['worker', 'list', '--store', store, '--json']);
  assert.deepEqual((JSON.parse(listed.stdout) as { workers: Array<{ name: string; revokedAt: number | null }> }).workers.map((w) => [w.name, w.revokedAt]), [['build-box', null]]);
  const revoked = await runStrata(['worker', 'revoke', 'build-box', '--store', store]);
  assert.equal(revoked.code, 0, revoked.stderr);
  assert.match((await runStrata(['worker', 'list', '--store', store])).stdout, /build-box\trevoked/);
  const unknown = await runStrata(['worker', 'revoke', 'nobody', '--store', store]);
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /no worker nobody/);
});
