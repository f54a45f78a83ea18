// The store's tables as Kysely sees them: one typed description for SQLite and Postgres alike.
// Times are milliseconds since the epoch (bigint in Postgres, read back as numbers: see open.ts);
// flags are 0/1 integers and structured values JSON text in both databases, so one query serves both.
import type { Generated } from 'kysely';

/**
 * Insertion order. SQLite has it as the implicit `rowid`; Postgres tables that are read back in
 * insertion order carry an explicit `rowid bigserial` column of the same name (migrations.ts).
 */
type RowId = Generated<number>;

export interface RunsTable {
  rowid: RowId;
  id: string;
  repo: string;
  commit_id: string | null;
  tree: string;
  branch: string;
  started_at: number;
  finished_at: number | null;
  status: string;
}

export interface RunRunnersTable {
  rowid: RowId;
  run_id: string;
  runner: string;
  layerfile: string;
  status: string;
  plan: string | null;
  started_at: number | null;
  finished_at: number | null;
}

export interface RunStepsTable {
  run_id: string;
  runner: string;
  idx: number;
  line: number;
  text: string;
  status: string;
  reason: string | null;
  duration_ms: number | null;
  snapshot: string | null;
}

export interface ChainsTable {
  rowid: RowId;
  id: string;
  repo: string;
  runner: string;
  layerfile: string;
  tree: string;
  run_id: string;
  created_at: number;
  complete: number;
  clones: string;
}

export interface ChainStepsTable {
  chain_id: string;
  idx: number;
  definition_key: string;
  snapshot: string | null;
  state_id: string;
  trace: string | null;
  copies: string;
  repeatable: number;
  succeeded: number;
  background: string;
  listening: string;
  split_timings: string | null;
}

export interface SplitTimingsTable {
  repo: string;
  layerfile: string;
  path: string;
  seconds: number;
  updated_at: number;
}

export interface SplitTimingSetsTable {
  digest: string;
  content: string;
  created_at: number;
}

export interface StoreSchema {
  runs: RunsTable;
  run_runners: RunRunnersTable;
  run_steps: RunStepsTable;
  chains: ChainsTable;
  chain_steps: ChainStepsTable;
  split_timings: SplitTimingsTable;
  split_timing_sets: SplitTimingSetsTable;
}
