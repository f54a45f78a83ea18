// The RepoStore's conformance suite (repositories, webhook secrets, repo secrets encrypted at rest), run
// against SQLite and Postgres alike (test/store/databases.ts). Route-level behaviour is in repos.test.ts.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { createRepoStore, DEFAULT_BRANCH } from '../../src/server/repos/store.js';
import { eachDatabase } from '../store/databases.js';

const KEY = randomBytes(32);

eachDatabase((fresh) => {
  test('add: defaults or given fields, a generated or given webhook secret; get finds it, also after a reopen', async (t) => {
    const database = await fresh(t);
    const repos = createRepoStore(await database.open(), KEY, () => 1000);
    const plain = await repos.add({ name: 'web', url: '/srv/git/web' });
    assert.deepEqual(plain.repo, { name: 'web', url: '/srv/git/web', defaultBranch: DEFAULT_BRANCH, pollSeconds: null, publicPreviews: false, createdAt: 1000 });
    assert.match(plain.webhookSecret, /^[0-9a-f]{48}$/);
    const full = await repos.add({ name: 'api', url: 'https://git.example.com/team/api.git', defaultBranch: 'trunk', pollSeconds: 60, publicPreviews: true, webhookSecret: 'given secret' });
    assert.deepEqual(full, {
      repo: { name: 'api', url: 'https://git.example.com/team/api.git', defaultBranch: 'trunk', pollSeconds: 60, publicPreviews: true, createdAt: 1000 },
      webhookSecret: 'given secret',
    });
    const other = await repos.add({ name: 'other', url: '/srv/git/other', pollSeconds: null, publicPreviews: false });
    assert.notEqual(other.webhookSecret, plain.webhookSecret, 'each generated secret is new');

    const reopened = createRepoStore(await database.open(), KEY);
    assert.deepEqual(await reopened.get('web'), plain.repo);
    assert.deepEqual(await reopened.get('api'), full.repo);
    assert.equal(await reopened.get('nope'), null);
    assert.equal(await reopened.get('WEB'), null);
  });

  test('add: a taken name is STRATA_CONFLICT and changes nothing; bad names and empty URLs are STRATA_USAGE', async (t) => {
    const db = await (await fresh(t)).open();
    const repos = createRepoStore(db, KEY, () => 1);
    const first = await repos.add({ name: 'web', url: '/srv/git/web' });
    await assert.rejects(repos.add({ name: 'web', url: '/elsewhere', webhookSecret: 'other' }), { code: 'STRATA_CONFLICT', message: 'repository web already exists' });
    assert.deepEqual(await repos.get('web'), first.repo);
    assert.equal(await repos.webhookSecret('web'), first.webhookSecret);
    for (const name of ['', 'Web', '-web', 'web app', 'web/app', 'a'.repeat(101)]) {
      await assert.rejects(repos.add({ name, url: '/srv/git/x' }), { code: 'STRATA_USAGE', message: `invalid repository name ${JSON.stringify(name)}` }, name);
    }
    for (const url of ['', '   ']) {
      await assert.rejects(repos.add({ name: 'empty', url }), { code: 'STRATA_USAGE', message: 'a repository needs a git URL or a local path' });
    }
    assert.deepEqual((await repos.list()).map((r) => r.name), ['web']);
  });

  test('list: every repository, by name in code-unit order whatever the database collation', async (t) => {
    const repos = createRepoStore(await (await fresh(t)).open(), KEY);
    assert.deepEqual(await repos.list(), []);
    for (const name of ['web', 'ab', 'a_b', 'api', 'a.c', 'a-b', '0day']) await repos.add({ name, url: `/srv/git/${name}` });
    const list = await repos.list();
    assert.deepEqual(list.map((r) => r.name), ['0day', 'a-b', 'a.c', 'a_b', 'ab', 'api', 'web']);
    assert.deepEqual(list[6], await repos.get('web'));
  });

  test('webhook secrets round-trip, are encrypted at rest and do not decrypt as another repo\'s', async (t) => {
    const db = await (await fresh(t)).open();
    const repos = createRepoStore(db, KEY);
    const { webhookSecret } = await repos.add({ name: 'web', url: '/srv/git/web' });
    await repos.add({ name: 'api', url: '/srv/git/api', webhookSecret: 'api webhook secret' });
    assert.equal(await repos.webhookSecret('web'), webhookSecret);
    assert.equal(await repos.webhookSecret('api'), 'api webhook secret');
    assert.equal(await repos.webhookSecret('nope'), null);

    const stored = await db.sql.selectFrom('server_repos').select(['name', 'webhook_secret_encrypted']).orderBy('name').execute();
    assert.equal(stored.length, 2);
    for (const row of stored) {
      assert.match(row.webhook_secret_encrypted, /^v1\./);
      assert.ok(!row.webhook_secret_encrypted.includes(webhookSecret) && !row.webhook_secret_encrypted.includes('api webhook secret'));
    }
    // Another key cannot read it; nor does api's ciphertext pass as web's.
    await assert.rejects(createRepoStore(db, randomBytes(32)).webhookSecret('web'), { code: 'STRATA_STORE' });
    await db.sql.updateTable('server_repos').set({ webhook_secret_encrypted: stored[0]?.webhook_secret_encrypted as string }).where('name', '=', 'web').execute();
    await assert.rejects(repos.webhookSecret('web'), { code: 'STRATA_STORE' });
  });

  test('secrets: set, replace, list and delete by name (sorted), values only through secretsFor', async (t) => {
    const database = await fresh(t);
    const db = await database.open();
    let clock = 10;
    const repos = createRepoStore(db, KEY, () => clock);
    await repos.add({ name: 'web', url: '/srv/git/web' });
    await repos.add({ name: 'api', url: '/srv/git/api' });
    assert.deepEqual(await repos.secretNames('web'), []);
    assert.equal((await repos.secretsFor('web')).values.size, 0);

    assert.deepEqual(await repos.setSecret('web', 'DEPLOY_TOKEN', 'deploy-value'), ['DEPLOY_TOKEN']);
    assert.deepEqual(await repos.setSecret('web', 'a_key', 'lower'), ['DEPLOY_TOKEN', 'a_key']);
    assert.deepEqual(await repos.setSecret('web', '_X', 'underscore'), ['DEPLOY_TOKEN', '_X', 'a_key']);
    assert.deepEqual(await repos.setSecret('web', 'API_KEY', 'api-key-value'), ['API_KEY', 'DEPLOY_TOKEN', '_X', 'a_key']);
    assert.deepEqual(await repos.setSecret('api', 'DEPLOY_TOKEN', 'the api deploy value'), ['DEPLOY_TOKEN']);
    clock = 20;
    assert.deepEqual(await repos.setSecret('web', 'DEPLOY_TOKEN', 'replaced-value'), ['API_KEY', 'DEPLOY_TOKEN', '_X', 'a_key'], 'replacing keeps one row');
    assert.deepEqual(await repos.secretNames('web'), ['API_KEY', 'DEPLOY_TOKEN', '_X', 'a_key']);

    const reopened = createRepoStore(await database.open(), KEY);
    const secrets = await reopened.secretsFor('web');
    assert.deepEqual(Object.fromEntries(secrets.values), { DEPLOY_TOKEN: 'replaced-value', a_key: 'lower', _X: 'underscore', API_KEY: 'api-key-value' });
    assert.match(secrets.describeLookup('DEPLOY_TOKEN'), /repository web .*PUT \/api\/repos\/web\/secrets\/DEPLOY_TOKEN/);
    assert.deepEqual(Object.fromEntries((await reopened.secretsFor('api')).values), { DEPLOY_TOKEN: 'the api deploy value' });

    const rows = await db.sql.selectFrom('server_repo_secrets').selectAll().where('repo', '=', 'web').execute();
    assert.equal(rows.length, 4);
    assert.deepEqual(Object.fromEntries(rows.map((r) => [r.name, r.updated_at])), { DEPLOY_TOKEN: 20, a_key: 10, _X: 10, API_KEY: 10 });
    for (const row of rows) {
      assert.match(row.value_encrypted, /^v1\./);
      for (const value of ['replaced-value', 'deploy-value', 'lower', 'underscore', 'api-key-value']) assert.ok(!row.value_encrypted.includes(value), 'stored encrypted');
    }

    assert.deepEqual(await repos.deleteSecret('web', 'DEPLOY_TOKEN'), ['API_KEY', '_X', 'a_key']);
    await assert.rejects(repos.deleteSecret('web', 'DEPLOY_TOKEN'), { code: 'STRATA_NOT_FOUND', message: 'repository web has no secret DEPLOY_TOKEN' });
    assert.equal((await repos.secretsFor('web')).values.has('DEPLOY_TOKEN'), false);
    assert.deepEqual(await repos.secretNames('api'), ['DEPLOY_TOKEN'], 'another repo\'s secret of the same name stays');
  });

  test('secrets: an unknown repository is STRATA_NOT_FOUND, a bad secret name STRATA_USAGE', async (t) => {
    const db = await (await fresh(t)).open();
    const repos = createRepoStore(db, KEY);
    const noRepo = { code: 'STRATA_NOT_FOUND', message: 'no repository nope' };
    await assert.rejects(repos.setSecret('nope', 'TOKEN', 'value'), noRepo);
    await assert.rejects(repos.setSecret('nope', 'not-a-name', 'value'), noRepo, 'the repository is checked first');
    await assert.rejects(repos.deleteSecret('nope', 'TOKEN'), noRepo);
    await assert.rejects(repos.secretNames('nope'), noRepo);
    await assert.rejects(repos.secretsFor('nope'), noRepo);

    await repos.add({ name: 'web', url: '/srv/git/web' });
    for (const name of ['', 'not-a-name', '1TOKEN', 'TOKEN ', 'TÖKEN']) {
      await assert.rejects(repos.setSecret('web', name, 'value'), { code: 'STRATA_USAGE', message: `invalid secret name ${JSON.stringify(name)}` }, name);
    }
    assert.deepEqual(await repos.secretNames('web'), []);
    assert.deepEqual(await db.sql.selectFrom('server_repo_secrets').selectAll().execute(), []);
  });

  test('a secret value decrypts only in its own row and with its own key', async (t) => {
    const db = await (await fresh(t)).open();
    const repos = createRepoStore(db, KEY);
    await repos.add({ name: 'a', url: '/tmp/a' });
    await repos.add({ name: 'b', url: '/tmp/b' });
    await repos.setSecret('a', 'TOKEN', 'value-of-a');
    await repos.setSecret('a', 'OTHER', 'other-of-a');
    await repos.setSecret('b', 'TOKEN', 'value-of-b');
    // Another key cannot read them.
    await assert.rejects(createRepoStore(db, randomBytes(32)).secretsFor('a'), { code: 'STRATA_STORE' });
    // Copy a's TOKEN ciphertext into b's row, and into a's OTHER: authenticated with its place, it decrypts in neither.
    const sealed = (await db.sql.selectFrom('server_repo_secrets').select('value_encrypted').where('repo', '=', 'a').where('name', '=', 'TOKEN').executeTakeFirstOrThrow()).value_encrypted;
    await db.sql.updateTable('server_repo_secrets').set({ value_encrypted: sealed }).where('repo', '=', 'b').execute();
    await assert.rejects(repos.secretsFor('b'), { code: 'STRATA_STORE' });
    await db.sql.updateTable('server_repo_secrets').set({ value_encrypted: sealed }).where('repo', '=', 'a').where('name', '=', 'OTHER').execute();
    await assert.rejects(repos.secretsFor('a'), { code: 'STRATA_STORE' });
  });
});
