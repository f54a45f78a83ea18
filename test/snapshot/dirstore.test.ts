// The directory-backed fake store passes the SnapshotStore conformance suite (no root needed).
import { execOrThrow } from '../../src/util/exec.js';
import { openDirStore } from '../../src/snapshot/dirstore.js';
import { snapshotStoreConformance } from './conformance.js';

snapshotStoreConformance({
  label: 'dirstore',
  guard: () => true,
  open: (root) => openDirStore({ root }),
  simulateInterruptedCommit: async (_store, activePath, workPath) => {
    await execOrThrow('cp', ['-a', activePath, workPath]);
  },
});
