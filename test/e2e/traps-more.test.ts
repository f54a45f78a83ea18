// More cache-correctness traps, end to end (real git repos, real machines, snapshots and tracing).
// Each case asserts (a) that a change a step depended on reruns exactly that step and the steps after
// it, with output proving the new sources were seen, and (b) where sensible, that an unrelated change
// reruns nothing. Cases that check the machine's whole state end with a `BUILD ENV JOB_ID` probe step:
// JOB_ID differs in every run, so the probe always runs, in whatever state the run restored.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync, statSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { requireRoot } from '../helpers/env.js';
import { createGitRepo, createTestEngine, stepId as at, stepIds as steps, type TestEngine, type TestRepo as Repo, type TestRun as Run } from '../helpers/engine.js';
import { sleep } from '../../src/util/sleep.js';

const TIMEOUT = 300_000;
/** The last line of a Layerfile whose probe step always runs (see the header). */
const PROBE = 'BUILD ENV JOB_ID';

async function runOk(engine: TestEngine, repo: Repo, what: string, commit: string | null = 'HEAD'): Promise<Run> {
  const run = await engine.run(commit === null ? { repoDir: repo.dir } : { repoDir: repo.dir, commit });
  const failures = [...run.result.outcomes.values()].map((o) => o.message).filter(Boolean);
  assert.equal(run.result.status, 'success', `${what}: the run did not succeed: ${failures.join('; ')}`);
  return run;
}

/** The recorded explanation of a step (what `strata why` shows), '' when none. */
async function reason(engine: TestEngine, run: Run, step: number): Promise<string> {
  const record = await engine.engine.deps.runLog.getRun(run.result.runId);
  return record?.runners.find((r) => r.runner === 'main-layerfile')?.steps.find((s) => s.index === step)?.reason?.message ?? '';
}

test('trap: a read file is renamed within a directory the step listed (same content, new name)', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const layerfile = 'FROM vm/debian:12\nCOPY . .\nRUN ls src && cat src/*\nRUN cat keep.txt\n';
  const repo = createGitRepo(t, { Layerfile: layerfile, 'src/a.txt': 'A\n', 'src/b.txt': 'B\n', 'keep.txt': 'k\n', 'other.txt': 'o\n' });
  assert.deepEqual((await runOk(engine, repo, 'first run')).ran, steps(0, 2));

  repo.git('mv', 'src/b.txt', 'src/c.txt');
  repo.commit('rename b.txt to c.txt');
  const renamed = await runOk(engine, repo, 'after the rename');
  assert.deepEqual(renamed.ran, [at(1), at(2)]);
  assert.equal(renamed.output.get(at(1)), 'a.txt\nc.txt\nA\nB\n', 'the listing shows the new name, not the old one');
  assert.match(await reason(engine, renamed, 1), /src\/(b|c)\.txt/);

  repo.commit('an unrelated edit', { 'other.txt': 'o2\n' });
  assert.deepEqual((await runOk(engine, repo, 'after an unrelated edit')).ran, []);
});

test('trap: reads through a symlinked directory (relative and absolute) inside the copy', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  // COPY . . lands in /root: `abs` points into the copy by its absolute machine path.
  const layerfile = 'FROM vm/debian:12\nCOPY . .\nRUN cat conf/x.txt\nRUN cat abs/y.txt\n';
  const repo = createGitRepo(t, { Layerfile: layerfile, 'real/x.txt': 'x1\n', 'real/y.txt': 'y1\n', 'other/x.txt': 'other x\n' });
  symlinkSync('real', join(repo.dir, 'conf'));
  symlinkSync('/root/real', join(repo.dir, 'abs'));
  repo.commit('the links');
  assert.deepEqual((await runOk(engine, repo, 'first run')).ran, steps(0, 2));

  repo.commit('edit the file behind the relative link', { 'real/x.txt': 'x2\n' });
  const edited = await runOk(engine, repo, 'after editing real/x.txt');
  assert.deepEqual(edited.ran, [at(1), at(2)]);
  assert.equal(edited.output.get(at(1)), 'x2\n');

  repo.commit('edit the file behind the absolute link', { 'real/y.txt': 'y2\n' });
  const absolute = await runOk(engine, repo, 'after editing real/y.txt');
  assert.deepEqual(absolute.ran, [at(2)], 'only the reader through /root/real reruns');
  assert.equal(absolute.output.get(at(2)), 'y2\n');

  rmSync(join(repo.dir, 'conf'));
  symlinkSync('other', join(repo.dir, 'conf'));
  repo.commit('retarget the directory link');
  const retargeted = await runOk(engine, repo, 'after retargeting conf');
  assert.deepEqual(retargeted.ran, [at(1), at(2)]);
  assert.equal(retargeted.output.get(at(1)), 'other x\n');
  assert.match(await reason(engine, retargeted, 1), /conf/);

  repo.commit('edit the old target, no longer read through the link', { 'real/x.txt': 'x3\n' });
  assert.deepEqual((await runOk(engine, repo, 'after editing the old target')).ran, []);

  repo.commit('edit the new target', { 'other/x.txt': 'other x2\n' });
  const newTarget = await runOk(engine, repo, 'after editing other/x.txt');
  assert.deepEqual(newTarget.ran, [at(1), at(2)]);
  assert.equal(newTarget.output.get(at(1)), 'other x2\n');
});

test('trap: a background process reads a file during a later step, also after a restore re-launched it', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  // The server reads data.txt only when asked, i.e. inside step 2's window, not its own step's.
  const server = "bash -c 'while true; do if [ -e /tmp/req ]; then cat /root/data.txt > /tmp/resp.new && mv /tmp/resp.new /tmp/resp && rm -f /tmp/req; fi; sleep 0.05; done'";
  const ask = 'touch /tmp/req; for i in $(seq 400); do [ -e /tmp/resp ] && break; sleep 0.05; done; cat /tmp/resp; rm -f /tmp/resp';
  const layerfile = `FROM vm/debian:12\nCOPY . .\nRUN BACKGROUND ${server}\nRUN ${ask}\nRUN cat keep.txt\n`;
  const repo = createGitRepo(t, { Layerfile: layerfile, 'data.txt': 'd1\n', 'keep.txt': 'k1\n' });
  const first = await runOk(engine, repo, 'first run');
  assert.deepEqual(first.ran, steps(0, 3));
  assert.equal(first.output.get(at(2)), 'd1\n');

  repo.commit('edit the file the server read for step 2', { 'data.txt': 'd2\n' });
  const data = await runOk(engine, repo, 'after editing data.txt');
  assert.deepEqual(data.ran, [at(2), at(3)], 'the step during which the server read it reruns (restored, server re-launched)');
  assert.equal(data.output.get(at(2)), 'd2\n');

  repo.commit('edit the last step\'s file', { 'keep.txt': 'k2\n' });
  const keep = await runOk(engine, repo, 'after editing keep.txt');
  assert.deepEqual(keep.ran, [at(3)]);
  assert.equal(keep.output.get(at(3)), 'k2\n');

  repo.commit('edit data.txt again, on a chain built from a restore', { 'data.txt': 'd3\n' });
  const again = await runOk(engine, repo, 'after editing data.txt again');
  assert.deepEqual(again.ran, [at(2), at(3)]);
  assert.equal(again.output.get(at(2)), 'd3\n');
});

test('trap: COPY with several sources, quoted names with spaces and a glob-like name', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const layerfile = [
    'FROM vm/debian:12',
    `COPY "my file.txt" 'other file.txt' "[ab].txt" /data/`,
    'RUN cat "/data/my file.txt"',
    'RUN cat "/data/other file.txt"',
    'RUN cat "/data/[ab].txt" && ls /data',
    '',
  ].join('\n');
  const repo = createGitRepo(t, { Layerfile: layerfile, 'my file.txt': 'm1\n', 'other file.txt': 'o1\n', '[ab].txt': 'glob1\n', 'a.txt': 'plain a\n' });
  const first = await runOk(engine, repo, 'first run');
  assert.deepEqual(first.ran, steps(0, 3));
  assert.equal(first.output.get(at(3)), 'glob1\n[ab].txt\nmy file.txt\nother file.txt\n', 'the literal name is copied, not what it would match');

  repo.commit('edit the second source', { 'other file.txt': 'o2\n' });
  const other = await runOk(engine, repo, 'after editing "other file.txt"');
  assert.deepEqual(other.ran, [at(2), at(3)]);
  assert.equal(other.output.get(at(2)), 'o2\n');

  repo.commit('edit a file the glob-like name would match, which is not copied', { 'a.txt': 'plain a2\n', 'b.txt': 'new b\n' });
  assert.deepEqual((await runOk(engine, repo, 'after editing a.txt and adding b.txt')).ran, []);

  repo.commit('edit the glob-like file', { '[ab].txt': 'glob2\n' });
  const glob = await runOk(engine, repo, 'after editing [ab].txt');
  assert.deepEqual(glob.ran, [at(3)]);
  assert.equal(glob.output.get(at(3)), 'glob2\n[ab].txt\nmy file.txt\nother file.txt\n');

  repo.commit('edit the first source', { 'my file.txt': 'm2\n' });
  const mine = await runOk(engine, repo, 'after editing "my file.txt"');
  assert.deepEqual(mine.ran, steps(1, 3));
  assert.equal(mine.output.get(at(1)), 'm2\n');
});

test('trap: a listed directory gains only a subdirectory; `ls -R` sees a file added to an existing subdirectory', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const layerfile = 'FROM vm/debian:12\nCOPY . .\nRUN ls src\nRUN ls -R lib\nRUN find meta -type f | sort\n';
  const repo = createGitRepo(t, { Layerfile: layerfile, 'src/a.txt': 'a\n', 'lib/sub/x.txt': 'x\n', 'meta/m.txt': 'm\n' });
  assert.deepEqual((await runOk(engine, repo, 'first run')).ran, steps(0, 3));

  repo.commit('a new subdirectory of src', { 'src/sub/deep/file.txt': 'f\n' });
  const sub = await runOk(engine, repo, 'after adding src/sub');
  assert.deepEqual(sub.ran, steps(1, 3));
  assert.equal(sub.output.get(at(1)), 'a.txt\nsub\n');

  repo.commit('a file in an existing subdirectory of lib', { 'lib/sub/y.txt': 'y\n' });
  const nested = await runOk(engine, repo, 'after adding lib/sub/y.txt');
  assert.deepEqual(nested.ran, steps(2, 3));
  assert.equal(nested.output.get(at(2)), 'lib:\nsub\n\nlib/sub:\nx.txt\ny.txt\n');

  repo.commit('content-only edits: no listing changes', { 'lib/sub/x.txt': 'x2\n', 'src/a.txt': 'a2\n' });
  assert.deepEqual((await runOk(engine, repo, 'after content-only edits')).ran, []);

  repo.commit('a file deep under meta', { 'meta/d/e/f.txt': 'f\n' });
  const deep = await runOk(engine, repo, 'after adding meta/d/e/f.txt');
  assert.deepEqual(deep.ran, [at(3)]);
  assert.equal(deep.output.get(at(3)), 'meta/d/e/f.txt\nmeta/m.txt\n');
});

test('trap: a file deleted, re-added, changed; --commit back to older commits restores the right chain', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const layerfile = ['FROM vm/debian:12', 'COPY . .', 'RUN (cat f 2>/dev/null || echo none) | tee /tmp/f-state', 'RUN cat g | tee /tmp/g-state', PROBE, 'RUN cat /tmp/f-state /tmp/g-state && (cat f 2>/dev/null || echo no-f)', ''].join('\n');
  const repo = createGitRepo(t, { Layerfile: layerfile, f: 'one\n', g: 'g1\n' });
  const commitA = repo.git('rev-parse', 'HEAD').trim();
  const probe = (run: Run): string | undefined => run.output.get(at(4));

  const a = await runOk(engine, repo, 'commit A');
  assert.deepEqual(a.ran, steps(0, 4));
  assert.equal(probe(a), 'one\ng1\none\n');

  const commitB = repo.commit('delete f', { f: null });
  const b = await runOk(engine, repo, 'commit B');
  assert.deepEqual(b.ran, steps(1, 4));
  assert.equal(probe(b), 'none\ng1\nno-f\n');

  const commitC = repo.commit('re-add f with its old content, edit g', { f: 'one\n', g: 'g2\n' });
  const c = await runOk(engine, repo, 'commit C');
  assert.deepEqual(c.ran, steps(2, 4), "A's chain: f is as it was there; only g's reader reruns");
  assert.equal(probe(c), 'one\ng2\none\n');

  const commitD = repo.commit('change f', { f: 'two\n' });
  const d = await runOk(engine, repo, 'commit D');
  assert.deepEqual(d.ran, steps(1, 4));
  assert.equal(probe(d), 'two\ng2\ntwo\n');

  for (const [name, commit, expected] of [
    ['B', commitB, 'none\ng1\nno-f\n'],
    ['A', commitA, 'one\ng1\none\n'],
    ['C', commitC, 'one\ng2\none\n'],
    ['D', commitD, 'two\ng2\ntwo\n'],
  ] as const) {
    const back = await runOk(engine, repo, `--commit ${name}`, commit);
    assert.deepEqual(back.ran, steps(3, 4), `--commit ${name}: every step of its own chain is reused`);
    assert.equal(probe(back), expected, `--commit ${name}: the restored state is that commit's`);
  }
});

test('trap: a Layerfile edit in the middle keeps the steps before it and reruns the ones after', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const repo = createGitRepo(t, {
    Layerfile: 'FROM vm/debian:12\nCOPY . .\nRUN cat a.txt | tee /tmp/a\nRUN echo two > /tmp/two\nRUN cat b.txt /tmp/a /tmp/two\n',
    'a.txt': 'a\n',
    'b.txt': 'b\n',
  });
  assert.deepEqual((await runOk(engine, repo, 'first run')).ran, steps(0, 3));

  repo.commit('edit the middle step', { Layerfile: 'FROM vm/debian:12\nCOPY . .\nRUN cat a.txt | tee /tmp/a\nRUN echo TWO > /tmp/two\nRUN cat b.txt /tmp/a /tmp/two\n' });
  const edited = await runOk(engine, repo, 'after editing the middle');
  assert.deepEqual(edited.ran, [at(2), at(3)]);
  assert.equal(edited.output.get(at(3)), 'b\na\nTWO\n');
  assert.match(await reason(engine, edited, 2), /Layerfile changed/);

  repo.commit('insert a step in the middle', { Layerfile: 'FROM vm/debian:12\nCOPY . .\nRUN cat a.txt | tee /tmp/a\nENV X=inserted\nRUN echo TWO $X > /tmp/two\nRUN cat b.txt /tmp/a /tmp/two\n' });
  const inserted = await runOk(engine, repo, 'after inserting a line');
  assert.deepEqual(inserted.ran, steps(2, 4));
  assert.equal(inserted.output.get(at(4)), 'b\na\nTWO inserted\n');

  repo.commit('edit a.txt, read before the edited lines', { 'a.txt': 'a2\n' });
  const reads = await runOk(engine, repo, 'after editing a.txt');
  assert.deepEqual(reads.ran, steps(1, 4));
  assert.equal(reads.output.get(at(4)), 'b\na2\nTWO inserted\n');
});

test('trap: RUN REPEATABLE after a step whose read file changes sees that step\'s new effects', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const layerfile = 'FROM vm/debian:12\nCOPY . .\nRUN cat a.txt > /tmp/from-a\nRUN REPEATABLE cat b.txt /tmp/from-a >> /tmp/log; tail -n 2 /tmp/log\n';
  const repo = createGitRepo(t, { Layerfile: layerfile, 'a.txt': 'a1\n', 'b.txt': 'b1\n' });
  assert.equal((await runOk(engine, repo, 'first run')).output.get(at(2)), 'b1\na1\n');

  repo.commit('edit b.txt: the repeatable step runs on its previous state', { 'b.txt': 'b2\n' });
  const b = await runOk(engine, repo, 'after editing b.txt');
  assert.deepEqual(b.ran, [at(2)]);
  assert.equal(b.output.get(at(2)), 'b2\na1\n');

  repo.commit('edit a.txt, read by the step before', { 'a.txt': 'a2\n' });
  const a = await runOk(engine, repo, 'after editing a.txt');
  assert.deepEqual(a.ran, [at(1), at(2)]);
  assert.equal(a.output.get(at(2)), 'b2\na2\n', 'the repeatable step sees what the rerun step wrote, not the state from before it');
});

test('trap: the working tree — untracked files count, ignored files never, and un-ignoring one is a change', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const layerfile = 'FROM vm/debian:12\nCOPY . .\nRUN cat untracked.txt 2>/dev/null || echo no-untracked\nRUN cat ignored.txt 2>/dev/null || echo no-ignored\n';
  const repo = createGitRepo(t, { Layerfile: layerfile, '.gitignore': 'ignored.txt\n' });
  repo.write({ 'untracked.txt': 'u1\n', 'ignored.txt': 'i1\n' });
  const first = await runOk(engine, repo, 'first run of the working tree', null);
  assert.deepEqual(first.ran, steps(0, 2));
  assert.equal(first.output.get(at(1)), 'u1\n');
  assert.equal(first.output.get(at(2)), 'no-ignored\n');

  repo.write({ 'ignored.txt': 'i2\n' });
  assert.deepEqual((await runOk(engine, repo, 'after editing the ignored file', null)).ran, []);

  repo.write({ 'untracked.txt': 'u2\n' });
  const untracked = await runOk(engine, repo, 'after editing the untracked file', null);
  assert.deepEqual(untracked.ran, [at(1), at(2)]);
  assert.equal(untracked.output.get(at(1)), 'u2\n');

  repo.write({ '.gitignore': '' });
  const unignored = await runOk(engine, repo, 'after un-ignoring ignored.txt', null);
  assert.deepEqual(unignored.ran, [at(2)]);
  assert.equal(unignored.output.get(at(2)), 'i2\n');

  const committed = await runOk(engine, repo, 'HEAD, which has neither file');
  assert.deepEqual(committed.ran, [at(1), at(2)]);
  assert.equal(committed.output.get(at(1)), 'no-untracked\n');
  assert.equal(committed.output.get(at(2)), 'no-ignored\n');
});

test('trap: the working tree — an edit made in the same second as the commit (same size) is not missed', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const repo = createGitRepo(t, { Layerfile: 'FROM vm/debian:12\nCOPY . .\nRUN cat f.txt\n', 'f.txt': 'aaa\n' });
  assert.deepEqual((await runOk(engine, repo, 'first run')).ran, steps(0, 1));

  // git's index trusts a file's size and mtime (seconds) unless the file changed in the same second
  // the index was written ("racily clean"). Commit, then edit with the same size within that second.
  let seen = '';
  for (let attempt = 0; ; attempt++) {
    assert.ok(attempt < 20, `could not commit and edit within one second (last mtimes: ${seen})`);
    // Just after the start of a second (file times come from a clock that may lag a few ms behind).
    await sleep(1030 - (Date.now() % 1000));
    repo.commit('commit ccc', { 'f.txt': 'ccc\n' });
    const committed = statSync(join(repo.dir, 'f.txt'));
    repo.write({ 'f.txt': 'bbb\n' });
    const edited = statSync(join(repo.dir, 'f.txt'));
    const index = statSync(join(repo.dir, '.git', 'index'));
    const second = (stat: { mtimeMs: number }): number => Math.floor(stat.mtimeMs / 1000);
    seen = `committed ${committed.mtimeMs}, index ${index.mtimeMs}, edited ${edited.mtimeMs}`;
    if (second(committed) === second(edited) && second(index) === second(edited)) break;
  }
  await sleep(1100 - (Date.now() % 1000)); // the run starts in a later second
  const run = await runOk(engine, repo, 'the working tree with the edit', null);
  assert.deepEqual(run.ran, [at(1)]);
  assert.equal(run.output.get(at(1)), 'bbb\n', 'the run uses the file as it is on disk, not the committed content');
});

test('trap: .gitattributes (eol, export-ignore) never make a fresh copy differ from an incremental one', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const fresh = await createTestEngine(t); // a separate store: every run there copies everything anew
  const layerfile = ['FROM vm/debian:12', 'COPY . .', 'RUN wc -c < a.txt', PROBE, 'RUN od -c a.txt | head -n 1; cat hidden.txt 2>/dev/null || echo no-hidden', ''].join('\n');
  const repo = createGitRepo(t, {
    Layerfile: layerfile,
    '.gitattributes': '*.txt text eol=crlf\nhidden.txt export-ignore\n',
    'a.txt': 'one\n',
    'hidden.txt': 'h1\n',
  });
  const commits: Array<Record<string, string | null>> = [
    {},
    { 'a.txt': 'two\n', 'hidden.txt': 'h2\n' },
    { '.gitattributes': '*.txt text eol=lf\n' },
    { '.gitattributes': null, 'a.txt': 'three\n' },
  ];
  for (const [index, change] of commits.entries()) {
    if (index > 0) repo.commit(`commit ${index}`, change);
    const incremental = await runOk(engine, repo, `incremental run ${index}`);
    const scratch = await fresh.run({ repoDir: repo.dir, commit: 'HEAD', noCache: true });
    assert.equal(scratch.result.status, 'success');
    assert.equal(incremental.output.get(at(3)), scratch.output.get(at(3)), `commit ${index}: the machine holds what a fresh copy holds`);
    if (incremental.ran.includes(at(1))) assert.equal(incremental.output.get(at(1)), scratch.output.get(at(1)), `commit ${index}: step 2 prints what a fresh run prints`);
  }
});

test('trap: a repo file that replaced a file of the base image (or of an earlier step) is deleted: the earlier file is back, as in a fresh run', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  // /root/.profile is Debian's; the repo's .profile replaces it. /root/conf/made.txt is written by a step
  // before the copy and replaced by the repo's conf/made.txt. The probe prints what the machine holds.
  const layerfile = `FROM vm/debian:12\nRUN mkdir -p /root/conf && echo from-step > /root/conf/made.txt\nCOPY . .\nRUN cat keep.txt\n${PROBE}\nRUN head -c 40 /root/.profile; echo; cat /root/conf/made.txt\n`;
  const repo = createGitRepo(t, { Layerfile: layerfile, '.profile': 'repo profile\n', 'conf/made.txt': 'from-repo\n', 'keep.txt': 'k\n' });
  const first = await runOk(engine, repo, 'first run');
  assert.equal(first.output.get(at(4)), 'repo profile\n\nfrom-repo\n');

  repo.git('rm', '-q', '.profile', 'conf/made.txt');
  repo.commit('delete the files that replaced earlier ones');
  const deleted = await runOk(engine, repo, 'after deleting them');
  assert.ok(deleted.ran.includes(at(1)), `the COPY runs again (on the state before it): ${deleted.ran}`);
  assert.match(deleted.output.get(at(4)) ?? '', /^# ~\/\.profile: executed by Bourne-compati\n/, "Debian's .profile is back");
  assert.match(deleted.output.get(at(4)) ?? '', /\nfrom-step\n$/, "the earlier step's file is back");
  assert.match(await reason(engine, deleted, 1), /was in the machine before step 2 \(line 3\) copied over it/);

  // Deleting a file that replaced nothing still just deletes it (no copy rerun).
  repo.commit('add a new file', { 'new.txt': 'n\n' });
  await runOk(engine, repo, 'after adding new.txt');
  repo.git('rm', '-q', 'new.txt');
  repo.commit('delete it again');
  const plain = await runOk(engine, repo, 'after deleting new.txt');
  assert.deepEqual(plain.ran, [at(3), at(4)], 'only the probe');
});
