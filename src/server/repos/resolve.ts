// What a manual trigger builds: a repo's branch (or a given commit) resolved to a full commit id with
// its title and author. A local path is read in place; a git URL is fetched into the engine's remote
// cache (src/source/remote.ts), the same place CLONE fetches into.
import { existsSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { StrataError } from '../../errors.js';
import type { RemoteCache } from '../../source/remote.js';
import { exec } from '../../util/exec.js';
import type { Repo } from '../api/types.js';

export interface ResolvedRevision {
  branch: string;
  commit: string;
  title: string;
  author: string;
}

/** A repo URL that is a directory on this host (absolute path or file://) rather than a remote. */
export function localRepoDir(url: string): string | null {
  const path = url.startsWith('file://') ? new URL(url).pathname : url;
  return isAbsolute(path) && existsSync(path) ? path : null;
}

export async function resolveRevision(remotes: RemoteCache, repo: Repo, wanted: { branch?: string | undefined; commit?: string | undefined }): Promise<ResolvedRevision> {
  const branch = wanted.branch ?? repo.defaultBranch;
  let gitDir = localRepoDir(repo.url);
  let rev = wanted.commit ?? `refs/heads/${branch}`;
  if (gitDir === null) {
    const remote = await remotes.resolve(repo.url, { sameAs: branch });
    if (remote.branch !== branch && wanted.commit === undefined) {
      throw new StrataError('STRATA_NOT_FOUND', `${repo.url} has no branch ${branch}`);
    }
    gitDir = remote.repoDir;
    rev = wanted.commit ?? remote.commit;
  }
  const shown = await exec('git', ['-C', gitDir, 'log', '-1', '--no-show-signature', '--format=%H%x00%s%x00%an', `${rev}^{commit}`, '--']);
  const [commit, title, author] = shown.stdout.trim().split('\0');
  if (shown.exitCode !== 0 || !commit || title === undefined || author === undefined) {
    throw new StrataError('STRATA_NOT_FOUND', `${wanted.commit !== undefined ? `commit ${wanted.commit}` : `branch ${branch}`} not found in ${repo.url}`, {
      cause: shown.stderr.trim() || undefined,
    });
  }
  return { branch, commit, title, author };
}

/** The branch HEAD names in a local repo (a sensible default branch for `repo add`), else null. */
export async function localHeadBranch(url: string): Promise<string | null> {
  const dir = localRepoDir(url);
  if (dir === null) return null;
  const head = await exec('git', ['-C', dir, 'symbolic-ref', '--short', '-q', 'HEAD']);
  return head.exitCode === 0 && head.stdout.trim() !== '' ? head.stdout.trim() : null;
}
