// Roots for system-container machines: writable btrfs snapshots of the vm/debian:12 image, as
// in production (an overlay mount, which test/sandbox/rootfs.ts uses for default machines, cannot be
// mounted idmapped). One store per test process, in a temporary directory on a loop-mounted btrfs
// image; close() unmounts it, detaches its loop device and removes the directory.
import { mkdtemp } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { ensureImage } from '../../src/images/ensure.js';
import { openBtrfsStore } from '../../src/snapshot/btrfs.js';
import { snapshotKey } from '../../src/snapshot/types.js';
import type { SnapshotKey, SnapshotName, SnapshotStore } from '../../src/snapshot/types.js';
import { removeStore } from '../helpers/store.js';

export const systemImage = 'vm/debian:12';

export interface SystemRootfsFactory {
  /** The store (opened on first use) and the image's committed snapshot in it. */
  store(): Promise<{ store: SnapshotStore; image: SnapshotName }>;
  /** A fresh writable copy of the image, removed after the test. */
  makeRootfs(t: TestContext): Promise<string>;
  /** The same, with its snapshot key (to commit it), or a copy of another committed snapshot. */
  prepareRootfs(t: TestContext, from?: SnapshotName): Promise<{ path: string; key: SnapshotKey }>;
  close(): Promise<void>;
}

export function systemRootfsFactory(): SystemRootfsFactory {
  let opened: Promise<{ store: SnapshotStore; image: SnapshotName; dir: string }> | undefined;
  const open = () =>
    (opened ??= (async () => {
      const dir = await mkdtemp(join(tmpdir(), 'strata-system-store-'));
      // The store's layout (snapshots/ + snapshots.img) is what removeStore cleans up.
      const store = await openBtrfsStore({ root: join(dir, 'snapshots'), imagePath: join(dir, 'snapshots.img'), imageSizeBytes: 16 * 1024 ** 3 });
      const { snapshot } = await ensureImage(store, systemImage);
      return { store, image: snapshot, dir };
    })());
  return {
    async store() {
      const { store, image } = await open();
      return { store, image };
    },
    async makeRootfs(t) {
      return (await this.prepareRootfs(t)).path;
    },
    async prepareRootfs(t, from) {
      const { store, image } = await open();
      const key = snapshotKey(`machine-${randomBytes(4).toString('hex')}`);
      const { path } = await store.clone(from ?? image, key);
      t.after(() => store.remove(key));
      return { path, key };
    },
    async close() {
      if (!opened) return;
      const { store, dir } = await opened;
      await store.close().catch(() => {});
      await removeStore(dir);
    },
  };
}
