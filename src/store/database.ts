// The store's database: embedded SQLite (better-sqlite3) by default, one file under the store directory
// in WAL mode so readers (`strata why`, the server) never block a run; or Postgres (`pg`) when many
// machines share one server. Both are reached through Kysely, with one typed query per operation, and
// both are migrated at open by the same migrations (sql/migrations.ts).
import Database from 'better-sqlite3';
import { Kysely, PostgresDialect, SqliteDialect } from 'kysely';
import { Migrator, type MigrationProvider } from 'kysely/migration';
import pg from 'pg';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { StrataError } from '../errors.js';
import { applyLegacyMigrations } from './sql/legacy.js';
import { storeMigrations, type SqlKind } from './sql/migrations.js';
import type { StoreSchema } from './sql/schema.js';

/** The raw SQLite handle (the server's own tables are still queried through it directly). */
export type Db = Database.Database;

export interface StoreDatabase {
  readonly kind: SqlKind;
  readonly sql: Kysely<StoreSchema>;
  close(): Promise<void>;
}

export interface SqliteStoreDatabase extends StoreDatabase {
  readonly kind: 'sqlite';
  readonly raw: Db;
}

/**
 * Opens (creating if needed) the SQLite database at `file` (or ':memory:') and brings its schema up to
 * date. Kysely shares the one connection with the raw handle; since better-sqlite3 runs each statement
 * synchronously, every single statement is atomic, and the stores built on it keep to single statements.
 */
export async function openDatabase(file: string): Promise<SqliteStoreDatabase> {
  // Opens of one file in this process take turns: SQLite waits for a lock by blocking the thread, so a
  // second open waiting for the first one's migration lock would keep the first from ever finishing.
  const previous = opening.get(file) ?? Promise.resolve();
  const mine = previous.then(() => openSqlite(file));
  const settled = mine.catch(() => {});
  opening.set(file, settled);
  void settled.then(() => {
    if (opening.get(file) === settled) opening.delete(file);
  });
  return mine;
}

const opening = new Map<string, Promise<unknown>>();

async function openSqlite(file: string): Promise<SqliteStoreDatabase> {
  let raw: Db;
  try {
    if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true });
    raw = new Database(file);
  } catch (cause) {
    throw new StrataError('STRATA_STORE', `cannot open the database ${file}`, { cause });
  }
  raw.pragma('journal_mode = WAL');
  raw.pragma('synchronous = NORMAL');
  raw.pragma('foreign_keys = ON');
  raw.pragma('busy_timeout = 10000');
  const sql = new Kysely<StoreSchema>({ dialect: new SqliteDialect({ database: raw }) });
  try {
    applyLegacyMigrations(raw);
    // Another process may be opening the same new store this moment (`strata user add` while `strata
    // serve` starts): the whole migration holds SQLite's write lock, and the loser then finds it done.
    raw.exec('BEGIN IMMEDIATE');
    try {
      await migrate(sql, 'sqlite', file, { inTransaction: true });
      raw.exec('COMMIT');
    } catch (error) {
      if (raw.inTransaction) raw.exec('ROLLBACK');
      throw error;
    }
  } catch (error) {
    await sql.destroy(); // closes `raw` too
    throw error;
  }
  return { kind: 'sqlite', sql, raw, close: () => sql.destroy() };
}

/** Postgres's bigint (int8) columns hold milliseconds and counts well inside 2^53: read them as numbers. */
const INT8_OID = 20;
const pgTypes = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === INT8_OID && format !== 'binary' ? (value: string) => Number(value) : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

/** Connects to the Postgres database at `url` (postgres://user:pass@host:port/db) and migrates it. */
export async function openPostgres(url: string, options: { maxConnections?: number } = {}): Promise<StoreDatabase> {
  const pool = new pg.Pool({ connectionString: url, max: options.maxConnections ?? 10, types: pgTypes });
  // An idle client whose server went away (a Postgres restart) is dropped by the pool; it must not crash us.
  pool.on('error', () => {});
  const sql = new Kysely<StoreSchema>({ dialect: new PostgresDialect({ pool }) });
  try {
    await migrate(sql, 'postgres', redactUrl(url));
  } catch (error) {
    await sql.destroy();
    throw error;
  }
  return { kind: 'postgres', sql, close: () => sql.destroy() };
}

/** Runs the migrations; `inTransaction`: the caller holds a transaction around them all (SQLite). */
async function migrate(sql: Kysely<StoreSchema>, kind: SqlKind, where: string, options: { inTransaction?: boolean } = {}): Promise<void> {
  const migrations = storeMigrations(kind);
  const provider: MigrationProvider = { getMigrations: async () => migrations };
  const { error, results } = await new Migrator({ db: sql, provider, disableTransactions: options.inTransaction ?? false }).migrateToLatest();
  if (error !== undefined) {
    const failed = results?.find((r) => r.status === 'Error')?.migrationName;
    throw new StrataError('STRATA_STORE', `cannot migrate the database ${where}${failed ? ` (migration ${failed})` : ''}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
}

function redactUrl(url: string): string {
  return url.replace(/\/\/([^:/@]+):[^@]*@/, '//$1:***@');
}
