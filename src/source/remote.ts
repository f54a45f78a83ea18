// Remote repositories for CLONE: one bare cache repository per URL under the store, fetched on every
// resolve (one branch only), so a CLONE sees the remote as it is now and the trees of earlier runs stay
// in the cache to diff against (auto-gc is off in cache repos: a force-pushed branch must not take the
// tree an old chain recorded with it; pruning the cache is the store's job, not a fetch's side effect).
import { createHash } from 'node:crypto';
import { mkdir, stat } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import { StrataError } from '../errors.js';
import { exec, execOrThrow } from '../util/exec.js';
import type { TreeId } from './git.js';

/** Which branch to clone: the main repo's branch if the remote has it, else `defaultBranch`, else the remote's HEAD. */
export interface BranchChoice {
  /** The branch of the repository being built ('' when detached). */
  sameAs: string;
  /** `DEFAULT=` of the CLONE line. */
  defaultBranch?: string | undefined;
}

export interface ResolvedRemote {
  url: string;
  /** The local bare cache repository holding the fetched objects (where blobs and trees are read). */
  repoDir: string;
  branch: string;
  /** Why this branch: 'same-named', 'default' (DEFAULT=) or 'remote-head'. */
  chosenBy: 'same-named' | 'default' | 'remote-head';
  commit: string;
  tree: TreeId;
}

export interface RemoteCache {
  /** Fetches the chosen branch of `url` into its cache repository and resolves it to a commit and tree. */
  resolve(url: string, choice: BranchChoice): Promise<ResolvedRemote>;
  /** The cache repository of `url` (it may not exist yet). */
  repoDirOf(url: string): string;
}

/** Network operations never wait for a password prompt, and give up rather than hang a run. */
const GIT_ENV: NodeJS.ProcessEnv = { ...process.env, GIT_TERMINAL_PROMPT: '0', GIT_ASKPASS: 'true', SSH_ASKPASS: 'true' };
const LS_REMOTE_TIMEOUT_MS = 120_000;
const FETCH_TIMEOUT_MS = 30 * 60_000;

/**
 * A URL as git should see it: `./x` and `../x` are paths relative to `baseDir` (the repository being
 * built), everything else (absolute paths, file://, https://, ssh, scp-like `host:path`) is passed on.
 */
export function normalizeRemoteUrl(url: string, baseDir: string): string {
  if (url.startsWith('./') || url.startsWith('../') || url === '.' || url === '..') return resolve(baseDir, url);
  if (isAbsolute(url)) return resolve(url);
  return url;
}

/** Heads (branch -> commit) and the branch HEAD points to, as `git ls-remote --symref` reports them. */
export function parseLsRemote(output: string): { heads: Map<string, string>; head: string | undefined } {
  const heads = new Map<string, string>();
  let head: string | undefined;
  for (const line of output.split('\n')) {
    const symref = /^ref: refs\/heads\/(\S+)\tHEAD$/.exec(line);
    if (symref) {
      head = symref[1];
      continue;
    }
    const ref = /^([0-9a-f]{40,64})\trefs\/heads\/(\S+)$/.exec(line);
    if (ref) heads.set(ref[2] as string, ref[1] as string);
  }
  return { heads, head };
}

/** Picks the branch to clone; throws a StrataError naming what was looked for when none fits. */
export function chooseBranch(url: string, heads: ReadonlyMap<string, string>, remoteHead: string | undefined, choice: BranchChoice): { branch: string; chosenBy: ResolvedRemote['chosenBy'] } {
  if (choice.sameAs !== '' && heads.has(choice.sameAs)) return { branch: choice.sameAs, chosenBy: 'same-named' };
  const looked = choice.sameAs === '' ? '' : `no branch "${choice.sameAs}"`;
  if (choice.defaultBranch !== undefined) {
    if (heads.has(choice.defaultBranch)) return { branch: choice.defaultBranch, chosenBy: 'default' };
    throw new StrataError('STRATA_ENGINE', `${url} has ${[looked, `no DEFAULT branch "${choice.defaultBranch}"`].filter(Boolean).join(' and ')}`, {
      hint: `the remote's branches: ${[...heads.keys()].sort().join(', ') || '(none)'}`,
    });
  }
  if (remoteHead !== undefined && heads.has(remoteHead)) return { branch: remoteHead, chosenBy: 'remote-head' };
  throw new StrataError('STRATA_ENGINE', `${url} has ${[looked, 'no default branch (HEAD)'].filter(Boolean).join(' and ')}, and the CLONE line names no DEFAULT=`, {
    hint: 'add DEFAULT=<branch> to the CLONE line',
  });
}

export function createRemoteCache(root: string): RemoteCache {
  const repoDirOf = (url: string): string => join(root, `${createHash('sha256').update(url).digest('hex').slice(0, 16)}.git`);
  // One git operation per cache repository at a time: parallel runners cloning one URL would race on
  // ref locks. (Other processes cannot interfere: the store is locked by one strata process.)
  const queues = new Map<string, Promise<unknown>>();
  const serialized = <T>(key: string, work: () => Promise<T>): Promise<T> => {
    const previous = queues.get(key) ?? Promise.resolve();
    const next = previous.then(work, work);
    queues.set(key, next.catch(() => {}));
    return next;
  };

  const git = async (repoDir: string, args: string[], timeoutMs = LS_REMOTE_TIMEOUT_MS): Promise<string> =>
    (await execOrThrow('git', args, { cwd: repoDir, env: GIT_ENV, timeoutMs, errorCode: 'STRATA_ENGINE' })).stdout;

  async function ensureRepo(repoDir: string): Promise<void> {
    try {
      if ((await stat(join(repoDir, 'HEAD'))).isFile()) return;
    } catch {
      // not created yet
    }
    await mkdir(repoDir, { recursive: true });
    await git(repoDir, ['init', '--bare', '--quiet']);
    await git(repoDir, ['config', 'gc.auto', '0']);
  }

  return {
    repoDirOf,
    resolve(url, choice) {
      const repoDir = repoDirOf(url);
      return serialized(repoDir, async () => {
        await ensureRepo(repoDir);
        const listed = await exec('git', ['ls-remote', '--symref', url], { cwd: repoDir, env: GIT_ENV, timeoutMs: LS_REMOTE_TIMEOUT_MS });
        if (listed.exitCode !== 0) {
          const why = listed.timedOut ? 'timed out' : listed.stderr.trim().split('\n').filter(Boolean).pop() ?? `git ls-remote exited ${listed.exitCode}`;
          throw new StrataError('STRATA_ENGINE', `cannot reach ${url}: ${why}`, {
            hint: 'the URL must be reachable from this host with its git credentials (a local path, file://, https:// or ssh)',
          });
        }
        const { heads, head } = parseLsRemote(listed.stdout);
        const { branch, chosenBy } = chooseBranch(url, heads, head, choice);
        // Into a private ref namespace: the cache repo's own branches mean nothing.
        const ref = `refs/strata/heads/${branch}`;
        await git(repoDir, ['fetch', '--quiet', '--no-tags', '--no-write-fetch-head', url, `+refs/heads/${branch}:${ref}`], FETCH_TIMEOUT_MS);
        const commit = (await git(repoDir, ['rev-parse', '--verify', `${ref}^{commit}`])).trim();
        const tree = (await git(repoDir, ['rev-parse', `${commit}^{tree}`])).trim() as TreeId;
        return { url, repoDir, branch, chosenBy, commit, tree };
      });
    },
  };
}
