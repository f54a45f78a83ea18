// The remote cache behind CLONE: branch choice, ls-remote parsing, and real fetches from local bare
// repositories (a path and a file:// URL) into a cache repository.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isStrataError } from '../../src/errors.js';
import { diffTrees } from '../../src/source/git.js';
import { chooseBranch, createRemoteCache, normalizeRemoteUrl, parseLsRemote } from '../../src/source/remote.js';

function tempDir(t: { after(fn: () => void): void }, prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A bare repository (the remote) and a work repository that pushes to it. */
function makeRemote(t: { after(fn: () => void): void }) {
  const bare = tempDir(t, 'strata-remote-bare-');
  const work = tempDir(t, 'strata-remote-work-');
  const git = (cwd: string, ...args: string[]) => execFileSync('git', args, { cwd, encoding: 'utf8' }).trim();
  git(bare, 'init', '-q', '--bare', '-b', 'trunk');
  git(work, 'init', '-q', '-b', 'trunk');
  git(work, 'config', 'user.email', 't@example.com');
  git(work, 'config', 'user.name', 't');
  git(work, 'remote', 'add', 'origin', bare);
  const commit = (branch: string, files: Record<string, string>, options: { from?: string } = {}) => {
    git(work, 'checkout', '-q', '-B', branch, ...(options.from ? [options.from] : []));
    for (const [name, content] of Object.entries(files)) writeFileSync(join(work, name), content);
    git(work, 'add', '-A');
    git(work, 'commit', '-q', '--allow-empty', '-m', `on ${branch}`);
    git(work, 'push', '-q', '--force', 'origin', `${branch}:${branch}`);
    return { commit: git(work, 'rev-parse', 'HEAD'), tree: git(work, 'rev-parse', 'HEAD^{tree}') };
  };
  return { bare, work, git, commit };
}

test('parseLsRemote reads heads and the HEAD symref', () => {
  const a = 'a'.repeat(40);
  const b = 'b'.repeat(40);
  const parsed = parseLsRemote(`ref: refs/heads/trunk\tHEAD\n${a}\tHEAD\n${a}\trefs/heads/trunk\n${b}\trefs/heads/feature/x\n${b}\trefs/tags/v1\n`);
  assert.deepEqual([...parsed.heads], [['trunk', a], ['feature/x', b]]);
  assert.equal(parsed.head, 'trunk');
  assert.equal(parseLsRemote(`${a}\trefs/heads/only\n`).head, undefined);
});

test('chooseBranch: same-named first, then DEFAULT=, then the remote HEAD; otherwise a clear error', () => {
  const heads = new Map([['trunk', 'x'], ['stable', 'y'], ['feature', 'z']]);
  assert.deepEqual(chooseBranch('u', heads, 'trunk', { sameAs: 'feature', defaultBranch: 'stable' }), { branch: 'feature', chosenBy: 'same-named' });
  assert.deepEqual(chooseBranch('u', heads, 'trunk', { sameAs: 'other', defaultBranch: 'stable' }), { branch: 'stable', chosenBy: 'default' });
  assert.deepEqual(chooseBranch('u', heads, 'trunk', { sameAs: 'other' }), { branch: 'trunk', chosenBy: 'remote-head' });
  assert.deepEqual(chooseBranch('u', heads, 'trunk', { sameAs: '' }), { branch: 'trunk', chosenBy: 'remote-head' });
  assert.throws(
    () => chooseBranch('u', heads, 'trunk', { sameAs: 'other', defaultBranch: 'missing' }),
    (e: unknown) => isStrataError(e) && /no branch "other" and no DEFAULT branch "missing"/.test(e.message) && /stable/.test(e.hint ?? ''),
  );
  assert.throws(() => chooseBranch('u', heads, undefined, { sameAs: 'other' }), /no default branch \(HEAD\).*DEFAULT=/);
});

test('normalizeRemoteUrl: ./ and ../ are relative to the repository; URLs pass through', () => {
  assert.equal(normalizeRemoteUrl('../lib', '/src/app'), '/src/lib');
  assert.equal(normalizeRemoteUrl('./vendor/x', '/src/app'), '/src/app/vendor/x');
  assert.equal(normalizeRemoteUrl('/abs//repo.git', '/src/app'), '/abs/repo.git');
  assert.equal(normalizeRemoteUrl('file:///abs/repo.git', '/src/app'), 'file:///abs/repo.git');
  assert.equal(normalizeRemoteUrl('git@example.com:org/repo.git', '/src/app'), 'git@example.com:org/repo.git');
});

test('resolve fetches the chosen branch into one cache repo per URL, and sees new commits', async (t) => {
  const remote = makeRemote(t);
  const first = remote.commit('trunk', { a: '1\n', b: '1\n' });
  const cacheRoot = tempDir(t, 'strata-remote-cache-');
  const cache = createRemoteCache(cacheRoot);

  const resolved = await cache.resolve(remote.bare, { sameAs: 'main' });
  assert.deepEqual(
    { branch: resolved.branch, chosenBy: resolved.chosenBy, commit: resolved.commit, tree: resolved.tree },
    { branch: 'trunk', chosenBy: 'remote-head', commit: first.commit, tree: first.tree },
  );
  assert.equal(resolved.repoDir, cache.repoDirOf(remote.bare));
  assert.equal(remote.git(resolved.repoDir, 'cat-file', 'blob', `${resolved.tree}:a`), '1');

  // A new commit on the remote: the next resolve sees it, in the same cache repository.
  const second = remote.commit('trunk', { b: '2\n' });
  const again = await cache.resolve(remote.bare, { sameAs: 'main' });
  assert.equal(again.commit, second.commit);
  assert.equal(again.repoDir, resolved.repoDir);
  assert.deepEqual(readdirSync(cacheRoot), [resolved.repoDir.split('/').pop()]);
  const changes = await diffTrees(again.repoDir, resolved.tree, again.tree);
  assert.deepEqual(changes.map((c) => c.path), ['b']);

  // The same-named branch wins once the remote has it; file:// URLs are another cache repo.
  const main = remote.commit('main', { a: 'main\n' });
  const viaUrl = await cache.resolve(`file://${remote.bare}`, { sameAs: 'main', defaultBranch: 'trunk' });
  assert.deepEqual({ branch: viaUrl.branch, chosenBy: viaUrl.chosenBy, commit: viaUrl.commit }, { branch: 'main', chosenBy: 'same-named', commit: main.commit });
  assert.notEqual(viaUrl.repoDir, resolved.repoDir);
});

test('a force-pushed branch keeps the old tree readable in the cache (old chains can still diff)', async (t) => {
  const remote = makeRemote(t);
  remote.commit('trunk', { a: 'base\n' });
  const doomed = remote.commit('trunk', { a: 'doomed\n' });
  const cache = createRemoteCache(tempDir(t, 'strata-remote-cache-'));
  const before = await cache.resolve(remote.bare, { sameAs: '' });
  assert.equal(before.tree, doomed.tree);
  const rewritten = remote.commit('rewritten', { a: 'rewritten\n' }, { from: 'trunk~1' });
  remote.git(remote.work, 'push', '-q', '--force', 'origin', 'rewritten:trunk');
  remote.git(remote.bare, 'gc', '-q', '--prune=now');
  const after = await cache.resolve(remote.bare, { sameAs: '' });
  assert.equal(after.commit, rewritten.commit);
  const changes = await diffTrees(after.repoDir, before.tree, after.tree);
  assert.deepEqual(changes.map((c) => [c.path, c.before?.contentId !== c.after?.contentId]), [['a', true]]);
});

test('concurrent resolves of one URL both succeed (fetches are serialized per cache repo)', async (t) => {
  const remote = makeRemote(t);
  const head = remote.commit('trunk', { a: '1\n' });
  remote.commit('stable', { s: '1\n' });
  const cache = createRemoteCache(tempDir(t, 'strata-remote-cache-'));
  const [x, y] = await Promise.all([cache.resolve(remote.bare, { sameAs: '' }), cache.resolve(remote.bare, { sameAs: 'stable' })]);
  assert.equal(x.commit, head.commit);
  assert.equal(y.branch, 'stable');
});

test('an unreachable URL and a missing DEFAULT branch are StrataErrors that say so', async (t) => {
  const cacheRoot = tempDir(t, 'strata-remote-cache-');
  const cache = createRemoteCache(cacheRoot);
  const missing = join(cacheRoot, 'no-such-repo.git');
  await assert.rejects(cache.resolve(missing, { sameAs: 'main' }), (e: unknown) => isStrataError(e) && e.code === 'STRATA_ENGINE' && e.message.startsWith(`cannot reach ${missing}:`));
  const remote = makeRemote(t);
  remote.commit('trunk', { a: '1\n' });
  await assert.rejects(cache.resolve(remote.bare, { sameAs: 'main', defaultBranch: 'nope' }), /has no branch "main" and no DEFAULT branch "nope"/);
});
