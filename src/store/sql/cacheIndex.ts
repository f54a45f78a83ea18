// The cache index over the store's database (SQLite or Postgres, through Kysely). The engine writes a
// step's row only after its snapshot is committed (snapshot first, index second).
import { randomUUID } from 'node:crypto';
import { sql, type Selectable } from 'kysely';
import type { CopyRecord } from '../../plan/types.js';
import type { StepTrace } from '../../trace/types.js';
import type { BackgroundCommand, CacheIndex, ChainClone, ChainRecord, ChainStepRecord } from '../cacheIndex.js';
import type { StoreDatabase } from '../database.js';
import type { ChainStepsTable, ChainsTable } from './schema.js';
import { createSplitTimings } from './splitTimings.js';

function toStep(row: ChainStepsTable): ChainStepRecord {
  return {
    index: row.idx,
    definitionKey: row.definition_key,
    snapshot: row.snapshot,
    stateId: row.state_id,
    trace: row.trace === null ? null : (JSON.parse(row.trace) as StepTrace),
    copies: JSON.parse(row.copies) as CopyRecord[],
    repeatable: row.repeatable === 1,
    succeeded: row.succeeded === 1,
    background: JSON.parse(row.background) as BackgroundCommand[],
    listening: JSON.parse(row.listening) as number[],
    splitTimings: row.split_timings,
  };
}

function stepRow(chainId: string, step: ChainStepRecord): ChainStepsTable {
  return {
    chain_id: chainId,
    idx: step.index,
    definition_key: step.definitionKey,
    snapshot: step.snapshot,
    state_id: step.stateId,
    trace: step.trace === null ? null : JSON.stringify(step.trace),
    copies: JSON.stringify(step.copies),
    repeatable: step.repeatable ? 1 : 0,
    succeeded: step.succeeded ? 1 : 0,
    background: JSON.stringify(step.background),
    listening: JSON.stringify(step.listening ?? []),
    split_timings: step.splitTimings ?? null,
  };
}

export function createCacheIndex(database: StoreDatabase): CacheIndex {
  const db = database.sql;
  const splitTimings = createSplitTimings(database);
  const withSteps = async (chains: readonly Selectable<ChainsTable>[]): Promise<ChainRecord[]> => {
    if (chains.length === 0) return [];
    const steps = await db
      .selectFrom('chain_steps')
      .selectAll()
      .where('chain_id', 'in', chains.map((c) => c.id))
      .orderBy('chain_id')
      .orderBy('idx')
      .execute();
    return chains.map((row) => ({
      id: row.id,
      repo: row.repo,
      runner: row.runner,
      layerfile: row.layerfile,
      tree: row.tree,
      runId: row.run_id,
      createdAt: row.created_at,
      complete: row.complete === 1,
      steps: steps.filter((s) => s.chain_id === row.id).map(toStep),
      clones: JSON.parse(row.clones) as ChainClone[],
    }));
  };
  return {
    splitTimings,
    async chainOfRun(runId, runner) {
      const chain = await db.selectFrom('chains').selectAll().where('run_id', '=', runId).where('runner', '=', runner).orderBy('created_at', 'desc').orderBy('rowid', 'desc').limit(1).execute();
      return (await withSteps(chain))[0];
    },
    async candidates(repo, runner, firstKey, limit = 20) {
      const chains = await db
        .selectFrom('chains as c')
        .innerJoin('chain_steps as s', (join) => join.onRef('s.chain_id', '=', 'c.id').on('s.idx', '=', 0))
        .selectAll('c')
        .where('c.repo', '=', repo)
        .where('c.runner', '=', runner)
        .where('s.definition_key', '=', firstKey)
        .orderBy('c.created_at', 'desc')
        .orderBy('c.rowid', 'desc')
        .limit(limit)
        .execute();
      return withSteps(chains);
    },
    async startChain(chain, now) {
      const id = randomUUID();
      await db
        .insertInto('chains')
        .values({ id, repo: chain.repo, runner: chain.runner, layerfile: chain.layerfile, tree: chain.tree, run_id: chain.runId, created_at: now, complete: 0, clones: JSON.stringify(chain.clones ?? []) })
        .execute();
      return id;
    },
    async addStep(chainId, step) {
      const { chain_id: _chain, idx: _idx, ...update } = stepRow(chainId, step);
      await db
        .insertInto('chain_steps')
        .values(stepRow(chainId, step))
        .onConflict((oc) => oc.columns(['chain_id', 'idx']).doUpdateSet(update))
        .execute();
    },
    async completeChain(chainId) {
      await db.updateTable('chains').set({ complete: 1 }).where('id', '=', chainId).execute();
    },
    async referencedSnapshots() {
      const rows = await db.selectFrom('chain_steps').select('snapshot').distinct().where('snapshot', 'is not', null).execute();
      return new Set(rows.map((r) => r.snapshot as string));
    },
    async pruneChains(keep) {
      const ranked = db
        .selectFrom('chains')
        .select(['id', sql<number>`ROW_NUMBER() OVER (PARTITION BY repo, runner ORDER BY created_at DESC, rowid DESC)`.as('newness')])
        .as('ranked');
      const result = await db
        .deleteFrom('chains')
        .where('id', 'in', db.selectFrom(ranked).select('ranked.id').where('ranked.newness', '>', Math.max(1, keep)))
        .executeTakeFirst();
      // Timing sets frozen for SPLITs that no remaining chain step names (a day's grace: see splitTimings.ts).
      await splitTimings.pruneUnreferenced(Date.now(), 24 * 3600 * 1000);
      return Number(result.numDeletedRows);
    },
  };
}
