// The job queue over the server's database (through Kysely): one UPDATE ... RETURNING claims the oldest
// NEW job and sets its lease (on Postgres claims take turns under an advisory lock, so servers sharing
// the database never pass the concurrency limit together). Every other operation is one statement (see
// src/store/database.ts on transactions).
import { sql, type Kysely, type Updateable } from 'kysely';
import type { JobStatus } from '../api/types.js';
import type { StoreDatabase } from '../../store/database.js';
import type { JobsTable, StoreSchema } from '../../store/sql/schema.js';
import { MAX_ATTEMPTS, newJobId, STOPPED_TWICE_MESSAGE, toJob, type JobProgress, type JobQueue, type QueuedJob } from './queue.js';

/** A LIKE pattern matching `text` anywhere, literally (its %, _ and \\ escaped with \\). */
function containsPattern(text: string): string {
  return `%${text.toLowerCase().replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

/** The columns a JobProgress sets (undefined fields are left alone). */
function progressColumns(progress: JobProgress): Updateable<JobsTable> {
  const set: Updateable<JobsTable> = {};
  if (progress.title !== undefined) set.title = progress.title;
  if (progress.author !== undefined) set.author = progress.author;
  if (progress.runId !== undefined) set.run_id = progress.runId;
  if (progress.stepsRan !== undefined) set.steps_ran = progress.stepsRan;
  if (progress.stepsCached !== undefined) set.steps_cached = progress.stepsCached;
  if (progress.message !== undefined) set.message = progress.message;
  return set;
}

/** The Postgres advisory lock claims take turns under (an arbitrary constant). */
const CLAIM_LOCK = 0x7374726171;

export function createJobQueue(database: StoreDatabase): JobQueue {
  const db = database.sql;
  const get = async (id: string): Promise<QueuedJob | undefined> => {
    const row = await db.selectFrom('jobs').selectAll().where('id', '=', id).executeTakeFirst();
    return row ? toJob(row) : undefined;
  };
  const elapsed = (now: number) => sql<number | null>`CASE WHEN started_at IS NULL THEN NULL ELSE ${now} - started_at END`;

  return {
    async insert(job, now) {
      const id = newJobId(now);
      return db
        .insertInto('jobs')
        .values({
          id,
          repo: job.repo,
          branch: job.branch,
          commit_id: job.commit,
          title: job.title,
          author: job.author,
          trigger: job.trigger,
          pull_request_url: job.pullRequestUrl ?? null,
          status: 'NEW',
          no_cache: job.options?.noCache ? 1 : 0,
          no_cache_dirs: job.options?.noCacheDirs ? 1 : 0,
          created_at: now,
        })
        .returningAll()
        .executeTakeFirstOrThrow()
        .then(toJob);
    },
    get,
    async claim(now, leaseMs, concurrency, worker = null) {
      // One statement: choosing and taking the job cannot interleave with another claim on SQLite (one
      // writer). On Postgres two servers' statements could each count the RUNNING jobs before the other
      // commits and together pass the limit: there claims take turns under a transaction-scoped lock.
      const claimOldest = (trx: Kysely<StoreSchema>) => {
        const oldest = trx.selectFrom('jobs').select('id').where('status', '=', 'NEW').orderBy('created_at').orderBy('rowid').limit(1);
        const running = trx.selectFrom('jobs').select((eb) => eb.fn.countAll().as('n')).where('status', '=', 'RUNNING');
        return trx
          .updateTable('jobs')
          .set((eb) => ({ status: 'RUNNING', started_at: now, finished_at: null, duration_ms: null, lease_until: now + leaseMs, attempts: eb('attempts', '+', 1), worker }))
          .where('id', '=', oldest)
          .where(running, '<', concurrency)
          .returningAll()
          .executeTakeFirst();
      };
      const row =
        database.kind === 'postgres'
          ? await db.transaction().execute(async (trx) => {
              await sql`SELECT pg_advisory_xact_lock(${CLAIM_LOCK})`.execute(trx);
              return claimOldest(trx);
            })
          : await claimOldest(db);
      return row ? toJob(row) : undefined;
    },
    async renewLease(id, leaseUntil) {
      const result = await db.updateTable('jobs').set({ lease_until: leaseUntil }).where('id', '=', id).where('status', '=', 'RUNNING').executeTakeFirst();
      return Number(result.numUpdatedRows) === 1;
    },
    async update(id, progress) {
      const set = progressColumns(progress);
      if (Object.keys(set).length === 0) return;
      await db.updateTable('jobs').set(set).where('id', '=', id).execute();
    },
    async finish(id, status, now, progress = {}) {
      const row = await db
        .updateTable('jobs')
        .set({ ...progressColumns(progress), status, finished_at: now, lease_until: null, duration_ms: elapsed(now) })
        .where('id', '=', id)
        .returningAll()
        .executeTakeFirst();
      if (!row) throw new Error(`job ${id} vanished from the queue`);
      return toJob(row);
    },
    async cancelIfNew(id, now) {
      const result = await db.updateTable('jobs').set({ status: 'CANCELLED', finished_at: now }).where('id', '=', id).where('status', '=', 'NEW').executeTakeFirst();
      return Number(result.numUpdatedRows) === 1;
    },
    async requeue(id) {
      await db
        .updateTable('jobs')
        .set({ status: 'NEW', lease_until: null, started_at: null, attempts: sql<number>`CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END` })
        .where('id', '=', id)
        .where('status', '=', 'RUNNING')
        .execute();
    },
    async recoverExpired(now) {
      // Two statements, each safe alone: those re-queued MAX_ATTEMPTS times end in ERROR, the rest
      // go back to NEW (a claim counts the attempt).
      const errored = await db
        .updateTable('jobs')
        .set({ status: 'ERROR', lease_until: null, finished_at: now, message: STOPPED_TWICE_MESSAGE, duration_ms: elapsed(now) })
        .where('status', '=', 'RUNNING')
        .where('lease_until', '<', now)
        .where('attempts', '>=', MAX_ATTEMPTS)
        .returning(['id', 'created_at'])
        .execute();
      const requeued = await db
        .updateTable('jobs')
        .set({ status: 'NEW', lease_until: null, started_at: null })
        .where('status', '=', 'RUNNING')
        .where('lease_until', '<', now)
        .returning(['id', 'created_at'])
        .execute();
      return [
        ...errored.map((row) => ({ row, outcome: 'errored' as const })),
        ...requeued.map((row) => ({ row, outcome: 'requeued' as const })),
      ]
        .sort((a, b) => a.row.created_at - b.row.created_at)
        .map(({ row, outcome }) => ({ id: row.id, outcome }));
    },
    async list(filter) {
      let query = db.selectFrom('jobs').selectAll();
      if (filter.repo !== undefined) query = query.where('repo', '=', filter.repo);
      if (filter.status !== undefined) query = query.where('status', '=', filter.status);
      if (filter.q !== undefined && filter.q !== '') {
        // The text matched as it is (no wildcards of its own); a commit prefix only when it could be one.
        const pattern = containsPattern(filter.q);
        const q = filter.q;
        query = query.where((eb) =>
          eb.or([
            ...(['branch', 'title', 'author'] as const).map((column) => eb(sql`lower(${sql.ref(column)})`, 'like', sql<string>`${pattern} ESCAPE '\\'`)),
            ...(/^[0-9a-f]+$/i.test(q) ? [eb('commit_id', 'like', `${q.toLowerCase()}%`)] : []),
          ]),
        );
      }
      if (filter.before !== undefined) query = query.where('rowid', '<', db.selectFrom('jobs').select('rowid').where('id', '=', filter.before));
      const limit = Math.min(Math.max(filter.limit ?? 50, 1), 500);
      return (await query.orderBy('rowid', 'desc').limit(limit).execute()).map(toJob);
    },
    async durations(filter) {
      const limit = Math.min(Math.max(filter.limit ?? 100, 1), 1000);
      let query = db.selectFrom('jobs').selectAll().where('duration_ms', 'is not', null).where('status', 'in', ['SUCCESS', 'FAILURE']);
      if (filter.repo !== undefined) query = query.where('repo', '=', filter.repo);
      const rows = await query.orderBy('rowid', 'desc').limit(limit).execute();
      return rows.reverse().map((row) => ({
        jobId: row.id,
        commit: row.commit_id,
        title: row.title,
        durationMs: row.duration_ms as number,
        stepsRan: row.steps_ran,
        stepsCached: row.steps_cached,
        status: row.status as JobStatus,
      }));
    },
  };
}
