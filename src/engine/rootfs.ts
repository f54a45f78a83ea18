// Writing into a machine's filesystem from the host. A machine's root is a directory on the host, but
// its symlinks are the machine's: `/root/app -> /etc` inside the machine must mean the machine's /etc,
// never the host's. Every host path the engine writes to is resolved here, like chroot would, and the
// caller keeps the machine frozen while it writes so nothing inside can swap a component meanwhile.
import { chmod, lstat, mkdir, readlink } from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';
import { StrataError } from '../errors.js';

const MAX_SYMLINKS = 40;

/**
 * The host path of `machinePath` inside the machine rooted at `rootfs`, following symlinks the way
 * the machine would (absolute targets restart at `rootfs`, `..` never climbs above it). Components
 * that do not exist are kept as they are. With `followLast: false` a final symlink is not followed
 * (for deleting or replacing the link itself).
 */
export async function resolveInRoot(rootfs: string, machinePath: string, options: { followLast?: boolean } = {}): Promise<string> {
  const followLast = options.followLast ?? true;
  const pending = posix.normalize(machinePath).split('/').filter((c) => c && c !== '.');
  const resolved: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const component = pending.shift() as string;
    if (component === '..') {
      resolved.pop();
      continue;
    }
    const candidate = join(rootfs, ...resolved, component);
    const isLast = pending.length === 0;
    let stats;
    try {
      stats = await lstat(candidate);
    } catch {
      resolved.push(component, ...pending.filter((c) => c !== '.'));
      // Missing components: nothing more to follow; normalise any '..' left among them.
      return join(rootfs, posix.normalize('/' + resolved.join('/')));
    }
    if (stats.isSymbolicLink() && (!isLast || followLast)) {
      if (++links > MAX_SYMLINKS) {
        throw new StrataError('STRATA_ENGINE', `too many levels of symbolic links resolving ${machinePath} in the machine`);
      }
      const target = await readlink(candidate);
      if (target.startsWith('/')) resolved.length = 0;
      pending.unshift(...target.split('/').filter((c) => c && c !== '.'));
      continue;
    }
    resolved.push(component);
  }
  return join(rootfs, ...resolved);
}

/**
 * `mkdir -p` of a host path inside a machine's root, the directories it creates at 0755 as `git archive`
 * + tar create a copied tree's directories: never the umask of strata's process, or a machine's state
 * (and whether a non-root USER may read a copy) would depend on the host, and a restore could differ
 * from a fresh run. A non-directory in the way is left for the caller to report.
 */
export async function makeHostDirs(host: string): Promise<void> {
  const created = await mkdir(host, { recursive: true }).catch((cause: NodeJS.ErrnoException) => {
    if (cause.code === 'EEXIST' || cause.code === 'ENOTDIR') return undefined;
    throw cause;
  });
  if (created === undefined) return;
  for (let dir = host; ; dir = dirname(dir)) {
    await chmod(dir, 0o755);
    if (dir === created || dir === dirname(dir)) break;
  }
}

/** `mkdir -p` of a machine directory, resolved inside the machine's root (see makeHostDirs). Returns its host path. */
export async function ensureMachineDir(rootfs: string, machinePath: string): Promise<string> {
  const host = await resolveInRoot(rootfs, machinePath);
  await makeHostDirs(host);
  if (await lstat(host).then((stats) => stats.isDirectory(), () => false)) return host;
  throw new StrataError('STRATA_ENGINE', `${machinePath} exists in the machine and is not a directory`);
}
