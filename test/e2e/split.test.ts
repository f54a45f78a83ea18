// SPLIT end to end (real git repos, machines, snapshots, tracing): `SPLIT n` makes n runners (`<id>`,
// `<id>-2`, ...) that share the steps before the SPLIT (run once, in copy 0; the other copies restore
// its snapshot) and each run the rest with their own SPLIT/SPLIT_NUM and their own cache chains.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { requireRoot } from '../helpers/env.js';
import { createGitRepo, createTestEngine, type TestEngine } from '../helpers/engine.js';

const ROOT = 'main-layerfile';
const COPIES = [ROOT, `${ROOT}-2`, `${ROOT}-3`];
type Run = Awaited<ReturnType<TestEngine['run']>>;

function messages(run: Run): string {
  return [...run.result.outcomes.values()].map((o) => o.message ?? '').join('; ');
}

async function runnersOf(engine: TestEngine, run: Run): Promise<Array<{ runner: string; status: string; plan: string | null }>> {
  const record = await engine.engine.deps.runLog.getRun(run.result.runId);
  assert.ok(record, 'the run is in the run log');
  return record.runners.map((r) => ({ runner: r.runner, status: r.status, plan: r.plan ?? null })).sort((a, b) => a.runner.localeCompare(b.runner));
}

/** How many step logs of the run printed `line` (a line of its own). */
function countLines(run: Run, line: string): number {
  return [...run.output.values()].reduce((n, log) => n + log.split('\n').filter((l) => l === line).length, 0);
}

function statusOf(run: Run, runner: string, step: number): string | undefined {
  return run.steps.find((s) => s.runner === runner && s.step === step)?.status;
}

// Steps: #0 COPY, #1 the prefix, #2 SPLIT, #3 the per-copy step.
const LAYERFILE = `FROM vm/debian:12
COPY . .
RUN echo prefix && echo "before: SPLIT=\${SPLIT-unset} SPLIT_NUM=\${SPLIT_NUM-unset}" && cat prefix.txt > /root/marker
SPLIT 3
RUN echo "copy $SPLIT of $SPLIT_NUM" && cat data-$SPLIT.txt && cat /root/marker
`;

test('SPLIT 3: the prefix runs once, every copy runs the rest with its own index, cache and reruns', { timeout: 900_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const repo = createGitRepo(t, {
    Layerfile: LAYERFILE,
    'prefix.txt': 'marker v1\n',
    'data-0.txt': 'zero\n',
    'data-1.txt': 'one\n',
    'data-2.txt': 'two\n',
  });

  // 1. Three runners; the prefix ran once (in copy 0); each copy printed its index and its file.
  const first = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(first.result.status, 'success', messages(first));
  assert.deepEqual((await runnersOf(engine, first)).map((r) => [r.runner, r.status]), COPIES.map((r) => [r, 'success']));
  assert.equal(countLines(first, 'prefix'), 1, 'the steps before the SPLIT ran once');
  assert.equal(first.output.get(`${ROOT}#1`), 'prefix\nbefore: SPLIT=unset SPLIT_NUM=unset\n', 'no SPLIT variables before the SPLIT line');
  assert.deepEqual(first.ran, [`${ROOT}#0`, `${ROOT}#1`, `${ROOT}#2`, `${ROOT}#3`, `${ROOT}-2#2`, `${ROOT}-2#3`, `${ROOT}-3#2`, `${ROOT}-3#3`]);
  for (const copy of [`${ROOT}-2`, `${ROOT}-3`]) {
    assert.equal(statusOf(first, copy, 0), 'cached', `${copy}: COPY restored from copy 0`);
    assert.equal(statusOf(first, copy, 1), 'cached', `${copy}: the prefix restored from copy 0`);
    assert.match(first.steps.find((s) => s.runner === copy && s.step === 2)?.message ?? '', new RegExp(`^SPLIT copy \\d of 3: the steps before it were restored from ${ROOT};`));
  }
  assert.equal(first.output.get(`${ROOT}#3`), 'copy 0 of 3\nzero\nmarker v1\n');
  assert.equal(first.output.get(`${ROOT}-2#3`), 'copy 1 of 3\none\nmarker v1\n');
  assert.equal(first.output.get(`${ROOT}-3#3`), 'copy 2 of 3\ntwo\nmarker v1\n');

  // 2. Only copy 1 read data-1.txt: only its last step reruns, the others run nothing.
  repo.commit('edit data-1', { 'data-1.txt': 'one v2\n' });
  const second = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(second.result.status, 'success', messages(second));
  assert.deepEqual(second.ran, [`${ROOT}-2#3`]);
  assert.equal(second.output.get(`${ROOT}-2#3`), 'copy 1 of 3\none v2\nmarker v1\n');
  assert.match(second.steps.find((s) => s.runner === `${ROOT}-2` && s.step === 3)?.message ?? '', /data-1\.txt/);

  // 3. The prefix read prefix.txt: it reruns once (copy 0), and every copy reruns its post-split steps
  // on top of the new prefix state.
  repo.commit('edit prefix', { 'prefix.txt': 'marker v2\n' });
  const third = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(third.result.status, 'success', messages(third));
  assert.equal(countLines(third, 'prefix'), 1, 'the prefix reran once');
  assert.deepEqual(third.ran, [`${ROOT}#1`, `${ROOT}#2`, `${ROOT}#3`, `${ROOT}-2#2`, `${ROOT}-2#3`, `${ROOT}-3#2`, `${ROOT}-3#3`]);
  assert.equal(third.output.get(`${ROOT}#3`), 'copy 0 of 3\nzero\nmarker v2\n');
  assert.equal(third.output.get(`${ROOT}-2#3`), 'copy 1 of 3\none v2\nmarker v2\n');
  assert.equal(third.output.get(`${ROOT}-3#3`), 'copy 2 of 3\ntwo\nmarker v2\n');

  // Nothing changed: nothing runs anywhere.
  repo.commit('empty');
  const fourth = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(fourth.result.status, 'success', messages(fourth));
  assert.deepEqual(fourth.ran, []);
});

test('SPLIT: one failing copy fails the run, the other copies finish', { timeout: 600_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const repo = createGitRepo(t, {
    Layerfile: 'FROM vm/debian:12\nRUN echo prefix\nSPLIT 3\nRUN test $SPLIT != 2\nRUN echo "after $SPLIT"\n',
  });
  const run = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(run.result.status, 'failure');
  assert.deepEqual((await runnersOf(engine, run)).map((r) => [r.runner, r.status]), [[ROOT, 'success'], [`${ROOT}-2`, 'success'], [`${ROOT}-3`, 'failure']]);
  assert.equal(statusOf(run, `${ROOT}-3`, 2), 'failed');
  assert.equal(statusOf(run, `${ROOT}-3`, 3), undefined, 'the failed copy stops at its failure');
  assert.equal(run.output.get(`${ROOT}#3`), 'after 0\n');
  assert.equal(run.output.get(`${ROOT}-2#3`), 'after 1\n');
  assert.match(messages(run), new RegExp(`${ROOT}-3: step 3 \\(line 4\\) exited with code 1`));
});

test('SPLIT: copies wait for copy 0 and are skipped when the steps before the SPLIT fail', { timeout: 300_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const repo = createGitRepo(t, { Layerfile: 'FROM vm/debian:12\nRUN exit 3\nSPLIT 2\nRUN echo never\n' });
  const run = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(run.result.status, 'failure');
  assert.deepEqual(run.ran, [`${ROOT}#0`], 'only copy 0 ran the failing prefix');
  const runners = await runnersOf(engine, run);
  assert.deepEqual(runners.map((r) => [r.runner, r.status]), [[ROOT, 'failure'], [`${ROOT}-2`, 'skipped']]);
  assert.equal(runners[1]?.plan, `not run: the steps before SPLIT failed in ${ROOT}`);
});

test('SPLIT UNORDERED 2: SPLIT is unset and SPLIT_NUM=2 in both copies', { timeout: 300_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const repo = createGitRepo(t, { Layerfile: 'FROM vm/debian:12\nRUN echo prefix\nSPLIT UNORDERED 2\nRUN echo "SPLIT=${SPLIT-unset} SPLIT_NUM=$SPLIT_NUM RUNNER_ID=$RUNNER_ID"\n' });
  const run = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(run.result.status, 'success', messages(run));
  assert.equal(countLines(run, 'prefix'), 1);
  assert.equal(run.output.get(`${ROOT}#2`), `SPLIT=unset SPLIT_NUM=2 RUNNER_ID=${ROOT}\n`);
  assert.equal(run.output.get(`${ROOT}-2#2`), `SPLIT=unset SPLIT_NUM=2 RUNNER_ID=${ROOT}-2\n`);
});

test('SPLIT: a background server started before the SPLIT serves every copy', { timeout: 600_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const server = `perl -MIO::Socket::INET -e '$s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => 8080, Listen => 5, ReuseAddr => 1) or die; while ($c = $s->accept) { print $c "served\\n"; close $c }'`;
  const repo = createGitRepo(t, {
    Layerfile: `FROM vm/debian:12\nRUN BACKGROUND ${server}\nSPLIT 3\nRUN echo "copy $SPLIT" && exec 3<>/dev/tcp/127.0.0.1/8080 && cat <&3\n`,
  });
  const run = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(run.result.status, 'success', messages(run));
  assert.deepEqual(run.ran, [`${ROOT}#0`, `${ROOT}#1`, `${ROOT}#2`, `${ROOT}-2#1`, `${ROOT}-2#2`, `${ROOT}-3#1`, `${ROOT}-3#2`], 'the server step ran once');
  COPIES.forEach((runner, index) => assert.equal(run.output.get(`${runner}#2`), `copy ${index}\nserved\n`, runner));
  for (const runner of [`${ROOT}-2`, `${ROOT}-3`]) {
    assert.match((await runnersOf(engine, run)).find((r) => r.runner === runner)?.plan ?? '', /re-launched 1 background process/);
  }
});

test('a second SPLIT in a Layerfile is refused with its line', { timeout: 120_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const repo = createGitRepo(t, { Layerfile: 'FROM vm/debian:12\nSPLIT 2\nRUN true\nSPLIT 2\nRUN true\n' });
  const run = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(run.result.status, 'error');
  assert.deepEqual(run.ran, []);
  assert.match(messages(run), /^Layerfile:4: a second SPLIT \(the first is at line 2\) is not supported yet/);
});

test('a child of a split Layerfile starts from copy 0\'s final state; WAIT and FROM wait for every copy', { timeout: 600_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const repo = createGitRepo(t, {
    'base/Layerfile': 'FROM vm/debian:12\nLABEL display_name=base\nSPLIT 2\nCOPY gate.txt /root/in/gate.txt\nRUN echo $SPLIT > /root/which && test "$SPLIT" != "$(cat /root/in/gate.txt)"\n',
    'base/gate.txt': 'none\n',
    'child/Layerfile': 'FROM ../base\nLABEL display_name=child\nRUN cat /root/which\n',
    'waiter/Layerfile': 'FROM vm/debian:12\nLABEL display_name=waiter\nWAIT ../base\nRUN echo waited\n',
  });
  const first = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(first.result.status, 'success', messages(first));
  assert.equal(first.output.get('child#0'), '0\n', "the child has copy 0's files");
  assert.equal(first.output.get('waiter#0'), 'waited\n');

  // Copy 1 fails: neither the child nor the waiter runs, though copy 0 succeeded.
  repo.commit('fail copy 1', { 'base/gate.txt': '1\n' });
  const second = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(second.result.status, 'failure');
  assert.deepEqual(second.ran, ['base#2', 'base-2#2']);
  const runners = await runnersOf(engine, second);
  assert.deepEqual(runners.map((r) => [r.runner, r.status]), [['base', 'success'], ['base-2', 'failure'], ['child', 'skipped'], ['waiter', 'skipped']]);
});

test('strata-split: each SPLIT copy gets a balanced share, every file exactly once; timings from the COPYed tree rebalance and rerun', { timeout: 600_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const files: Record<string, string> = {};
  // Sizes 1..9 KiB: 45 KiB over 3 copies.
  for (let i = 1; i <= 9; i++) files[`tests/t${i}.test`] = 'x'.repeat(i * 1024);
  const repo = createGitRepo(t, {
    Layerfile: 'FROM vm/debian:12\nCOPY . /app\nWORKDIR /app\nSPLIT 3\nRUN ls tests/*.test | strata-split $( [ -f timings.txt ] && echo --timings timings.txt ) | sed "s/^/share: /"\n',
    ...files,
  });
  const shares = (run: Run): string[][] =>
    COPIES.map((runner) => (run.output.get(`${runner}#3`) ?? '').split('\n').filter((l) => l.startsWith('share: ')).map((l) => l.slice('share: '.length)));
  const first = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(first.result.status, 'success', messages(first));
  const bySize = shares(first);
  assert.deepEqual(bySize.flat().sort(), Object.keys(files).sort(), 'every file in exactly one share');
  const kib = (share: string[]) => share.reduce((n, f) => n + Number(/t(\d)\./.exec(f)?.[1]), 0);
  // Greedy heaviest-first gives 16/15/14 here (optimal is 15 each; round-robin by name gives 12/15/18).
  assert.ok(Math.max(...bySize.map(kib)) <= 16, `balanced by size: ${JSON.stringify(bySize)}`);

  // Timings (committed, so the copies read them through the traced COPY): t1 is slow now.
  repo.commit('timings', { 'timings.txt': ['tests/t1.test 100', ...[2, 3, 4, 5, 6, 7, 8, 9].map((i) => `tests/t${i}.test 1`)].join('\n') + '\n' });
  const second = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(second.result.status, 'success', messages(second));
  const byTime = shares(second);
  assert.deepEqual(byTime.flat().sort(), Object.keys(files).sort());
  assert.deepEqual(byTime.find((share) => share.includes('tests/t1.test')), ['tests/t1.test'], `the slow file gets a copy of its own: ${JSON.stringify(byTime)}`);
  assert.deepEqual(second.ran.filter((s) => s.endsWith("#3")).sort(), COPIES.map((c) => `${c}#3`).sort(), 'every copy reran: the timings file is a traced read');
});

test('strata-split timings stored by strata: --run reports them, the next SPLIT balances by them, and every copy always uses copy 0\'s set', { timeout: 900_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const TWO = [ROOT, `${ROOT}-2`];
  // t1 is the smallest file and by far the slowest test; sizes would pair it with t2.
  const test = (name: string, seconds: number, padding: number) => `echo ran ${name}\nsleep ${seconds}\n#${'x'.repeat(padding)}\n`;
  const tests = {
    'tests/t1.sh': test('t1', 1.5, 1),
    'tests/t2.sh': test('t2', 0, 3000),
    'tests/t3.sh': test('t3', 0, 2000),
    'tests/t4.sh': test('t4', 0, 1000),
  };
  const repo = createGitRepo(t, {
    // The list comes from a glob (a listing, no stat), so a share depends on the list and the timings only.
    Layerfile: "FROM vm/debian:12\nCOPY . /app\nWORKDIR /app\nRUN cat prefix.txt\nSPLIT 2\nRUN printf '%s\\n' tests/*.sh | strata-split --run bash\n",
    'prefix.txt': 'v1\n',
    ...tests,
  });
  const shares = (run: Run): string[][] => TWO.map((runner) => (run.output.get(`${runner}#4`) ?? '').split('\n').filter((l) => l.startsWith('ran ')).map((l) => l.slice(4)).sort());
  const all = ['t1', 't2', 't3', 't4'];

  // 1. Nothing stored yet: by size (t2 3000 -> 0, t3 2000 -> 1, t4 1000 -> 1, t1 -> 0).
  const first = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(first.result.status, 'success', messages(first));
  assert.deepEqual(shares(first), [['t1', 't2'], ['t3', 't4']]);
  const stored = await engine.engine.database.sql.selectFrom('split_timings').select(['path', 'seconds']).orderBy('path').execute();
  assert.deepEqual(stored.map((r) => r.path), ['tests/t1.sh', 'tests/t2.sh', 'tests/t3.sh', 'tests/t4.sh'], 'both copies reported their files');
  assert.ok((stored[0]?.seconds ?? 0) >= 1.5, `t1's time was measured: ${JSON.stringify(stored)}`);

  // 2. The steps before the SPLIT change, so the SPLIT runs again: with the stored timings now, the
  //    slow t1 gets a copy of its own.
  repo.commit('prefix', { 'prefix.txt': 'v2\n' });
  const second = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(second.result.status, 'success', messages(second));
  assert.deepEqual(shares(second), [['t1'], ['t2', 't3', 't4']]);

  // 3. A test of copy 1's share changes: only copy 1 reruns (copy 0's share did not depend on it),
  //    with the same timings as copy 0's cached share: together they still run every test once.
  repo.commit('t3', { 'tests/t3.sh': tests['tests/t3.sh'].replace('echo ran t3', 'echo ran t3 && true') });
  const third = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(third.result.status, 'success', messages(third));
  assert.deepEqual(third.ran, [`${ROOT}-2#4`]);
  assert.deepEqual(shares(third), [[], ['t2', 't3', 't4']]);

  // 4. Copy 0's cached chains are lost (say, pruned) and the stored timings changed meanwhile (t4 is
  //    slow now): copy 0 runs its SPLIT again with new timings. Copy 1's cached share was computed with
  //    the old ones, so it must not be reused (t4 would run twice and, with other numbers, a file in no
  //    share): copy 1 reruns from its SPLIT with copy 0's new timings.
  await engine.engine.database.sql.deleteFrom('chains').where('runner', '=', ROOT).execute();
  await engine.engine.database.sql.updateTable('split_timings').set({ seconds: 9 }).where('path', '=', 'tests/t4.sh').execute();
  const fourth = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(fourth.result.status, 'success', messages(fourth));
  assert.deepEqual(shares(fourth), [['t4'], ['t1', 't2', 't3']]);
  assert.deepEqual(shares(fourth).flat().sort(), all);
  assert.ok(fourth.ran.includes(`${ROOT}-2#3`) && fourth.ran.includes(`${ROOT}-2#4`), `copy 1 reran its SPLIT and what follows: ${fourth.ran}`);
  assert.match(fourth.steps.find((s) => s.runner === `${ROOT}-2` && s.step === 3)?.message ?? '', /other strata-split timings/);
});
