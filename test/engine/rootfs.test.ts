import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureMachineDir, resolveInRoot } from '../../src/engine/rootfs.js';

function makeRoot(t: { after(fn: () => void): void }): string {
  const root = mkdtempSync(join(tmpdir(), 'strata-rootfs-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(join(root, 'etc'));
  mkdirSync(join(root, 'srv/app'), { recursive: true });
  return root;
}

test('absolute symlinks resolve inside the machine root, never to the host', async (t) => {
  const root = makeRoot(t);
  symlinkSync('/etc', join(root, 'escape'));
  assert.equal(await resolveInRoot(root, '/escape/passwd'), join(root, 'etc/passwd'));
  symlinkSync('../../../../../../etc', join(root, 'srv/dots'));
  assert.equal(await resolveInRoot(root, '/srv/dots/x'), join(root, 'etc/x'));
});

test('relative symlinks, dot-dot and missing tails resolve like the kernel would', async (t) => {
  const root = makeRoot(t);
  symlinkSync('srv/app', join(root, 'app'));
  assert.equal(await resolveInRoot(root, '/app/src/a.ts'), join(root, 'srv/app/src/a.ts'));
  assert.equal(await resolveInRoot(root, '/../../app'), join(root, 'srv/app'));
  assert.equal(await resolveInRoot(root, '/missing/../../x'), join(root, 'x'));
  assert.equal(await resolveInRoot(root, '/app', { followLast: false }), join(root, 'app'));
});

test('symlink loops are an error, not a hang', async (t) => {
  const root = makeRoot(t);
  symlinkSync('/b', join(root, 'a'));
  symlinkSync('/a', join(root, 'b'));
  await assert.rejects(resolveInRoot(root, '/a/x'), /too many levels/);
});

test('ensureMachineDir creates directories through machine symlinks and refuses files', async (t) => {
  const root = makeRoot(t);
  symlinkSync('/srv/app', join(root, 'work'));
  assert.equal(await ensureMachineDir(root, '/work/sub/dir'), join(root, 'srv/app/sub/dir'));
  writeFileSync(join(root, 'file'), 'x');
  await assert.rejects(ensureMachineDir(root, '/file'), /not a directory/);
});
