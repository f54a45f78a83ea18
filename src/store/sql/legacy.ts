// The raw SQL migrations that built SQLite stores until December 2026, numbered in PRAGMA user_version.
// Frozen: a store made by them is brought to their last version and then adopted by the Kysely
// migrations (migrations.ts), which own every change since. Never edit or append here.
import type Database from 'better-sqlite3';
import { SERVER_TABLES_MIGRATION } from './serverTables.js';
import { JOB_TABLES_MIGRATION } from './jobTables.js';

const LEGACY_MIGRATIONS: string[] = [
  `
  CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    repo TEXT NOT NULL,
    commit_id TEXT,
    tree TEXT NOT NULL,
    branch TEXT NOT NULL DEFAULT '',
    started_at INTEGER NOT NULL,
    finished_at INTEGER,
    status TEXT NOT NULL
  );
  CREATE INDEX runs_by_repo ON runs (repo, started_at);

  CREATE TABLE run_runners (
    run_id TEXT NOT NULL REFERENCES runs (id),
    runner TEXT NOT NULL,
    layerfile TEXT NOT NULL,
    status TEXT NOT NULL,
    plan TEXT,
    started_at INTEGER,
    finished_at INTEGER,
    PRIMARY KEY (run_id, runner)
  );

  CREATE TABLE run_steps (
    run_id TEXT NOT NULL,
    runner TEXT NOT NULL,
    idx INTEGER NOT NULL,
    line INTEGER NOT NULL,
    text TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    duration_ms INTEGER,
    snapshot TEXT,
    PRIMARY KEY (run_id, runner, idx)
  );

  -- The cache index. A chain is one run of one runner (a Layerfile, or one SPLIT copy of it) against one
  -- source tree; its steps carry the definition key, the snapshot taken after the step (if any) and the
  -- step's trace. Rows are written only after the snapshot they name is committed.
  CREATE TABLE chains (
    id TEXT PRIMARY KEY,
    repo TEXT NOT NULL,
    runner TEXT NOT NULL,
    layerfile TEXT NOT NULL,
    tree TEXT NOT NULL,
    run_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    complete INTEGER NOT NULL DEFAULT 0
  );
  CREATE INDEX chains_by_runner ON chains (repo, runner, created_at);

  CREATE TABLE chain_steps (
    chain_id TEXT NOT NULL REFERENCES chains (id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    definition_key TEXT NOT NULL,
    snapshot TEXT,
    -- Identity of the machine state after this step: new when the step ran, carried over when it was
    -- restored from cache. A child Layerfile's definition keys chain its parent's final state id.
    state_id TEXT NOT NULL,
    trace TEXT,
    copies TEXT NOT NULL DEFAULT '[]',
    repeatable INTEGER NOT NULL DEFAULT 0,
    succeeded INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (chain_id, idx)
  );
  CREATE INDEX chain_steps_by_key ON chain_steps (idx, definition_key);
  `,
  `
  -- RUN BACKGROUND: the background commands running after each chain step (cumulative, in start order,
  -- JSON [{command, env, workdir, user}]). A restore re-launches those of the restore point.
  ALTER TABLE chain_steps ADD COLUMN background TEXT NOT NULL DEFAULT '[]';
  `,
  `
  -- CLONE: the remote trees a chain's machine holds, JSON [{namespace, url, branch, commit, tree}]. The
  -- next run diffs each against the remote's new tree (src/engine/clone.ts).
  ALTER TABLE chains ADD COLUMN clones TEXT NOT NULL DEFAULT '[]';
  `,
  // strata serve: users, sessions, API tokens, repositories and their encrypted secrets.
  SERVER_TABLES_MIGRATION,
  // strata serve: the job queue, webhook deliveries, polled branch heads.
  JOB_TABLES_MIGRATION,
  `
  -- RUN BACKGROUND: the TCP ports listening in the machine when a step's snapshot was taken, JSON
  -- [5432, ...]. After a restore re-launches the background commands, the first step runs once these
  -- listen again (or after the 2 s check), not before: later steps may rely on the services being up.
  ALTER TABLE chain_steps ADD COLUMN listening TEXT NOT NULL DEFAULT '[]';
  `,
  `
  -- strata-split timings. split_timings: the newest seconds each test file took, as reported by a
  -- Layerfile's steps (lines written to $STRATA_TIMINGS_OUT), per repository + Layerfile.
  -- split_timing_sets: immutable copies of those, frozen when a SPLIT step runs, by digest; the SPLIT
  -- step's chain row names the set its copies' shares were computed with (src/store/splitTimings.ts).
  CREATE TABLE split_timings (
    repo TEXT NOT NULL,
    layerfile TEXT NOT NULL,
    path TEXT NOT NULL,
    seconds REAL NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (repo, layerfile, path)
  );
  CREATE TABLE split_timing_sets (
    digest TEXT PRIMARY KEY,
    content TEXT NOT NULL,
    created_at INTEGER NOT NULL
  );
  ALTER TABLE chain_steps ADD COLUMN split_timings TEXT;
  `,
  `
  -- strata serve: the web page of the pull request a job builds (its steps' LAYERCI_PULL_REQUEST), from the
  -- forge's pull_request webhook; NULL when no pull request is behind the job (a push, a poll, a manual
  -- trigger) and for jobs made before this column.
  ALTER TABLE jobs ADD COLUMN pull_request_url TEXT;
  `,
];

/** The version the raw migrations end at: the Kysely baseline's schema. */
export const LEGACY_FINAL_VERSION = LEGACY_MIGRATIONS.length;

/** The schema as its first version created it (tests of upgrades from an old database). */
export const FIRST_SCHEMA: string = LEGACY_MIGRATIONS[0] as string;

/** Brings a store made by the raw migrations (user_version 1 or more) to their last version; a new one is left alone. */
export function applyLegacyMigrations(db: Database.Database): void {
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version === 0) return;
  for (let v = version; v < LEGACY_MIGRATIONS.length; v++) {
    const migration = LEGACY_MIGRATIONS[v] as string;
    db.transaction(() => {
      db.exec(migration);
      db.pragma(`user_version = ${v + 1}`);
    })();
  }
}
