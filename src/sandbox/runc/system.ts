// What a system-container machine (MachineSpec.kind 'system', docs/design/system-container.md) needs
// beyond a runc machine: a host uid/gid range of its own, idmapped mounts of its rootfs and writable
// host directories (made before `runc run`, detached right after: runc holds its own copies), and the
// wait for systemd's boot.
//
// Uid ranges are claimed in a host-wide registry directory, one file per slot created with O_EXCL, so
// that machines of every engine (and test process, each with its own state root) on the host get
// different ranges. A claim names the machine's state dir, which exists for as long as the machine
// does: a claim whose state dir is gone is dead, whoever left it. The registry directory is removed
// when its last claim goes (a host without machines keeps nothing), and made again when needed.
import { existsSync, readFileSync } from 'node:fs';
import { chmod, link, lstat, mkdir, open, readdir, readlink, rename, rmdir, stat, unlink } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { StrataError } from '../../errors.js';
import { exec } from '../../util/exec.js';

/** Host-wide, whatever the state root: ranges must differ between all live machines of the host. */
export const defaultUidRangeRegistry = '/run/strata/uid-ranges';

/**
 * First host id of slot 0, far above the ranges useradd hands out in /etc/subuid (100000 + 65536·n)
 * for rootless containers of host users, so no host user's container shares a machine's uids.
 */
export const systemIdBase = 1 << 30;
/** Ids per machine: a whole Debian system's (0..65535; nobody is 65534). */
export const systemIdCount = 65536;
const slotCount = 1024;

export interface UidRangeClaim {
  slot: number;
  hostId: number;
  size: number;
  path: string;
}

interface ClaimRecord {
  name: string;
  stateDir: string;
  pid: number;
}

/** Claims the first free slot for the machine whose (existing) state dir is `stateDir`. */
export async function claimUidRange(registry: string, name: string, stateDir: string): Promise<UidRangeClaim> {
  const record: ClaimRecord = { name, stateDir, pid: process.pid };
  for (let slot = 0, attempts = 0; slot < slotCount; ) {
    const path = join(registry, `slot-${slot}`);
    try {
      const handle = await open(path, 'wx');
      await handle.writeFile(JSON.stringify(record));
      await handle.close();
      return { slot, hostId: systemIdBase + slot * systemIdCount, size: systemIdCount, path };
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      // no registry (yet, or its last claim was just released and it removed): make it, try again
      if (code === 'ENOENT' && attempts++ < 100) await mkdir(registry, { recursive: true, mode: 0o700 });
      else if (code === 'EEXIST') slot++;
      else throw error;
    }
  }
  throw new StrataError('STRATA_SANDBOX_START', `no free uid range for machine ${name}: all ${slotCount} slots of ${registry} are claimed`, {
    hint: 'destroy machines, or reap leftovers of crashed engines (claims whose state dir is gone are released then)',
  });
}

function readClaim(path: string): ClaimRecord | undefined {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as ClaimRecord;
  } catch {
    return undefined;
  }
}

/** Releases the claim at `path` if it still belongs to `stateDir`. */
export async function releaseUidRange(path: string, stateDir: string): Promise<void> {
  if (readClaim(path)?.stateDir === stateDir) await unlink(path).catch(() => {});
  await rmdir(dirname(path)).catch(() => {}); // only when empty
}

/**
 * Releases every claim of `stateDir` and every dead claim (state dir gone). A dead claim is first
 * renamed away and checked again: if a new machine took the slot in between, its claim is put back.
 */
export async function releaseDeadUidRanges(registry: string, stateDirs: ReadonlySet<string>): Promise<void> {
  let entries: string[];
  try {
    entries = await readdir(registry);
  } catch {
    return;
  }
  for (const entry of entries.filter((name) => /^slot-\d+$/.test(name))) {
    const path = join(registry, entry);
    const claim = readClaim(path);
    if (claim === undefined || (!stateDirs.has(claim.stateDir) && existsSync(claim.stateDir))) continue;
    const aside = `${path}.release-${randomBytes(4).toString('hex')}`;
    try {
      await rename(path, aside);
    } catch {
      continue;
    }
    const moved = readClaim(aside);
    if (moved !== undefined && !stateDirs.has(moved.stateDir) && existsSync(moved.stateDir)) await link(aside, path).catch(() => {});
    await unlink(aside).catch(() => {});
  }
  await rmdir(registry).catch(() => {}); // only when empty
}

/** native/build/strata-idmount of this checkout, from src/sandbox/runc/ (tsx) or dist/src/sandbox/runc/. */
export function defaultIdmountBinary(): string {
  const candidates = ['../../../native/build/strata-idmount', '../../../../native/build/strata-idmount'].map((rel) =>
    fileURLToPath(new URL(rel, import.meta.url)),
  );
  return candidates.find((path) => existsSync(path)) ?? candidates[0]!;
}

/** Mounts `source` at `target` (an existing directory) idmapped: on-disk 0.. appear as hostId.. */
export async function idmapMount(binary: string, source: string, target: string, claim: UidRangeClaim): Promise<void> {
  const result = await exec(binary, [source, target, String(claim.hostId), String(claim.size)], { timeoutMs: 30_000 });
  if (result.exitCode !== 0) {
    throw new StrataError('STRATA_SANDBOX_START', `cannot mount ${source} idmapped: ${(result.stderr.trim() || result.spawnError?.message) ?? 'failed'}`, {
      hint: result.spawnError
        ? 'build the native helpers: make -C native (scripts/install.sh does)'
        : "a system machine's root must be on a filesystem that supports idmapped mounts (btrfs, ext4, xfs; not overlayfs)",
    });
  }
}

/** Mount points in this mount namespace at or below `dir`, deepest first. */
export function mountsBelow(dir: string): string[] {
  const unescape = (text: string) => text.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8)));
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((point): point is string => point !== undefined)
    .map(unescape)
    .filter((point) => point === dir || point.startsWith(`${dir}/`))
    .reverse();
}

/** Detaches every mount at or below `dir` (the host-side idmapped mounts of a machine's state dir). */
export async function unmountBelow(dir: string): Promise<void> {
  for (const point of mountsBelow(dir)) {
    if ((await exec('umount', [point])).exitCode !== 0) await exec('umount', ['--lazy', point]);
  }
}

/** System machines need a hybrid cgroup host for now: v1 controllers plus the unified v2 tree. */
export function systemMachinesSupported(): boolean {
  return !existsSync('/sys/fs/cgroup/cgroup.controllers') && existsSync('/sys/fs/cgroup/unified/cgroup.procs');
}

/**
 * Whether the rootfs has an executable /sbin/init. Symlinks are resolved inside the root (Debian's is
 * /sbin/init -> /lib/systemd/systemd, and /lib -> usr/lib), never on the host, and nothing of the
 * machine's root is executed on the host: a step may have replaced any of it.
 */
export async function hasInit(rootfs: string): Promise<boolean> {
  const target = await resolveInRoot(rootfs, '/sbin/init');
  if (target === undefined) return false;
  try {
    const stats = await lstat(target);
    return stats.isFile() && (stats.mode & 0o111) !== 0;
  } catch {
    return false;
  }
}

/** The host path of `path` inside `root`, symlinks followed within the root (at most 40); undefined if missing. */
export async function resolveInRoot(root: string, path: string): Promise<string | undefined> {
  const pending = path.split('/').filter((part) => part !== '' && part !== '.');
  const resolved: string[] = [];
  for (let hops = 0; pending.length > 0; ) {
    const part = pending.shift()!;
    if (part === '..') {
      resolved.pop();
      continue;
    }
    const host = join(root, ...resolved, part);
    let stats;
    try {
      stats = await lstat(host);
    } catch {
      return undefined;
    }
    if (!stats.isSymbolicLink()) {
      resolved.push(part);
      continue;
    }
    if (++hops > 40) return undefined;
    const link = await readlink(host);
    if (link.startsWith('/')) resolved.length = 0;
    pending.unshift(...link.split('/').filter((p) => p !== '' && p !== '.'));
  }
  return join(root, ...resolved);
}

/**
 * runc's init mounts the rootfs and the bind sources from inside the machine's user namespace, as the
 * machine's root: an unprivileged host uid, which needs search permission on every directory above
 * them. The state root and below are strata's, so they get o+x (search, not listing); a directory
 * above that lacks it is reported.
 */
export async function makeSearchable(stateRoot: string, stateDir: string): Promise<void> {
  let dir = stateDir;
  for (;;) {
    const mode = (await stat(dir)).mode;
    if ((mode & 0o001) === 0) {
      if (dir === stateRoot || dir.startsWith(`${stateRoot}/`)) await chmod(dir, (mode & 0o7777) | 0o001);
      else {
        throw new StrataError('STRATA_SANDBOX_START', `a system machine's root cannot reach its state dir: ${dir} is not searchable by others`, {
          hint: `chmod o+x ${dir}, or use a state root below searchable directories`,
        });
      }
    }
    if (dir === '/') return;
    dir = dirname(dir);
  }
}
