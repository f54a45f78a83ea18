// The real snapshot store: btrfs subvolumes. Snapshot and clone are O(1) copy-on-write subvolume
// snapshots; commit is a read-only snapshot of a (possibly running) writable one; diff is a
// metadata-only `btrfs send` stream (send-stream.ts).
//
// If `root` is not on btrfs, the store keeps its filesystem in a sparse image file (`<root>.img` by
// default), formats it once, and loop-mounts it at `root` (noatime: reads must not change snapshots).
// A later open finds the image's existing loop device, if any, and mounts it again. `close()` unmounts
// and detaches what this open mounted.
//
// Snapshots received from another machine (transfer.ts) are `btrfs receive`d into a staging directory
// under tmp/ and committed by the ordinary commit: a placeholder active snapshot is prepared, and the
// read-only copy that commit takes of it is taken from the received subvolume instead (`receivedAt`).
// So a received snapshot gets the same atomic placement and metadata as any other, and, being a
// read-only snapshot of a read-only subvolume, keeps its received UUID (a writable copy would lose it).
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, mkdtemp, open, readFile, readdir, rename, rm, statfs } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { StrataError } from '../errors.js';
import { execOrThrow } from '../util/exec.js';
import { sleep } from '../util/sleep.js';
import { changesFromSendCommands, parseSendStream } from './send-stream.js';
import { openTreeStore, type TreeOps } from './tree-store.js';
import { snapshotKey, type BtrfsSnapshotStore, type SnapshotChange, type SnapshotName, type SnapshotStore } from './types.js';

export interface BtrfsStoreOptions {
  /** Directory of the store. Used as is when on btrfs, else the image is mounted here. */
  root: string;
  /** Size of a new sparse image file (default 64 GiB; only the used blocks take disk space). */
  imageSizeBytes?: number;
  /** Image file (default `<root>.img`). */
  imagePath?: string;
}

const BTRFS_SUPER_MAGIC = 0x9123683e;
/** A btrfs subvolume's root directory always has this inode number. */
const BTRFS_FIRST_FREE_OBJECTID = 256;
const defaultImageSize = 64 * 1024 ** 3;

const btrfsFailure = { errorCode: 'STRATA_SNAPSHOT', timeoutMs: 120_000 } as const;

function btrfs(args: string[]): Promise<unknown> {
  return execOrThrow('btrfs', ['-q', ...args], btrfsFailure);
}

export async function isOnBtrfs(path: string): Promise<boolean> {
  return (await statfs(path)).type === BTRFS_SUPER_MAGIC;
}

async function isSubvolume(path: string): Promise<boolean> {
  const stats = await lstat(path);
  return stats.isDirectory() && stats.ino === BTRFS_FIRST_FREE_OBJECTID;
}

interface Mounted {
  loopDevice: string;
}

/** Formats the image (once, atomically) and mounts it at root; returns what to undo on close. */
async function mountImage(root: string, imagePath: string, sizeBytes: number): Promise<Mounted> {
  if (!(await exists(imagePath))) {
    await mkdir(dirname(imagePath), { recursive: true });
    const temp = `${imagePath}.tmp-${randomBytes(6).toString('hex')}`;
    try {
      const file = await open(temp, 'wx');
      await file.truncate(sizeBytes); // sparse
      await file.close();
      await execOrThrow('mkfs.btrfs', ['-q', '-L', 'strata', temp], btrfsFailure);
      await rename(temp, imagePath);
    } catch (error) {
      await rm(temp, { force: true });
      throw error;
    }
  }
  // A loop device left attached to this image (a crash, or another user) is reused, not doubled.
  const attached = await execOrThrow('losetup', ['--noheadings', '--output', 'NAME', '--associated', imagePath], btrfsFailure);
  let loopDevice = attached.stdout.split('\n')[0]?.trim() ?? '';
  if (loopDevice === '') {
    loopDevice = (await execOrThrow('losetup', ['--find', '--show', imagePath], btrfsFailure)).stdout.trim();
  }
  try {
    await execOrThrow('mount', ['-t', 'btrfs', '-o', 'noatime', loopDevice, root], btrfsFailure);
  } catch (error) {
    await execOrThrow('losetup', ['--detach', loopDevice]).catch(() => {});
    throw error;
  }
  return { loopDevice };
}

export async function openBtrfsStore(options: BtrfsStoreOptions): Promise<BtrfsSnapshotStore> {
  const root = resolve(options.root);
  await mkdir(root, { recursive: true });
  let mounted: Mounted | undefined;
  if (!(await isOnBtrfs(root))) {
    mounted = await mountImage(root, resolve(options.imagePath ?? `${root}.img`), options.imageSizeBytes ?? defaultImageSize);
  }
  const receivedAt: ReceivedAt = new Map();
  const ops = btrfsTreeOps(root, mounted, receivedAt);
  try {
    return withReceiving(await openTreeStore(root, ops), receivedAt);
  } catch (error) {
    await ops.close().catch(() => {});
    throw error;
  }
}

/** Placeholder active snapshot path → the received subvolume that committing it really copies. */
type ReceivedAt = Map<string, string>;

function btrfsTreeOps(root: string, mounted: Mounted | undefined, receivedAt: ReceivedAt): TreeOps {
  let closed = false;
  return {
    diffNeedsReadOnly: true,
    createEmpty: async (path) => {
      await btrfs(['subvolume', 'create', path]);
    },
    copy: async (source, target, { readOnly }) => {
      const from = readOnly ? (receivedAt.get(source) ?? source) : source;
      await btrfs(['subvolume', 'snapshot', ...(readOnly ? ['-r'] : []), from, target]);
    },
    reclaimSpace: () => reclaimSpace(root),
    destroy: async (path) => {
      if (!(await isSubvolume(path))) {
        await destroyDirectory(path);
        return;
      }
      try {
        await btrfs(['subvolume', 'delete', path]);
      } catch {
        // A subvolume holding subvolumes (made inside a machine, e.g. by docker) cannot be deleted
        // until they are: walk for them only then, since walking a big tree is slow.
        await destroyNestedSubvolumes(path);
        await btrfs(['subvolume', 'delete', path]);
      }
    },
    diff: (fromPath, toPath) => sendDiff(fromPath, toPath),
    close: async () => {
      if (closed || !mounted) return;
      closed = true;
      await execOrThrow('umount', [root], btrfsFailure);
      await detachLoop(mounted.loopDevice);
    },
  };
}

/**
 * Detaches the store's loop device and waits until it is free. While anything still holds the device
 * open (udev probing it after the unmount, say) the kernel only marks it for detaching, and it stays
 * attached to the image until that last close: a close() that returned then would leave the loop device
 * behind for a moment, and an open of the same image right after would reuse a device being torn down.
 */
async function detachLoop(loopDevice: string): Promise<void> {
  await execOrThrow('losetup', ['--detach', loopDevice], btrfsFailure);
  const backingFile = `/sys/block/${basename(loopDevice)}/loop/backing_file`;
  const deadline = Date.now() + 10_000;
  while (await exists(backingFile)) {
    if (Date.now() > deadline) throw new StrataError('STRATA_SNAPSHOT', `${loopDevice} is still attached 10 s after it was detached (something holds it open)`);
    await sleep(20);
  }
}

async function exists(path: string): Promise<boolean> {
  return lstat(path).then(
    () => true,
    () => false,
  );
}

/**
 * Waits until the space of deleted subvolumes is free again. btrfs's cleaner deletes them in the
 * background, woken by a transaction commit: commit first (else the wait lasts until the next periodic
 * commit, up to 30 s), wait for the cleaner, commit again so the freed space shows.
 */
async function reclaimSpace(root: string): Promise<void> {
  await btrfs(['filesystem', 'sync', root]);
  await btrfs(['subvolume', 'sync', root]);
  await btrfs(['filesystem', 'sync', root]);
}

/**
 * Deletes a plain directory (or file). A receive's staging directory holds a subvolume, read-only once
 * received, which rm cannot delete: its subvolumes go first.
 */
async function destroyDirectory(path: string): Promise<void> {
  const entries = await readdir(path, { withFileTypes: true }).catch(() => []);
  for (const entry of entries) {
    const child = join(path, entry.name);
    if (entry.isDirectory() && (await isSubvolume(child))) await btrfs(['subvolume', 'delete', child]);
  }
  await rm(path, { recursive: true, force: true });
}

function withReceiving(store: SnapshotStore, receivedAt: ReceivedAt): BtrfsSnapshotStore {
  return Object.assign(store, {
    makeStagingDir: async () => {
      const dir = join(store.root, 'tmp', `receive-${randomBytes(8).toString('hex')}`);
      await mkdir(dir);
      return dir;
    },
    commitReceived: async (subvolume: string, name: SnapshotName, parent?: SnapshotName) => {
      await assertReceived(subvolume);
      const placeholder = snapshotKey(`receiving.${randomBytes(8).toString('hex')}`);
      const { path } = await store.prepare(placeholder, parent);
      receivedAt.set(path, subvolume);
      try {
        return await store.commit(placeholder, name);
      } finally {
        receivedAt.delete(path);
        await store.remove(placeholder);
      }
    },
    removeStagingDir: async (dir: string, options: { waitForSpace?: boolean } = {}) => {
      await destroyDirectory(dir);
      if (options.waitForSpace) await reclaimSpace(store.root);
    },
  });
}

/** Only a finished receive is committed: btrfs receive makes a subvolume read-only and sets its received UUID last. */
async function assertReceived(subvolume: string): Promise<void> {
  const facts = await subvolumeFacts(subvolume).catch((error: unknown) => {
    throw new StrataError('STRATA_SNAPSHOT', `${subvolume} is not a btrfs subvolume`, { cause: error });
  });
  if (!facts.readOnly || facts.receivedUuid === undefined) {
    throw new StrataError('STRATA_SNAPSHOT', `${subvolume} is not a finished receive (read-only: ${facts.readOnly}, received UUID: ${facts.receivedUuid ?? 'none'})`);
  }
}

export interface SubvolumeFacts {
  uuid: string;
  /** Set by `btrfs receive`: the UUID the subvolume had on the sending side (a send stream names it by that). */
  receivedUuid: string | undefined;
  readOnly: boolean;
}

/** What `btrfs subvolume show` says about the subvolume at `path`. */
export async function subvolumeFacts(path: string): Promise<SubvolumeFacts> {
  const { stdout } = await execOrThrow('btrfs', ['subvolume', 'show', path], btrfsFailure);
  const field = (label: string): string | undefined => {
    const value = new RegExp(`^\\s*${label}:\\s*(.*)$`, 'm').exec(stdout)?.[1]?.trim();
    return value === undefined || value === '-' ? undefined : value;
  };
  const uuid = field('UUID');
  if (uuid === undefined) throw new StrataError('STRATA_SNAPSHOT', `btrfs subvolume show ${path} gave no UUID`);
  return { uuid, receivedUuid: field('Received UUID'), readOnly: /\breadonly\b/.test(field('Flags') ?? '') };
}

async function destroyNestedSubvolumes(path: string): Promise<void> {
  for (const entry of await readdir(path, { withFileTypes: true })) {
    if (!entry.isDirectory()) continue;
    const child = join(path, entry.name);
    await destroyNestedSubvolumes(child);
    if (await isSubvolume(child)) await btrfs(['subvolume', 'delete', child]);
  }
}

async function sendDiff(fromPath: string, toPath: string): Promise<SnapshotChange[]> {
  const scratch = await mkdtemp(join(tmpdir(), 'strata-send-'));
  try {
    const streamFile = join(scratch, 'stream');
    await btrfs(['send', '--no-data', '-p', fromPath, '-f', streamFile, toPath]);
    const commands = parseSendStream(await readFile(streamFile));
    return await changesFromSendCommands(commands, {
      isDirectoryInTarget: async (relative) => (await lstat(join(toPath, relative)).catch(() => undefined))?.isDirectory() ?? false,
      descendants: (side, relative) => listBelow(side === 'from' ? fromPath : toPath, relative),
    });
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/** Every path below `relative` in the tree at `base`, relative to `base`. */
export async function listBelow(base: string, relative: string): Promise<string[]> {
  const found: string[] = [];
  const visit = async (dirRelative: string): Promise<void> => {
    for (const entry of await readdir(join(base, dirRelative), { withFileTypes: true })) {
      const child = `${dirRelative}/${entry.name}`;
      found.push(child);
      if (entry.isDirectory()) await visit(child);
    }
  };
  await visit(relative);
  return found;
}
