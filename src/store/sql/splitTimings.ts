// strata-split timings over the store's database (SQLite or Postgres, through Kysely).
import { createHash } from 'node:crypto';
import type { StoreDatabase } from '../database.js';
import { FORGET_AFTER_MS, MAX_TIMING_PATHS, type SplitTimings } from '../splitTimings.js';

/** Rows per INSERT of reported timings (5 parameters each: well under SQLite's and Postgres's limits). */
const UPSERT_CHUNK = 500;

export function createSplitTimings(database: StoreDatabase): SplitTimings {
  const db = database.sql;
  return {
    // Not one transaction (the SQLite connection is shared: see database.ts): a report cut short by a
    // crash leaves some of its timings stored, which only makes the next SPLIT's shares less even.
    async record(repo, layerfile, entries, now) {
      const newest = new Map<string, number>();
      for (const e of entries.slice(-MAX_TIMING_PATHS)) newest.set(e.path, e.seconds);
      const rows = [...newest].map(([path, seconds]) => ({ repo, layerfile, path, seconds, updated_at: now }));
      for (let i = 0; i < rows.length; i += UPSERT_CHUNK) {
        await db
          .insertInto('split_timings')
          .values(rows.slice(i, i + UPSERT_CHUNK))
          .onConflict((oc) => oc.columns(['repo', 'layerfile', 'path']).doUpdateSet((eb) => ({ seconds: eb.ref('excluded.seconds'), updated_at: eb.ref('excluded.updated_at') })))
          .execute();
      }
      await db.deleteFrom('split_timings').where('repo', '=', repo).where('layerfile', '=', layerfile).where('updated_at', '<', now - FORGET_AFTER_MS).execute();
      return newest.size;
    },
    async freeze(repo, layerfile, now) {
      const rows = await db
        .selectFrom('split_timings')
        .select(['path', 'seconds'])
        .where('repo', '=', repo)
        .where('layerfile', '=', layerfile)
        .orderBy('updated_at', 'desc')
        .orderBy('path')
        .limit(MAX_TIMING_PATHS)
        .execute();
      if (rows.length === 0) return null;
      // Sorted by path: the same timings always freeze into the same set.
      rows.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
      const content = rows.map((r) => `${r.path} ${formatSeconds(r.seconds)}\n`).join('');
      const digest = createHash('sha256').update(content).digest('hex');
      await db
        .insertInto('split_timing_sets')
        .values({ digest, content, created_at: now })
        .onConflict((oc) => oc.column('digest').doUpdateSet({ created_at: now }))
        .execute();
      return digest;
    },
    async content(digest) {
      return (await db.selectFrom('split_timing_sets').select('content').where('digest', '=', digest).executeTakeFirst())?.content;
    },
    async has(digest) {
      return (await db.selectFrom('split_timing_sets').select('digest').where('digest', '=', digest).executeTakeFirst()) !== undefined;
    },
    async pruneUnreferenced(now, minAgeMs) {
      const result = await db
        .deleteFrom('split_timing_sets')
        .where('created_at', '<', now - minAgeMs)
        .where('digest', 'not in', db.selectFrom('chain_steps').select('split_timings as digest').where('split_timings', 'is not', null).$narrowType<{ digest: string }>())
        .executeTakeFirst();
      return Number(result.numDeletedRows);
    },
  };
}

function formatSeconds(seconds: number): string {
  return String(Math.round(seconds * 1000) / 1000);
}
