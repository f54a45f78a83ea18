// A real engine (test/helpers/engine.ts) with a small Fastify app around one server plugin, and a tiny
// server context: jobs.get maps fake job ids to real engine runs, repos.get answers publicPreviews,
// authenticate accepts one bearer token. That is plumbing: what is tested runs for real (machines,
// snapshots, the database, HTTP on a real port). Also: what machines and active snapshots exist now.
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import websocket from '@fastify/websocket';
import type { EngineDeps } from '../../../src/engine/ports.js';
import { noSecrets } from '../../../src/engine/secrets.js';
import type { JobDetail, JobStatus, Repo } from '../../../src/server/api/types.js';
import type { ServerContext } from '../../../src/server/context.js';
import type { JobService } from '../../../src/server/jobs/types.js';
import type { RepoStore } from '../../../src/server/repos/types.js';
import { machineCgroupDirs } from '../../../src/sandbox/runc/cgroups.js';
import { openDatabase } from '../../../src/store/database.js';
import { exec } from '../../../src/util/exec.js';
import { createTestEngine, type TestEngine } from '../../helpers/engine.js';
import { createWorkerStore } from '../../../src/server/workers/store.js';

export const TOKEN = 'test-token';
export const authorized = { authorization: `Bearer ${TOKEN}` };

export interface Harness {
  engine: TestEngine;
  /** Fake job id → the job the server sees (status, runId, runners). */
  jobs: Map<string, JobDetail>;
  repo: { publicPreviews: boolean };
  /** How many machines the server started (through ctx.engine.sandbox). */
  machineStarts(): number;
  ctx: ServerContext;
  /** Registers `plugin` on a fresh app (with @fastify/websocket), listens on 127.0.0.1; returns its base URL. */
  serve(plugin: (app: FastifyInstance, options: { ctx: ServerContext }) => Promise<void>): Promise<string>;
  /** Names of this store's runc containers and active snapshots whose names contain `part`. */
  leftovers(part: string): Promise<{ containers: string[]; cgroups: string[]; activeSnapshots: string[] }>;
}

export function jobFor(id: string, runId: string, status: JobStatus, runners: string[]): JobDetail {
  return {
    id, repo: 'demo', branch: 'main', commit: '0'.repeat(40), title: 'test', author: 'test', trigger: 'manual', status,
    createdAt: 0, startedAt: 0, finishedAt: 1, durationMs: 1, stepsRan: 0, stepsCached: 0, runId,
    options: { noCache: false, noCacheDirs: false }, message: null,
    runners: runners.map((runner) => ({
      runner, layerfile: 'Layerfile', level: 1, status, durationMs: 1, message: null, steps: [], buttons: [], previews: [], debuggable: status === 'FAILURE',
    })),
  };
}

export async function createHarness(t: TestContext, previewIdleMs = 60_000): Promise<Harness> {
  // After-hooks run in registration order: the app and database must go before the engine's store.
  const cleanups: Array<() => Promise<void> | void> = [];
  t.after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });
  const engine = await createTestEngine(t);
  const database = await openDatabase(join(engine.store, 'strata.db'));
  cleanups.push(() => database.close());

  let starts = 0;
  const sandbox: EngineDeps['sandbox'] = {
    start: (request) => {
      starts++;
      return engine.engine.deps.sandbox.start(request);
    },
  };
  const jobs = new Map<string, JobDetail>();
  const repo = { publicPreviews: false };
  const repoRecord = (): Repo => ({ name: 'demo', url: '/nowhere', defaultBranch: 'main', pollSeconds: null, publicPreviews: repo.publicPreviews, createdAt: 0 });
  const ctx: ServerContext = {
    config: { storeRoot: engine.store, host: '127.0.0.1', port: 0, publicUrl: 'http://127.0.0.1', concurrency: 1, previewIdleMs },
    db: database,
    engine: { ...engine.engine.deps, sandbox },
    authenticate: async (request) => (request.headers.authorization === authorized.authorization ? { name: 'tester' } : null),
    repos: { get: async (name: string) => (name === 'demo' ? repoRecord() : null), secretsFor: async () => noSecrets } as unknown as RepoStore,
    jobs: { get: async (id: string) => jobs.get(id) ?? null } as unknown as JobService,
    workers: createWorkerStore(database),
    log: Fastify().log,
  };

  const storeTag = createHash('sha256').update(engine.store).digest('hex').slice(0, 8);
  return {
    engine,
    jobs,
    repo,
    machineStarts: () => starts,
    ctx,
    async serve(plugin) {
      const app = Fastify();
      cleanups.push(() => app.close());
      await app.register(websocket);
      await app.register(plugin, { ctx });
      const address = await app.listen({ host: '127.0.0.1', port: 0 });
      return address;
    },
    async leftovers(part) {
      const listed = await exec('runc', ['--root', join('/run/strata', storeTag, 'runc'), 'list', '--quiet']);
      return {
        containers: listed.stdout.split('\n').filter((name) => name.includes(part)),
        cgroups: machineCgroupDirs((name) => name.startsWith(`strata-${storeTag}-`) && name.includes(part)),
        activeSnapshots: (await engine.engine.deps.snapshots.list()).filter((s) => s.kind === 'active' && s.id.includes(part)).map((s) => s.id),
      };
    },
  };
}

/** Polls `check` until it returns true (fails with `what` after `ms`). */
export async function eventually(what: string, check: () => Promise<boolean>, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}
