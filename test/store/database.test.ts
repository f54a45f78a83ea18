// Opening the store's database: migrations at open (Kysely's Migrator) on SQLite and Postgres, the
// adoption of SQLite stores made by the raw migrations of earlier versions, and Postgres restarts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { sql } from 'kysely';
import { openDatabase, openPostgres } from '../../src/store/database.js';
import { FIRST_SCHEMA, LEGACY_FINAL_VERSION } from '../../src/store/sql/legacy.js';
import { storeMigrations } from '../../src/store/sql/migrations.js';

const MIGRATIONS = Object.keys(storeMigrations('sqlite')).sort();
import { createCacheIndex } from '../../src/store/sql/cacheIndex.js';
import { createRunLog } from '../../src/store/sql/runLog.js';
import { startPgServer } from '../helpers/pgServer.js';

function tempDir(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'strata-db-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('a SQLite store made by the first raw schema is brought up to date and adopted, its rows kept', async (t) => {
  const file = join(tempDir(t), 'strata.db');
  // A database as the first schema version left it: no background column, one chain with one step.
  const old = new Database(file);
  old.exec(FIRST_SCHEMA);
  old.pragma('user_version = 1');
  old.prepare("INSERT INTO chains (id, repo, runner, layerfile, tree, run_id, created_at) VALUES ('old', '/r', 'main', 'Layerfile', 't0', 'r0', 1)").run();
  old.prepare("INSERT INTO chain_steps (chain_id, idx, definition_key, state_id, trace) VALUES ('old', 0, 'k0', 's', NULL)").run();
  old.close();

  const database = await openDatabase(file);
  t.after(() => database.close());
  assert.equal(database.raw.pragma('user_version', { simple: true }), LEGACY_FINAL_VERSION, 'the raw migrations ran to their end');
  const applied = database.raw.prepare('SELECT name FROM kysely_migration ORDER BY name').all() as { name: string }[];
  assert.equal(applied[0]?.name, '2026-12-04-001-baseline', 'the baseline is recorded as applied');
  assert.deepEqual(applied.map((m) => m.name), MIGRATIONS, 'and the later migrations ran');
  const [chain] = await createCacheIndex(database).candidates('/r', 'main', 'k0');
  assert.equal(chain?.id, 'old');
  assert.deepEqual(chain?.steps[0]?.background, [], 'a column added later reads as its default');
  assert.deepEqual(chain?.clones, []);
  // The server's tables came with the raw migrations too.
  assert.equal((database.raw.prepare("SELECT COUNT(*) AS n FROM sqlite_master WHERE name IN ('jobs', 'server_users', 'split_timing_sets')").get() as { n: number }).n, 3);
});

test('a new SQLite store gets the same tables from the migrations, and a reopen applies nothing twice', async (t) => {
  const file = join(tempDir(t), 'strata.db');
  const first = await openDatabase(file);
  const tables = (db: Database.Database): string[] =>
    (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'kysely%' AND name NOT LIKE 'sqlite%' ORDER BY name").all() as { name: string }[]).map((r) => r.name);
  assert.deepEqual(tables(first.raw), ['chain_steps', 'chains', 'job_runners', 'jobs', 'poll_heads', 'run_runners', 'run_steps', 'runs', 'server_api_tokens', 'server_repo_secrets', 'server_repos', 'server_sessions', 'server_users', 'split_timing_sets', 'split_timings', 'webhook_deliveries', 'workers']);
  assert.equal(first.raw.pragma('user_version', { simple: true }), LEGACY_FINAL_VERSION, 'an older strata opening it would find nothing to migrate');
  await createRunLog(first).createRun({ id: 'r1', repo: '/r', commit: null, tree: 't', branch: '', startedAt: 1 });
  await first.close();
  const again = await openDatabase(file);
  t.after(() => again.close());
  assert.equal((again.raw.prepare('SELECT COUNT(*) AS n FROM kysely_migration').get() as { n: number }).n, MIGRATIONS.length);
  assert.equal((await createRunLog(again).getRun('r1'))?.id, 'r1');

  // The same schema as a store made by the raw migrations: every table and column, by name.
  const legacyFile = join(tempDir(t), 'legacy.db');
  const legacy = new Database(legacyFile);
  legacy.exec(FIRST_SCHEMA);
  legacy.pragma('user_version = 1');
  legacy.close();
  const adopted = await openDatabase(legacyFile);
  t.after(() => adopted.close());
  const columns = (db: Database.Database): Record<string, string[]> =>
    Object.fromEntries(tables(db).map((name) => [name, (db.prepare(`PRAGMA table_info(${name})`).all() as { name: string }[]).map((c) => c.name).sort()]));
  assert.deepEqual(columns(again.raw), columns(adopted.raw));
});

test('Postgres: two servers starting at once migrate once; a restart of Postgres is survived', async (t) => {
  const server = await startPgServer();
  t.after(() => server.destroy());
  const url = await server.createDatabase();
  const [a, b] = await Promise.all([openPostgres(url), openPostgres(url)]);
  t.after(async () => {
    await a.close();
    await b.close();
  });
  const { rows } = await sql<{ name: string }>`SELECT name FROM kysely_migration`.execute(a.sql);
  assert.deepEqual(rows.map((r) => r.name).sort(), MIGRATIONS, 'each migration applied once');
  const log = createRunLog(a);
  await log.createRun({ id: 'before', repo: '/r', commit: null, tree: 't', branch: '', startedAt: 1 });

  await server.stop();
  await assert.rejects(log.getRun('before'), 'while Postgres is down, a query fails (it does not hang)');
  await server.start();
  assert.equal((await log.getRun('before'))?.id, 'before', 'the pool reconnects once it is back');
  await log.createRun({ id: 'after', repo: '/r', commit: null, tree: 't', branch: '', startedAt: 2 });
  assert.equal((await createRunLog(b).lastRun('/r'))?.id, 'after', 'the other server sees it');
});
