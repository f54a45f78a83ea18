// What every part of the server gets: configuration, the database, the engine, auth and the jobs. Built
// once by the server's composition (src/server/compose.ts) and passed to each route plugin.
import type { FastifyBaseLogger, FastifyRequest } from 'fastify';
import type { EngineDeps } from '../engine/ports.js';
import type { StoreDatabase } from '../store/database.js';
import type { JobService } from './jobs/types.js';
import type { RepoStore } from './repos/types.js';
import type { WorkerStore } from './workers/store.js';

export interface ServerUser {
  name: string;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Set for every request by the server's auth hook (src/server/app.ts): the logged-in user or null. */
    user: ServerUser | null;
    /** Set by the same hook: the `strata worker` whose token the request bears, or null. */
    worker: { name: string } | null;
  }
}

export interface ServerConfig {
  storeRoot: string;
  /** Postgres (`--database postgres://...`) for all of the server's state; default the store's SQLite file. */
  databaseUrl?: string | undefined;
  host: string;
  port: number;
  /** The URL people reach the server at: preview links and commit-status target URLs start with it. */
  publicUrl: string;
  /** How many jobs this server runs at once itself; 0: only `strata worker`s run jobs. */
  concurrency: number;
  /** How long a job's claim holds without a renewal (default 30 s): a dead worker's job is queued again after it. */
  leaseMs?: number | undefined;
  /** A preview machine idle this long is destroyed (woken again from its snapshot on the next request). */
  previewIdleMs: number;
  /** GitHub-compatible statuses API (POST {base}/repos/{owner}/{repo}/statuses/{sha}); none: not posted. */
  statusApi?: { baseUrl: string; token: string } | undefined;
}

export interface ServerContext {
  config: ServerConfig;
  /** The server's database: the store's SQLite, or Postgres (`strata serve --database`). */
  db: StoreDatabase;
  /** The engine's dependencies; a job runs with `{ ...engine, reporter: itsOwnReporter }`. */
  engine: EngineDeps;
  /** The user behind a request (session cookie or bearer token), or null. */
  authenticate(request: FastifyRequest): Promise<ServerUser | null>;
  repos: RepoStore;
  workers: WorkerStore;
  jobs: JobService;
  log: FastifyBaseLogger;
}
