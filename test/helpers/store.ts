// A temporary store directory for tests that run the CLI as a process: the process loop-mounts the
// store's btrfs image, and a process that was killed (or any open that found the image mounted) leaves
// it mounted. This unmounts, detaches and deletes it after the test, whatever happened.
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { exec } from '../../src/util/exec.js';

/** Unmounts the store's snapshot image if mounted, detaches its loop devices, deletes the directory. */
export async function removeStore(store: string): Promise<void> {
  const mountpoint = join(store, 'snapshots');
  if (readFileSync('/proc/mounts', 'utf8').includes(` ${mountpoint} `)) await exec('umount', [mountpoint]);
  const image = join(store, 'snapshots.img');
  if (existsSync(image)) {
    const loops = await exec('losetup', ['--noheadings', '--output', 'NAME', '--associated', image]);
    for (const device of loops.stdout.split('\n').filter(Boolean)) await exec('losetup', ['--detach', device.trim()]);
  }
  await rm(store, { recursive: true, force: true });
}

/** A fresh store directory, removed (see removeStore) after the test. */
export async function temporaryStore(t: TestContext, prefix = 'strata-test-store-'): Promise<string> {
  const store = await mkdtemp(join(tmpdir(), prefix));
  t.after(() => removeStore(store));
  return store;
}
