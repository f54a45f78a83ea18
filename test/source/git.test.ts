import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { commitInfo, diffTrees, exportTree, pathState, readLayerfilesFromTree, workingTreeId } from '../../src/source/git.js';

function makeRepo(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'strata-git-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const g = (...args: string[]) => execFileSync('git', args, { cwd: dir });
  g('init', '-q', '-b', 'main');
  g('config', 'user.email', 'test@example.com');
  g('config', 'user.name', 'test');
  mkdirSync(join(dir, 'a/b'), { recursive: true });
  writeFileSync(join(dir, 'a/b/f'), 'x\n');
  writeFileSync(join(dir, 'top'), 'top\n');
  symlinkSync('top', join(dir, 'link'));
  writeFileSync(join(dir, '.gitignore'), 'ignored\n');
  g('add', '-A');
  g('commit', '-qm', 'first commit');
  return dir;
}

test('commitInfo reads commit, tree, branch and title', async (t) => {
  const dir = makeRepo(t);
  const info = await commitInfo(dir);
  assert.match(info.commit, /^[0-9a-f]{40}$/);
  assert.match(info.tree, /^[0-9a-f]{40}$/);
  assert.equal(info.branch, 'main');
  assert.equal(info.title, 'first commit');
});

test('working tree id equals the commit tree when clean, and changes with content, not mtime', async (t) => {
  const dir = makeRepo(t);
  const info = await commitInfo(dir);
  assert.equal(await workingTreeId(dir), info.tree);
  // Rewriting identical content (new mtime) keeps the id; an ignored file does not count.
  writeFileSync(join(dir, 'top'), 'top\n');
  writeFileSync(join(dir, 'ignored'), 'whatever');
  assert.equal(await workingTreeId(dir), info.tree);
  writeFileSync(join(dir, 'top'), 'top!\n');
  assert.notEqual(await workingTreeId(dir), info.tree);
  // The real index is untouched.
  assert.equal(execFileSync('git', ['diff', '--cached', '--name-only'], { cwd: dir, encoding: 'utf8' }), '');
});

test('diffTrees reports files, directories, modes and symlink targets', async (t) => {
  const dir = makeRepo(t);
  const before = (await commitInfo(dir)).tree;
  unlinkSync(join(dir, 'a/b/f'));
  mkdirSync(join(dir, 'c'));
  writeFileSync(join(dir, 'c/new'), 'hello');
  chmodSync(join(dir, 'top'), 0o755);
  unlinkSync(join(dir, 'link'));
  symlinkSync('a', join(dir, 'link'));
  const after = await workingTreeId(dir);
  const changes = await diffTrees(dir, before, after);
  const byPath = new Map(changes.map((c) => [c.path, c]));
  assert.deepEqual([...byPath.keys()], ['a', 'a/b', 'a/b/f', 'c', 'c/new', 'link', 'top']);
  assert.equal(byPath.get('a')?.after, null);
  assert.equal(byPath.get('a')?.before?.type, 'dir');
  assert.equal(byPath.get('c')?.after?.type, 'dir');
  assert.deepEqual({ ...byPath.get('c/new')?.after, contentId: 'x' }, { type: 'file', mode: 0o644, size: 5, contentId: 'x' });
  assert.equal(byPath.get('top')?.before?.mode, 0o644);
  assert.equal(byPath.get('top')?.after?.mode, 0o755);
  assert.equal(byPath.get('top')?.before?.contentId, byPath.get('top')?.after?.contentId);
  assert.equal(byPath.get('link')?.after?.type, 'symlink');
  assert.notEqual(byPath.get('link')?.before?.contentId, byPath.get('link')?.after?.contentId);
  assert.deepEqual(await diffTrees(dir, after, after), []);
});

test('diffTrees from nothing lists the whole tree; pathState finds single paths', async (t) => {
  const dir = makeRepo(t);
  const tree = (await commitInfo(dir)).tree;
  const all = await diffTrees(dir, null, tree);
  assert.deepEqual(all.map((c) => c.path), ['.gitignore', 'a', 'a/b', 'a/b/f', 'link', 'top']);
  assert.ok(all.every((c) => c.before === null && c.after !== null));
  assert.equal((await pathState(dir, tree, 'a/b/f'))?.size, 2);
  assert.equal((await pathState(dir, tree, 'a'))?.type, 'dir');
  assert.equal(await pathState(dir, tree, 'missing'), null);
});

test('pathState takes names literally: `:x`, globs and magic are file names, not pathspecs', async (t) => {
  const dir = makeRepo(t);
  for (const name of [':odd', '[ab].txt', '*']) writeFileSync(join(dir, name), name);
  writeFileSync(join(dir, 'a.txt'), 'a');
  execFileSync('git', ['add', '-A'], { cwd: dir });
  execFileSync('git', ['commit', '-qm', 'odd names'], { cwd: dir });
  const tree = (await commitInfo(dir)).tree;
  for (const name of [':odd', '[ab].txt', '*']) assert.equal((await pathState(dir, tree, name))?.size, name.length, name);
  assert.equal(await pathState(dir, tree, ':(glob)*.txt'), null, 'no pathspec magic');
});

test('exportTree writes a tree or a subdirectory with modes and symlinks', async (t) => {
  const dir = makeRepo(t);
  chmodSync(join(dir, 'top'), 0o755);
  const tree = await workingTreeId(dir);
  const out = mkdtempSync(join(tmpdir(), 'strata-export-'));
  t.after(() => rmSync(out, { recursive: true, force: true }));
  await exportTree(dir, tree, '', out);
  assert.equal(readFileSync(join(out, 'a/b/f'), 'utf8'), 'x\n');
  assert.equal(readlinkSync(join(out, 'link')), 'top');
  assert.equal(statSync(join(out, 'top')).mode & 0o777, 0o755);
  const sub = mkdtempSync(join(tmpdir(), 'strata-export-'));
  t.after(() => rmSync(sub, { recursive: true, force: true }));
  await exportTree(dir, tree, 'a', sub);
  assert.equal(readFileSync(join(sub, 'b/f'), 'utf8'), 'x\n');
});

test('readLayerfilesFromTree finds every Layerfile in the tree, not ignored or node_modules ones', async (t) => {
  const dir = makeRepo(t);
  mkdirSync(join(dir, 'svc/api'), { recursive: true });
  mkdirSync(join(dir, 'node_modules/pkg'), { recursive: true });
  writeFileSync(join(dir, 'Layerfile'), 'FROM vm/debian:12\n');
  writeFileSync(join(dir, 'svc/api/Layerfile'), 'FROM ../..\n');
  writeFileSync(join(dir, 'svc/layerfile'), 'not me: case matters\n');
  writeFileSync(join(dir, 'node_modules/pkg/Layerfile'), 'FROM vm/debian:12\n');
  const found = await readLayerfilesFromTree(dir, await workingTreeId(dir));
  assert.deepEqual(found, [
    { path: 'Layerfile', text: 'FROM vm/debian:12\n' },
    { path: 'svc/api/Layerfile', text: 'FROM ../..\n' },
  ]);
});
