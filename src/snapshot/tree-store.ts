// The SnapshotStore bookkeeping shared by every backend: directory layout, id namespace, metadata,
// atomic create/commit/remove, crash recovery. A backend only supplies the tree operations (`TreeOps`):
// btrfs subvolumes (btrfs.ts) or plain directories (dirstore.ts).
//
// Layout under `root`:
//   active/<key>      writable trees
//   committed/<name>  read-only trees
//   meta/<id>.json    { parent, createdAt } per snapshot (kept outside the tree: the tree is a machine's root)
//   tmp/              scratch: metadata being written, read-only copies made for a diff
// Every tree is made as <kind dir>/.tmp-<random> and renamed to its final name, and removed by renaming
// it to <kind dir>/.trash-<random> first: rename is atomic, so a crash never leaves a half-made tree
// under a final name. The rename stays inside one directory because btrfs refuses to move a read-only
// subvolume to another directory (EROFS: its '..' would change). Ids never start with '.', so hidden
// entries are always leftovers; opening the store deletes them and whatever tmp/ holds. Hence one
// process at a time owns a store directory (a second opener would reap the first one's work in progress).
import { randomBytes } from 'node:crypto';
import { lstatSync } from 'node:fs';
import { lstat, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { StrataError } from '../errors.js';
import {
  assertSnapshotId,
  type SnapshotChange,
  type SnapshotId,
  type SnapshotInfo,
  type SnapshotKey,
  type SnapshotKind,
  type SnapshotName,
  type SnapshotStore,
} from './types.js';

export interface TreeOps {
  /** Creates an empty writable tree at `path` (which does not exist). */
  createEmpty(path: string): Promise<void>;
  /** Copies tree `source` to `target` (which does not exist), read-only if asked. */
  copy(source: string, target: string, options: { readOnly: boolean }): Promise<void>;
  /** Deletes the tree at `path` (already moved out of the final names). */
  destroy(path: string): Promise<void>;
  /** Changed paths between two trees; both are read-only copies when `diffNeedsReadOnly`. */
  diff(fromPath: string, toPath: string): Promise<SnapshotChange[]>;
  /** Whether `diff` needs read-only trees (active ones are then copied read-only into tmp/ first). */
  readonly diffNeedsReadOnly: boolean;
  /** Releases backend resources (mounts). */
  close(): Promise<void>;
  /**
   * Waits until space freed by earlier deletions is usable again (btrfs frees a deleted subvolume's
   * space later, in the background). Called once when creating a snapshot runs out of space.
   */
  reclaimSpace?(): Promise<void>;
}

function isNoSpace(error: unknown): boolean {
  const text = `${error instanceof Error ? error.message : String(error ?? '')} ${(error as NodeJS.ErrnoException | undefined)?.code ?? ''}`;
  return /ENOSPC|No space left on device/i.test(text);
}

interface SnapshotMeta {
  parent?: string;
  createdAt: string;
}

const dirFor: Record<SnapshotKind, string> = { active: 'active', committed: 'committed' };

function snapshotError(message: string, cause?: unknown, hint?: string): StrataError {
  // A full store is the one failure a user can act on: say so instead of a bare "could not create".
  if (isNoSpace(cause)) {
    return new StrataError('STRATA_STORE_FULL', `${message}: the snapshot store is full (no space left on device)`, {
      cause,
      hint: hint ?? 'free space (strata cache prune, or remove old stores), or give the store a bigger image',
    });
  }
  return new StrataError('STRATA_SNAPSHOT', message, { cause, hint });
}

function isNotFound(error: unknown): boolean {
  return (error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
}

/** Creates the layout under `root` (which must exist), reaps crash leftovers, returns the store. */
export async function openTreeStore(root: string, ops: TreeOps): Promise<SnapshotStore> {
  for (const dir of ['active', 'committed', 'meta', 'tmp']) await mkdir(join(root, dir), { recursive: true });
  await reapLeftovers(root, ops);
  return new TreeStore(root, ops);
}

async function reapLeftovers(root: string, ops: TreeOps): Promise<void> {
  // Interrupted commits, creations and removals.
  for (const kindDir of ['active', 'committed']) {
    for (const entry of await readdir(join(root, kindDir))) {
      if (entry.startsWith('.')) await ops.destroy(join(root, kindDir, entry));
    }
  }
  for (const entry of await readdir(join(root, 'tmp'))) await ops.destroy(join(root, 'tmp', entry));
  // Metadata whose tree never got its final name (or whose removal was interrupted).
  for (const entry of await readdir(join(root, 'meta'))) {
    const id = entry.endsWith('.json') ? entry.slice(0, -'.json'.length) : undefined;
    const orphan =
      id === undefined || !(exists(join(root, 'active', id)) || exists(join(root, 'committed', id)));
    if (orphan) await rm(join(root, 'meta', entry), { force: true });
  }
}

function exists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

class TreeStore implements SnapshotStore {
  /** Ids being created right now: the existence check and the final rename are not one step. */
  private readonly inFlight = new Set<string>();

  constructor(
    readonly root: string,
    private readonly ops: TreeOps,
  ) {}

  private find(id: string): SnapshotKind | undefined {
    if (exists(join(this.root, 'active', id))) return 'active';
    if (exists(join(this.root, 'committed', id))) return 'committed';
    return undefined;
  }

  private require(id: string, kind?: SnapshotKind): SnapshotKind {
    assertSnapshotId(id);
    const found = this.find(id);
    if (found === undefined) throw snapshotError(`no snapshot ${JSON.stringify(id)} in ${this.root}`);
    if (kind !== undefined && found !== kind) {
      throw snapshotError(`snapshot ${JSON.stringify(id)} is ${found}, expected ${kind}`);
    }
    return found;
  }

  /** A scratch path in tmp/, or a hidden one next to the final names of `kind` (see the layout). */
  private tmpPath(kind?: SnapshotKind, purpose: 'tmp' | 'trash' = 'tmp'): string {
    const random = randomBytes(8).toString('hex');
    return kind === undefined ? join(this.root, 'tmp', random) : join(this.root, dirFor[kind], `.${purpose}-${random}`);
  }

  private async writeMeta(id: string, meta: SnapshotMeta): Promise<void> {
    const target = join(this.root, 'meta', `${id}.json`);
    const temp = join(this.root, 'tmp', `${randomBytes(8).toString('hex')}.json`);
    await writeFile(temp, JSON.stringify(meta));
    await rename(temp, target);
  }

  private async readMeta(id: string): Promise<SnapshotMeta | undefined> {
    try {
      return JSON.parse(await readFile(join(this.root, 'meta', `${id}.json`), 'utf8')) as SnapshotMeta;
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  /** Makes a new tree under its final name through tmp/: `make` fills the temp path. */
  private async create(
    id: string,
    kind: SnapshotKind,
    parent: string | undefined,
    make: (tempPath: string) => Promise<void>,
  ): Promise<string> {
    assertSnapshotId(id, kind === 'active' ? 'key' : 'name');
    if (this.inFlight.has(id) || this.find(id) !== undefined) {
      throw snapshotError(`snapshot ${JSON.stringify(id)} already exists in ${this.root}`);
    }
    this.inFlight.add(id);
    const final = join(this.root, dirFor[kind], id);
    try {
      for (let attempt = 0; ; attempt++) {
        const temp = this.tmpPath(kind);
        try {
          await make(temp);
          const meta: SnapshotMeta = { createdAt: new Date().toISOString() };
          if (parent !== undefined) meta.parent = parent;
          await this.writeMeta(id, meta);
          await rename(temp, final);
          return final;
        } catch (error) {
          await rm(join(this.root, 'meta', `${id}.json`), { force: true }).catch(() => {});
          if (exists(temp)) await this.ops.destroy(temp).catch(() => {});
          // Out of space right after deletions (a run that filled the store): wait for the space to
          // come back, then try once more.
          if (attempt === 0 && isNoSpace(error) && this.ops.reclaimSpace) {
            await this.ops.reclaimSpace().catch(() => {});
            continue;
          }
          if (error instanceof StrataError && !isNoSpace(error)) throw error;
          throw snapshotError(`could not create ${kind} snapshot ${JSON.stringify(id)}`, error);
        }
      }
    } finally {
      this.inFlight.delete(id);
    }
  }

  async prepare(key: SnapshotKey, parent?: SnapshotName): Promise<{ path: string }> {
    if (parent === undefined) {
      return { path: await this.create(key, 'active', undefined, (temp) => this.ops.createEmpty(temp)) };
    }
    this.require(parent, 'committed');
    const source = join(this.root, 'committed', parent);
    return {
      path: await this.create(key, 'active', parent, (temp) => this.ops.copy(source, temp, { readOnly: false })),
    };
  }

  clone(name: SnapshotName, newKey: SnapshotKey): Promise<{ path: string }> {
    return this.prepare(newKey, name);
  }

  async commit(key: SnapshotKey, name: SnapshotName): Promise<SnapshotInfo> {
    this.require(key, 'active');
    const source = join(this.root, 'active', key);
    const parent = (await this.readMeta(key))?.parent;
    await this.create(name, 'committed', parent, (temp) => this.ops.copy(source, temp, { readOnly: true }));
    return this.stat(name);
  }

  async remove(id: SnapshotId): Promise<void> {
    const kind = this.require(id);
    const temp = this.tmpPath(kind, 'trash');
    try {
      await rename(join(this.root, dirFor[kind], id), temp);
    } catch (error) {
      throw snapshotError(`could not remove snapshot ${JSON.stringify(id)}`, error, 'is it still mounted in a machine?');
    }
    await rm(join(this.root, 'meta', `${id}.json`), { force: true });
    await this.ops.destroy(temp);
  }

  async stat(id: SnapshotId): Promise<SnapshotInfo> {
    const kind = this.require(id);
    const meta = await this.readMeta(id);
    let createdAt: Date;
    if (meta) createdAt = new Date(meta.createdAt);
    else createdAt = (await lstat(join(this.root, dirFor[kind], id))).birthtime;
    return { id, kind, parent: meta?.parent as SnapshotName | undefined, createdAt, sizeBytes: undefined };
  }

  async has(id: SnapshotId): Promise<boolean> {
    assertSnapshotId(id);
    return this.find(id) !== undefined;
  }

  async list(): Promise<SnapshotInfo[]> {
    const ids = [...(await readdir(join(this.root, 'active'))), ...(await readdir(join(this.root, 'committed')))];
    const infos: SnapshotInfo[] = [];
    for (const id of ids.filter((entry) => !entry.startsWith('.')).sort()) {
      try {
        infos.push(await this.stat(id as SnapshotId));
      } catch (error) {
        if (!(error instanceof StrataError)) throw error; // removed meanwhile
      }
    }
    return infos;
  }

  async diff(from: SnapshotId, to: SnapshotId): Promise<SnapshotChange[]> {
    const fromKind = this.require(from);
    const toKind = this.require(to);
    const temps: string[] = [];
    // btrfs send needs read-only trees: an active side is diffed through a read-only instant copy.
    const readable = async (id: string, kind: SnapshotKind): Promise<string> => {
      const path = join(this.root, dirFor[kind], id);
      if (kind === 'committed' || !this.ops.diffNeedsReadOnly) return path;
      const temp = this.tmpPath();
      await this.ops.copy(path, temp, { readOnly: true });
      temps.push(temp);
      return temp;
    };
    try {
      return await this.ops.diff(await readable(from, fromKind), await readable(to, toKind));
    } finally {
      for (const temp of temps) await this.ops.destroy(temp).catch(() => {});
    }
  }

  path(id: SnapshotId): string {
    return join(this.root, dirFor[this.require(id)], id);
  }

  close(): Promise<void> {
    return this.ops.close();
  }
}
