// The workers a server lets lease its jobs (`strata worker`): each has a name and a token, shown once
// when it is added (`strata worker add <name>`); the table keeps only the token's sha256. A revoked
// worker's token is refused from then on. Worker tokens open the worker API (/api/worker/...) and
// nothing else; user tokens never open it.
import { createHash, randomBytes } from 'node:crypto';
import { StrataError } from '../../errors.js';
import type { StoreDatabase } from '../../store/database.js';
import type { WorkerSummary } from '../api/types.js';

export const WORKER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** Worker tokens start with this (user tokens with `strata_`). */
export const WORKER_TOKEN_PREFIX = 'strata_worker_';

export type { WorkerSummary } from '../api/types.js';

export interface WorkerStore {
  /** Adds a worker; its token (shown once). STRATA_CONFLICT if the name is taken. */
  add(name: string): Promise<string>;
  /** Revokes a worker's token; STRATA_NOT_FOUND if there is no such worker. */
  revoke(name: string): Promise<void>;
  list(): Promise<WorkerSummary[]>;
  /** The worker a token belongs to, unless revoked. */
  workerForToken(token: string): Promise<{ name: string } | null>;
  /** Records a heartbeat: when, and what the worker said of itself. */
  seen(name: string, info: Record<string, unknown>, now: number): Promise<void>;
}

const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');

export function createWorkerStore(database: StoreDatabase, now: () => number = Date.now): WorkerStore {
  const db = database.sql;
  return {
    async add(name) {
      if (!WORKER_NAME.test(name)) throw new StrataError('STRATA_USAGE', `invalid worker name ${JSON.stringify(name)}`, { hint: 'letters, digits, ., _ and -, starting with a letter or digit' });
      const token = WORKER_TOKEN_PREFIX + randomBytes(32).toString('base64url');
      const inserted = await db
        .insertInto('workers')
        .values({ name, token_hash: sha256(token), created_at: now(), info: '{}' })
        .onConflict((oc) => oc.column('name').doNothing())
        .executeTakeFirst();
      if (Number(inserted.numInsertedOrUpdatedRows ?? 0) !== 1) throw new StrataError('STRATA_CONFLICT', `worker ${name} already exists`, { hint: `revoke it (strata worker revoke ${name}) and add one under another name` });
      return token;
    },
    async revoke(name) {
      const result = await db.updateTable('workers').set({ revoked_at: now() }).where('name', '=', name).where('revoked_at', 'is', null).executeTakeFirst();
      if (Number(result.numUpdatedRows) === 1) return;
      const exists = await db.selectFrom('workers').select('name').where('name', '=', name).executeTakeFirst();
      if (!exists) throw new StrataError('STRATA_NOT_FOUND', `no worker ${name}`);
    },
    async list() {
      const rows = await db.selectFrom('workers').selectAll().execute();
      return rows
        .map((row) => ({ name: row.name, createdAt: row.created_at, revokedAt: row.revoked_at, lastSeenAt: row.last_seen_at, info: JSON.parse(row.info) as Record<string, unknown> }))
        .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    },
    async workerForToken(token) {
      if (!token.startsWith(WORKER_TOKEN_PREFIX)) return null;
      const row = await db.selectFrom('workers').select('name').where('token_hash', '=', sha256(token)).where('revoked_at', 'is', null).executeTakeFirst();
      return row ? { name: row.name } : null;
    },
    async seen(name, info, at) {
      await db.updateTable('workers').set({ last_seen_at: at, info: JSON.stringify(info) }).where('name', '=', name).execute();
    },
  };
}
