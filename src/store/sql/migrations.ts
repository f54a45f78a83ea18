// The store's schema, as Kysely migrations run at every open (Kysely's Migrator: a migrations table,
// a lock, applied in order). The same migrations build a SQLite store and a Postgres database.
//
// History: until December 2026 SQLite stores were migrated by raw SQL numbered in PRAGMA user_version
// (legacy.ts, frozen). The baseline below is that schema's last version (8). A store made by the raw
// migrations is brought to version 8 by them and adopted: the baseline then creates nothing.
// Every later change is a new migration here, for both databases; none is ever edited once released.
import { sql, type ColumnDefinitionBuilder, type CreateTableBuilder, type Kysely } from 'kysely';
import type { Migration } from 'kysely/migration';
import { LEGACY_FINAL_VERSION } from './legacy.js';

export type SqlKind = 'sqlite' | 'postgres';

type AnyDb = Kysely<unknown>;
type Table = CreateTableBuilder<string, never>;
const notNull = (c: ColumnDefinitionBuilder) => c.notNull();

/** Postgres has no implicit rowid: tables read back in insertion order get an explicit one. */
function withRowId(table: Table, kind: SqlKind): Table {
  return kind === 'postgres' ? table.addColumn('rowid', 'bigserial', notNull) : table;
}

async function sqliteUserVersion(db: AnyDb): Promise<number> {
  const { rows } = await sql<{ user_version: number }>`PRAGMA user_version`.execute(db);
  return rows[0]?.user_version ?? 0;
}

async function createRunTables(db: AnyDb, kind: SqlKind): Promise<void> {
  await withRowId(db.schema.createTable('runs'), kind)
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('repo', 'text', notNull)
    .addColumn('commit_id', 'text')
    .addColumn('tree', 'text', notNull)
    .addColumn('branch', 'text', (c) => c.notNull().defaultTo(''))
    .addColumn('started_at', 'bigint', notNull)
    .addColumn('finished_at', 'bigint')
    .addColumn('status', 'text', notNull)
    .execute();
  await db.schema.createIndex('runs_by_repo').on('runs').columns(['repo', 'started_at']).execute();
  await withRowId(db.schema.createTable('run_runners'), kind)
    .addColumn('run_id', 'text', (c) => c.notNull().references('runs.id'))
    .addColumn('runner', 'text', notNull)
    .addColumn('layerfile', 'text', notNull)
    .addColumn('status', 'text', notNull)
    .addColumn('plan', 'text')
    .addColumn('started_at', 'bigint')
    .addColumn('finished_at', 'bigint')
    .addPrimaryKeyConstraint('run_runners_pk', ['run_id', 'runner'])
    .execute();
  await db.schema
    .createTable('run_steps')
    .addColumn('run_id', 'text', notNull)
    .addColumn('runner', 'text', notNull)
    .addColumn('idx', 'integer', notNull)
    .addColumn('line', 'integer', notNull)
    .addColumn('text', 'text', notNull)
    .addColumn('status', 'text', notNull)
    .addColumn('reason', 'text')
    .addColumn('duration_ms', 'bigint')
    .addColumn('snapshot', 'text')
    .addPrimaryKeyConstraint('run_steps_pk', ['run_id', 'runner', 'idx'])
    .execute();
}

/** The cache index (chains and their steps) and strata-split's timings. */
async function createCacheTables(db: AnyDb, kind: SqlKind): Promise<void> {
  await withRowId(db.schema.createTable('chains'), kind)
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('repo', 'text', notNull)
    .addColumn('runner', 'text', notNull)
    .addColumn('layerfile', 'text', notNull)
    .addColumn('tree', 'text', notNull)
    .addColumn('run_id', 'text', notNull)
    .addColumn('created_at', 'bigint', notNull)
    .addColumn('complete', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('clones', 'text', (c) => c.notNull().defaultTo('[]'))
    .execute();
  await db.schema.createIndex('chains_by_runner').on('chains').columns(['repo', 'runner', 'created_at']).execute();
  await db.schema
    .createTable('chain_steps')
    .addColumn('chain_id', 'text', (c) => c.notNull().references('chains.id').onDelete('cascade'))
    .addColumn('idx', 'integer', notNull)
    .addColumn('definition_key', 'text', notNull)
    .addColumn('snapshot', 'text')
    .addColumn('state_id', 'text', notNull)
    .addColumn('trace', 'text')
    .addColumn('copies', 'text', (c) => c.notNull().defaultTo('[]'))
    .addColumn('repeatable', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('succeeded', 'integer', (c) => c.notNull().defaultTo(1))
    .addColumn('background', 'text', (c) => c.notNull().defaultTo('[]'))
    .addColumn('listening', 'text', (c) => c.notNull().defaultTo('[]'))
    .addColumn('split_timings', 'text')
    .addPrimaryKeyConstraint('chain_steps_pk', ['chain_id', 'idx'])
    .execute();
  await db.schema.createIndex('chain_steps_by_key').on('chain_steps').columns(['idx', 'definition_key']).execute();
  await db.schema
    .createTable('split_timings')
    .addColumn('repo', 'text', notNull)
    .addColumn('layerfile', 'text', notNull)
    .addColumn('path', 'text', notNull)
    .addColumn('seconds', 'double precision', notNull)
    .addColumn('updated_at', 'bigint', notNull)
    .addPrimaryKeyConstraint('split_timings_pk', ['repo', 'layerfile', 'path'])
    .execute();
  await db.schema
    .createTable('split_timing_sets')
    .addColumn('digest', 'text', (c) => c.primaryKey())
    .addColumn('content', 'text', notNull)
    .addColumn('created_at', 'bigint', notNull)
    .execute();
}

/** strata serve: users, sessions, API tokens, repositories and their encrypted secrets. */
async function createServerTables(db: AnyDb): Promise<void> {
  await db.schema
    .createTable('server_users')
    .addColumn('name', 'text', (c) => c.primaryKey())
    .addColumn('password_hash', 'text', notNull)
    .addColumn('created_at', 'bigint', notNull)
    .execute();
  await db.schema
    .createTable('server_sessions')
    .addColumn('id_hash', 'text', (c) => c.primaryKey())
    .addColumn('user_name', 'text', (c) => c.notNull().references('server_users.name').onDelete('cascade'))
    .addColumn('created_at', 'bigint', notNull)
    .addColumn('expires_at', 'bigint', notNull)
    .execute();
  await db.schema.createIndex('server_sessions_by_expiry').on('server_sessions').column('expires_at').execute();
  await db.schema
    .createTable('server_api_tokens')
    .addColumn('token_hash', 'text', (c) => c.primaryKey())
    .addColumn('user_name', 'text', (c) => c.notNull().references('server_users.name').onDelete('cascade'))
    .addColumn('created_at', 'bigint', notNull)
    .execute();
  await db.schema
    .createTable('server_repos')
    .addColumn('name', 'text', (c) => c.primaryKey())
    .addColumn('url', 'text', notNull)
    .addColumn('default_branch', 'text', notNull)
    .addColumn('poll_seconds', 'integer')
    .addColumn('public_previews', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('webhook_secret_encrypted', 'text', notNull)
    .addColumn('created_at', 'bigint', notNull)
    .execute();
  await db.schema
    .createTable('server_repo_secrets')
    .addColumn('repo', 'text', (c) => c.notNull().references('server_repos.name').onDelete('cascade'))
    .addColumn('name', 'text', notNull)
    .addColumn('value_encrypted', 'text', notNull)
    .addColumn('updated_at', 'bigint', notNull)
    .addPrimaryKeyConstraint('server_repo_secrets_pk', ['repo', 'name'])
    .execute();
}

/** strata serve: the job queue and trigger bookkeeping. */
async function createJobTables(db: AnyDb, kind: SqlKind): Promise<void> {
  await withRowId(db.schema.createTable('jobs'), kind)
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('repo', 'text', notNull)
    .addColumn('branch', 'text', notNull)
    .addColumn('commit_id', 'text', notNull)
    .addColumn('title', 'text', notNull)
    .addColumn('author', 'text', notNull)
    .addColumn('trigger', 'text', notNull)
    .addColumn('status', 'text', notNull)
    .addColumn('no_cache', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('no_cache_dirs', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('created_at', 'bigint', notNull)
    .addColumn('started_at', 'bigint')
    .addColumn('finished_at', 'bigint')
    .addColumn('duration_ms', 'bigint')
    .addColumn('steps_ran', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('steps_cached', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('run_id', 'text')
    .addColumn('message', 'text')
    .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('lease_until', 'bigint')
    .addColumn('pull_request_url', 'text')
    .execute();
  await db.schema.createIndex('jobs_by_status').on('jobs').columns(['status', 'created_at']).execute();
  await db.schema.createIndex('jobs_by_repo').on('jobs').columns(['repo', 'created_at']).execute();
  await db.schema
    .createTable('job_runners')
    .addColumn('job_id', 'text', (c) => c.notNull().references('jobs.id').onDelete('cascade'))
    .addColumn('runner', 'text', notNull)
    .addColumn('position', 'integer', notNull)
    .addColumn('detail', 'text', notNull)
    .addPrimaryKeyConstraint('job_runners_pk', ['job_id', 'runner'])
    .execute();
  await db.schema
    .createTable('webhook_deliveries')
    .addColumn('delivery_id', 'text', (c) => c.primaryKey())
    .addColumn('repo', 'text', notNull)
    .addColumn('received_at', 'bigint', notNull)
    .execute();
  await db.schema
    .createTable('poll_heads')
    .addColumn('repo', 'text', notNull)
    .addColumn('branch', 'text', notNull)
    .addColumn('commit_id', 'text', notNull)
    .addPrimaryKeyConstraint('poll_heads_pk', ['repo', 'branch'])
    .execute();
}

/** The migrations for a database of this kind, by name (applied in name order). */
export function storeMigrations(kind: SqlKind): Record<string, Migration> {
  return {
    '2026-12-04-001-baseline': {
      async up(db) {
        // A SQLite store made by the raw migrations (already at their last version when this runs).
        if (kind === 'sqlite' && (await sqliteUserVersion(db)) >= LEGACY_FINAL_VERSION) return;
        await createRunTables(db, kind);
        await createCacheTables(db, kind);
        await createServerTables(db);
        await createJobTables(db, kind);
        if (kind === 'sqlite') await sql.raw(`PRAGMA user_version = ${LEGACY_FINAL_VERSION}`).execute(db);
      },
    },
    // strata worker: the hosts that lease jobs from the server, by name, with a revocable token (its
    // sha256); and which worker runs each job.
    '2026-12-04-002-workers': {
      async up(db) {
        await db.schema
          .createTable('workers')
          .addColumn('name', 'text', (c) => c.primaryKey())
          .addColumn('token_hash', 'text', (c) => c.notNull().unique())
          .addColumn('created_at', 'bigint', notNull)
          .addColumn('revoked_at', 'bigint')
          .addColumn('last_seen_at', 'bigint')
          .addColumn('info', 'text', (c) => c.notNull().defaultTo('{}'))
          .execute();
        await db.schema.alterTable('jobs').addColumn('worker', 'text').execute();
      },
    },
  };
}
