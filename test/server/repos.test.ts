import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { test, type TestContext } from 'node:test';
import { repoAddCommand, repoListCommand } from '../../src/cli/commands/repo.js';
import { userAddCommand, userTokenCommand } from '../../src/cli/commands/user.js';
import { loadOrCreateServerKey } from '../../src/server/repos/serverKey.js';
import { createUserStore } from '../../src/server/auth/users.js';
import { createRepoStore } from '../../src/server/repos/store.js';
import { openPostgres } from '../../src/store/database.js';
import { startPgServer } from '../helpers/pgServer.js';
import { errorOf, startTestServer } from './harness.js';

/** A local git repository whose HEAD is on branch `trunk`. */
function localRepo(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'strata-server-repo-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const git = (...args: string[]) => execFileSync('git', ['-C', dir, '-c', 'user.name=t', '-c', 'user.email=t@example.com', ...args], { encoding: 'utf8' });
  git('init', '-q', '-b', 'trunk');
  git('commit', '-q', '--allow-empty', '-m', 'first');
  return dir;
}

/** Every byte SQLite has written for the database (main file and write-ahead log). */
function databaseBytes(store: string): string {
  return ['strata.db', 'strata.db-wal'].map((f) => join(store, f)).filter(existsSync).map((f) => readFileSync(f).toString('latin1')).join('');
}

test('repos: add, list, get; duplicates are 409, unknown ones 404, bad input 400 naming the field', async (t) => {
  const server = await startTestServer(t);
  const dir = localRepo(t);

  const badName = await server.api('/api/repos', { method: 'POST', json: { name: 'Web App', url: dir } });
  assert.equal(badName.status, 400);
  assert.match((await errorOf(badName)).message, /body\.name/);
  const badPoll = await server.api('/api/repos', { method: 'POST', json: { name: 'web', url: dir, pollSeconds: 'often' } });
  assert.equal(badPoll.status, 400);
  assert.match((await errorOf(badPoll)).message, /body\.pollSeconds/);

  const added = await server.api('/api/repos', { method: 'POST', json: { name: 'web', url: dir, pollSeconds: 60 } });
  assert.equal(added.status, 200);
  const { repo, webhookSecret } = (await added.json()) as { repo: Record<string, unknown>; webhookSecret: string };
  assert.equal(repo.name, 'web');
  assert.equal(repo.url, dir);
  assert.equal(repo.defaultBranch, 'trunk', 'the default branch of a local repo is its HEAD branch');
  assert.equal(repo.pollSeconds, 60);
  assert.equal(repo.publicPreviews, false);
  assert.ok(webhookSecret.length >= 32);
  assert.equal(await server.repos.webhookSecret('web'), webhookSecret);
  assert.ok(!databaseBytes(server.store).includes(webhookSecret), 'the webhook secret is stored encrypted');

  const duplicate = await server.api('/api/repos', { method: 'POST', json: { name: 'web', url: dir } });
  assert.equal(duplicate.status, 409);
  assert.equal((await errorOf(duplicate)).code, 'STRATA_CONFLICT');

  const list = (await (await server.api('/api/repos')).json()) as { repos: Array<{ name: string }> };
  assert.deepEqual(list.repos.map((r) => r.name), ['web']);
  const got = (await (await server.api('/api/repos/web')).json()) as { repo: unknown };
  assert.deepEqual(got.repo, repo);
  const unknown = await server.api('/api/repos/nope');
  assert.equal(unknown.status, 404);
  assert.equal((await errorOf(unknown)).code, 'STRATA_NOT_FOUND');
});

test('secrets: set, list and delete return names only; values are encrypted at rest and reach runs decrypted', async (t) => {
  const server = await startTestServer(t);
  await server.repos.add({ name: 'web', url: localRepo(t) });
  const value = 'hunter2-very-secret-value';

  const set = await server.api('/api/repos/web/secrets/DEPLOY_TOKEN', { method: 'PUT', json: { value } });
  assert.equal(set.status, 200);
  const setText = await set.text();
  assert.deepEqual(JSON.parse(setText), { names: ['DEPLOY_TOKEN'] });
  await server.api('/api/repos/web/secrets/API_KEY', { method: 'PUT', json: { value: 'other-value' } });
  const listed = await server.api('/api/repos/web/secrets');
  const listedText = await listed.text();
  assert.deepEqual(JSON.parse(listedText), { names: ['API_KEY', 'DEPLOY_TOKEN'] });
  assert.ok(!setText.includes(value) && !listedText.includes(value));
  const repoText = await (await server.api('/api/repos/web')).text();
  assert.ok(!repoText.includes(value));

  assert.ok(!databaseBytes(server.store).includes(value), 'no plaintext secret in the database files');
  assert.equal((await server.repos.secretsFor('web')).values.get('DEPLOY_TOKEN'), value);

  const badName = await server.api('/api/repos/web/secrets/not-a-name', { method: 'PUT', json: { value } });
  assert.equal(badName.status, 400);
  assert.match((await errorOf(badName)).message, /params\.name/);
  const noValue = await server.api('/api/repos/web/secrets/X', { method: 'PUT', json: {} });
  assert.equal(noValue.status, 400);
  assert.match((await errorOf(noValue)).message, /body\.value/);
  const unknownRepo = await server.api('/api/repos/nope/secrets/X', { method: 'PUT', json: { value } });
  assert.equal(unknownRepo.status, 404);

  const deleted = await server.api('/api/repos/web/secrets/DEPLOY_TOKEN', { method: 'DELETE' });
  assert.deepEqual(await deleted.json(), { names: ['API_KEY'] });
  const again = await server.api('/api/repos/web/secrets/DEPLOY_TOKEN', { method: 'DELETE' });
  assert.equal(again.status, 404);
  assert.equal((await server.repos.secretsFor('web')).values.has('DEPLOY_TOKEN'), false);
});

test('the server key is created once with mode 0600 and read back the same; the repos\' values are encrypted with it', async (t) => {
  const server = await startTestServer(t);
  const keyFile = join(server.store, 'server.key');
  assert.equal(statSync(keyFile).mode & 0o777, 0o600);
  assert.deepEqual(loadOrCreateServerKey(server.store), readFileSync(keyFile));
  await server.repos.add({ name: 'a', url: '/tmp/a' });
  await server.repos.setSecret('a', 'TOKEN', 'value-of-a');
  // A store with another key cannot read them (in-row tampering: test/server/repoStore.test.ts).
  const otherStore = mkdtempSync(join(tmpdir(), 'strata-other-key-'));
  t.after(() => rmSync(otherStore, { recursive: true, force: true }));
  await assert.rejects(createRepoStore(server.db, loadOrCreateServerKey(otherStore)).secretsFor('a'), { code: 'STRATA_STORE' });
  assert.equal((await createRepoStore(server.db, loadOrCreateServerKey(server.store)).secretsFor('a')).values.get('TOKEN'), 'value-of-a');
});

test('CLI: repo add/list and user add/token write the store the server reads', async (t) => {
  const server = await startTestServer(t);
  const dir = localRepo(t);
  const out = new PassThrough();
  let printed = '';
  out.on('data', (chunk: Buffer) => (printed += chunk.toString()));

  assert.equal(await repoAddCommand('cli-repo', dir, { store: server.store, poll: '30' }, out), 0);
  assert.match(printed, /added cli-repo/);
  const secret = /secret (\S+)/.exec(printed)?.[1];
  assert.equal(await server.repos.webhookSecret('cli-repo'), secret);
  const fromApi = (await (await server.api('/api/repos/cli-repo')).json()) as { repo: { defaultBranch: string; pollSeconds: number } };
  assert.deepEqual([fromApi.repo.defaultBranch, fromApi.repo.pollSeconds], ['trunk', 30]);
  await assert.rejects(repoAddCommand('cli-repo2', dir, { store: server.store, poll: '1' }, out), { code: 'STRATA_USAGE' });

  printed = '';
  assert.equal(await repoListCommand({ store: server.store, json: true }, out), 0);
  assert.deepEqual((JSON.parse(printed) as { repos: Array<{ name: string }> }).repos.map((r) => r.name), ['cli-repo']);

  const stdin = new PassThrough();
  stdin.end('a long enough password\n');
  assert.equal(await userAddCommand('carol', { store: server.store }, { stdin, out }), 0);
  const login = await server.api('/api/login', { method: 'POST', json: { username: 'carol', password: 'a long enough password' }, auth: false });
  assert.equal(login.status, 200);

  printed = '';
  assert.equal(await userTokenCommand('carol', { store: server.store }, out), 0);
  const token = printed.trim();
  const me = await server.api('/api/me', { headers: { authorization: `Bearer ${token}` } });
  assert.deepEqual(await me.json(), { user: { name: 'carol' } });
  await assert.rejects(userTokenCommand('nobody', { store: server.store }, out), { code: 'STRATA_NOT_FOUND' });
});

test('CLI: --database (or $STRATA_DATABASE_URL) writes the Postgres database a server keeps its state in, not the store\'s SQLite file', async (t) => {
  const pgServer = await startPgServer();
  t.after(() => pgServer.destroy());
  const url = await pgServer.createDatabase();
  const store = mkdtempSync(join(tmpdir(), 'strata-cli-pg-'));
  t.after(() => rmSync(store, { recursive: true, force: true }));
  const dir = localRepo(t);
  const out = new PassThrough();
  let printed = '';
  out.on('data', (chunk: Buffer) => (printed += chunk.toString()));

  assert.equal(await repoAddCommand('pg-repo', dir, { store, database: url }, out), 0);
  const secret = /secret (\S+)/.exec(printed)?.[1];
  const stdin = new PassThrough();
  stdin.end('a long enough password\n');
  assert.equal(await userAddCommand('dave', { store, database: url }, { stdin, out }), 0);
  printed = '';
  assert.equal(await userTokenCommand('dave', { store, database: url }, out), 0);
  const token = printed.trim();
  await assert.rejects(userTokenCommand('nobody', { store, database: url }, out), { code: 'STRATA_NOT_FOUND' });

  const database = await openPostgres(url);
  t.after(() => database.close());
  const repos = createRepoStore(database, loadOrCreateServerKey(store));
  const repo = await repos.get('pg-repo');
  assert.deepEqual([repo?.url, repo?.defaultBranch, repo?.pollSeconds], [dir, 'trunk', null]);
  assert.equal(await repos.webhookSecret('pg-repo'), secret);
  const users = createUserStore(database);
  assert.deepEqual(await users.verifyLogin('dave', 'a long enough password'), { name: 'dave' });
  assert.deepEqual(await users.userForToken(token), { name: 'dave' });

  // $STRATA_DATABASE_URL when there is no --database; the store's own SQLite file saw none of it.
  const saved = process.env.STRATA_DATABASE_URL;
  t.after(() => {
    if (saved === undefined) delete process.env.STRATA_DATABASE_URL;
    else process.env.STRATA_DATABASE_URL = saved;
  });
  process.env.STRATA_DATABASE_URL = url;
  printed = '';
  assert.equal(await repoListCommand({ store, json: true }, out), 0);
  assert.deepEqual((JSON.parse(printed) as { repos: Array<{ name: string }> }).repos.map((r) => r.name), ['pg-repo']);
  delete process.env.STRATA_DATABASE_URL;
  printed = '';
  assert.equal(await repoListCommand({ store, json: true }, out), 0);
  assert.deepEqual(JSON.parse(printed), { repos: [] });

  for (const bad of ['sqlite:///tmp/x.db', '/tmp/x.db', '']) {
    await assert.rejects(repoListCommand({ store, database: bad }, out), { code: 'STRATA_USAGE' }, bad);
  }
  process.env.STRATA_DATABASE_URL = 'mysql://db/strata';
  await assert.rejects(userTokenCommand('dave', { store }, out), { code: 'STRATA_USAGE', message: /expected a Postgres URL/ });
});
