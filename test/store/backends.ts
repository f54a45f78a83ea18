// Runs the cache index, run log and split timings conformance suites against every implementation of
// those ports: over SQLite and over Postgres (databases.ts), and through a server's worker API (what a
// `strata worker`'s engine uses: src/worker/remoteStores.ts against a real server on a free port, its
// stores over SQLite). `open()` may be called again: a new connection to the same stores.
import { describe, type TestContext } from 'node:test';
import type { CacheIndex } from '../../src/store/cacheIndex.js';
import type { RunLog } from '../../src/store/runs.js';
import { createCacheIndex } from '../../src/store/sql/cacheIndex.js';
import { createRunLog } from '../../src/store/sql/runLog.js';
import { createWorkerClient } from '../../src/worker/client.js';
import { createRemoteStores } from '../../src/worker/remoteStores.js';
import { startTestServer } from '../server/harness.js';
import { eachDatabase } from './databases.js';

export interface TestStores {
  kind: 'sqlite' | 'postgres' | 'server';
  open(): Promise<{ cacheIndex: CacheIndex; runLog: RunLog }>;
}

export type StoresFactory = (t: TestContext) => Promise<TestStores>;

export function eachStoreBackend(suite: (fresh: StoresFactory) => void): void {
  eachDatabase((fresh) =>
    suite(async (t) => {
      const database = await fresh(t);
      return {
        kind: database.kind,
        open: async () => {
          const db = await database.open();
          return { cacheIndex: createCacheIndex(db), runLog: createRunLog(db) };
        },
      };
    }),
  );
  describe('through the worker API', () => {
    suite(async (t) => {
      const server = await startTestServer(t, { stores: true });
      const token = await server.workers.add('conformance');
      return { kind: 'server', open: async () => createRemoteStores(createWorkerClient({ server: server.base, token })) };
    });
  });
}
