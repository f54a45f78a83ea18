// The seed example of MISSION.md end to end on a real git repo, real machines and real snapshots:
// edit an unrelated file -> nothing runs; edit file2 -> only the last RUN; edit file1 -> the last two;
// edit the Layerfile's last line -> only the last step.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { requireRoot } from '../helpers/env.js';
import { createGitRepo, createTestEngine } from '../helpers/engine.js';

const LAYERFILE = `FROM vm/debian:12
COPY . .
RUN sleep 0.2 && cat file1
RUN sleep 0.2 && cat file2
`;

test('seed example: only the steps whose reads changed rerun', { timeout: 600_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const repo = createGitRepo(t, { Layerfile: LAYERFILE, file1: 'one\n', file2: 'two\n', other: 'unrelated\n' });
  const runner = 'main-layerfile';

  const first = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(first.result.status, 'success');
  assert.deepEqual(first.ran, [`${runner}#0`, `${runner}#1`, `${runner}#2`]);
  assert.equal(first.output.get(`${runner}#1`), 'one\n');
  assert.equal(first.output.get(`${runner}#2`), 'two\n');

  repo.commit('edit an unrelated file', { other: 'changed\n' });
  const unrelated = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(unrelated.result.status, 'success');
  assert.deepEqual(unrelated.ran, [], 'nothing reruns when no step read the changed file');

  repo.commit('edit file2', { file2: 'two v2\n' });
  const second = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.deepEqual(second.ran, [`${runner}#2`]);
  assert.equal(second.output.get(`${runner}#2`), 'two v2\n', 'the rerun step sees the new content');
  assert.match(second.steps.find((s) => s.step === 2)?.message ?? '', /file2/);

  repo.commit('edit file1', { file1: 'one v2\n' });
  const third = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.deepEqual(third.ran, [`${runner}#1`, `${runner}#2`]);
  assert.equal(third.output.get(`${runner}#1`), 'one v2\n');
  assert.equal(third.output.get(`${runner}#2`), 'two v2\n', 'file2 keeps its re-applied content');

  repo.commit('edit the last line', { Layerfile: LAYERFILE.replace('cat file2', 'cat file2 && echo edited') });
  const fourth = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.deepEqual(fourth.ran, [`${runner}#2`]);
  assert.equal(fourth.output.get(`${runner}#2`), 'two v2\nedited\n');

  repo.commit('comment only', { Layerfile: '# a comment\n' + LAYERFILE.replace('cat file2', 'cat file2 && echo edited') });
  const fifth = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.deepEqual(fifth.ran, [], 'a comment-only edit reruns nothing');
});

test('a BUTTON stops the run without --accept-buttons, cached or not, and passes with it', { timeout: 300_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const repo = createGitRepo(t, { Layerfile: 'FROM vm/debian:12\nRUN echo before\nBUTTON deploy?\nRUN echo after\n' });
  const refused = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(refused.result.status, 'error');
  assert.deepEqual(refused.ran, ['main-layerfile#0'], 'the step before the BUTTON ran, the one after did not');
  const accepted = await engine.run({ repoDir: repo.dir, commit: 'HEAD', acceptButtons: true });
  assert.equal(accepted.result.status, 'success');
  assert.deepEqual(accepted.ran, ['main-layerfile#1']);
  const again = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(again.result.status, 'error', 'a fully cached run still needs the approval');
  const active = (await engine.engine.deps.snapshots.list()).filter((s) => s.kind === 'active');
  assert.deepEqual(active, [], 'the restored copy of a run stopped at its BUTTON is removed');
});

test('a COPY over a file an earlier step read: later steps see the new content, not a cached page', { timeout: 300_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  // Same size on purpose: only the content differs.
  const repo = createGitRepo(t, {
    Layerfile: 'FROM vm/debian:12\nCOPY a.txt /root/app/x\nRUN cat /root/app/x\nCOPY b.txt /root/app/x\nRUN cat /root/app/x\n',
    'a.txt': 'aaaa\n',
    'b.txt': 'bbbb\n',
  });
  const run = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(run.result.status, 'success');
  assert.equal(run.output.get('main-layerfile#1'), 'aaaa\n');
  assert.equal(run.output.get('main-layerfile#3'), 'bbbb\n');
});

test('a BUTTON asks through approveButton: approved runs on, declined stops the run', { timeout: 300_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const repo = createGitRepo(t, { Layerfile: 'FROM vm/debian:12\nRUN echo before\nBUTTON deploy to staging?\nRUN echo after\n' });
  const asked: string[] = [];
  const declined = await engine.run({ repoDir: repo.dir, commit: 'HEAD', approveButton: async (r) => (asked.push(`${r.layerfile}:${r.line} ${r.message}`), false) });
  assert.equal(declined.result.status, 'error');
  assert.deepEqual(asked, ['Layerfile:3 deploy to staging?']);
  assert.deepEqual(declined.ran, ['main-layerfile#0']);
  const approved = await engine.run({ repoDir: repo.dir, commit: 'HEAD', approveButton: async () => true });
  assert.equal(approved.result.status, 'success');
  assert.deepEqual(approved.ran, ['main-layerfile#1']);
});

test('a Layerfile that ends with steps that change nothing in the machine (ENV, SETUP FILE, BUILD ENV) is fully cached next time', { timeout: 300_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const repo = createGitRepo(t, { Layerfile: 'FROM vm/debian:12\nCOPY . /app\nRUN cat /app/a.txt\nENV MODE=test\nSETUP FILE /app/env.sh\nBUILD ENV MODE\n', 'a.txt': 'a\n', 'env.sh': 'export X=1\n', 'other.txt': 'o\n' });
  const first = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(first.result.status, 'success');
  assert.deepEqual(first.ran, ['main-layerfile#0', 'main-layerfile#1', 'main-layerfile#2', 'main-layerfile#3', 'main-layerfile#4']);
  repo.commit('unrelated', { 'other.txt': 'o2\n' });
  const second = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(second.result.status, 'success');
  assert.deepEqual(second.ran, [], 'nothing reruns, the trailing ENV/SETUP FILE/BUILD ENV included');
  // A change the RUN read reruns it and what follows.
  repo.commit('a', { 'a.txt': 'a2\n' });
  const third = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.deepEqual(third.ran, ['main-layerfile#1', 'main-layerfile#2', 'main-layerfile#3', 'main-layerfile#4']);
  assert.equal(third.output.get('main-layerfile#1'), 'a2\n');
});
