// Polling, for repositories without webhooks: every Repo.pollSeconds, `git ls-remote --heads` of the
// repo's URL; each branch head that changed (or a new branch) since the last poll becomes a job. The
// heads are kept in the database (poll_heads), so a restart neither re-runs nor misses a push; the very
// first poll of a repo only records them.
import { tmpdir } from 'node:os';
import type { Db } from '../../store/database.js';
import { execOrThrow } from '../../util/exec.js';
import type { JobSummary, Repo } from '../api/types.js';
import type { JobService, JobsLog } from '../jobs/types.js';
import type { RepoStore } from '../repos/types.js';

export interface PollerDeps {
  db: Db;
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

export function startPoller(deps: PollerDeps, options: { tickMs?: number | undefined; now?: (() => number) | undefined } = {}): Poller {
  const now = options.now ?? (() => Date.now());
  const selectHeads = deps.db.prepare<[string], { branch: string; commit_id: string }>('SELECT branch, commit_id FROM poll_heads WHERE repo = ?');
  const deleteHeads = deps.db.prepare('DELETE FROM poll_heads WHERE repo = ?');
  const insertHead = deps.db.prepare('INSERT INTO poll_heads (repo, branch, commit_id) VALUES (?, ?, ?)');
  const lastPolled = new Map<string, number>();
  const inFlight = new Set<string>();

  const pollRepo = async (repo: Pick<Repo, 'name' | 'url'>): Promise<JobSummary[]> => {
    const heads = await remoteHeads(repo.url);
    const known = new Map(selectHeads.all(repo.name).map((row) => [row.branch, row.commit_id]));
    const firstPoll = known.size === 0;
    const changed = firstPoll ? [] : [...heads].filter(([branch, commit]) => known.get(branch) !== commit);
    deps.db.transaction(() => {
      deleteHeads.run(repo.name);
      insertHead.run(repo.name, POLLED_MARKER, '');
      for (const [branch, commit] of heads) insertHead.run(repo.name, branch, commit);
    })();
    // Title and author are left empty: the worker reads them from the commit once it has fetched it.
    return changed.map(([branch, commit]) => deps.jobs.enqueue({ repo: repo.name, branch, commit, title: '', author: '', trigger: 'poll' }));
  };

  const tick = () => {
    for (const repo of deps.repos.list()) {
      if (repo.pollSeconds === null || repo.pollSeconds <= 0 || inFlight.has(repo.name)) continue;
      if (now() - (lastPolled.get(repo.name) ?? -Infinity) < repo.pollSeconds * 1000) continue;
      lastPolled.set(repo.name, now());
      inFlight.add(repo.name);
      pollRepo(repo)
        .then((jobs) => {
          for (const job of jobs) deps.log.info(`poll: ${repo.name} ${job.branch} is at ${job.commit.slice(0, 12)}: job ${job.id}`);
        })
        .catch((error: unknown) => deps.log.warn(`poll of ${repo.name} failed: ${error instanceof Error ? error.message : String(error)}`))
        .finally(() => inFlight.delete(repo.name));
    }
  };

  const timer = setInterval(tick, options.tickMs ?? 1000);
  timer.unref();
  tick();
  return {
    pollRepo,
    stop() {
      clearInterval(timer);
    },
  };
}
