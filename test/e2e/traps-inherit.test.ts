// Cache-correctness traps, second round (end to end: real git repos, commits, machines, snapshots and
// tracing): FROM inheritance over several levels, SPLIT, SETUP FILE, BUILD ENV / SECRET ENV / ENV
// expansion, CLONE branches, RUN REPEATABLE in a child, CACHE dirs, WAIT, --commit and the working
// tree. Each case asserts (a) that a change a step depended on reruns that step, with output proving
// the new sources were seen, and (b) where sensible, that an unrelated change reruns nothing.
// A `BUILD ENV JOB_ID` line before a last "probe" step makes that step run in every run (JOB_ID differs
// each time), in whatever state the run restored: it shows the machine's state, cached steps included.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import type { Secrets } from '../../src/engine/secrets.js';
import type { RunOptions } from '../../src/engine/runRepository.js';
import { requireRoot } from '../helpers/env.js';
import { createRemote } from '../helpers/remote.js';
import { createGitRepo, createTestEngine, stepId as at, stepIds as steps, type TestEngine, type TestRepo as Repo, type TestRun as Run } from '../helpers/engine.js';

const TIMEOUT = 300_000;
const PROBE = 'BUILD ENV JOB_ID';

async function runOk(engine: TestEngine, repo: Repo, what: string, options: Partial<RunOptions> = { commit: 'HEAD' }): Promise<Run> {
  const run = await engine.run({ repoDir: repo.dir, ...options });
  const failures = [...run.result.outcomes.values()].map((o) => o.message).filter(Boolean);
  assert.equal(run.result.status, 'success', `${what}: the run did not succeed: ${failures.join('; ')}`);
  return run;
}

/** What a step printed, without the base image's preparation lines (reported as output of step 0). */
function printed(run: Run, step: number, runner: string): string | undefined {
  return run.output.get(at(step, runner))?.split(/(?<=\n)/).filter((line) => !line.startsWith('vm/debian:12: ')).join('');
}

/** The recorded explanation of a step (what `strata why` shows), '' when none. */
async function reason(engine: TestEngine, run: Run, step: number, runner: string): Promise<string> {
  const record = await engine.engine.deps.runLog.getRun(run.result.runId);
  return record?.runners.find((r) => r.runner === runner)?.steps.find((s) => s.index === step)?.reason?.message ?? '';
}

const sorted = (ids: string[]): string[] => [...ids].sort();

/**
 * The steps that ran, without a Layerfile's trailing ENV / SETUP FILE steps: they keep no snapshot of
 * their own, so every run replays them (no-ops) on the last snapshot before them.
 */
const ranExcept = (run: Run, replayed: string[]): string[] => run.ran.filter((id) => !replayed.includes(id));

test('trap: a later COPY over an earlier one loses a file: the earlier copy\'s file shows again (one Layerfile, and through FROM)', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  // Both directories land in /app; two/f.txt overwrites one/f.txt. Deleting two/f.txt must leave
  // one/f.txt in /app, as a fresh run would: re-applying the deletion into the restored machine
  // would delete the earlier copy's file.
  const repo = createGitRepo(t, {
    Layerfile: `FROM vm/debian:12\nCOPY one /app\nCOPY two /app\nRUN cat /app/f.txt\n${PROBE}\nRUN cat /app/g.txt 2>/dev/null || echo no-g\n`,
    'one/f.txt': 'f from one\n',
    'one/g.txt': 'g from one\n',
    'two/f.txt': 'f from two\n',
    'two/g.txt': 'g from two\n',
    'two/keep.txt': 'keeps two non-empty\n',
    'child/Layerfile': 'FROM ../base\nCOPY ../two /app\nRUN cat /app/f.txt\n',
    'base/Layerfile': 'FROM vm/debian:12\nCOPY ../one /app\nRUN echo base\n',
  });
  const first = await runOk(engine, repo, 'first run');
  assert.equal(printed(first, 2, 'main-layerfile'), 'f from two\n');
  assert.equal(printed(first, 4, 'main-layerfile'), 'g from two\n');
  assert.equal(printed(first, 1, 'child'), 'f from two\n');

  repo.commit('delete two/f.txt and two/g.txt', { 'two/f.txt': null, 'two/g.txt': null });
  const second = await runOk(engine, repo, 'after deleting the overriding files');
  assert.equal(printed(second, 2, 'main-layerfile'), 'f from one\n', 'the reader sees the earlier copy\'s file, as a fresh run does');
  assert.equal(printed(second, 4, 'main-layerfile'), 'g from one\n', 'an unread file of the earlier copy is back too');
  assert.equal(printed(second, 1, 'child'), 'f from one\n', "the child sees its parent's copy again");
  assert.ok(!second.ran.includes(at(0, 'base')), "the parent's copy is not affected");
});

test('trap: BUILD ENV of a variable an ENV line set from GIT_BRANCH (same tree on two branches)', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  // MODE's value is the branch: BUILD ENV MODE puts that value in the key from its line on.
  const repo = createGitRepo(t, {
    Layerfile: `FROM vm/debian:12\nENV MODE=$GIT_BRANCH\nRUN echo before\nBUILD ENV MODE\nRUN echo "mode=$MODE" > /root/mode\n${PROBE}\nRUN cat /root/mode\n`,
  });
  const main = await runOk(engine, repo, 'run on main');
  assert.equal(printed(main, 5, 'main-layerfile'), 'mode=main\n');

  repo.git('checkout', '-q', '-b', 'other');
  const other = await runOk(engine, repo, 'run on other, same tree');
  assert.deepEqual(other.ran, steps(2, 5), 'reruns from the BUILD ENV line on, not before');
  assert.equal(printed(other, 5, 'main-layerfile'), 'mode=other\n', 'the state holds the value of this branch');

  repo.git('checkout', '-q', 'main');
  const back = await runOk(engine, repo, 'back on main');
  assert.deepEqual(back.ran, steps(4, 5), "main's chain is still valid for main: only the probe runs");
  assert.equal(printed(back, 5, 'main-layerfile'), 'mode=main\n');
});

test('trap: FROM three levels deep (base -> mid -> leaf): each change reruns from the right step of the right level', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  // shared.txt is copied by the base but read only by the leaf; LEVEL is set by the base and expanded
  // by the leaf's ENV line.
  const base = (level: string) => `FROM vm/debian:12\n# the base\nCOPY .. /app\nENV LEVEL=${level}\nRUN cat /app/base.txt > /root/base-saw\n`;
  const repo = createGitRepo(t, {
    'base/Layerfile': base('one'),
    'mid/Layerfile': 'FROM ../base\nRUN cat /app/mid.txt > /root/mid-saw\n',
    'leaf/Layerfile': 'FROM ../mid\nENV WHERE=$LEVEL-leaf\nRUN cat /root/base-saw /root/mid-saw /app/leaf.txt /app/shared.txt && echo "$WHERE"\n',
    'base.txt': 'b1\n',
    'mid.txt': 'm1\n',
    'leaf.txt': 'l1\n',
    'shared.txt': 's1\n',
    'unrelated.txt': 'u1\n',
  });
  const leafSaw = (run: Run) => printed(run, 1, 'leaf');
  const first = await runOk(engine, repo, 'first run');
  assert.deepEqual(first.ran, [...steps(0, 2, 'base'), at(0, 'leaf'), at(1, 'leaf'), at(0, 'mid')]);
  assert.equal(leafSaw(first), 'b1\nm1\nl1\ns1\none-leaf\n');

  repo.commit('a file the base copied but only the leaf read', { 'shared.txt': 's2\n' });
  const shared = await runOk(engine, repo, 'after editing shared.txt');
  // The leaf's ENV line keeps no snapshot of its own: it is replayed (a no-op) on the mid's state.
  assert.deepEqual(shared.ran, steps(0, 1, 'leaf'), 'base and mid did not read it: cached; the leaf reruns its reader');
  assert.equal(leafSaw(shared), 'b1\nm1\nl1\ns2\none-leaf\n');
  assert.match(await reason(engine, shared, 1, 'leaf'), /shared\.txt/);

  repo.commit('a file only the leaf read', { 'leaf.txt': 'l2\n' });
  const leaf = await runOk(engine, repo, 'after editing leaf.txt');
  assert.deepEqual(leaf.ran, steps(0, 1, 'leaf'));
  assert.equal(leafSaw(leaf), 'b1\nm1\nl2\ns2\none-leaf\n');

  repo.commit('a file only the mid read', { 'mid.txt': 'm2\n' });
  const mid = await runOk(engine, repo, 'after editing mid.txt');
  assert.deepEqual(mid.ran, [...steps(0, 1, 'leaf'), at(0, 'mid')], 'the mid reruns, and the whole leaf on top of it');
  assert.equal(leafSaw(mid), 'b1\nm2\nl2\ns2\none-leaf\n');

  repo.commit('a file only the base read', { 'base.txt': 'b2\n' });
  const baseRead = await runOk(engine, repo, 'after editing base.txt');
  assert.deepEqual(baseRead.ran, [at(2, 'base'), ...steps(0, 1, 'leaf'), at(0, 'mid')], 'the base from its reader on (its ENV line before it stays cached), then every level below');
  assert.equal(leafSaw(baseRead), 'b2\nm2\nl2\ns2\none-leaf\n');

  repo.commit('an unrelated file, and the shared file again', { 'unrelated.txt': 'u2\n' });
  assert.deepEqual((await runOk(engine, repo, 'after editing unrelated.txt')).ran, [], 'nothing read unrelated.txt');

  repo.commit("comments in the base's Layerfile", { 'base/Layerfile': base('one').replace('ENV', '# sets LEVEL\nENV') + '# the end\n' });
  assert.deepEqual((await runOk(engine, repo, 'after a comment-only edit of the base')).ran, [], 'comments are in no key, at any level');

  repo.commit("a real edit of the base's Layerfile: LEVEL changes", { 'base/Layerfile': base('two') });
  const edited = await runOk(engine, repo, 'after editing the base\'s ENV line');
  assert.deepEqual(edited.ran, [...steps(1, 2, 'base'), ...steps(0, 1, 'leaf'), at(0, 'mid')], 'the base from the edited line on, and every level below');
  assert.equal(leafSaw(edited), 'b2\nm2\nl2\ns2\ntwo-leaf\n', "the leaf's ENV expands the base's new value");
  assert.match(await reason(engine, edited, 1, 'base'), /Layerfile changed/);
});

test('trap: two children of one base, and a SETUP FILE the base declares that sources another copied file', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  // The base copies and declares env.sh, but runs nothing after it: only the children source it.
  const repo = createGitRepo(t, {
    'base/Layerfile': 'FROM vm/debian:12\nCOPY .. /app\nWORKDIR /app\nSETUP FILE env.sh\n',
    'one/Layerfile': 'FROM ../base\nRUN echo "one: $GREETING" && cat one.txt\n',
    'two/Layerfile': 'FROM ../base\nRUN echo "two: $GREETING"\nRUN cat two.txt\n',
    'env.sh': 'export GREETING="$(cat greeting.txt)"\n',
    'greeting.txt': 'hello\n',
    'one.txt': 'o1\n',
    'two.txt': 't1\n',
  });
  const first = await runOk(engine, repo, 'first run');
  assert.deepEqual(first.ran, [...steps(0, 2, 'base'), at(0, 'one'), ...steps(0, 1, 'two')]);
  assert.equal(printed(first, 0, 'one'), 'one: hello\no1\n');
  assert.equal(printed(first, 0, 'two'), 'two: hello\n');

  repo.commit('a file the setup file reads', { 'greeting.txt': 'bye\n' });
  const greeting = await runOk(engine, repo, 'after editing greeting.txt');
  assert.deepEqual(ranExcept(greeting, [at(2, 'base')]), [at(0, 'one'), ...steps(0, 1, 'two')], 'every RUN that sourced it reruns, in both children; the base is cached');
  assert.equal(printed(greeting, 0, 'one'), 'one: bye\no1\n');
  assert.equal(printed(greeting, 0, 'two'), 'two: bye\n');

  repo.commit('the setup file itself', { 'env.sh': 'export GREETING="$(cat greeting.txt)!"\n' });
  const setup = await runOk(engine, repo, 'after editing env.sh');
  assert.deepEqual(ranExcept(setup, [at(2, 'base')]), [at(0, 'one'), ...steps(0, 1, 'two')]);
  assert.equal(printed(setup, 0, 'two'), 'two: bye!\n');

  repo.commit("a file only one child's second step read", { 'two.txt': 't2\n' });
  const two = await runOk(engine, repo, 'after editing two.txt');
  assert.deepEqual(ranExcept(two, [at(2, 'base')]), [at(1, 'two')], 'only that step; the sibling is untouched');
  assert.equal(printed(two, 1, 'two'), 't2\n');
});

test('trap: a child of a SPLIT parent depends on copy 0 only; copies see exactly their own changes', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const repo = createGitRepo(t, {
    'base/Layerfile': 'FROM vm/debian:12\nCOPY .. /app\nRUN cat /app/prefix.txt > /root/prefix\nSPLIT 2\nRUN cat /app/data-$SPLIT.txt > /root/data && cat /root/data\n',
    'child/Layerfile': 'FROM ../base\nRUN cat /root/prefix /root/data /app/child.txt\n',
    'prefix.txt': 'p1\n',
    'data-0.txt': 'zero1\n',
    'data-1.txt': 'one1\n',
    'child.txt': 'c1\n',
  });
  const first = await runOk(engine, repo, 'first run');
  assert.deepEqual(sorted(first.ran), sorted([...steps(0, 3, 'base'), ...steps(2, 3, 'base-2'), at(0, 'child')]));
  assert.equal(printed(first, 0, 'child'), 'p1\nzero1\nc1\n', "the child starts from copy 0's state");

  repo.commit('a file only copy 1 read', { 'data-1.txt': 'one2\n' });
  const one = await runOk(engine, repo, 'after editing data-1.txt');
  assert.deepEqual(one.ran, [at(3, 'base-2')], 'copy 1 reruns; copy 0 and the child (built on copy 0) are cached');
  assert.equal(printed(one, 3, 'base-2'), 'one2\n');

  repo.commit('a file only copy 0 read', { 'data-0.txt': 'zero2\n' });
  const zero = await runOk(engine, repo, 'after editing data-0.txt');
  assert.deepEqual(zero.ran, [at(3, 'base'), at(0, 'child')], 'copy 0 reruns, and the child built on it');
  assert.equal(printed(zero, 0, 'child'), 'p1\nzero2\nc1\n');

  repo.commit('a file only the child read', { 'child.txt': 'c2\n' });
  const child = await runOk(engine, repo, 'after editing child.txt');
  assert.deepEqual(child.ran, [at(0, 'child')]);
  assert.equal(printed(child, 0, 'child'), 'p1\nzero2\nc2\n');

  repo.commit('a file the shared prefix read', { 'prefix.txt': 'p2\n' });
  const prefix = await runOk(engine, repo, 'after editing prefix.txt');
  assert.deepEqual(sorted(prefix.ran), sorted([...steps(1, 3, 'base'), ...steps(2, 3, 'base-2'), at(0, 'child')]));
  assert.equal(printed(prefix, 3, 'base-2'), 'one2\n');
  assert.equal(printed(prefix, 0, 'child'), 'p2\nzero2\nc2\n');
});

test('trap: SPLIT with strata-split: a new test file changes every share; SPLIT UNORDERED copies all see a change', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const COPIES = ['main-layerfile', 'main-layerfile-2'];
  const tests: Record<string, string> = {};
  for (let i = 1; i <= 4; i++) tests[`tests/t${i}.t`] = `test ${i} v1 ${'x'.repeat(i * 100)}\n`;
  const repo = createGitRepo(t, {
    // Each copy prints "<file> <first two words of its content>" for its share.
    Layerfile: 'FROM vm/debian:12\nCOPY . /app\nWORKDIR /app\nSPLIT 2\nRUN for f in $(ls tests/*.t | strata-split); do echo "$f $(cut -d" " -f1-3 $f)"; done\n',
    ...tests,
  });
  /** Every copy's share lines, and the union, checked to hold each test file exactly once. */
  const shares = (run: Run, files: string[]): string[] => {
    const lines = COPIES.flatMap((runner) => (printed(run, 3, runner) ?? '').split('\n').filter(Boolean));
    assert.deepEqual(lines.map((l) => l.split(' ')[0]).sort(), [...files].sort(), `every test file in exactly one share: ${JSON.stringify(lines)}`);
    return lines.sort();
  };
  const first = await runOk(engine, repo, 'first run');
  shares(first, Object.keys(tests));

  repo.commit('a new test file', { 'tests/t5.t': 'test 5 v1\n' });
  const added = await runOk(engine, repo, 'after adding tests/t5.t');
  assert.deepEqual(added.ran.filter((id) => id.endsWith('#3')).sort(), COPIES.map((c) => at(3, c)), 'every copy reruns: the list every share comes from changed');
  const files = [...Object.keys(tests), 'tests/t5.t'];
  assert.ok(shares(added, files).includes('tests/t5.t test 5 v1'));

  // Only the copy whose share holds t2 must rerun; the other may too (strata-split stats every file).
  const owner = COPIES.find((runner) => printed(added, 3, runner)?.includes('tests/t2.t')) as string;
  repo.commit('edit one test file', { 'tests/t2.t': tests['tests/t2.t']!.replace('v1', 'v2') });
  const edited = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(edited.result.status, 'success');
  assert.ok(edited.ran.includes(at(3, owner)), `the copy that ran t2 reruns: ${edited.ran.join(', ')}`);
  assert.match(printed(edited, 3, owner) ?? '', /^tests\/t2\.t test 2 v2$/m);

  repo.commit('unordered', { Layerfile: 'FROM vm/debian:12\nCOPY . /app\nSPLIT UNORDERED 2\nRUN cat /app/u.txt > /root/u\nBUILD ENV JOB_ID\nRUN echo "$SPLIT_NUM $(cat /root/u)"\n', 'u.txt': 'u1\n' });
  const unordered = await runOk(engine, repo, 'SPLIT UNORDERED');
  for (const runner of COPIES) assert.equal(printed(unordered, 4, runner), '2 u1\n', runner);
  repo.commit('edit u.txt', { 'u.txt': 'u2\n' });
  const changed = await runOk(engine, repo, 'SPLIT UNORDERED after editing u.txt');
  for (const runner of COPIES) assert.equal(printed(changed, 4, runner), '2 u2\n', `${runner}: no copy keeps the old state`);
  assert.ok(changed.ran.includes(at(2, 'main-layerfile')), 'copy 0 reran the reader');
});

const secretsOf = (values: Record<string, string>): Secrets => ({ values: new Map(Object.entries(values)), describeLookup: (name) => `the test's secrets (${name})` });

test('trap: SECRET ENV and BUILD ENV GIT_BRANCH in a base: a new value reruns the base from that line and every child', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const repo = createGitRepo(t, {
    'base/Layerfile': 'FROM vm/debian:12\nRUN echo base\nSECRET ENV TOKEN\nRUN echo -n "$TOKEN" | md5sum > /root/token\nBUILD ENV GIT_BRANCH\nRUN echo "$GIT_BRANCH" > /root/branch\n',
    'child/Layerfile': 'FROM ../base\nRUN cat /root/token /root/branch\n',
  });
  const md5 = (value: string): string => execFileSync('md5sum', { input: value, encoding: 'utf8' });
  const withToken = (token: string): Partial<RunOptions> => ({ commit: 'HEAD', secrets: secretsOf({ TOKEN: token }) });
  const first = await runOk(engine, repo, 'first run', withToken('alpha'));
  assert.equal(printed(first, 0, 'child'), `${md5('alpha')}main\n`);

  const same = await runOk(engine, repo, 'the same secret again', withToken('alpha'));
  assert.deepEqual(same.ran, []);

  const rotated = await runOk(engine, repo, 'a rotated secret', withToken('beta'));
  assert.deepEqual(rotated.ran, [...steps(1, 4, 'base'), at(0, 'child')], 'from the SECRET ENV line on, and the child');
  assert.equal(printed(rotated, 0, 'child'), `${md5('beta')}main\n`);

  repo.git('checkout', '-q', '-b', 'feature');
  const feature = await runOk(engine, repo, 'another branch', withToken('beta'));
  assert.deepEqual(feature.ran, [...steps(3, 4, 'base'), at(0, 'child')], 'from the BUILD ENV line on, and the child');
  assert.equal(printed(feature, 0, 'child'), `${md5('beta')}feature\n`);

  repo.git('checkout', '-q', 'main');
  const back = await runOk(engine, repo, 'back on main with the first secret', withToken('alpha'));
  assert.deepEqual(back.ran, [], "the first run's chains fit again");
});

// Needs runLayerfile.ts to pass the parent's ENV values to definitionKeys (`startEnv: start.state.env`):
// without them, a child's BUILD ENV of a variable its parent's ENV line set from GIT_BRANCH keys "unset".
test('trap: a child\'s BUILD ENV of a variable its parent set from GIT_BRANCH', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const repo = createGitRepo(t, {
    'base/Layerfile': 'FROM vm/debian:12\nENV MODE=$GIT_BRANCH\nRUN echo base\n',
    'child/Layerfile': `FROM ../base\nBUILD ENV MODE\nRUN echo "$MODE" > /root/mode\n${PROBE}\nRUN cat /root/mode\n`,
  });
  const main = await runOk(engine, repo, 'run on main');
  assert.equal(printed(main, 3, 'child'), 'main\n');
  repo.git('checkout', '-q', '-b', 'other');
  const other = await runOk(engine, repo, 'run on other, same tree');
  assert.equal(printed(other, 3, 'child'), 'other\n', 'the state holds the value of this branch');
});

test('trap: CLONE follows the main repository\'s branch, and falls back when the same-named remote branch is deleted', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const remote = createRemote(t, 'trunk');
  remote.commit('trunk', { read: 'read on trunk\n', unread: 'unread on trunk\n' });
  remote.commit('feature', { read: 'read on feature\n' });
  // Step 3 is the probe: it shows both files of the state the run restored or built.
  const repo = createGitRepo(t, { Layerfile: `FROM vm/debian:12\nCLONE ${remote.url} /lib\nRUN cat /lib/read\n${PROBE}\nRUN cat /lib/read /lib/unread\n` });
  const R = 'main-layerfile';

  const main = await runOk(engine, repo, 'on main: the remote has no main, its HEAD (trunk) is cloned');
  assert.equal(printed(main, 1, R), 'read on trunk\n');

  repo.git('checkout', '-q', '-b', 'feature');
  const feature = await runOk(engine, repo, 'on feature: the same-named remote branch is cloned');
  assert.deepEqual(feature.ran, steps(1, 3), 'the reader of the file that differs between the branches reruns');
  assert.equal(printed(feature, 3, R), 'read on feature\nunread on trunk\n');

  remote.commit('feature', { unread: 'unread on feature\n' });
  const unread = await runOk(engine, repo, 'feature moved: only an unread file changed');
  assert.deepEqual(unread.ran, steps(2, 3), 'only the probe runs');
  assert.equal(printed(unread, 3, R), 'read on feature\nunread on feature\n', 're-applied into the restored machine');

  remote.drop('feature');
  const dropped = await runOk(engine, repo, 'the remote lost feature: back to trunk');
  assert.deepEqual(dropped.ran, steps(2, 3), "the first run's chain (trunk, same main tree) fits entirely");
  assert.equal(printed(dropped, 3, R), 'read on trunk\nunread on trunk\n');

  remote.commit('trunk', { read: 'read on trunk v2\n' });
  repo.git('checkout', '-q', 'main');
  const back = await runOk(engine, repo, 'back on main, trunk moved');
  assert.deepEqual(back.ran, steps(1, 3));
  assert.equal(printed(back, 3, R), 'read on trunk v2\nunread on trunk\n');
});

test('trap: RUN REPEATABLE in a child: accumulates on its previous state, but a change read before it, or in the parent, starts it over', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const repo = createGitRepo(t, {
    'base/Layerfile': 'FROM vm/debian:12\nCOPY .. /app\nRUN cat /app/base.txt > /root/base\n',
    'child/Layerfile': 'FROM ../base\nRUN cat /app/pre.txt > /root/pre\nRUN REPEATABLE echo "$(cat /app/r.txt) $(cat /root/pre) $(cat /root/base)" >> /root/log; cat /root/log\n',
    'base.txt': 'b1',
    'pre.txt': 'p1',
    'r.txt': 'r1',
  });
  const log = (run: Run) => printed(run, 1, 'child');
  assert.equal(log(await runOk(engine, repo, 'first run')), 'r1 p1 b1\n');

  repo.commit('r.txt', { 'r.txt': 'r2' });
  const again = await runOk(engine, repo, 'after editing r.txt');
  assert.deepEqual(again.ran, [at(1, 'child')]);
  assert.equal(log(again), 'r1 p1 b1\nr2 p1 b1\n', 'on top of its previous state');

  repo.commit('pre.txt', { 'pre.txt': 'p2' });
  const pre = await runOk(engine, repo, 'after editing pre.txt');
  assert.deepEqual(pre.ran, steps(0, 1, 'child'));
  assert.equal(log(pre), 'r2 p2 b1\n', 'the step before it changed: it starts from that step\'s new state');

  repo.commit('base.txt', { 'base.txt': 'b2' });
  const base = await runOk(engine, repo, 'after editing base.txt');
  assert.deepEqual(base.ran, [at(1, 'base'), ...steps(0, 1, 'child')]);
  assert.equal(log(base), 'r2 p2 b2\n', 'the parent changed: no state built on the old parent is reused');

  repo.commit('r.txt again', { 'r.txt': 'r3' });
  const third = await runOk(engine, repo, 'after editing r.txt again');
  assert.deepEqual(third.ran, [at(1, 'child')]);
  assert.equal(log(third), 'r2 p2 b2\nr3 p2 b2\n');
});

test('trap: CACHE dir contents are in no key, and a restored machine sees the persisted cache, not a snapshot of it', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const count = 'echo "log $(cat /var/cache/mine/log 2>/dev/null | wc -l)"';
  const repo = createGitRepo(t, {
    Layerfile: `FROM vm/debian:12\nCACHE /var/cache/mine\nCOPY . .\nRUN cat a.txt && echo a >> /var/cache/mine/log && ${count}\nRUN cat b.txt && ${count}\n`,
    'a.txt': 'a1\n',
    'b.txt': 'b1\n',
  });
  const R = 'main-layerfile';
  const first = await runOk(engine, repo, 'first run');
  assert.equal(printed(first, 2, R), 'a1\nlog 1\n');
  assert.equal(printed(first, 3, R), 'b1\nlog 1\n');

  repo.commit('nothing');
  assert.deepEqual((await runOk(engine, repo, 'no change; the cache dir did change in the first run')).ran, []);
  assert.deepEqual((await runOk(engine, repo, 'with empty throwaway cache dirs', { commit: 'HEAD', noCacheDirs: true })).ran, [], 'empty cache dirs do not rerun anything either');

  repo.commit('b.txt', { 'b.txt': 'b2\n' });
  const b = await runOk(engine, repo, 'after editing b.txt');
  assert.deepEqual(b.ran, [at(3, R)]);
  assert.equal(printed(b, 3, R), 'b2\nlog 1\n', 'the restored machine mounts the persisted cache dir');

  repo.commit('a.txt', { 'a.txt': 'a2\n' });
  const a = await runOk(engine, repo, 'after editing a.txt');
  assert.deepEqual(a.ran, steps(2, 3, R));
  assert.equal(printed(a, 2, R), 'a2\nlog 2\n', 'the cache dir kept what the first run wrote');
  assert.equal(printed(a, 3, R), 'b2\nlog 2\n');

  repo.commit('b.txt again', { 'b.txt': 'b3\n' });
  const empty = await runOk(engine, repo, 'after editing b.txt, with empty cache dirs', { commit: 'HEAD', noCacheDirs: true });
  assert.deepEqual(empty.ran, [at(3, R)]);
  assert.equal(printed(empty, 3, R), 'b3\nlog 0\n', 'no earlier cache content leaks in through the restored snapshot');
});

test('trap: WAIT on a Layerfile that fails, then is fixed: the waiting Layerfile runs on the next commit, with the newest sources', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const repo = createGitRepo(t, {
    'a/Layerfile': 'FROM vm/debian:12\nCOPY gate.txt /app/gate\nRUN test "$(cat /app/gate)" = open\n',
    'a/gate.txt': 'closed\n',
    'b/Layerfile': 'FROM vm/debian:12\nWAIT ../a\nCOPY b.txt /app/b.txt\nRUN cat /app/b.txt\n',
    'b/b.txt': 'b1\n',
  });
  const closed = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(closed.result.status, 'failure');
  assert.deepEqual(closed.ran, steps(0, 1, 'a'), 'b does not run while a fails');
  assert.equal(closed.result.outcomes.get('b/Layerfile')?.status, 'skipped');

  repo.commit('open the gate', { 'a/gate.txt': 'open\n' });
  const open = await runOk(engine, repo, 'after fixing a');
  assert.deepEqual(open.ran, [at(1, 'a'), ...steps(0, 1, 'b')]);
  assert.equal(printed(open, 1, 'b'), 'b1\n');

  repo.commit('close it again and edit b', { 'a/gate.txt': 'closed\n', 'b/b.txt': 'b2\n' });
  const again = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(again.result.status, 'failure');
  assert.deepEqual(again.ran, [at(1, 'a')], 'b waits, even with its own change');

  repo.commit('open it again', { 'a/gate.txt': 'open\n' });
  const reopened = await runOk(engine, repo, 'after fixing a again');
  assert.deepEqual(reopened.ran, [at(1, 'b')], "a's earlier passing chain fits; b's change, made while it was skipped, reruns its reader");
  assert.equal(printed(reopened, 1, 'b'), 'b2\n');
});

test('trap: --commit A, B, A again, then an uncommitted edit on top of A', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const R = 'main-layerfile';
  const repo = createGitRepo(t, {
    Layerfile: `FROM vm/debian:12\nCOPY . .\nRUN cat f\nRUN cat g 2>/dev/null || echo no-g\n${PROBE}\nRUN cat f; cat g 2>/dev/null || echo no-g\n`,
    f: 'f1\n',
  });
  const commitA = repo.git('rev-parse', 'HEAD').trim();
  const commitB = repo.commit('B', { f: 'f2\n', g: 'g1\n' });
  const probe = (run: Run) => printed(run, 4, R);

  const a = await runOk(engine, repo, '--commit A', { commit: commitA });
  assert.deepEqual(a.ran, steps(0, 4, R));
  assert.equal(probe(a), 'f1\nno-g\n');
  const b = await runOk(engine, repo, '--commit B', { commit: commitB });
  assert.deepEqual(b.ran, steps(1, 4, R));
  assert.equal(probe(b), 'f2\ng1\n');
  const a2 = await runOk(engine, repo, '--commit A again', { commit: commitA });
  assert.deepEqual(a2.ran, steps(3, 4, R), "A's own chain");
  assert.equal(probe(a2), 'f1\nno-g\n');

  repo.git('checkout', '-q', commitA);
  repo.write({ f: 'dirty\n' });
  const dirty = await runOk(engine, repo, 'the working tree: A with f edited', { commit: undefined });
  assert.deepEqual(dirty.ran, steps(1, 4, R));
  assert.equal(probe(dirty), 'dirty\nno-g\n');

  repo.write({ g: 'untracked g\n' });
  const untracked = await runOk(engine, repo, 'the working tree: and an untracked g', { commit: undefined });
  assert.deepEqual(untracked.ran, steps(2, 4, R), 'g was probed absent by step 2 only');
  assert.equal(probe(untracked), 'dirty\nuntracked g\n');

  repo.write({ f: 'f1\n', g: null });
  const clean = await runOk(engine, repo, 'the working tree: clean A again', { commit: undefined });
  assert.deepEqual(clean.ran, steps(3, 4, R), "A's chain: the working tree has A's tree");
  assert.equal(probe(clean), 'f1\nno-g\n');

  const b2 = await runOk(engine, repo, '--commit B from the detached A', { commit: commitB });
  assert.deepEqual(b2.ran, steps(3, 4, R));
  assert.equal(probe(b2), 'f2\ng1\n');
});
