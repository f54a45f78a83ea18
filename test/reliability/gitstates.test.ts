// Repository states that break naive source handling: a detached HEAD (by sha and as a working tree),
// a submodule, a 50 MB file, and file names that are not UTF-8 or hold spaces, quotes, newlines and a
// leading dash. COPY . . brings them all in, steps can use them, and an edit reruns exactly the steps
// that read the edited file.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { requireRoot } from '../helpers/env.js';
import { createGitRepo, createTestEngine } from '../helpers/engine.js';

const runner = 'main-layerfile';

test('reliability: detached HEAD, by --commit sha and as a working tree', { timeout: 120_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const repo = createGitRepo(t, { Layerfile: 'FROM vm/debian:12\nCOPY . .\nRUN cat version\n', version: 'v1\n' });
  const first = repo.commit('v1', { version: 'v1\n' });
  repo.commit('v2', { version: 'v2\n' });
  repo.git('checkout', '-q', '--detach', first);
  const engine = await createTestEngine(t);
  const bySha = await engine.run({ repoDir: repo.dir, commit: first });
  assert.equal(bySha.result.status, 'success');
  assert.equal(bySha.output.get(`${runner}#1`), 'v1\n');
  // The working tree of the detached checkout: v1 plus an uncommitted edit.
  writeFileSync(join(repo.dir, 'version'), 'v1-dirty\n');
  const tree = await engine.run({ repoDir: repo.dir });
  assert.equal(tree.result.status, 'success');
  assert.equal(tree.output.get(`${runner}#1`), 'v1-dirty\n');
});

test('reliability: a submodule copies as an empty directory', { timeout: 120_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const sub = createGitRepo(t, { 'inside.txt': 'from the submodule\n' });
  const repo = createGitRepo(t, { Layerfile: 'FROM vm/debian:12\nCOPY . .\nRUN test -d lib && ls -A lib | wc -l && cat top.txt\n', 'top.txt': 'top\n' });
  repo.git('-c', 'protocol.file.allow=always', 'submodule', 'add', '-q', sub.dir, 'lib');
  const sha = repo.commit('add a submodule');
  const engine = await createTestEngine(t);
  for (const commit of [sha, undefined]) {
    const { result, output } = await engine.run({ repoDir: repo.dir, commit, noCache: true });
    assert.equal(result.status, 'success', [...output.values()].join(''));
    assert.equal(output.get(`${runner}#1`), '0\ntop\n', `the submodule dir is there and empty (${commit ? 'commit' : 'working tree'})`);
  }
});

const hostileLayerfile = [
  'FROM vm/debian:12',
  'COPY . .',
  'RUN ls -b | sort', // step 1
  'RUN wc -c big.bin', // step 2
  'RUN cat -- -dash.txt', // step 3
  'RUN cat "quote\\"s\'.txt"', // step 4
  'RUN cat new?line.txt', // step 5
  'RUN cat bin*.txt', // step 6: the non-UTF-8 name
  "RUN cat 'with space.txt'", // step 7
  '',
].join('\n');

/** bin<0xff><0xfe>.txt: not valid UTF-8. */
const nonUtf8Name = Buffer.concat([Buffer.from('bin'), Buffer.from([0xff, 0xfe]), Buffer.from('.txt')]);

/** A repo with the hostile names and big.bin (50 MB, or a few bytes when `bigMb` is 0), committed. */
function hostileRepo(t: TestContext, bigMb: number) {
  const repo = createGitRepo(t, {
    Layerfile: hostileLayerfile,
    '-dash.txt': 'dash\n',
    'quote"s\'.txt': 'quotes\n',
    'new\nline.txt': 'newline\n',
    'with space.txt': 'space\n',
  });
  writeFileSync(Buffer.concat([Buffer.from(repo.dir + '/'), nonUtf8Name]), 'latin\n');
  // Not all zeros: a sparse or deduplicated copy would hide a slow path.
  const block = Buffer.alloc(1024 * 1024);
  for (let i = 0; i < block.length; i++) block[i] = (i * 7919) & 0xff;
  writeFileSync(join(repo.dir, 'big.bin'), bigMb === 0 ? 'small\n' : Buffer.concat(Array.from({ length: bigMb }, () => block)));
  const sha = repo.commit('hostile names');
  return { ...repo, sha };
}

const failureOf = (run: { result: { outcomes: Map<string, { message?: string | undefined }> }; steps: unknown }): string =>
  JSON.stringify({ outcomes: [...run.result.outcomes.values()].map((o) => o.message), steps: run.steps });

test('reliability: a 50 MB file and hostile file names', { timeout: 240_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const repo = hostileRepo(t, 50);
  const engine = await createTestEngine(t);
  const one = await engine.run({ repoDir: repo.dir, commit: repo.sha });
  assert.equal(one.result.status, 'success', failureOf(one));
  const out = (step: number) => one.output.get(`${runner}#${step}`);
  assert.deepEqual(
    (out(1) ?? '').split('\n').filter(Boolean).sort(),
    ['-dash.txt', 'Layerfile', 'big.bin', 'bin\\377\\376.txt', 'new\\nline.txt', 'quote"s\'.txt', 'with\\ space.txt'].sort(),
  );
  assert.equal(out(2), '52428800 big.bin\n');
  assert.deepEqual([3, 4, 5, 6, 7].map(out), ['dash\n', 'quotes\n', 'newline\n', 'latin\n', 'space\n']);

  // Editing the file only the last step reads reruns only that step.
  repo.commit('edit with space', { 'with space.txt': 'space 2\n' });
  const two = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(two.result.status, 'success', failureOf(two));
  assert.deepEqual(two.ran, [`${runner}#7`]);
  assert.equal(two.output.get(`${runner}#7`), 'space 2\n');

  // Editing the newline name reruns the step that read it (5) and the ones after, nothing before.
  repo.commit('edit the newline name', { 'new\nline.txt': 'newline 2\n' });
  const three = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(three.result.status, 'success', failureOf(three));
  assert.deepEqual(three.ran, [`${runner}#5`, `${runner}#6`, `${runner}#7`]);
  assert.equal(three.output.get(`${runner}#5`), 'newline 2\n');

  // The same through the working tree: the dash name (step 3).
  writeFileSync(join(repo.dir, '-dash.txt'), 'dash 2\n');
  const four = await engine.run({ repoDir: repo.dir });
  assert.equal(four.result.status, 'success', failureOf(four));
  assert.deepEqual(four.ran, [`${runner}#3`, `${runner}#4`, `${runner}#5`, `${runner}#6`, `${runner}#7`]);
  assert.equal(four.output.get(`${runner}#3`), 'dash 2\n');
});

// git's paths are decoded as UTF-8 (bin\xff\xfe.txt becomes "bin\uFFFD\uFFFD.txt" in diffs and traces
// alike, so the edit still invalidates the step that read it), but such a name cannot be written into
// a restored machine by name: the engine runs that Layerfile from the start instead (slow, not wrong).
test('reliability: editing a file with a non-UTF-8 name reruns the Layerfile from the start, with the new content', { timeout: 120_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const repo = hostileRepo(t, 0);
  const engine = await createTestEngine(t);
  const one = await engine.run({ repoDir: repo.dir, commit: repo.sha });
  assert.equal(one.result.status, 'success', failureOf(one));
  writeFileSync(Buffer.concat([Buffer.from(repo.dir + '/'), nonUtf8Name]), 'latin 2\n');
  repo.commit('edit the non-UTF-8 name');
  const two = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(two.result.status, 'success', failureOf(two));
  assert.ok(two.ran.includes(`${runner}#0`) && two.ran.includes(`${runner}#6`), `ran from the start: ${two.ran.join(', ')}`);
  assert.equal(two.output.get(`${runner}#6`), 'latin 2\n');
  assert.match(two.steps.find((s) => s.step === 0)?.message ?? '', /not valid UTF-8, which strata cannot update in a restored machine: running from the start/);
  // An edit of an ordinary file afterwards is incremental again.
  writeFileSync(join(repo.dir, 'with space.txt'), 'space 2\n');
  repo.commit('edit with space');
  const three = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(three.result.status, 'success', failureOf(three));
  assert.deepEqual(three.ran, [`${runner}#7`]);
});
