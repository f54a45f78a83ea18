// The server's local copy of each repository, `<store>/server/checkouts/<repo>`: cloned once from the
// repo's URL (a path or a git URL), fetched before each job. The engine runs commits straight from its
// object database (no files are checked out), and its cache is keyed by this stable directory, so every
// job of a repo shares one cache. One job at a time prepares a repo's checkout: the lock is held until
// the engine has read the commit (and its branch, from HEAD), then the next job may move HEAD.
import { existsSync } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { StrataError } from '../../errors.js';
import { exec, execOrThrow } from '../../util/exec.js';
import type { Repo } from '../api/types.js';

export interface PreparedCheckout {
  dir: string;
  /** The commit's subject line and author, from `git log`. */
  title: string;
  author: string;
  /** Lets the next job prepare this repo; call once the engine has read the commit. Idempotent. */
  release(): void;
}

// Never ask for credentials on a terminal the server does not have.
const gitEnv = { ...process.env, GIT_TERMINAL_PROMPT: '0', GIT_ASKPASS: 'true' };

async function git(cwd: string, args: string[]): Promise<string> {
  const result = await execOrThrow('git', args, { cwd, env: gitEnv, timeoutMs: 10 * 60_000, errorCode: 'STRATA_ENGINE' });
  return result.stdout;
}

async function hasCommit(dir: string, commit: string): Promise<boolean> {
  return (await exec('git', ['cat-file', '-e', `${commit}^{commit}`], { cwd: dir, env: gitEnv })).exitCode === 0;
}

export function checkoutDir(root: string, repoName: string): string {
  return join(root, encodeURIComponent(repoName));
}

export class Checkouts {
  private readonly locks = new Map<string, Promise<void>>();

  /** `root`: `<store>/server/checkouts`. */
  constructor(private readonly root: string) {}

  /** Clones (once) and fetches `repo`, then points `branch` and HEAD at `commit`. */
  async prepare(repo: Pick<Repo, 'name' | 'url'>, branch: string, commit: string): Promise<PreparedCheckout> {
    const release = await this.lock(repo.name);
    try {
      const dir = checkoutDir(this.root, repo.name);
      if (!existsSync(join(dir, '.git'))) await this.clone(repo.url, dir);
      await git(dir, ['remote', 'set-url', 'origin', repo.url]);
      if (!(await hasCommit(dir, commit))) {
        // The branch first (works with every server); then the commit itself (a PR head of a fork).
        const branchFetch = branch !== '' ? await exec('git', ['fetch', '--quiet', '--no-tags', 'origin', `+refs/heads/${branch}:refs/remotes/origin/${branch}`], { cwd: dir, env: gitEnv, timeoutMs: 10 * 60_000 }) : undefined;
        if (!(await hasCommit(dir, commit))) {
          const commitFetch = await exec('git', ['fetch', '--quiet', '--no-tags', 'origin', commit], { cwd: dir, env: gitEnv, timeoutMs: 10 * 60_000 });
          if (!(await hasCommit(dir, commit))) {
            throw new StrataError('STRATA_ENGINE', `commit ${commit} is not in ${repo.url}`, {
              hint: (commitFetch.stderr || branchFetch?.stderr || '').trim() || 'was the branch force-pushed or deleted?',
            });
          }
        }
      }
      // The engine names the branch after HEAD (GIT_BRANCH in steps): point it at the job's branch.
      const validBranch = branch !== '' && (await exec('git', ['check-ref-format', '--branch', branch], { cwd: dir, env: gitEnv })).exitCode === 0;
      if (validBranch) {
        await git(dir, ['update-ref', `refs/heads/${branch}`, commit]);
        await git(dir, ['symbolic-ref', 'HEAD', `refs/heads/${branch}`]);
      } else {
        await git(dir, ['update-ref', '--no-deref', 'HEAD', commit]);
      }
      const [title = '', author = ''] = (await git(dir, ['log', '-1', '--format=%s%x00%an', commit])).trim().split('\0');
      return { dir, title, author, release };
    } catch (error) {
      release();
      throw error;
    }
  }

  private async clone(url: string, dir: string): Promise<void> {
    await mkdir(this.root, { recursive: true });
    // Cloned under a temporary name and renamed: a crash never leaves a half clone under the real name.
    const partial = `${dir}.partial-${process.pid}`;
    await rm(partial, { recursive: true, force: true });
    try {
      await git(this.root, ['clone', '--quiet', '--no-checkout', '--no-tags', url, partial]);
      await rm(dir, { recursive: true, force: true });
      await rename(partial, dir);
    } catch (error) {
      await rm(partial, { recursive: true, force: true });
      throw error;
    }
  }

  /** A per-repo mutex: resolves with the release function once the previous holder released. */
  private async lock(name: string): Promise<() => void> {
    const previous = this.locks.get(name) ?? Promise.resolve();
    let released = false;
    let releaseLock!: () => void;
    const current = new Promise<void>((resolve) => (releaseLock = resolve));
    const chained = previous.then(() => current);
    this.locks.set(name, chained);
    await previous;
    return () => {
      if (released) return;
      released = true;
      releaseLock();
      if (this.locks.get(name) === chained) this.locks.delete(name);
    };
  }
}
