// A Debian rootfs for sandbox tests: the vm/debian:12 image from the images module's host cache
// (built once per host), extracted once next to it. Each test gets its own writable copy as an overlay
// mount over that pristine tree (instant, where a full copy takes seconds), removed after the test.
import { existsSync, mkdirSync, mkdtempSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { TestContext } from 'node:test';
import { ensureImageTar } from '../../src/images/ensure.js';
import { exec, execOrThrow } from '../../src/util/exec.js';

/** Extracts the cached image tarball once per recipe; concurrent test processes serialize on a flock. */
export async function ensureDevRootfs(): Promise<string> {
  const { tarPath, recipeHash } = await ensureImageTar('vm/debian:12');
  const pristineDir = join(dirname(tarPath), `${recipeHash}.rootfs`);
  if (existsSync(pristineDir)) return pristineDir;
  const extract = [
    `if ! test -d ${pristineDir}; then rm -rf ${pristineDir}.tmp && mkdir ${pristineDir}.tmp`,
    `tar -C ${pristineDir}.tmp --numeric-owner --same-owner --preserve-permissions -xf ${tarPath}`,
    `mv ${pristineDir}.tmp ${pristineDir}; fi`,
  ].join(' && ');
  await execOrThrow('flock', [`${pristineDir}.lock`, 'sh', '-c', extract], { timeoutMs: 10 * 60_000 });
  return pristineDir;
}

/** A fresh writable rootfs (overlay over the pristine tree) in its own temporary directory. */
export async function makeTestRootfs(t: TestContext): Promise<string> {
  const lower = await ensureDevRootfs();
  const dir = mkdtempSync(join(tmpdir(), 'strata-sandbox-test-'));
  const [upper, work, rootfs] = ['upper', 'work', 'rootfs'].map((name) => join(dir, name)) as [string, string, string];
  for (const path of [upper, work, rootfs]) mkdirSync(path);
  t.after(async () => {
    if ((await exec('umount', [rootfs])).exitCode !== 0) await exec('umount', ['--lazy', rootfs]);
    await rm(dir, { recursive: true, force: true });
  });
  await execOrThrow('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lower},upperdir=${upper},workdir=${work}`, rootfs]);
  return rootfs;
}
