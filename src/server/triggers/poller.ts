// Polling, for repositories without webhooks: every Repo.pollSeconds, `git ls-remote --heads` of the
// repo's URL; each branch head that changed (or a new branch) since the last poll becomes a job. The
// heads are kept in the database (poll_heads), recorded after the jobs are queued, so a restart never
// misses a push (a crash between the two queues a push twice); the very first poll of a repo only
// records them.
import { tmpdir } from 'node:os';
import type { StoreDatabase } from '../../store/database.js';
import { execOrThrow } from '../../util/exec.js';
import type { JobSummary, Repo } from '../api/types.js';
import type { JobService, JobsLog } from '../jobs/types.js';
import type { RepoStore } from '../repos/types.js';

export interface PollerDeps {
  db: StoreDatabase;
  repos: Pick<RepoStore, 'list'>;
  jobs: Pick<JobService, 'enqueue'>;
  log: JobsLog;
}

export interface Poller {
  /** Polls one repository now: the jobs it enqueued. */
  pollRepo(repo: Pick<Repo, 'name' | 'url'>): Promise<JobSummary[]>;
  stop(): void;
}

/** The row that marks a repo as polled before (so an empty repo's first branch is a change). */
const POLLED_MARKER = '';

/** Branch → head commit, from `git ls-remote --heads`. */
export async function remoteHeads(url: string): Promise<Map<string, string>> {
  const { stdout } = await execOrThrow('git', ['ls-remote', '--heads', url], {
    cwd: tmpdir(),
    env: { ...process.env, GIT_TERMINAL_PROMPT: '0', GIT_ASKPASS: 'true' },
    timeoutMs: 120_000,
    errorCode: 'STRATA_ENGINE',
  });
  const heads = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    const [commit, ref] = line.split('\t');
    if (commit && ref?.startsWith('refs/heads/')) heads.set(ref.slice('refs/heads/'.length), commit);
  }
  return heads;
}

/** Rows per statement when recording heads (3 parameters each: well under SQLite's and Postgres's limits). */
const HEADS_CHUNK = 500;

/**
 * Records `heads` as `repo`'s known branch heads (poll_heads) and returns the branches whose head is
 * new or moved since the last call, in `heads` order; none on a repo's first call (it only records).
 * `beforeRecording` gets them before anything is written (the poller enqueues their jobs there): a
 * crash before the heads are recorded makes the next poll enqueue them again (a job too many, never
 * a push missed).
 * Without a transaction (the SQLite connection is shared: see database.ts): the new and moved heads
 * (and the polled marker) are upserted first, then the rows of deleted branches are deleted. A crash in
 * between only leaves rows of deleted branches behind (deleted by the next call), never a head that
 * was not recorded; nothing is written when nothing changed.
 */
export async function advancePollHeads(
  database: StoreDatabase,
  repo: string,
  heads: ReadonlyMap<string, string>,
  beforeRecording?: (changed: Array<[branch: string, commit: string]>) => Promise<void>,
): Promise<Array<[branch: string, commit: string]>> {
  const db = database.sql;
  const rows = await db.selectFrom('poll_heads').select(['branch', 'commit_id']).where('repo', '=', repo).execute();
  const known = new Map(rows.map((row) => [row.branch, row.commit_id]));
  const changed = [...heads].filter(([branch, commit]) => branch !== POLLED_MARKER && known.get(branch) !== commit);
  // The very first poll (no marker yet) only records.
  const reported = known.size === 0 ? [] : changed;
  await beforeRecording?.(reported);
  const upserts = changed.map(([branch, commit]) => ({ repo, branch, commit_id: commit }));
  if (!known.has(POLLED_MARKER)) upserts.unshift({ repo, branch: POLLED_MARKER, commit_id: '' });
  for (let i = 0; i < upserts.length; i += HEADS_CHUNK) {
    await db
      .insertInto('poll_heads')
      .values(upserts.slice(i, i + HEADS_CHUNK))
      .onConflict((oc) => oc.columns(['repo', 'branch']).doUpdateSet((eb) => ({ commit_id: eb.ref('excluded.commit_id') })))
      .execute();
  }
  const gone = [...known.keys()].filter((branch) => branch !== POLLED_MARKER && !heads.has(branch));
  for (let i = 0; i < gone.length; i += HEADS_CHUNK) {
    await db.deleteFrom('poll_heads').where('repo', '=', repo).where('branch', 'in', gone.slice(i, i + HEADS_CHUNK)).execute();
  }
  return reported;
}

export function startPoller(deps: PollerDeps, options: { tickMs?: number | undefined; now?: (() => number) | undefined } = {}): Poller {
  const now = options.now ?? (() => Date.now());
  const lastPolled = new Map<string, number>();
  const inFlight = new Set<string>();
  let stopped = false;

  const pollRepo = async (repo: Pick<Repo, 'name' | 'url'>): Promise<JobSummary[]> => {
    const jobs: JobSummary[] = [];
    await advancePollHeads(deps.db, repo.name, await remoteHeads(repo.url), async (changed) => {
      // Title and author are left empty: the worker reads them from the commit once it has fetched it.
      for (const [branch, commit] of changed) jobs.push(await deps.jobs.enqueue({ repo: repo.name, branch, commit, title: '', author: '', trigger: 'poll' }));
    });
    return jobs;
  };

  const pollDue = (repo: Repo) => {
    if (repo.pollSeconds === null || repo.pollSeconds <= 0 || inFlight.has(repo.name)) return;
    if (now() - (lastPolled.get(repo.name) ?? -Infinity) < repo.pollSeconds * 1000) return;
    lastPolled.set(repo.name, now());
    inFlight.add(repo.name);
    pollRepo(repo)
      .then((jobs) => {
        for (const job of jobs) deps.log.info(`poll: ${repo.name} ${job.branch} is at ${job.commit.slice(0, 12)}: job ${job.id}`);
      })
      .catch((error: unknown) => deps.log.warn(`poll of ${repo.name} failed: ${message(error)}`))
      .finally(() => inFlight.delete(repo.name));
  };

  // One listing at a time: a slow database must not pile up ticks.
  let listing = false;
  const tick = () => {
    if (listing || stopped) return;
    listing = true;
    deps.repos
      .list()
      .then((repos) => {
        if (!stopped) for (const repo of repos) pollDue(repo);
      })
      .catch((error: unknown) => deps.log.warn(`poll: cannot list the repositories: ${message(error)}`))
      .finally(() => {
        listing = false;
      });
  };

  const timer = setInterval(tick, options.tickMs ?? 1000);
  timer.unref();
  tick();
  return {
    pollRepo,
    stop() {
      stopped = true;
      clearInterval(timer);
    },
  };
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
