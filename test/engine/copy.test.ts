import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { copyIntoMachine, reapplyChanges, resolveDestPath, resolveSourcePath } from '../../src/engine/copy.js';
import { diffTrees, workingTreeId } from '../../src/source/git.js';

test('COPY sources resolve from the Layerfile directory, /x from the repo root, never outside', () => {
  assert.equal(resolveSourcePath('Layerfile', '.'), '');
  assert.equal(resolveSourcePath('services/api/Layerfile', '.'), 'services/api');
  assert.equal(resolveSourcePath('services/api/Layerfile', 'src/'), 'services/api/src');
  assert.equal(resolveSourcePath('services/api/Layerfile', '../lib'), 'services/lib');
  assert.equal(resolveSourcePath('services/api/Layerfile', '/shared/x.json'), 'shared/x.json');
  assert.equal(resolveSourcePath('services/api/Layerfile', '../..'), '');
  assert.throws(() => resolveSourcePath('services/api/Layerfile', '../../..'), /outside the repository/);
  assert.throws(() => resolveSourcePath('Layerfile', '../x'), /outside the repository/);
});

test('COPY destinations resolve against WORKDIR', () => {
  assert.deepEqual(resolveDestPath('/root', '.'), { path: '/root', isDir: true });
  assert.deepEqual(resolveDestPath('/root', 'app/'), { path: '/root/app', isDir: true });
  assert.deepEqual(resolveDestPath('/root', '/srv/x'), { path: '/srv/x', isDir: false });
  assert.deepEqual(resolveDestPath('/app', '../etc/conf'), { path: '/etc/conf', isDir: false });
});

function setup(t: { after(fn: () => void): void }) {
  const repo = mkdtempSync(join(tmpdir(), 'strata-copy-repo-'));
  const rootfs = mkdtempSync(join(tmpdir(), 'strata-copy-root-'));
  t.after(() => {
    rmSync(repo, { recursive: true, force: true });
    rmSync(rootfs, { recursive: true, force: true });
  });
  execFileSync('git', ['init', '-q'], { cwd: repo });
  mkdirSync(join(repo, 'svc/src'), { recursive: true });
  writeFileSync(join(repo, 'svc/Layerfile'), 'FROM vm/debian:12\n');
  writeFileSync(join(repo, 'svc/src/a.ts'), 'a');
  writeFileSync(join(repo, 'svc/run.sh'), '#!/bin/sh\n', { mode: 0o755 });
  writeFileSync(join(repo, 'top.txt'), 'top');
  symlinkSync('top.txt', join(repo, 'link'));
  mkdirSync(join(rootfs, 'root'));
  return { repo, rootfs };
}

test('copyIntoMachine copies directories, files and symlinks and records where they landed', async (t) => {
  const { repo, rootfs } = setup(t);
  const tree = await workingTreeId(repo);
  const base = { repoDir: repo, tree, rootfs, layerfilePath: 'svc/Layerfile', workdir: '/root' };
  assert.deepEqual(await copyIntoMachine({ ...base, sources: ['.'], dest: 'app' }), [{ source: 'svc', dest: '/root/app' }]);
  assert.equal(readFileSync(join(rootfs, 'root/app/src/a.ts'), 'utf8'), 'a');
  assert.equal(lstatSync(join(rootfs, 'root/app/run.sh')).mode & 0o777, 0o755);
  assert.deepEqual(await copyIntoMachine({ ...base, sources: ['/top.txt', '/link'], dest: '/etc/' }), [
    { source: 'top.txt', dest: '/etc/top.txt' },
    { source: 'link', dest: '/etc/link' },
  ]);
  assert.equal(readlinkSync(join(rootfs, 'etc/link')), 'top.txt');
  // A single file to a path that is not a directory is renamed; into an existing directory it keeps its name.
  assert.deepEqual(await copyIntoMachine({ ...base, sources: ['/top.txt'], dest: '/opt/renamed' }), [{ source: 'top.txt', dest: '/opt/renamed' }]);
  assert.deepEqual(await copyIntoMachine({ ...base, sources: ['/top.txt'], dest: '/root/app' }), [{ source: 'top.txt', dest: '/root/app/top.txt' }]);
  await assert.rejects(copyIntoMachine({ ...base, sources: ['missing'], dest: '.' }), /does not exist in the commit/);
});

test('copyIntoMachine never writes through a machine symlink to the host', async (t) => {
  const { repo, rootfs } = setup(t);
  const outside = mkdtempSync(join(tmpdir(), 'strata-copy-outside-'));
  t.after(() => rmSync(outside, { recursive: true, force: true }));
  symlinkSync(outside, join(rootfs, 'root/app'));
  const tree = await workingTreeId(repo);
  await copyIntoMachine({ repoDir: repo, tree, rootfs, layerfilePath: 'svc/Layerfile', workdir: '/root', sources: ['.'], dest: 'app/' });
  assert.ok(!existsSync(join(outside, 'src')), 'the host directory the symlink names stays untouched');
  assert.ok(existsSync(join(rootfs, outside, 'src/a.ts')), 'the symlink is followed inside the machine root');
});

test('reapplyChanges writes changed files, adds directories and deletes removed paths', async (t) => {
  const { repo, rootfs } = setup(t);
  const before = await workingTreeId(repo);
  await copyIntoMachine({ repoDir: repo, tree: before, rootfs, layerfilePath: 'svc/Layerfile', workdir: '/root', sources: ['.'], dest: 'app' });
  writeFileSync(join(repo, 'svc/src/a.ts'), 'changed');
  rmSync(join(repo, 'svc/run.sh'));
  mkdirSync(join(repo, 'svc/new/deep'), { recursive: true });
  writeFileSync(join(repo, 'svc/new/deep/x'), 'x');
  const after = await workingTreeId(repo);
  const changes = await diffTrees(repo, before, after);
  const entries = changes
    .filter((c) => c.path.startsWith('svc/'))
    .map((c) => ({ source: c.path, dest: '/root/app/' + c.path.slice('svc/'.length), change: c, copyStep: 0 }));
  await reapplyChanges(repo, after, rootfs, entries);
  assert.equal(readFileSync(join(rootfs, 'root/app/src/a.ts'), 'utf8'), 'changed');
  assert.ok(!existsSync(join(rootfs, 'root/app/run.sh')));
  assert.equal(readFileSync(join(rootfs, 'root/app/new/deep/x'), 'utf8'), 'x');
});
