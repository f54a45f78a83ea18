// `strata machine run` as a real process on a throwaway store: output streams through, the exit code is
// the command's, and nothing stays behind (the store's image is unmounted and detached, the temporary
// snapshot and the machine are gone).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { machineRunSandboxPlace, parseMemorySize, shellCommandLine } from '../../src/cli/commands/machine.js';
import { openBtrfsStore } from '../../src/snapshot/btrfs.js';
import { exec } from '../../src/util/exec.js';
import { requireRoot } from '../helpers/env.js';
import { temporaryStore } from '../helpers/store.js';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const entry = fileURLToPath(new URL('./strata.ts', import.meta.url));

function strata(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolvePromise) => {
    execFile(process.execPath, ['--import', 'tsx', entry, ...args], { cwd: repoRoot, timeout: 300_000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
      resolvePromise({ code, stdout, stderr });
    });
  });
}

const storeMounted = (store: string): boolean => readFileSync('/proc/mounts', 'utf8').includes(` ${join(store, 'snapshots')} `);

test('shellCommandLine quotes each argument for bash', () => {
  assert.equal(shellCommandLine(['cat', '/etc/os-release']), 'cat /etc/os-release');
  assert.equal(shellCommandLine(['sh', '-c', 'exit 7']), "sh -c 'exit 7'");
  assert.equal(shellCommandLine(['echo', "it's", '', '$HOME', 'a;b']), `echo 'it'\\''s' '' '$HOME' 'a;b'`);
});

test('parseMemorySize reads K/M/G sizes and rejects others', () => {
  assert.equal(parseMemorySize('512M'), 512 * 1024 ** 2);
  assert.equal(parseMemorySize('2g'), 2 * 1024 ** 3);
  assert.equal(parseMemorySize('1.5GiB'), 1.5 * 1024 ** 3);
  for (const bad of ['512', '12X', '', 'M', '-1G']) assert.throws(() => parseMemorySize(bad), /invalid memory size/, bad);
});

test('strata machine run: output, exit code, and a clean store afterwards', { timeout: 600_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const store = await temporaryStore(t, 'strata-cli-machine-');

  const osRelease = await strata(['machine', 'run', '--store', store, '--from', 'vm/debian:12', '--', 'cat', '/etc/os-release']);
  assert.equal(osRelease.code, 0, osRelease.stderr);
  assert.match(osRelease.stdout, /VERSION_CODENAME=bookworm/);

  const exit7 = await strata(['machine', 'run', '--store', store, '--memory', '256M', '--from', 'vm/debian:12', '--', 'sh', '-c', 'echo "to $0" >&2; exit 7', "it's me"]);
  assert.equal(exit7.code, 7, exit7.stderr);
  assert.match(exit7.stderr, /^to it's me$/m, 'stderr streams through; each argument arrives as one word');

  assert.equal((await strata(['machine', 'run', '--store', store, '--from', 'vm/debian:12', '--memory', 'lots', '--', 'true'])).code, 2);

  // The CLI closed the store (unmounted, detached) and removed its machines and temporary snapshots.
  assert.equal(storeMounted(store), false, 'the store is unmounted');
  const loops = await exec('losetup', ['--noheadings', '--associated', join(store, 'snapshots.img')]);
  assert.equal(loops.stdout.trim(), '', 'the image is detached');
  assert.equal(existsSync(machineRunSandboxPlace(store).stateRoot), false, 'no machine state left');
  const snapshots = await openBtrfsStore({ root: join(store, 'snapshots') });
  try {
    const left = (await snapshots.list()).map((s) => `${s.kind} ${s.id}`);
    assert.equal(left.length, 1, `only the base image is left: ${left.join(', ')}`);
    assert.match(left[0] ?? '', /^committed image\.vm-debian-12\./);
  } finally {
    await snapshots.close();
  }
});
