// The snapshot store: the one seam through which the engine keeps machine filesystems.
//
// Vocabulary (containerd's): an *active* snapshot is writable and is addressed by a key; a *committed*
// snapshot is read-only and is addressed by a name; only committed snapshots can be parents. Keys and
// names share one namespace, so `remove`, `stat` and `path` take either.
//
// Unlike containerd, `commit` does NOT end the active snapshot: the engine snapshots a RUNNING
// machine's root after each step and keeps running in it. Committing is a read-only copy of the
// active snapshot at that instant (the caller freezes the machine and syncs first if it wants a
// consistent point); the active key stays writable and usable. Remove it explicitly when done.
import { StrataError } from '../errors.js';

/** Address of an active (writable) snapshot. */
export type SnapshotKey = string & { readonly __brand: 'SnapshotKey' };
/** Address of a committed (read-only) snapshot. */
export type SnapshotName = string & { readonly __brand: 'SnapshotName' };
export type SnapshotId = SnapshotKey | SnapshotName;

export type SnapshotKind = 'active' | 'committed';

export interface SnapshotInfo {
  /** The key (active) or name (committed). */
  id: SnapshotId;
  kind: SnapshotKind;
  /**
   * The committed snapshot this one descends from: for an active snapshot the parent it was prepared
   * from; for a committed one the parent of the active snapshot it was committed from. Informational:
   * copies never depend on their parent, so a parent may be removed (then this names a removed one).
   */
  parent: SnapshotName | undefined;
  createdAt: Date;
  /** Bytes used, when the backend can tell cheaply (btrfs cannot without quotas: undefined). */
  sizeBytes?: number | undefined;
}

export type SnapshotChangeKind = 'added' | 'modified' | 'deleted';

/**
 * One changed path between two snapshots, absolute inside the machine ('/etc/hosts').
 * Non-directories: added, deleted, or modified (content, size, mode, owner, xattrs, times, link
 * target, or replaced by another inode). Directories: added or deleted, or modified when their mode,
 * owner or xattrs changed — a directory whose entries changed is not itself reported (its changed
 * entries are), nor a directory whose only change is its timestamps.
 */
export interface SnapshotChange {
  path: string;
  change: SnapshotChangeKind;
}

export interface SnapshotStore {
  /** The directory the store lives in. */
  readonly root: string;

  /** Creates active snapshot `key`: empty, or a writable copy of committed `parent`. */
  prepare(key: SnapshotKey, parent?: SnapshotName): Promise<{ path: string }>;
  /**
   * Makes committed snapshot `name`: a read-only copy of active `key` as it is now. Atomic: `name`
   * either appears complete or not at all, even across a crash. The active snapshot stays writable.
   */
  commit(key: SnapshotKey, name: SnapshotName): Promise<SnapshotInfo>;
  /** A writable copy of committed `name` as active `newKey` (restore, SPLIT). O(1) on btrfs. */
  clone(name: SnapshotName, newKey: SnapshotKey): Promise<{ path: string }>;
  /** Removes an active or committed snapshot. Atomic: it disappears under its id at once. */
  remove(id: SnapshotId): Promise<void>;
  /** Facts about one snapshot; throws STRATA_SNAPSHOT when there is none with that id. */
  stat(id: SnapshotId): Promise<SnapshotInfo>;
  /** Whether a snapshot with that id exists. */
  has(id: SnapshotId): Promise<boolean>;
  /** Every snapshot, active and committed, sorted by id. */
  list(): Promise<SnapshotInfo[]>;
  /** Paths that differ from snapshot `from` to snapshot `to` (either kind), sorted by path. */
  diff(from: SnapshotId, to: SnapshotId): Promise<SnapshotChange[]>;
  /** The directory holding the snapshot's files (to mount into a machine). Read-only when committed. */
  path(id: SnapshotId): string;
  /** Releases the store (the btrfs store unmounts the image it mounted). Snapshots persist. */
  close(): Promise<void>;
}

/**
 * A store whose committed snapshots are btrfs subvolumes (the btrfs store), so that they can travel
 * between machines as `btrfs send` streams (transfer.ts). `btrfs receive` makes a read-only subvolume
 * in a staging directory; `commitReceived` turns it into an ordinary committed snapshot.
 */
export interface BtrfsSnapshotStore extends SnapshotStore {
  /**
   * A new empty directory on the store's filesystem for `btrfs receive` to make its subvolume in. If
   * the process dies before `removeStagingDir`, the next open of the store removes it.
   */
  makeStagingDir(): Promise<string>;
  /**
   * Makes committed snapshot `name` a read-only snapshot of `subvolume`, a finished receive in a
   * staging directory (read-only, with a received UUID; anything else is refused). Atomic like
   * `commit`. The copy keeps the received UUID, by which `btrfs receive` finds it as the parent of a
   * later incremental stream. `parent` (a committed snapshot of this store) is recorded as in `commit`.
   */
  commitReceived(subvolume: string, name: SnapshotName, parent?: SnapshotName): Promise<SnapshotInfo>;
  /**
   * Deletes a staging directory and any subvolume in it (a finished receive, or one a failed receive
   * left half made). btrfs frees a deleted subvolume's space later, in the background: `waitForSpace`
   * returns only once it is free (after a receive that filled the store).
   */
  removeStagingDir(dir: string, options?: { waitForSpace?: boolean }): Promise<void>;
}

// A key or name becomes a directory name: one path segment, no dot-dot tricks, no hidden files, short
// enough for any filesystem. ':' and '@' are allowed so ids can carry tags ('image.vm-debian-12.ab12').
const idPattern = /^[A-Za-z0-9_][A-Za-z0-9_.:@+=-]{0,199}$/;

export function isValidSnapshotId(id: string): boolean {
  return idPattern.test(id) && !id.includes('..');
}

export function assertSnapshotId(id: string, what: 'key' | 'name' | 'id' = 'id'): void {
  if (!isValidSnapshotId(id)) {
    throw new StrataError('STRATA_SNAPSHOT', `invalid snapshot ${what} ${JSON.stringify(id)}`, {
      hint: 'use 1-200 characters of A-Z a-z 0-9 _ . : @ + = -, not starting with . or -, without ".."',
    });
  }
}

export function snapshotKey(key: string): SnapshotKey {
  assertSnapshotId(key, 'key');
  return key as SnapshotKey;
}

export function snapshotName(name: string): SnapshotName {
  assertSnapshotId(name, 'name');
  return name as SnapshotName;
}
