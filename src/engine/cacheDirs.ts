// CACHE directories: persistent per (repository, Layerfile, machine path), bind-mounted into the
// machine, never part of a snapshot, a trace or a definition key (LAYERFILE.md, CACHE).
//
// Layout under <store>/cache-dirs/:
//   <id>/data        what the machine sees at the CACHE path (id = sha256 of repo, Layerfile, path)
//   <id>/meta.json   { repo, layerfile, path, createdAt, lastUsedAt }, written to a temp name + rename
//   <id>/lock        O_EXCL file holding the pid of the run using it
//   throwaway/<pid>-<random>/<n>   empty directories for --no-cache-dirs (or a busy cache dir)
//
// Concurrency: a run holds the lock of each of its cache dirs for the machine's whole life. That is
// the simplest option that is correct: a package cache written by two machines at once is exactly the
// corruption to avoid, and a copy-on-write clone per run would need the cache dirs on btrfs and a
// merge rule (last writer wins loses the other run's downloads anyway). A run that finds a cache dir
// busy does not wait (the other run may take an hour): it gets an empty throwaway directory instead,
// which is only slower. Note that today the CLI already runs one engine per store (store/lock.ts),
// so the lock matters for in-process concurrency (a server running several runs) and for prune.
//
// Why bind mounts in the machine's config at start (not mounted at the CACHE line): every CACHE line
// is known before the machine starts, runc mounts them with the machine, and a btrfs snapshot of the
// machine's root subvolume never includes bind-mounted content. The price: steps before a CACHE line
// already see its directory, and the (empty) mountpoint directories runc creates are in snapshots.
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { StrataError } from '../errors.js';
import type { Instruction } from '../layerfile/types.js';
import { resolveMachineUser } from '../sandbox/users.js';
import type { EngineMachine } from './ports.js';
import { applyToState, shellQuote, type ExecState } from './stepEnv.js';
import { isProcessAlive } from '../util/process.js';
import { tryLockFile, type FileLock } from '../store/lock.js';

export interface CacheDirRequest {
  repo: string;
  /** Repo-relative path of the Layerfile. */
  layerfile: string;
  /** Absolute machine paths (see resolveCacheDirs). */
  paths: readonly string[];
  /** --no-cache-dirs: empty throwaway directories, the persistent ones are not touched. */
  throwaway: boolean;
  /**
   * The SPLIT copy asking (0 or absent: the Layerfile's own runner). Copies run at the same time, so
   * each copy > 0 keeps CACHE dirs of its own instead of finding copy 0's locked.
   */
  copy?: number | undefined;
}

export interface CacheDirMount {
  /** Host directory. */
  source: string;
  /** Machine path. */
  destination: string;
  persistent: boolean;
}

export interface CacheDirLease {
  /** Parents before children (runc mounts in order). */
  mounts: CacheDirMount[];
  /** Things the user should know (a busy cache dir replaced by an empty one). */
  notes: string[];
  /** Unlocks the persistent dirs and removes the throwaway ones. Idempotent. */
  release(): Promise<void>;
}

export interface CacheDirStore {
  readonly root: string;
  acquire(request: CacheDirRequest): Promise<CacheDirLease>;
}

export interface CacheDirMeta {
  repo: string;
  layerfile: string;
  path: string;
  createdAt: number;
  lastUsedAt: number;
}

export interface CacheDirInfo extends CacheDirMeta {
  id: string;
  /** The cache dir's folder (holds data/, meta.json, lock). */
  dir: string;
}

/** <store root>/cache-dirs */
export function cacheDirsRoot(storeRoot: string): string {
  return join(storeRoot, 'cache-dirs');
}

export function cacheDirId(repo: string, layerfile: string, machinePath: string, copy = 0): string {
  const parts = copy > 0 ? ['strata-cache-dir-v1', repo, layerfile, machinePath, copy] : ['strata-cache-dir-v1', repo, layerfile, machinePath];
  return createHash('sha256').update(JSON.stringify(parts)).digest('hex').slice(0, 32);
}

export interface ResolvedCacheDir {
  /** Absolute machine path. */
  path: string;
  /** The USER in effect at the CACHE line, and that user's home directory. */
  user: string;
  home: string;
  line: number;
}

/**
 * The machine paths of a Layerfile's CACHE lines, in order, without duplicates. A relative path
 * resolves against the WORKDIR at its line, `~` against the home of the USER at its line
 * (`homeOf`). The state replay starts from `start` (a child's inherited state) like the engine's.
 */
export function resolveCacheDirs(
  instructions: readonly Instruction[],
  start: ExecState,
  baseEnv: Record<string, string>,
  homeOf: (user: string) => string,
): ResolvedCacheDir[] {
  const found: ResolvedCacheDir[] = [];
  let state = start;
  for (const instruction of instructions) {
    if (instruction.kind === 'cache') {
      for (const dir of instruction.dirs) {
        const home = homeOf(state.user);
        const expanded = dir === '~' || dir.startsWith('~/') ? home + dir.slice(1) : dir;
        const path = posix.normalize(posix.resolve(state.workdir, expanded));
        if (path === '/') {
          throw new StrataError('STRATA_ENGINE', `line ${instruction.range.line}: CACHE / would hide the whole machine`, { hint: 'cache a directory such as /root/.cache' });
        }
        if (!found.some((f) => f.path === path)) found.push({ path, user: state.user, home, line: instruction.range.line });
      }
    }
    state = applyToState(state, instruction, baseEnv);
  }
  return found;
}

/**
 * resolveCacheDirs for a machine rooted at `rootfs`: `~` is the user's home in the machine's
 * /etc/passwd, or /home/<name> (what USER's useradd will create) for a user that does not exist yet.
 */
export async function machineCacheDirs(
  instructions: readonly Instruction[],
  start: ExecState,
  baseEnv: Record<string, string>,
  rootfs: string,
): Promise<ResolvedCacheDir[]> {
  if (!instructions.some((i) => i.kind === 'cache')) return [];
  const users = new Set([start.user, ...instructions.flatMap((i) => (i.kind === 'user' ? [i.name] : []))]);
  const homes = new Map<string, string>();
  for (const user of users) {
    homes.set(user, await resolveMachineUser(rootfs, user).then((u) => u.home, () => (user === 'root' ? '/root' : `/home/${user}`)));
  }
  return resolveCacheDirs(instructions, start, baseEnv, (user) => homes.get(user) ?? `/home/${user}`);
}

/**
 * Gives each cache dir to the user in effect at its CACHE line, so that the steps can write it (the
 * host directory is root's when created). A user that does not exist yet (created by a later USER
 * step) is skipped; the CACHE step itself runs this again when it is reached.
 * For a dir under a non-root user's home, the directories from the home down to it that are still
 * root's are given to the user too: runc created them for the mountpoint before USER's useradd ran,
 * and useradd leaves an existing home as it is.
 */
export async function claimCacheDirs(machine: EngineMachine, dirs: readonly ResolvedCacheDir[], env: Record<string, string>): Promise<void> {
  if (dirs.length === 0) return;
  const script = dirs
    .map(({ path, user, home }) => {
      const owner = `${shellQuote(user)}:`;
      const between = user !== 'root' && path.startsWith(home + '/') ? [home, ...ancestorsBelow(home, path)] : [];
      const fixParents = between.map((d) => `if [ "$(stat -c %u ${shellQuote(d)})" = 0 ]; then chown ${owner} ${shellQuote(d)}; fi; `).join('');
      return `if id -u ${shellQuote(user)} >/dev/null 2>&1; then ${fixParents}chown ${owner} ${shellQuote(path)}; fi`;
    })
    .join('\n');
  let output = '';
  const result = await machine.exec({ command: `set -e\n${script}`, env, workdir: '/', user: 'root', onOutput: (_stream, data) => (output += data) });
  if (result.exitCode !== 0) {
    throw new StrataError('STRATA_ENGINE', `could not give the CACHE directories to their users: ${output.trim() || `exit code ${result.exitCode}`}`);
  }
}

/** The directories strictly between `top` and `path` (top excluded), outermost first. */
function ancestorsBelow(top: string, path: string): string[] {
  const parts = path.slice(top.length + 1).split('/').slice(0, -1);
  return parts.map((_, i) => `${top}/${parts.slice(0, i + 1).join('/')}`);
}

/** Takes a cache dir's lock, or returns the live holder's pid. A dead holder's lock is taken over. */
function tryLock(dir: string): Promise<FileLock | { holder: number }> {
  return tryLockFile(join(dir, 'lock'));
}

async function writeMeta(dir: string, meta: CacheDirMeta): Promise<void> {
  const temp = join(dir, `meta.json.tmp-${randomBytes(4).toString('hex')}`);
  await writeFile(temp, JSON.stringify(meta, null, 1) + '\n');
  await rename(temp, join(dir, 'meta.json'));
}

async function readMeta(dir: string): Promise<CacheDirMeta | null> {
  try {
    const raw = JSON.parse(await readFile(join(dir, 'meta.json'), 'utf8')) as Partial<CacheDirMeta>;
    if (typeof raw.repo !== 'string' || typeof raw.layerfile !== 'string' || typeof raw.path !== 'string') return null;
    return { repo: raw.repo, layerfile: raw.layerfile, path: raw.path, createdAt: Number(raw.createdAt) || 0, lastUsedAt: Number(raw.lastUsedAt) || 0 };
  } catch {
    return null;
  }
}

export function createCacheDirStore(root: string, options: { now?: () => number } = {}): CacheDirStore {
  const now = options.now ?? (() => Date.now());
  const throwawayRoot = join(root, 'throwaway');

  async function acquire(request: CacheDirRequest): Promise<CacheDirLease> {
    const releases: Array<() => Promise<void>> = [];
    const mounts: CacheDirMount[] = [];
    const notes: string[] = [];
    let throwawayDir: string | undefined;
    const throwaway = async (): Promise<string> => {
      if (!throwawayDir) {
        throwawayDir = join(throwawayRoot, `${process.pid}-${randomBytes(6).toString('hex')}`);
        await mkdir(throwawayDir, { recursive: true });
        const dir = throwawayDir;
        releases.push(() => rm(dir, { recursive: true, force: true }));
      }
      const dir = join(throwawayDir, String(mounts.length));
      await mkdir(dir);
      return dir;
    };
    const release = async (): Promise<void> => {
      for (const undo of releases.splice(0).reverse()) await undo().catch(() => {});
    };
    try {
      // Parents first: a CACHE dir inside another one is mounted on top of it.
      for (const path of [...request.paths].sort()) {
        if (request.throwaway) {
          mounts.push({ source: await throwaway(), destination: path, persistent: false });
          continue;
        }
        const id = cacheDirId(request.repo, request.layerfile, path, request.copy);
        const dir = join(root, id);
        await mkdir(join(dir, 'data'), { recursive: true });
        const lock = await tryLock(dir);
        if ('holder' in lock) {
          const holder = lock.holder === process.pid ? 'another runner of this strata process' : `another run${lock.holder > 0 ? ` (pid ${lock.holder})` : ''}`;
          notes.push(`CACHE ${path}: in use by ${holder}; this run uses an empty directory`);
          mounts.push({ source: await throwaway(), destination: path, persistent: false });
          continue;
        }
        releases.push(() => lock.release());
        const previous = await readMeta(dir);
        const time = now();
        await writeMeta(dir, { repo: request.repo, layerfile: request.layerfile, path, createdAt: previous?.createdAt ?? time, lastUsedAt: time });
        mounts.push({ source: join(dir, 'data'), destination: path, persistent: true });
      }
    } catch (error) {
      await release();
      throw error;
    }
    return { mounts, notes, release };
  }

  return { root, acquire };
}

/** Every persistent cache dir of the store (those with readable meta). */
export async function listCacheDirs(root: string): Promise<CacheDirInfo[]> {
  const entries = await readdir(root).catch(() => [] as string[]);
  const found: CacheDirInfo[] = [];
  for (const id of entries.sort()) {
    if (!/^[0-9a-f]{32}$/.test(id)) continue;
    const dir = join(root, id);
    const meta = await readMeta(dir);
    if (meta) found.push({ id, dir, ...meta });
  }
  return found;
}

export interface PruneResult {
  removed: CacheDirInfo[];
  /** In use by a running run: left alone. */
  busy: CacheDirInfo[];
  /** Throwaway directories of runs that died before removing them. */
  removedThrowaway: string[];
}

/**
 * Removes cache dirs: all of them, or those not used for longer than `olderThanMs`. A cache dir in use
 * (locked by a live process) is never removed; its lock is held while it is deleted so that no run
 * starts using it halfway.
 */
export async function pruneCacheDirs(root: string, options: { olderThanMs?: number | undefined; now: number }): Promise<PruneResult> {
  const result: PruneResult = { removed: [], busy: [], removedThrowaway: [] };
  const ids = await readdir(root).catch(() => [] as string[]);
  for (const id of ids.sort()) {
    if (!/^[0-9a-f]{32}$/.test(id)) continue;
    const dir = join(root, id);
    const meta = (await readMeta(dir)) ?? { repo: '?', layerfile: '?', path: '?', createdAt: 0, lastUsedAt: 0 };
    const info: CacheDirInfo = { id, dir, ...meta };
    if (options.olderThanMs !== undefined && options.now - meta.lastUsedAt <= options.olderThanMs) continue;
    const lock = await tryLock(dir);
    if ('holder' in lock) {
      result.busy.push(info);
      continue;
    }
    try {
      // Rename first, so a crash halfway never leaves a half-deleted cache under its live name.
      const doomed = join(root, `.removing-${id}-${randomBytes(4).toString('hex')}`);
      await rename(dir, doomed);
      await rm(doomed, { recursive: true, force: true });
    } finally {
      await lock.release(); // the lock file moved with the dir; this only forgets it
    }
    result.removed.push(info);
  }
  // Leftovers of an interrupted prune, and throwaway dirs whose run is gone.
  for (const name of ids) if (name.startsWith('.removing-')) await rm(join(root, name), { recursive: true, force: true });
  const throwaways = await readdir(join(root, 'throwaway')).catch(() => [] as string[]);
  for (const name of throwaways) {
    const pid = Number(name.split('-')[0]);
    if (Number.isInteger(pid) && pid > 0 && isProcessAlive(pid)) continue;
    await rm(join(root, 'throwaway', name), { recursive: true, force: true });
    result.removedThrowaway.push(join(root, 'throwaway', name));
  }
  return result;
}

/** "7d", "12h", "30m", "45s", "2w" (a bare number is days) → milliseconds. */
export function parseAge(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$/i.exec(text);
  if (!match) {
    throw new StrataError('STRATA_USAGE', `invalid age ${JSON.stringify(text)}`, { hint: 'use a number with a unit: 30m, 12h, 7d, 2w' });
  }
  const unit = (match[2] || 'd').toLowerCase();
  const ms = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 7 * 86_400_000 }[unit as 's' | 'm' | 'h' | 'd' | 'w'];
  return Number(match[1]) * ms;
}
