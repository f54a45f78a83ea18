// A Debian rootfs for sandbox tests, built once per host with mmdebstrap (~30 s) into
// /var/cache/strata/dev-rootfs.tar and extracted once next to it. Each test gets its own writable
// copy as an overlay mount over that pristine tree (instant, where a full copy takes seconds), removed
// after the test. Swap for the images module's ensureImage() once it lands.
import { existsSync, mkdirSync, mkdtempSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { exec, execOrThrow } from '../../src/util/exec.js';

const cacheDir = '/var/cache/strata';
export const devRootfsTar = join(cacheDir, 'dev-rootfs.tar');
const pristineDir = join(cacheDir, 'dev-rootfs.d');
const lockFile = join(cacheDir, 'dev-rootfs.lock');

/** Builds the tarball and its extracted tree unless present; concurrent test processes serialize on a flock. */
export async function ensureDevRootfs(): Promise<string> {
  if (existsSync(pristineDir)) return pristineDir;
  mkdirSync(cacheDir, { recursive: true });
  const build = [
    `if ! test -f ${devRootfsTar}; then rm -f ${devRootfsTar}.tmp`,
    `mmdebstrap --variant=minbase --include=ca-certificates,procps,iproute2 --format=tar bookworm ${devRootfsTar}.tmp http://deb.debian.org/debian`,
    `mv ${devRootfsTar}.tmp ${devRootfsTar}; fi`,
    `if ! test -d ${pristineDir}; then rm -rf ${pristineDir}.tmp && mkdir ${pristineDir}.tmp`,
    `tar -C ${pristineDir}.tmp -xf ${devRootfsTar}`,
    `mv ${pristineDir}.tmp ${pristineDir}; fi`,
  ].join(' && ');
  await execOrThrow('flock', [lockFile, 'sh', '-c', build], { timeoutMs: 10 * 60_000 });
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
