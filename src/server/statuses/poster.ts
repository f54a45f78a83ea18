// Commit statuses: a GitHub-compatible statuses API (GitHub, Gitea, Forgejo all take
// POST {base}/repos/{owner}/{repo}/statuses/{sha}). Posting never fails a job: a failed post is retried a
// few times, then logged and dropped. Posts go out one at a time, in order, so a "pending" can never
// overtake the "success" that follows it.
import type { JobStatus, Repo } from '../api/types.js';
import type { JobsLog } from '../jobs/types.js';

export type CommitState = 'pending' | 'success' | 'failure' | 'error';

export interface CommitStatus {
  repo: Pick<Repo, 'name' | 'url'>;
  sha: string;
  state: CommitState;
  /** `strata` for the job, `strata/<runner>` per runner. */
  context: string;
  description: string;
  targetUrl: string;
}

export interface StatusPoster {
  /** Queues a status; returns at once. */
  post(status: CommitStatus): void;
  /** Resolves when every queued status was posted (or given up on). */
  flush(): Promise<void>;
}

export interface StatusPosterOptions {
  statusApi: { baseUrl: string; token: string };
  log: JobsLog;
  /** Attempts per status (default 3). */
  attempts?: number | undefined;
  /** Wait before the second attempt, doubled after each (default 1 s). */
  retryDelayMs?: number | undefined;
}

/** A job or runner status as a commit state; null while it has not started (nothing to report). */
export function commitState(status: JobStatus): CommitState | null {
  switch (status) {
    case 'NEW':
      return null;
    case 'WAITING_PARENTS':
    case 'RUNNING':
      return 'pending';
    case 'SUCCESS':
      return 'success';
    case 'FAILURE':
      return 'failure';
    case 'ERROR':
    case 'CANCELLED':
      return 'error';
  }
}

/**
 * owner/repo on the forge: the last two path segments of the repo URL (https://host/o/r.git,
 * git@host:o/r.git, ssh://git@host/o/r); else the repo's name (`o/r`, or `r` as both).
 */
export function forgeRepoPath(repo: Pick<Repo, 'name' | 'url'>): { owner: string; name: string } {
  const segments = repo.url.replace(/\/+$/, '').replace(/\.git$/, '').split(/[/:]/).filter(Boolean);
  const [owner, name] = segments.slice(-2);
  if (segments.length >= 2 && owner && name && /^[\w.-]+$/.test(owner) && /^[\w.-]+$/.test(name)) return { owner, name };
  const [first, second] = repo.name.split('/');
  return second ? { owner: first as string, name: second } : { owner: repo.name, name: repo.name };
}

export function createStatusPoster(options: StatusPosterOptions): StatusPoster {
  const attempts = options.attempts ?? 3;
  const retryDelayMs = options.retryDelayMs ?? 1000;
  const base = options.statusApi.baseUrl.replace(/\/+$/, '');
  let queue: Promise<void> = Promise.resolve();

  const send = async (status: CommitStatus): Promise<void> => {
    const { owner, name } = forgeRepoPath(status.repo);
    const url = `${base}/repos/${encodeURIComponent(owner)}/${encodeURIComponent(name)}/statuses/${status.sha}`;
    const body = JSON.stringify({
      state: status.state,
      target_url: status.targetUrl,
      // GitHub refuses descriptions over 140 characters.
      description: status.description.length > 140 ? `${status.description.slice(0, 139)}…` : status.description,
      context: status.context,
    });
    let lastError = '';
    for (let attempt = 1; attempt <= attempts; attempt++) {
      try {
        const response = await fetch(url, {
          method: 'POST',
          headers: { authorization: `token ${options.statusApi.token}`, 'content-type': 'application/json', accept: 'application/json' },
          body,
          signal: AbortSignal.timeout(15_000),
        });
        await response.arrayBuffer().catch(() => undefined);
        // A 4xx other than rate limiting will not get better by asking again.
        if (response.ok) return;
        lastError = `HTTP ${response.status}`;
        if (response.status >= 400 && response.status < 500 && response.status !== 429) break;
      } catch (error) {
        lastError = error instanceof Error ? error.message : String(error);
      }
      if (attempt < attempts) await new Promise((resolve) => setTimeout(resolve, retryDelayMs * 2 ** (attempt - 1)));
    }
    options.log.warn(`commit status ${status.context}=${status.state} for ${status.repo.name}@${status.sha.slice(0, 12)} not posted: ${lastError}`);
  };

  return {
    post(status) {
      queue = queue.then(() => send(status)).catch(() => undefined);
    },
    flush() {
      return queue;
    },
  };
}
