// The directives the engine already executes, end to end: real git repos, real commits, real machines,
// snapshots and tracing. Each case asserts what the steps printed, EXACTLY which steps ran, and (where
// caching matters) what a second commit reruns. ENV, WORKDIR, USER, SETUP FILE, SKIP REMAINING IF,
// CHECKPOINT, MEMORY, a failing RUN, RUN REPEATABLE, and two regressions (SKIP in a cached run, HOME).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { SnapshotName } from '../../src/snapshot/types.js';
import { requireRoot } from '../helpers/env.js';
import { createGitRepo, createTestEngine, ROOT_RUNNER, stepId, stepIds, type TestEngine, type TestRepo, type TestRun } from '../helpers/engine.js';

const ROOT = ROOT_RUNNER;
const TIMEOUT = 300_000;

type Repo = TestRepo;
type Run = TestRun;

const at = stepId;
const steps = stepIds;

/** The message of each runner that did not succeed, for assertion messages. */
const failures = (run: Run): string => [...run.result.outcomes.values()].map((o) => o.message).filter(Boolean).join('; ');

async function runOk(engine: TestEngine, repo: Repo, what: string): Promise<Run> {
  const run = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(run.result.status, 'success', `${what}: the run did not succeed: ${failures(run)}`);
  return run;
}

/**
 * What a step printed (stdout and stderr). The engine reports the base image's preparation as output
 * of the first step ("vm/debian:12: extracting ..."); those lines are dropped.
 */
function printed(run: Run, step: number, runner = ROOT): string | undefined {
  const output = run.output.get(at(step, runner));
  return output?.split(/(?<=\n)/).filter((line) => !line.startsWith('vm/debian:12: ')).join('');
}

const statusOf = (run: Run, step: number, runner = ROOT) => run.steps.find((s) => s.runner === runner && s.step === step)?.status;

/** The single runner's outcome (these repos have one Layerfile unless said otherwise). */
function outcomeOf(run: Run, layerfile = 'Layerfile') {
  const outcome = run.result.outcomes.get(layerfile);
  assert.ok(outcome, `no outcome for ${layerfile}`);
  return outcome;
}

/** A file in a committed snapshot of the engine's store, or null when absent. */
function fileInSnapshot(engine: TestEngine, snapshot: SnapshotName | null, machinePath: string): string | null {
  assert.ok(snapshot, 'the runner has a final snapshot');
  const path = join(engine.engine.deps.snapshots.path(snapshot), machinePath);
  return existsSync(path) ? readFileSync(path, 'utf8') : null;
}

test('ENV: both forms and quoting; later steps see the values; a changed value reruns from its line on', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const layerfile = (late: string) => `FROM vm/debian:12
RUN echo base
ENV GREETING=hello NAME="a b"
RUN echo "$GREETING $NAME"
ENV LATE=${late} LITERAL='$GREETING x'
ENV EXPANDED "$GREETING, $NAME"
ENV PLAIN rest of the line
RUN printf '%s|' "$GREETING" "$NAME" "$LATE" "$LITERAL" "$EXPANDED" "$PLAIN"; echo
`;
  const repo = createGitRepo(t, { Layerfile: layerfile('one') });

  const first = await runOk(engine, repo, 'first run');
  assert.deepEqual(first.ran, steps(0, 6));
  assert.equal(printed(first, 0), 'base\n', 'ENV does not leak backwards');
  assert.equal(printed(first, 2), 'hello a b\n');
  assert.equal(printed(first, 6), 'hello|a b|one|$GREETING x|hello, a b|rest of the line|\n', "'...' is literal, \"...\" expands");

  // Only the second ENV line changes: the steps before it stay cached (the RUN between the two ENVs
  // included), it and everything after rerun, and the earlier ENV still applies.
  repo.commit('change LATE', { Layerfile: layerfile('two') });
  const second = await runOk(engine, repo, 'run after the ENV change');
  assert.deepEqual(second.ran, steps(3, 6), 'reruns from the changed ENV line on, not before');
  for (const step of [0, 1, 2]) assert.equal(statusOf(second, step), 'cached', `step ${step} is cached`);
  assert.equal(printed(second, 6), 'hello|a b|two|$GREETING x|hello, a b|rest of the line|\n');
});

test('WORKDIR: relative to the current one, created when missing; later RUNs start there', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const repo = createGitRepo(t, {
    Layerfile: `FROM vm/debian:12
RUN pwd
WORKDIR app
WORKDIR sub/deeper
RUN pwd && touch here
WORKDIR ..
RUN pwd && ls deeper
ENV BASE=/srv
WORKDIR $BASE/abs
RUN pwd
`,
  });
  const run = await runOk(engine, repo, 'run');
  assert.deepEqual(run.ran, steps(0, 8));
  assert.equal(printed(run, 0), '/root\n', 'the default workdir is /root');
  assert.equal(printed(run, 3), '/root/app/sub/deeper\n', 'relative to the previous WORKDIR, created');
  assert.equal(printed(run, 5), '/root/app/sub\nhere\n', '.. goes up one; the directory persists');
  assert.equal(printed(run, 8), '/srv/abs\n', 'an absolute WORKDIR, with $VAR expanded, is created too');
});

test('USER: created when missing; later RUNs run as that user with its HOME', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const repo = createGitRepo(t, {
    Layerfile: `FROM vm/debian:12
RUN id -un && ! id -u alice 2>/dev/null
USER alice
WORKDIR /tmp
RUN id -un && echo "$HOME" && stat -c %U "$HOME" && id -Gn | tr ' ' '\\n' | grep -x root
RUN touch /tmp/by-alice && stat -c %U /tmp/by-alice
`,
  });
  const run = await runOk(engine, repo, 'run');
  assert.deepEqual(run.ran, steps(0, 4));
  assert.equal(printed(run, 0), 'root\n', 'steps before USER run as root, and alice does not exist yet');
  assert.equal(printed(run, 3), 'alice\n/home/alice\nalice\nroot\n', 'runs as alice, HOME is her home, she is in group root');
  assert.equal(printed(run, 4), 'alice\n', 'files the step creates belong to alice');
});

test('USER: the default workdir /root does not stop a non-root user from running', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const repo = createGitRepo(t, { Layerfile: 'FROM vm/debian:12\nUSER bob\nRUN id -un\n' });
  const run = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(run.result.status, 'success', failures(run));
  assert.equal(printed(run, 1), 'bob\n');
});

test('SETUP FILE: a copied file is sourced before every later RUN, and a change to it reruns them', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const setup = (greeting: string) => `export GREETING=${greeting}\necho sourced >> /root/sourced.log\n`;
  const repo = createGitRepo(t, {
    Layerfile: `FROM vm/debian:12
COPY . /app
RUN echo "[$GREETING]"
WORKDIR /app
SETUP FILE env.sh
RUN echo "$GREETING"
RUN GREETING=overridden; echo "$GREETING"
RUN echo "$GREETING" && wc -l < /root/sourced.log
`,
    'env.sh': setup('hello'),
  });
  const first = await runOk(engine, repo, 'first run');
  assert.deepEqual(first.ran, steps(0, 6));
  assert.equal(printed(first, 1), '[]\n', 'a RUN before SETUP FILE does not source it');
  assert.equal(printed(first, 4), 'hello\n');
  assert.equal(printed(first, 5), 'overridden\n');
  assert.equal(printed(first, 6), 'hello\n3\n', 'each RUN sourced it again: 3 RUNs, 3 times');

  repo.commit('change the setup file', { 'env.sh': setup('bye') });
  const second = await runOk(engine, repo, 'run after changing env.sh');
  // SETUP FILE (step 3) changes no files, so it keeps no snapshot of its own: the restore point is the
  // WORKDIR before it and the SETUP FILE step is replayed (a no-op) on top of it.
  assert.deepEqual(second.ran, steps(4, 6), 'the RUNs that sourced env.sh rerun; the SETUP FILE line itself (it changes nothing in the machine) and what is before it stay cached');
  for (const step of [0, 1, 2]) assert.equal(statusOf(second, step), 'cached', `step ${step} is cached`);
  assert.equal(printed(second, 4), 'bye\n');
  assert.equal(printed(second, 6), 'bye\n3\n');
});

test('SKIP REMAINING IF GIT_BRANCH=main: the rest is skipped on main and runs on another branch', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const repo = createGitRepo(t, {
    Layerfile: `FROM vm/debian:12
RUN echo before > /root/before.txt && echo before
SKIP REMAINING IF GIT_BRANCH=main
RUN echo after > /root/after.txt && echo after
RUN cat /root/after.txt
`,
  });

  const main = await runOk(engine, repo, 'run on main');
  assert.deepEqual(main.ran, [at(0)], 'only the step before the condition ran');
  assert.equal(statusOf(main, 1), 'skipped');
  assert.equal(statusOf(main, 2), 'skipped');
  assert.equal(printed(main, 1), undefined, 'a skipped step prints nothing');
  assert.equal(printed(main, 2), undefined);
  const mainOutcome = outcomeOf(main);
  assert.equal(fileInSnapshot(engine, mainOutcome.finalSnapshot, '/root/before.txt'), 'before\n');
  assert.equal(fileInSnapshot(engine, mainOutcome.finalSnapshot, '/root/after.txt'), null, "the skipped step's side effect is absent");

  repo.git('checkout', '-q', '-b', 'feature');
  const feature = await runOk(engine, repo, 'run on feature');
  assert.deepEqual(feature.ran, [at(1), at(2)], 'on another branch the rest runs (the step before is cached)');
  assert.equal(printed(feature, 2), 'after\n');
  assert.equal(fileInSnapshot(engine, outcomeOf(feature).finalSnapshot, '/root/after.txt'), 'after\n');
});

test('SKIP REMAINING IF with a regex (=~) and AND', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const repo = createGitRepo(t, {
    Layerfile: `FROM vm/debian:12
ENV KIND=release
RUN echo before
SKIP REMAINING IF GIT_BRANCH=~"^release/[0-9.]+$" AND KIND!=debug
RUN echo after
`,
  });
  repo.git('checkout', '-q', '-b', 'release/1.2');
  const release = await runOk(engine, repo, 'run on release/1.2');
  assert.deepEqual(release.ran, [at(0), at(1)]);
  assert.equal(statusOf(release, 2), 'skipped', 'the branch matches the regex and KIND is not debug');

  repo.git('checkout', '-q', '-b', 'release/1.2-rc');
  const rc = await runOk(engine, repo, 'run on release/1.2-rc');
  assert.deepEqual(rc.ran, [at(2)], 'the regex is anchored: release/1.2-rc does not match, the rest runs');
  assert.equal(printed(rc, 2), 'after\n');
});

test('CHECKPOINT disabled ... CHECKPOINT: correct results; a rerun restores the last step that kept a snapshot', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  // /root/log counts how many of the steps 1, 3, 4 are in the state each of them runs on: a restore
  // from the wrong point (or a state that kept a later step's writes) prints another number.
  const repo = createGitRepo(t, {
    Layerfile: `FROM vm/debian:12
COPY . /app
CHECKPOINT disabled
RUN echo one >> /root/log && wc -l < /root/log
RUN cat /app/b
CHECKPOINT
RUN echo two >> /root/log && wc -l < /root/log
CHECKPOINT disabled
RUN echo three >> /root/log && wc -l < /root/log
RUN cat /app/c
`,
    'b': 'b1\n',
    'c': 'c1\n',
  });
  const first = await runOk(engine, repo, 'first run');
  assert.deepEqual(first.ran, steps(0, 5));
  assert.deepEqual([1, 2, 3, 4, 5].map((s) => printed(first, s)), ['1\n', 'b1\n', '2\n', '3\n', 'c1\n']);

  // c is read by the LAST step; step 4 kept no snapshot, step 3 did (CHECKPOINT re-enabled them).
  repo.commit('change c', { c: 'c2\n' });
  const second = await runOk(engine, repo, 'run after changing c');
  assert.deepEqual(second.ran, [at(4), at(5)], 'restores after step 3 (snapshotted), reruns step 4 (not snapshotted)');
  assert.equal(printed(second, 4), '3\n', 'step 4 runs on the state after step 3');
  assert.equal(printed(second, 5), 'c2\n');

  // b is read by step 2, which kept no snapshot, nor did step 1: the restore point is the COPY.
  repo.commit('change b', { b: 'b2\n' });
  const third = await runOk(engine, repo, 'run after changing b');
  assert.deepEqual(third.ran, steps(1, 5), 'restores after step 0, the last snapshot before step 2');
  assert.deepEqual([1, 2, 3, 4, 5].map((s) => printed(third, s)), ['1\n', 'b2\n', '2\n', '3\n', 'c2\n']);
});

test('CHECKPOINT name + fromCheckpoint: the cache is used up to the named line, every later step reruns, and so does a child', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const repo = createGitRepo(t, {
    Layerfile: `FROM vm/debian:12
RUN echo base >> /root/log && wc -l < /root/log
CHECKPOINT deps-installed
RUN echo tests >> /root/log && wc -l < /root/log
RUN echo more >> /root/log && wc -l < /root/log
`,
    'child/Layerfile': 'FROM ..\nRUN wc -l < /root/log\n',
  });
  const first = await runOk(engine, repo, 'first run');
  assert.deepEqual(first.ran, [at(0, 'child'), ...steps(0, 2)]);

  const again = await engine.run({ repoDir: repo.dir, commit: 'HEAD', fromCheckpoint: 'deps-installed' });
  assert.equal(again.result.status, 'success', failures(again));
  assert.deepEqual(again.ran, [at(0, 'child'), at(1), at(2)], 'restored before the checkpoint, reran after it and the child');
  assert.equal(statusOf(again, 0), 'cached');
  assert.equal(again.steps.find((s) => s.runner === ROOT && s.step === 1)?.message, 'reruns from CHECKPOINT deps-installed (line 3), as asked (--from-checkpoint)');
  assert.deepEqual([1, 2].map((s) => printed(again, s)), ['2\n', '3\n'], 'the later steps ran on the state before the checkpoint');
  assert.equal(printed(again, 0, 'child'), '3\n');

  // Without the option the cache is used as usual again: nothing changed.
  const plain = await runOk(engine, repo, 'run without the option');
  assert.deepEqual(plain.ran, []);

  await assert.rejects(engine.run({ repoDir: repo.dir, commit: 'HEAD', fromCheckpoint: 'no-such' }), /no Layerfile of this run has CHECKPOINT no-such.*|named checkpoints: deps-installed/s);
});

test('MEMORY 64M: a RUN that allocates 512M fails the runner with an out-of-memory message', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  // MEMORY reserves at least that much (it never lowers the limit): with a smaller default, 64M is the limit.
  engine.engine.deps.defaultMemoryBytes = 32 * 1024 ** 2;
  const repo = createGitRepo(t, {
    Layerfile: `FROM vm/debian:12
MEMORY 64M
RUN echo small
RUN head -c 512m /dev/zero | tail > /dev/null
RUN echo never
`,
  });
  const run = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(run.result.status, 'failure');
  assert.equal(printed(run, 0), 'small\n', 'the machine runs under the limit');
  assert.equal(statusOf(run, 1), 'failed');
  assert.deepEqual(run.ran, [at(0), at(1)]);
  assert.match(outcomeOf(run).message ?? '', /out of memory.*MEMORY limit/);
});

test('MEMORY is inherited: a child of a Layerfile with MEMORY 64M runs under that limit', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  engine.engine.deps.defaultMemoryBytes = 32 * 1024 ** 2;
  const repo = createGitRepo(t, {
    Layerfile: 'FROM vm/debian:12\nMEMORY 64M\nRUN echo base\n',
    'child/Layerfile': 'FROM ..\nRUN head -c 512m /dev/zero | tail > /dev/null && echo survived\n',
  });
  const run = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(run.result.status, 'failure');
  assert.equal(outcomeOf(run).status, 'success');
  assert.match(outcomeOf(run, 'child/Layerfile').message ?? '', /out of memory.*MEMORY limit/);
});

test('WORKDIR under a non-root USER: created (as root) and given to that user', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const repo = createGitRepo(t, { Layerfile: 'FROM vm/debian:12\nUSER bob\nWORKDIR /opt/x\nRUN pwd && stat -c %U . && touch mine\nWORKDIR /tmp\nRUN stat -c %U /tmp\n' });
  const run = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(run.result.status, 'success', outcomeOf(run).message);
  assert.equal(printed(run, 2), '/opt/x\nbob\n');
  assert.equal(printed(run, 4), 'root\n', 'an existing directory is left as it is');
});

test('a failing RUN fails the run, stops it, and after the fix only the failed step onwards reruns', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const layerfile = (command: string) => `FROM vm/debian:12
COPY . /app
RUN cat /app/a && echo ok > /root/ok
RUN ${command}
RUN echo after > /root/after.txt && echo after
`;
  const repo = createGitRepo(t, { Layerfile: layerfile('echo failing && exit 3'), a: 'a\n' });

  const failed = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(failed.result.status, 'failure');
  assert.deepEqual(failed.ran, steps(0, 2), 'the step after the failure did not run');
  assert.equal(statusOf(failed, 2), 'failed');
  assert.equal(statusOf(failed, 3), undefined, 'the step after the failure is never started');
  assert.equal(printed(failed, 2), 'failing\n');
  assert.match(outcomeOf(failed).message ?? '', /step 3 \(line 4\) exited with code 3/);

  // The same commit again: a failed step is never a cache hit, the steps before it are.
  const again = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(again.result.status, 'failure');
  assert.deepEqual(again.ran, [at(2)], 'only the failed step reruns (and fails again)');

  repo.commit('fix the command', { Layerfile: layerfile('echo fixed && cat /root/ok') });
  const fixed = await runOk(engine, repo, 'run after the fix');
  assert.deepEqual(fixed.ran, steps(2, 3), 'the steps before the failed one are cached');
  assert.equal(printed(fixed, 2), 'fixed\nok\n', 'runs on the state of the cached steps');
  assert.equal(printed(fixed, 3), 'after\n');
  assert.equal(fileInSnapshot(engine, outcomeOf(fixed).finalSnapshot, '/root/after.txt'), 'after\n');
});

test('RUN REPEATABLE accumulates state across commits; a plain RUN in the same place does not', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const layerfile = (name: string, run: string) =>
    `FROM vm/debian:12\nLABEL display_name=${name}\nCOPY . .\n${run} cat counter 2>/dev/null; echo x >> /root/state; wc -l < /root/state\n`;
  // Two Layerfiles, one runner each, identical except for REPEATABLE; each commit changes both counters.
  const repo = createGitRepo(t, {
    'repeatable/Layerfile': layerfile('repeatable', 'RUN REPEATABLE'),
    'repeatable/counter': 'c1\n',
    'plain/Layerfile': layerfile('plain', 'RUN'),
    'plain/counter': 'c1\n',
  });

  const first = await runOk(engine, repo, 'first run');
  assert.deepEqual(first.ran, [...steps(0, 1, 'plain'), ...steps(0, 1, 'repeatable')]);
  assert.equal(printed(first, 1, 'repeatable'), 'c1\n1\n');
  assert.equal(printed(first, 1, 'plain'), 'c1\n1\n');

  for (const n of [2, 3]) {
    repo.commit(`counter ${n}`, { 'repeatable/counter': `c${n}\n`, 'plain/counter': `c${n}\n` });
    const run = await runOk(engine, repo, `run ${n}`);
    assert.deepEqual(run.ran, [at(1, 'plain'), at(1, 'repeatable')], `run ${n}: only the step that read counter reruns`);
    assert.equal(printed(run, 1, 'repeatable'), `c${n}\n${n}\n`, `run ${n}: REPEATABLE starts from its previous state, with the new counter`);
    assert.equal(printed(run, 1, 'plain'), `c${n}\n1\n`, `run ${n}: a plain RUN starts from the state before it`);
  }
});

// Engine bug (runLayerfile.ts, the "Nothing left to run" branch): when every step is cached, the
// SKIP REMAINING IF conditions are checked only for BUTTONs; the steps after a holding condition are
// reported 'cached' and the final state is the snapshot after the LAST step, skipped steps included.
// A fresh run on main would not have them: a child Layerfile (FROM ../this) would inherit files the
// skipped steps wrote. Same tree on both branches; GIT_BRANCH is not in the cache key.
test(
  'SKIP REMAINING IF on main after a full run on another branch: the final state lacks the skipped steps',
  { timeout: TIMEOUT },
  async (t) => {
    if (!requireRoot(t)) return;
    const engine = await createTestEngine(t);
    const repo = createGitRepo(t, {
      Layerfile: `FROM vm/debian:12
RUN echo before
SKIP REMAINING IF GIT_BRANCH=main
RUN echo after > /root/after.txt
`,
    });
    repo.git('checkout', '-q', '-b', 'feature');
    const feature = await runOk(engine, repo, 'run on feature');
    assert.deepEqual(feature.ran, steps(0, 1));

    repo.git('checkout', '-q', 'main');
    const main = await runOk(engine, repo, 'run on main, same tree');
    assert.deepEqual(main.ran, []);
    assert.equal(fileInSnapshot(engine, outcomeOf(main).finalSnapshot, '/root/after.txt'), null, 'what a fresh run on main leaves');
    assert.equal(statusOf(main, 1), 'skipped', 'a step after a SKIP REMAINING IF that holds is skipped, not cached');
  },
);

// Engine bug (stepEnv.ts execEnv): HOME is always /home/<user>, whatever /etc/passwd says. For a user
// that already exists with another home (or none), HOME names a directory that does not exist.
test(
  'USER of an existing user: HOME is the home directory from /etc/passwd',
  { timeout: TIMEOUT },
  async (t) => {
    if (!requireRoot(t)) return;
    const engine = await createTestEngine(t);
    const repo = createGitRepo(t, {
      Layerfile: `FROM vm/debian:12
RUN useradd --create-home --home-dir /srv/carol carol
USER carol
RUN echo "$HOME" && cd && pwd
`,
    });
    const run = await runOk(engine, repo, 'run');
    assert.equal(printed(run, 2), '/srv/carol\n/srv/carol\n');
  },
);
