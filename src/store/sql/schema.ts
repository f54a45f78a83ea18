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

export interface ServerUsersTable {
  name: string;
  password_hash: string;
  created_at: number;
}

export interface ServerSessionsTable {
  id_hash: string;
  user_name: string;
  created_at: number;
  expires_at: number;
}

export interface ServerApiTokensTable {
  token_hash: string;
  user_name: string;
  created_at: number;
}

export interface ServerReposTable {
  name: string;
  url: string;
  default_branch: string;
  poll_seconds: number | null;
  public_previews: Generated<number>;
  webhook_secret_encrypted: string;
  created_at: number;
}

export interface ServerRepoSecretsTable {
  repo: string;
  name: string;
  value_encrypted: string;
  updated_at: number;
}

export interface JobsTable {
  rowid: RowId;
  id: string;
  repo: string;
  branch: string;
  commit_id: string;
  title: string;
  author: string;
  trigger: string;
  status: string;
  no_cache: number;
  no_cache_dirs: number;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
  duration_ms: number | null;
  steps_ran: Generated<number>;
  steps_cached: Generated<number>;
  run_id: string | null;
  message: string | null;
  attempts: Generated<number>;
  lease_until: number | null;
  pull_request_url: string | null;
  /** The `strata worker` running (or that ran) the job; null: the server itself, or not claimed yet. */
  worker: string | null;
}

export interface WorkersTable {
  name: string;
  token_hash: string;
  created_at: number;
  revoked_at: number | null;
  last_seen_at: number | null;
  /** JSON: what the worker said of itself at its last heartbeat (host, version, running jobs). */
  info: string;
}

export interface JobRunnersTable {
  job_id: string;
  runner: string;
  position: number;
  detail: string;
}

export interface WebhookDeliveriesTable {
  delivery_id: string;
  repo: string;
  received_at: number;
}

export interface PollHeadsTable {
  repo: string;
  branch: string;
  commit_id: string;
}

export interface StoreSchema {
  server_users: ServerUsersTable;
  server_sessions: ServerSessionsTable;
  server_api_tokens: ServerApiTokensTable;
  server_repos: ServerReposTable;
  server_repo_secrets: ServerRepoSecretsTable;
  jobs: JobsTable;
  job_runners: JobRunnersTable;
  webhook_deliveries: WebhookDeliveriesTable;
  poll_heads: PollHeadsTable;
  workers: WorkersTable;
  runs: RunsTable;
  run_runners: RunRunnersTable;
  run_steps: RunStepsTable;
  chains: ChainsTable;
  chain_steps: ChainStepsTable;
  split_timings: SplitTimingsTable;
  split_timing_sets: SplitTimingSetsTable;
}
