// A real server (Fastify on a free 127.0.0.1 port, SQLite in a temporary store, real auth and repo
// stores) for route-level tests. The job service is given by the test: the in-memory one below checks
// the HTTP plumbing; the real queue and worker are tested in test/server/jobs/.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import type { EngineDeps } from '../../src/engine/ports.js';
import { StrataError } from '../../src/errors.js';
import type { DurationPoint, JobDetail, JobEvent, JobOptions, JobSummary } from '../../src/server/api/types.js';
import { createServer, type StrataServer } from '../../src/server/app.js';
import { createUserStore, type UserStore } from '../../src/server/auth/users.js';
import type { ServerConfig } from '../../src/server/context.js';
import type { JobFilter, JobService, NewJob } from '../../src/server/jobs/types.js';
import { loadOrCreateServerKey } from '../../src/server/repos/serverKey.js';
import { createRepoStore } from '../../src/server/repos/store.js';
import type { RepoStore } from '../../src/server/repos/types.js';
import { createRemoteCache } from '../../src/source/remote.js';
import { openDatabase, type StoreDatabase } from '../../src/store/database.js';
import { removeStore } from '../helpers/store.js';
import { createWorkerStore, type WorkerStore } from '../../src/server/workers/store.js';
import { createCacheIndex } from '../../src/store/sql/cacheIndex.js';
import { createRunLog } from '../../src/store/sql/runLog.js';

export const USER = { name: 'alice', password: 'correct horse battery' };

export interface TestServer extends StrataServer {
  base: string;
  store: string;
  db: StoreDatabase;
  users: UserStore;
  repos: RepoStore;
  workers: WorkerStore;
  /** A bearer token of USER. */
  token: string;
  /** fetch relative to the server, with USER's token unless `auth: false` (or other headers are given). */
  api(path: string, init?: RequestInit & { auth?: boolean; json?: unknown }): Promise<Response>;
}

export async function startTestServer(t: TestContext, options: { jobs?: JobService; uiDir?: string; heartbeatMs?: number; stores?: boolean } = {}): Promise<TestServer> {
  const store = mkdtempSync(join(tmpdir(), 'strata-server-test-'));
  const db = await openDatabase(join(store, 'strata.db'));
  let server: StrataServer | undefined;
  t.after(async () => {
    await server?.app.close();
    await db.close();
    await removeStore(store);
  });
  const users = createUserStore(db);
  await users.add(USER.name, USER.password);
  const token = await users.createToken(USER.name);
  const repos = createRepoStore(db, loadOrCreateServerKey(store));
  const workers = createWorkerStore(db);
  const config: ServerConfig = { storeRoot: store, host: '127.0.0.1', port: 0, publicUrl: 'http://strata.test', concurrency: 1, previewIdleMs: 60_000 };
  // Route tests touch only the engine's remote cache (manual triggers of non-local repos); the machine
  // parts are exercised by the root-only end-to-end test with the real composition.
  // With `stores`: the cache index and run log over the server's database (the worker API serves them).
  const stores = options.stores ? { cacheIndex: createCacheIndex(db), runLog: createRunLog(db) } : {};
  const engine = { remotes: createRemoteCache(join(store, 'remotes')), ...stores } as unknown as EngineDeps;
  server = await createServer({
    config,
    db,
    engine,
    users,
    repos,
    workers,
    jobs: options.jobs ?? new MemoryJobs(),
    logger: false,
    uiDir: options.uiDir ?? join(store, 'no-ui-here'),
    ...(options.heartbeatMs !== undefined ? { sseHeartbeatMs: options.heartbeatMs } : {}),
  });
  const base = await server.app.listen({ host: '127.0.0.1', port: 0 });
  const api: TestServer['api'] = (path, init = {}) => {
    const { auth = true, json, ...rest } = init;
    const headers = new Headers(rest.headers);
    if (auth && !headers.has('authorization') && !headers.has('cookie')) headers.set('authorization', `Bearer ${token}`);
    if (json !== undefined) headers.set('content-type', 'application/json');
    return fetch(base + path, { ...rest, headers, ...(json !== undefined ? { body: JSON.stringify(json) } : {}) });
  };
  return { ...server, base, store, db, users, repos, workers, token, api };
}

const summary = (id: string, job: NewJob, options: Partial<JobOptions> = {}): JobSummary => ({
  id,
  repo: job.repo,
  branch: job.branch,
  commit: job.commit,
  title: job.title,
  author: job.author,
  trigger: job.trigger,
  status: 'NEW',
  createdAt: 1,
  startedAt: null,
  finishedAt: null,
  durationMs: null,
  stepsRan: 0,
  stepsCached: 0,
  runId: null,
  options: { noCache: options.noCache ?? false, noCacheDirs: options.noCacheDirs ?? false },
});

/** An in-memory JobService that records what the routes asked of it and lets a test publish events. */
export class MemoryJobs implements JobService {
  readonly jobs = new Map<string, JobDetail>();
  readonly events = new Map<string, JobEvent[]>();
  readonly calls: string[] = [];
  private readonly listeners = new Map<string, Set<(seq: number, event: JobEvent) => void>>();

  async enqueue(job: NewJob): Promise<JobSummary> {
    const detail: JobDetail = { ...summary(`job-${this.jobs.size + 1}`, job, job.options), runners: [], message: null };
    this.jobs.set(detail.id, detail);
    this.calls.push(`enqueue ${JSON.stringify(job)}`);
    return detail;
  }
  async list(filter: JobFilter): Promise<JobSummary[]> {
    this.calls.push(`list ${JSON.stringify(filter)}`);
    return [...this.jobs.values()].filter((j) => (filter.repo === undefined || j.repo === filter.repo) && (filter.status === undefined || j.status === filter.status)).reverse();
  }
  async get(id: string): Promise<JobDetail | null> {
    return this.jobs.get(id) ?? null;
  }
  private mustGet(id: string): JobDetail {
    const job = this.jobs.get(id);
    if (!job) throw new StrataError('STRATA_NOT_FOUND', `no job ${id}`);
    return job;
  }
  async cancel(id: string): Promise<JobSummary> {
    const job = this.mustGet(id);
    job.status = 'CANCELLED';
    this.calls.push(`cancel ${id}`);
    return job;
  }
  async retry(id: string, options: Partial<JobOptions>): Promise<JobSummary> {
    const job = this.mustGet(id);
    this.calls.push(`retry ${id} ${JSON.stringify(options)}`);
    return this.enqueue({ ...job, trigger: 'retry', options });
  }
  async approveButton(jobId: string, buttonId: string, user: string): Promise<JobSummary> {
    this.calls.push(`approve ${jobId} ${buttonId} by ${user}`);
    return this.mustGet(jobId);
  }
  async durations(filter: { repo?: string | undefined; limit?: number | undefined }): Promise<DurationPoint[]> {
    this.calls.push(`durations ${JSON.stringify(filter)}`);
    return [];
  }
  /** Stores an event (seq = its position, from 1) and hands it to live subscribers. */
  publish(jobId: string, event: JobEvent): number {
    const list = this.events.get(jobId) ?? [];
    this.events.set(jobId, list);
    list.push(event);
    for (const listener of this.listeners.get(jobId) ?? []) listener(list.length, event);
    return list.length;
  }
  subscribers(jobId: string): number {
    return this.listeners.get(jobId)?.size ?? 0;
  }
  subscribe(jobId: string, afterSeq: number, onEvent: (seq: number, event: JobEvent) => void): () => void {
    (this.events.get(jobId) ?? []).forEach((event, index) => {
      if (index + 1 > afterSeq) onEvent(index + 1, event);
    });
    const listeners = this.listeners.get(jobId) ?? new Set();
    this.listeners.set(jobId, listeners);
    listeners.add(onEvent);
    return () => listeners.delete(onEvent);
  }
  async log(jobId: string, filter: { runner?: string | undefined; step?: number | undefined }): Promise<string> {
    this.calls.push(`log ${jobId} ${JSON.stringify(filter)}`);
    return `\u001b[32mlog of ${jobId}\u001b[0m\n`;
  }
  start(): void {}
  async stop(): Promise<void> {}
}

/** The error body of an API answer. */
export async function errorOf(response: Response): Promise<{ code: string; message: string; hint?: string }> {
  const body = (await response.json()) as { error: { code: string; message: string; hint?: string } };
  return body.error;
}
