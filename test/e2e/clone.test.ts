// CLONE end to end: real engine, real machines and tracing, local bare repositories as remotes. The
// main repository never changes between runs here: every rerun (or its absence) is caused by a commit
// on the remote alone, which must invalidate exactly the steps that observed the changed file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SnapshotName } from '../../src/snapshot/types.js';
import { requireRoot } from '../helpers/env.js';
import { createRemote } from '../helpers/remote.js';
import { createGitRepo, createTestEngine, type TestEngine } from '../helpers/engine.js';

const ROOT = 'main-layerfile';
const TIMEOUT = 300_000;

type Run = Awaited<ReturnType<TestEngine['run']>>;
const at = (step: number): string => `${ROOT}#${step}`;
const failures = (run: Run): string => [...run.result.outcomes.values()].map((o) => o.message).filter(Boolean).join('; ');

function printed(run: Run, step: number): string | undefined {
  return run.output.get(at(step))?.split(/(?<=\n)/).filter((line) => !line.startsWith('vm/debian:12: ')).join('');
}
const statusOf = (run: Run, step: number) => run.steps.find((s) => s.runner === ROOT && s.step === step);

function fileInSnapshot(engine: TestEngine, snapshot: SnapshotName | null, machinePath: string): string | null {
  assert.ok(snapshot, 'the runner has a final snapshot');
  const path = join(engine.engine.deps.snapshots.path(snapshot), machinePath);
  return existsSync(path) ? readFileSync(path, 'utf8') : null;
}

async function runOk(engine: TestEngine, repoDir: string, what: string): Promise<Run> {
  const run = await engine.run({ repoDir, commit: 'HEAD' });
  assert.equal(run.result.status, 'success', `${what}: the run did not succeed: ${failures(run)}`);
  return run;
}

test('CLONE copies the remote; a remote commit reruns exactly the steps that read the changed file', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const remote = createRemote(t, 'trunk');
  remote.commit('trunk', { file1: 'one v1\n', file2: 'two v1\n', unread: 'unread v1\n' });
  const repo = createGitRepo(t, {
    // The repository's own root is copied too: remote paths must never map through a copy of it.
    Layerfile: `FROM vm/debian:12
CLONE ${remote.url} /lib
COPY . /app
RUN cat /lib/file1
RUN cat /lib/file2
RUN ls -A /app
`,
  });

  const first = await runOk(engine, repo.dir, 'first run');
  assert.deepEqual(first.ran, [at(0), at(1), at(2), at(3), at(4)]);
  assert.equal(printed(first, 2), 'one v1\n');
  assert.equal(printed(first, 3), 'two v1\n');
  assert.equal(printed(first, 4), 'Layerfile\n');
  const firstOutcome = first.result.outcomes.get('Layerfile');
  assert.equal(fileInSnapshot(engine, firstOutcome?.finalSnapshot ?? null, '/lib/unread'), 'unread v1\n', 'the whole repository is cloned');

  // file2 changes on the remote (the main repo does not change): only the step that read it reruns.
  remote.commit('trunk', { file2: 'two v2\n' });
  const second = await runOk(engine, repo.dir, 'after file2 changed on the remote');
  assert.deepEqual(second.ran, [at(3), at(4)], 'only the step that read file2 reruns (and the one after it)');
  assert.equal(printed(second, 3), 'two v2\n');
  assert.match(statusOf(second, 3)?.message ?? '', /file2/, 'the rerun names the changed remote file');
  assert.equal(printed(second, 4), 'Layerfile\n', 'nothing of the remote lands in the copy of the repository root');

  // An unread file changes: nothing reruns, and the final state holds the new file (re-applied).
  remote.commit('trunk', { unread: 'unread v2\n' });
  const third = await runOk(engine, repo.dir, 'after an unread file changed on the remote');
  assert.deepEqual(third.ran, [], 'nothing observed the changed file');
  const thirdOutcome = third.result.outcomes.get('Layerfile');
  assert.equal(fileInSnapshot(engine, thirdOutcome?.finalSnapshot ?? null, '/lib/unread'), 'unread v2\n', 're-applied into the restored state');
  assert.equal(fileInSnapshot(engine, thirdOutcome?.finalSnapshot ?? null, '/lib/file2'), 'two v2\n');
  assert.equal(fileInSnapshot(engine, thirdOutcome?.finalSnapshot ?? null, '/app/.git/clone'), null, 'remote changes are not re-applied under the repo-root copy');

  // file1 changes: its RUN and the later ones rerun (after it); file2's step still sees v2.
  remote.commit('trunk', { file1: 'one v2\n' });
  const fourth = await runOk(engine, repo.dir, 'after file1 changed on the remote');
  assert.deepEqual(fourth.ran, [at(2), at(3), at(4)]);
  assert.equal(printed(fourth, 2), 'one v2\n');
  assert.equal(printed(fourth, 3), 'two v2\n');

  // Nothing changed anywhere: fully cached.
  const fifth = await runOk(engine, repo.dir, 'unchanged');
  assert.deepEqual(fifth.ran, []);
});

test('CLONE picks the same-named branch, else DEFAULT=, else the remote HEAD; sources and dest like COPY', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const remote = createRemote(t, 'trunk');
  remote.commit('trunk', { which: 'trunk\n', extra: 'x\n' });
  remote.commit('stable', { which: 'stable\n' });
  // The main repository is on branch "main", which the remote does not have yet.
  const repo = createGitRepo(t, {
    Layerfile: `FROM vm/debian:12
CLONE ${remote.bare} DEFAULT=stable /a
CLONE ${remote.url} which /b/
RUN cat /a/which /b/which && ls /b
`,
  });
  const first = await runOk(engine, repo.dir, 'before the remote has "main"');
  assert.deepEqual(first.ran, [at(0), at(1), at(2)]);
  assert.equal(printed(first, 2), 'stable\ntrunk\nwhich\n', 'DEFAULT= wins over HEAD; without DEFAULT= the HEAD; only the listed source is copied');

  // The remote gets a branch named like the main repository's: both CLONEs switch to it.
  remote.commit('main', { which: 'main\n' });
  const second = await runOk(engine, repo.dir, 'after the remote got "main"');
  assert.deepEqual(second.ran, [at(2)], 'the CLONEs are restored with the new branch re-applied; the RUN that read it reruns');
  assert.equal(printed(second, 2), 'main\nmain\nwhich\n');
});

test('CLONE of an unreachable URL or a missing DEFAULT branch fails the runner at its line', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const missing = join(tmpdir(), `strata-no-such-remote-${process.pid}.git`);
  const repo = createGitRepo(t, { Layerfile: `FROM vm/debian:12\nRUN true\nCLONE ${missing} /x\n` });
  const run = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.notEqual(run.result.status, 'success');
  const outcome = run.result.outcomes.get('Layerfile');
  assert.equal(outcome?.status, 'error');
  assert.match(outcome?.message ?? '', new RegExp(`^Layerfile:3: CLONE ${missing} failed: cannot reach ${missing}`));
  assert.deepEqual(run.ran, [], 'nothing runs when a remote cannot be fetched');

  const remote = createRemote(t, 'trunk');
  remote.commit('trunk', { a: '1\n' });
  repo.commit('missing default', { Layerfile: `FROM vm/debian:12\nCLONE ${remote.url} DEFAULT=nope /x\n` });
  const second = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.match(second.result.outcomes.get('Layerfile')?.message ?? '', /^Layerfile:2: CLONE .* failed: .* has no branch "main" and no DEFAULT branch "nope"/);
});

test('a child Layerfile inherits the CLONE: a remote change reruns only the child step that read it', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const remote = createRemote(t, 'trunk');
  remote.commit('trunk', { a: 'a v1\n', b: 'b v1\n' });
  const repo = createGitRepo(t, {
    'base/Layerfile': `FROM vm/debian:12\nCLONE ${remote.url} /lib\nRUN cat /lib/a\n`,
    'app/Layerfile': 'FROM ../base\nRUN cat /lib/b\n',
  });
  const first = await runOk(engine, repo.dir, 'first run');
  assert.equal(first.ran.length, 3, `every step runs once: ${first.ran.join(', ')}`);

  remote.commit('trunk', { b: 'b v2\n' });
  const second = await runOk(engine, repo.dir, 'after b changed on the remote');
  assert.equal(second.ran.length, 1, `only the child's RUN reruns: ${second.ran.join(', ')}`);
  const [rerun] = second.ran;
  assert.equal(second.output.get(rerun as string), 'b v2\n');
  const childRunner = first.steps.find((s) => first.output.get(`${s.runner}#${s.step}`) === 'b v1\n')?.runner;
  assert.equal(rerun, `${childRunner}#0`, "the rerun step is the child's RUN");
});
