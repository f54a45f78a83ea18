// Runs a store conformance suite against every database the store supports: embedded SQLite (a file in
// a temporary directory) and a real Postgres server (test/helpers/pgServer.ts, one throwaway cluster
// per test file, one database per test). `open()` may be called again for the same database: it is how
// a test checks what survives a reopen.
import { after, before, describe } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { openDatabase, openPostgres, type StoreDatabase } from '../../src/store/database.js';
import { startPgServer, type PgServer } from '../helpers/pgServer.js';

export interface TestDatabase {
  kind: 'sqlite' | 'postgres';
  /** Opens (migrating) this test's database; every handle is closed after the test. */
  open(): Promise<StoreDatabase>;
}

/** A fresh database of this kind for test `t`. */
export type DatabaseFactory = (t: TestContext) => Promise<TestDatabase>;

export function eachDatabase(suite: (fresh: DatabaseFactory) => void): void {
  describe('sqlite', () => {
    suite(async (t) => {
      const dir = mkdtempSync(join(tmpdir(), 'strata-db-'));
      const handles: StoreDatabase[] = [];
      t.after(async () => {
        for (const h of handles) await h.close().catch(() => {});
        rmSync(dir, { recursive: true, force: true });
      });
      return { kind: 'sqlite', open: async () => handles[handles.push(await openDatabase(join(dir, 'strata.db'))) - 1] as StoreDatabase };
    });
  });
  describe('postgres', () => {
    let server: PgServer | undefined;
    before(async () => {
      server = await startPgServer();
    });
    after(async () => {
      await server?.destroy();
    });
    suite(async (t) => {
      const url = await (server as PgServer).createDatabase();
      const handles: StoreDatabase[] = [];
      t.after(async () => {
        for (const h of handles) await h.close().catch(() => {});
      });
      return { kind: 'postgres', open: async () => handles[handles.push(await openPostgres(url)) - 1] as StoreDatabase };
    });
  });
}
