// Cache-correctness trap cases end to end (issue "The cache that reads"): real git repos, real commits,
// real machines, snapshots and tracing. Each case runs once (everything runs), commits a change, runs
// again and asserts EXACTLY which steps ran and that a rerun step saw the new sources. A wrong cache hit
// shows up here as a step missing from `ran`, or as a rerun step printing the old state.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { requireRoot } from '../helpers/env.js';
import { createGitRepo, createTestEngine, ROOT_RUNNER, stepId, stepIds, type TestEngine, type TestRepo, type TestRun } from '../helpers/engine.js';

const ROOT = ROOT_RUNNER;
const TIMEOUT = 300_000;

type Repo = TestRepo;
type Run = TestRun;

const at = stepId;
const steps = stepIds;

async function runOk(engine: TestEngine, repo: Repo, what: string): Promise<Run> {
  const run = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  const failures = [...run.result.outcomes.values()].map((o) => o.message).filter(Boolean);
  assert.equal(run.result.status, 'success', `${what}: the run did not succeed: ${failures.join('; ')}`);
  return run;
}

/** The recorded explanation of a step (what `strata why` shows), '' when none. */
async function reason(engine: TestEngine, run: Run, step: number, runner = ROOT): Promise<string> {
  const record = await engine.engine.deps.runLog.getRun(run.result.runId);
  return record?.runners.find((r) => r.runner === runner)?.steps.find((s) => s.index === step)?.reason?.message ?? '';
}

interface SingleStepTrap {
  files: Record<string, string>;
  /** Extra preparation of the first commit (symlinks, modes) that createGitRepo cannot express. */
  prepare?: (repo: Repo) => void;
  /** Step 1, which must stay cached (default `cat keep.txt`), and what it prints. */
  control?: { command: string; output: string };
  /** The RUN command under test: it is step 2, after `COPY . .` (0) and the control step (1). */
  command: string;
  outputBefore: string;
  /** Changes the work tree; the case commits it. */
  change: (repo: Repo) => void;
  outputAfter: string;
  /** The rerun explanation of step 2 must name the changed path. */
  reasonMentions: RegExp;
}

/**
 * The common shape: COPY . . (0), RUN cat keep.txt (1, must stay cached), the trap step (2, must rerun
 * and print outputAfter) and a trailing step (3, reruns because 2 reruns). Nothing else may run.
 */
async function checkTrap(t: TestContext, trap: SingleStepTrap): Promise<void> {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const control = trap.control ?? { command: 'cat keep.txt', output: 'kept\n' };
  const layerfile = `FROM vm/debian:12\nCOPY . .\nRUN ${control.command}\nRUN ${trap.command}\nRUN echo after\n`;
  const repo = createGitRepo(t, { Layerfile: layerfile, 'keep.txt': 'kept\n', ...trap.files });
  if (trap.prepare) {
    trap.prepare(repo);
    repo.commit('prepare');
  }

  const first = await runOk(engine, repo, 'first run');
  assert.deepEqual(first.ran, steps(0, 3), 'the first run executes every step');
  assert.equal(first.output.get(at(1)), control.output);
  assert.equal(first.output.get(at(2)), trap.outputBefore, 'the trap step before the change');

  trap.change(repo);
  repo.commit('the change under test');
  const second = await runOk(engine, repo, 'run after the change');
  assert.deepEqual(second.ran, [at(2), at(3)], 'exactly the trap step and the step after it rerun');
  assert.equal(second.output.get(at(2)), trap.outputAfter, 'the rerun step sees the new sources');
  assert.equal(second.output.get(at(3)), 'after\n');
  assert.match(await reason(engine, second, 2), trap.reasonMentions, 'the rerun names the path that made it necessary');
}

test('trap: a file probed absent (through its missing directory) is added', { timeout: TIMEOUT }, async (t) => {
  await checkTrap(t, {
    files: { 'other.txt': 'x\n' },
    command: 'test -f config/local.json && echo present || echo absent',
    outputBefore: 'absent\n',
    change: (repo) => repo.write({ 'config/local.json': '{}\n' }),
    outputAfter: 'present\n',
    reasonMentions: /config/,
  });
});

test('trap: a file is added to a listed directory', { timeout: TIMEOUT }, async (t) => {
  await checkTrap(t, {
    files: { 'src/a.txt': 'a\n' },
    command: 'ls src',
    outputBefore: 'a.txt\n',
    change: (repo) => repo.write({ 'src/new.txt': 'new\n' }),
    outputAfter: 'a.txt\nnew.txt\n',
    reasonMentions: /src\/new\.txt/,
  });
});

test('trap: a symlink the step read is retargeted', { timeout: TIMEOUT }, async (t) => {
  await checkTrap(t, {
    files: { 'a.txt': 'A\n', 'b.txt': 'B\n' },
    prepare: (repo) => symlinkSync('a.txt', join(repo.dir, 'link')),
    command: 'readlink link && cat link',
    outputBefore: 'a.txt\nA\n',
    change: (repo) => {
      rmSync(join(repo.dir, 'link'));
      symlinkSync('b.txt', join(repo.dir, 'link'));
    },
    outputAfter: 'b.txt\nB\n',
    reasonMentions: /link/,
  });
});

test('trap: chmod +x on a script the step tested', { timeout: TIMEOUT }, async (t) => {
  await checkTrap(t, {
    files: { 'run.sh': 'echo ran the script\n' },
    command: "sh -c 'test -x run.sh && ./run.sh || echo noexec'",
    outputBefore: 'noexec\n',
    change: (repo) => chmodSync(join(repo.dir, 'run.sh'), 0o755),
    outputAfter: 'ran the script\n',
    reasonMentions: /run\.sh/,
  });
});

test('trap: a stat after an earlier step listed the directory (kernel attribute cache)', { timeout: TIMEOUT }, async (t) => {
  // Step 1's listing may fill the kernel's entry/attribute caches; step 2's stat must still be seen
  // (the tracer invalidates them at step boundaries), or a chmod would be a wrong cache hit for step 2.
  await checkTrap(t, {
    files: { 'src/a.txt': 'a\n' },
    control: { command: 'ls src', output: 'a.txt\n' },
    command: "stat -c '%a' src/a.txt",
    outputBefore: '644\n',
    change: (repo) => chmodSync(join(repo.dir, 'src/a.txt'), 0o755),
    outputAfter: '755\n',
    reasonMentions: /src\/a\.txt/,
  });
});

test('trap: a file the step read is deleted', { timeout: TIMEOUT }, async (t) => {
  await checkTrap(t, {
    files: { 'a.txt': 'content\n' },
    command: 'cat a.txt 2>/dev/null || echo gone',
    outputBefore: 'content\n',
    change: (repo) => repo.write({ 'a.txt': null }),
    outputAfter: 'gone\n',
    reasonMentions: /a\.txt/,
  });
});

test('trap: a file the step read becomes a directory', { timeout: TIMEOUT }, async (t) => {
  await checkTrap(t, {
    files: { cfg: 'a file\n' },
    command: 'cat cfg 2>/dev/null || ls cfg',
    outputBefore: 'a file\n',
    change: (repo) => repo.write({ cfg: null, 'cfg/inner.txt': 'inside\n' }),
    outputAfter: 'inner.txt\n',
    reasonMentions: /cfg/,
  });
});

test('trap: copies of a subdirectory and of a single file map changes to the right steps', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const layerfile = 'FROM vm/debian:12\nCOPY src /app\nCOPY config.json /cfg/app.json\nRUN cat /app/a.txt\nRUN cat /cfg/app.json\n';
  const repo = createGitRepo(t, { Layerfile: layerfile, 'src/a.txt': 'a1\n', 'config.json': '{"v":1}\n', 'README.md': 'r1\n' });

  const first = await runOk(engine, repo, 'first run');
  assert.deepEqual(first.ran, steps(0, 3));

  repo.commit('edit the single copied file', { 'config.json': '{"v":2}\n' });
  const config = await runOk(engine, repo, 'after editing config.json');
  assert.deepEqual(config.ran, [at(3)], 'only the reader of /cfg/app.json reruns');
  assert.equal(config.output.get(at(3)), '{"v":2}\n');

  repo.commit('edit a file of the copied directory', { 'src/a.txt': 'a2\n' });
  const source = await runOk(engine, repo, 'after editing src/a.txt');
  assert.deepEqual(source.ran, [at(2), at(3)]);
  assert.equal(source.output.get(at(2)), 'a2\n');
  assert.equal(source.output.get(at(3)), '{"v":2}\n');

  repo.commit('edit a file no COPY copied', { 'README.md': 'r2\n', 'docs/new.md': 'n\n' });
  assert.deepEqual((await runOk(engine, repo, 'after editing README.md')).ran, []);
});

test('trap: a file a step wrote is also changed by the commit', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  // Step 1 overwrites out.txt (a repo file); step 2 reads it. When the commit changes out.txt, step 1
  // must rerun: restoring after step 1 and re-applying out.txt would undo the step's write, and step 2
  // would print the commit's content instead of what step 1 generated.
  const layerfile = 'FROM vm/debian:12\nCOPY . .\nRUN echo generated > out.txt\nRUN cat out.txt\n';
  const repo = createGitRepo(t, { Layerfile: layerfile, 'out.txt': 'from the repo\n' });

  const first = await runOk(engine, repo, 'first run');
  assert.deepEqual(first.ran, steps(0, 2));
  assert.equal(first.output.get(at(2)), 'generated\n');

  repo.commit('change out.txt', { 'out.txt': 'changed in the repo\n' });
  const second = await runOk(engine, repo, 'run after the change');
  assert.deepEqual(second.ran, [at(1), at(2)], 'the step that wrote out.txt reruns, and the reader after it');
  assert.equal(second.output.get(at(2)), 'generated\n', 'the machine holds what the step wrote, not the re-applied file');
  assert.match(await reason(engine, second, 1), /out\.txt/);
});

test('trap: a comment-only Layerfile edit reruns nothing', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const layerfile = 'FROM vm/debian:12\nCOPY . .\nRUN cat a.txt\nRUN echo second\n';
  const repo = createGitRepo(t, { Layerfile: layerfile, 'a.txt': 'a\n' });

  const first = await runOk(engine, repo, 'first run');
  assert.deepEqual(first.ran, steps(0, 2));

  const commented = 'FROM vm/debian:12\n# copy everything\nCOPY . .\n\n# read a file\nRUN cat a.txt\nRUN echo second\n# the end\n';
  repo.commit('comments only', { Layerfile: commented });
  const second = await runOk(engine, repo, 'run after the comment edit');
  assert.deepEqual(second.ran, [], 'comments are not part of any definition key');
  assert.equal(second.result.stepsCached, 3);
});

test('trap: a BUILD ENV variable changes (GIT_BRANCH)', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const layerfile = 'FROM vm/debian:12\nCOPY . .\nRUN cat a.txt\nBUILD ENV GIT_BRANCH\nRUN echo "branch=$GIT_BRANCH"\n';
  const repo = createGitRepo(t, { Layerfile: layerfile, 'a.txt': 'a\n' });

  const first = await runOk(engine, repo, 'first run on main');
  assert.deepEqual(first.ran, steps(0, 3));
  assert.equal(first.output.get(at(3)), 'branch=main\n');

  repo.git('checkout', '-q', '-b', 'other');
  repo.commit('a commit on the other branch');
  const other = await runOk(engine, repo, 'run on the other branch');
  assert.deepEqual(other.ran, [at(2), at(3)], 'reruns from the BUILD ENV line on');
  assert.equal(other.output.get(at(3)), 'branch=other\n');
  assert.match(await reason(engine, other, 2), /GIT_BRANCH/);

  repo.git('checkout', '-q', 'main');
  const back = await runOk(engine, repo, 'run back on main');
  assert.deepEqual(back.ran, [], "main's own chain is still valid for main");
});

test('trap: unrelated changes rerun nothing, and later changes to read files still rerun', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  // Chains built from a restore (which keep fewer snapshots and carry older traces) must stay exact
  // over several commits.
  const layerfile = 'FROM vm/debian:12\nCOPY . .\nRUN cat file1\nRUN cat file2\n';
  const repo = createGitRepo(t, { Layerfile: layerfile, file1: 'one\n', file2: 'two\n', unrelated: 'u1\n' });

  const first = await runOk(engine, repo, 'first run');
  assert.deepEqual(first.ran, steps(0, 2));

  repo.commit('unrelated 1', { unrelated: 'u2\n' });
  assert.deepEqual((await runOk(engine, repo, 'after unrelated 1')).ran, []);

  repo.commit('edit file2', { file2: 'two v2\n' });
  const second = await runOk(engine, repo, 'after editing file2');
  assert.deepEqual(second.ran, [at(2)]);
  assert.equal(second.output.get(at(2)), 'two v2\n');

  repo.commit('unrelated 2 and a new unrelated file', { unrelated: 'u3\n', 'notes/new.md': 'n\n' });
  assert.deepEqual((await runOk(engine, repo, 'after unrelated 2')).ran, []);

  repo.commit('edit file1', { file1: 'one v2\n' });
  const third = await runOk(engine, repo, 'after editing file1');
  assert.deepEqual(third.ran, [at(1), at(2)]);
  assert.equal(third.output.get(at(1)), 'one v2\n');
  assert.equal(third.output.get(at(2)), 'two v2\n', 'file2 keeps the content of the earlier commit');

  repo.commit('edit file2 again', { file2: 'two v3\n' });
  const fourth = await runOk(engine, repo, 'after editing file2 again');
  assert.deepEqual(fourth.ran, [at(2)]);
  assert.equal(fourth.output.get(at(2)), 'two v3\n');
});

test('trap: FROM inheritance — reads through the inherited copy, and reads of the parent', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const base = 'FROM vm/debian:12\nCOPY .. /app\nRUN cat /app/parent.txt\n';
  const child = 'FROM ../base\nRUN cat /app/child.txt\nRUN echo child-done\n';
  const repo = createGitRepo(t, {
    'base/Layerfile': base,
    'child/Layerfile': child,
    'parent.txt': 'p1\n',
    'child.txt': 'c1\n',
    'unrelated.txt': 'u1\n',
  });

  const first = await runOk(engine, repo, 'first run');
  assert.deepEqual(first.ran, [...steps(0, 1, 'base'), ...steps(0, 1, 'child')]);
  assert.equal(first.output.get(at(0, 'child')), 'c1\n');

  repo.commit('edit the file the child reads', { 'child.txt': 'c2\n' });
  const childRead = await runOk(engine, repo, 'after editing child.txt');
  assert.deepEqual(childRead.ran, steps(0, 1, 'child'), "the parent's steps are reused; the child's read reruns it");
  assert.equal(childRead.output.get(at(0, 'child')), 'c2\n', 'the child sees the new file through the inherited copy');

  repo.commit('edit an unrelated file', { 'unrelated.txt': 'u2\n' });
  const unrelated = await runOk(engine, repo, 'after editing unrelated.txt');
  assert.deepEqual(unrelated.ran, [], 'nothing read unrelated.txt');

  repo.commit('edit the file the parent reads', { 'parent.txt': 'p2\n' });
  const parentRead = await runOk(engine, repo, 'after editing parent.txt');
  assert.deepEqual(parentRead.ran, [at(1, 'base'), ...steps(0, 1, 'child')], 'the parent step reruns, and so does the whole child');
  assert.equal(parentRead.output.get(at(1, 'base')), 'p2\n');
  assert.equal(parentRead.output.get(at(0, 'child')), 'c2\n', 'the child keeps the latest child.txt');

  repo.commit('edit the child file again', { 'child.txt': 'c3\n' });
  const again = await runOk(engine, repo, 'after editing child.txt again');
  assert.deepEqual(again.ran, steps(0, 1, 'child'));
  assert.equal(again.output.get(at(0, 'child')), 'c3\n');
});

test('trap: a multi-commit sequence prints what a fresh run prints', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const fresh = await createTestEngine(t); // a separate store: its runs never feed the incremental cache
  // Steps 1-2 leave state in /tmp; BUILD ENV GIT_COMMIT makes the last step run on every commit, in the
  // restored machine, so it shows the machine's whole relevant state, cached steps' effects included.
  const layerfile = [
    'FROM vm/debian:12',
    'COPY . .',
    'RUN cat file1 | tee /tmp/state1',
    'RUN cat file2 | tee /tmp/state2',
    'BUILD ENV GIT_COMMIT',
    'RUN cat /tmp/state1 /tmp/state2 && md5sum file1 file2 && ls -l file1 file2 | cut -c1-10',
    '',
  ].join('\n');
  const repo = createGitRepo(t, { Layerfile: layerfile, file1: 'one\n', file2: 'two\n' });

  const expectations: Array<{ change: Record<string, string>; ran: string[] }> = [
    { change: {}, ran: steps(0, 4) },
    { change: { file2: 'two v2\n' }, ran: steps(2, 4) },
    { change: { file1: 'one v2\n' }, ran: steps(1, 4) },
    { change: { file2: 'two v3\n' }, ran: steps(2, 4) },
  ];
  for (const [index, { change, ran }] of expectations.entries()) {
    if (index > 0) repo.commit(`commit ${index}`, change);
    const incremental = await runOk(engine, repo, `incremental run ${index}`);
    const scratch = await fresh.run({ repoDir: repo.dir, commit: 'HEAD', noCache: true });
    assert.equal(scratch.result.status, 'success');
    assert.deepEqual(scratch.ran, steps(0, 4), 'a fresh run executes everything');
    assert.deepEqual(incremental.ran, ran, `commit ${index}: the steps that rerun`);
    for (const key of incremental.ran) {
      assert.equal(incremental.output.get(key), scratch.output.get(key), `commit ${index}: ${key} prints what a fresh run prints`);
    }
  }
});

test('trap: a cached chain whose source tree is gone from the repository is not used (no crash, no reuse)', { timeout: 300_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const repo = createGitRepo(t, { Layerfile: 'FROM vm/debian:12\nCOPY . .\nRUN cat file1\n', file1: 'one\n' });
  // Run the working tree with an uncommitted edit: its tree id exists only as loose objects.
  repo.write({ file1: 'dirty\n' });
  const dirty = await engine.run({ repoDir: repo.dir });
  assert.equal(dirty.result.status, 'success');
  // Drop those objects, as `git gc` does with unreachable trees after a while.
  repo.write({ file1: 'one\n' });
  repo.git('reflog', 'expire', '--expire=now', '--all');
  repo.git('gc', '--prune=now', '--quiet');
  const again = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(again.result.status, 'success');
  assert.equal(again.output.get('main-layerfile#1'), 'one\n');
});
