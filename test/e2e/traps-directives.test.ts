// Cache-correctness traps, third round: how directives interact (CHECKPOINT, USER, WORKDIR, RUN
// BACKGROUND, RUN REPEATABLE, SKIP REMAINING IF, MEMORY, COPY into symlinks, file modes, directories
// git does not track, many files). End to end: real git repos, commits, machines, snapshots, tracing.
// The oracle for each commit: the incremental run's machine state and step outputs equal what a
// from-scratch run (`noCache`, in a separate store) of the same commit gives, and a change a step
// depended on reruns it. A `BUILD ENV JOB_ID` line before the last "probe" step makes the probe run in
// every run (JOB_ID differs each time), in whatever state the run restored.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import type { RunOptions } from '../../src/engine/runRepository.js';
import { plan } from '../../src/plan/planner.js';
import type { CopyRecord, SourceChange } from '../../src/plan/types.js';
import { added, chain, deleted, planSteps, symlink, trace } from '../plan/builders.js';
import { requireRoot } from '../helpers/env.js';
import { createGitRepo, createTestEngine, stepId as at, stepIds as steps, type TestEngine, type TestRepo as Repo, type TestRun as Run } from '../helpers/engine.js';

const TIMEOUT = 300_000;
const PROBE = 'BUILD ENV JOB_ID';
const ROOT = 'main-layerfile';

const failures = (run: Run): string => [...run.result.outcomes.values()].map((o) => o.message).filter(Boolean).join('; ');

/** What a step printed, without the base image's preparation lines (reported as output of step 0). */
function printed(run: Run, step: number, runner = ROOT): string | undefined {
  return run.output.get(at(step, runner))?.split(/(?<=\n)/).filter((line) => !line.startsWith('vm/debian:12: ')).join('');
}

/** The recorded explanation of a step (what `strata why` shows), '' when none. */
async function reason(engine: TestEngine, run: Run, step: number, runner = ROOT): Promise<string> {
  const record = await engine.engine.deps.runLog.getRun(run.result.runId);
  return record?.runners.find((r) => r.runner === runner)?.steps.find((s) => s.index === step)?.reason?.message ?? '';
}

interface Engines {
  /** Keeps its cache across the case's commits. */
  incremental: TestEngine;
  /** A separate store that only ever runs with noCache: its runs never feed the incremental cache. */
  fresh: TestEngine;
}

async function engines(t: TestContext): Promise<Engines> {
  return { incremental: await createTestEngine(t), fresh: await createTestEngine(t) };
}

/**
 * Runs HEAD incrementally and from scratch; both must succeed, and every step the incremental run
 * executed (the probe always does) must print what the fresh run printed at that step.
 */
async function compare(e: Engines, repo: Repo, what: string, options: Partial<RunOptions> = {}): Promise<{ run: Run; scratch: Run }> {
  const run = await e.incremental.run({ repoDir: repo.dir, commit: 'HEAD', ...options });
  assert.equal(run.result.status, 'success', `${what}: the incremental run did not succeed: ${failures(run)}`);
  const scratch = await e.fresh.run({ repoDir: repo.dir, commit: 'HEAD', noCache: true });
  assert.equal(scratch.result.status, 'success', `${what}: the fresh run did not succeed: ${failures(scratch)}`);
  for (const id of run.ran) {
    const [runner, step] = id.split('#') as [string, string];
    assert.equal(printed(run, Number(step), runner), printed(scratch, Number(step), runner), `${what}: ${id} prints what a fresh run prints`);
  }
  return { run, scratch };
}

test('trap: a file added by a later commit over a base-image file (or a directory an earlier step made), then deleted', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const e = await engines(t);
  // The first COPY's tree has neither .bashrc nor cache/: the copy shadowed nothing. Commit 2 adds them
  // (re-applied over Debian's /root/.bashrc and the step's /root/cache); commit 3 deletes them again.
  const layerfile = `FROM vm/debian:12\nRUN mkdir -p /root/cache && echo pre > /root/cache/pre\nCOPY . .\nRUN cat y\n${PROBE}\nRUN head -c 24 /root/.bashrc; echo; ls /root/cache\n`;
  const repo = createGitRepo(t, { Layerfile: layerfile, y: 'y1\n' });
  const first = await compare(e, repo, 'commit 1');
  assert.equal(printed(first.run, 4), '# ~/.bashrc: executed by\npre\n');

  repo.commit('add .bashrc and cache/f, edit y', { '.bashrc': 'repo bashrc\n', 'cache/f': 'f\n', y: 'y2\n' });
  const second = await compare(e, repo, 'commit 2');
  assert.deepEqual(second.run.ran, steps(2, 4), 'y was read by step 3');
  assert.equal(printed(second.run, 4), 'repo bashrc\n\nf\npre\n');

  // Commit 1's chain would rerun y's reader (y differs again): commit 2's chain restores deeper.
  repo.commit('delete them again', { '.bashrc': null, 'cache/f': null });
  const third = await compare(e, repo, 'commit 3');
  assert.equal(printed(third.run, 4), '# ~/.bashrc: executed by\npre\n', "Debian's .bashrc and the step's directory are back, as in a fresh run");
});

test('trap: COPY into a symlink that a later step retargets (a "current release" link)', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const e = await engines(t);
  const layerfile = [
    'FROM vm/debian:12',
    'RUN mkdir -p /srv/v1 /srv/v2 && ln -s /srv/v1 /srv/current',
    'COPY . /srv/current',
    'RUN cat /srv/current/keep',
    'RUN ln -sfn /srv/v2 /srv/current',
    PROBE,
    'RUN cat /srv/v1/x; ls /srv/v2; cat /srv/current/x 2>/dev/null || echo no-x',
    '',
  ].join('\n');
  const repo = createGitRepo(t, { Layerfile: layerfile, x: 'x1\n', keep: 'k\n' });
  const first = await compare(e, repo, 'commit 1');
  assert.equal(printed(first.run, 5), 'x1\nno-x\n');

  repo.commit('edit x, which no step read', { x: 'x2\n' });
  const second = await compare(e, repo, 'commit 2');
  assert.deepEqual(second.run.ran, [at(4), at(5)], 'only the probe runs');
  assert.equal(printed(second.run, 5), 'x2\nno-x\n', 'x is updated where the copy put it, not where the link points now');
});

test('trap: two COPYs onto one directory, the second through a symlink to it', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const e = await engines(t);
  const layerfile = ['FROM vm/debian:12', 'COPY one /app', 'RUN ln -s /app /link', 'COPY two /link', 'RUN cat /app/k', PROBE, 'RUN cat /app/f; ls /app', ''].join('\n');
  const repo = createGitRepo(t, { Layerfile: layerfile, 'one/f': 'f from one\n', 'one/k': 'k\n', 'two/f': 'f from two\n', 'two/g': 'g\n' });
  const first = await compare(e, repo, 'commit 1');
  assert.equal(printed(first.run, 5), 'f from two\nf\ng\nk\n');

  repo.commit('edit the file the second copy overwrote', { 'one/f': 'f from one, v2\n' });
  const second = await compare(e, repo, 'commit 2');
  assert.equal(printed(second.run, 5), 'f from two\nf\ng\nk\n', 'the second copy still wins');

  repo.commit('delete the overwriting file', { 'two/f': null });
  const third = await compare(e, repo, 'commit 3');
  assert.equal(printed(third.run, 5), 'f from one, v2\nf\ng\nk\n', "the first copy's file shows again");
});

test('trap: a COPY through a symlink from the repo, and the commit retargets that symlink', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const e = await engines(t);
  // /root/link comes from the first COPY; the second COPY lands in /root/a through it. Retargeting the
  // link must rerun the second copy, so its files land in /root/b as in a fresh run.
  const layerfile = ['FROM vm/debian:12', 'COPY tree .', 'COPY extra link/', 'RUN cat keep', PROBE, 'RUN ls /root/a /root/b', ''].join('\n');
  const repo = createGitRepo(t, { Layerfile: layerfile, 'tree/a/in-a': '1\n', 'tree/b/in-b': '1\n', 'tree/keep': 'k\n', 'extra/e': 'e\n' });
  symlinkSync('a', join(repo.dir, 'tree/link'));
  repo.commit('the link');
  const first = await compare(e, repo, 'commit 1');
  assert.equal(printed(first.run, 4), '/root/a:\ne\nin-a\n\n/root/b:\nin-b\n');

  rmSync(join(repo.dir, 'tree/link'));
  symlinkSync('b', join(repo.dir, 'tree/link'));
  repo.commit('retarget the link');
  const second = await compare(e, repo, 'commit 2');
  assert.equal(printed(second.run, 4), '/root/a:\nin-a\n\n/root/b:\ne\nin-b\n');
  assert.ok(second.run.ran.includes(at(1)), `the copy through the link runs again: ${second.run.ran}`);
});

test('trap: CHECKPOINT disabled around USER, chown and a COPY as that user; a named CHECKPOINT with fromCheckpoint', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const e = await engines(t);
  const layerfile = [
    'FROM vm/debian:12',
    'RUN useradd -m bob',
    'COPY . /app',
    'CHECKPOINT disabled',
    'RUN chown -R bob /app/own && cat /app/a > /tmp/a-saw',
    'USER bob',
    'COPY extra /home/bob/extra',
    'RUN cat /home/bob/extra/e > /tmp/e-saw && echo made-by-bob > /home/bob/mine',
    'CHECKPOINT tested',
    'RUN echo done',
    PROBE,
    "RUN cd / && stat -c '%n %U %a' /app/own /app/own/* /app/a /app/b /home/bob/extra /home/bob/extra/* /home/bob/mine && cat /tmp/a-saw /tmp/e-saw",
    '',
  ].join('\n');
  const repo = createGitRepo(t, { Layerfile: layerfile, a: 'a1\n', b: 'b1\n', 'own/o': 'o\n', 'extra/e': 'e1\n' });
  const probe = (run: Run) => printed(run, 8);
  const first = await compare(e, repo, 'commit 1');
  assert.match(probe(first.run) ?? '', /^\/app\/own bob 755\n\/app\/own\/o bob 644\n\/app\/a root 644\n/);

  repo.commit('edit the file bob\'s step read (inside the disabled region)', { 'extra/e': 'e2\n' });
  const second = await compare(e, repo, 'commit 2');
  assert.deepEqual(second.run.ran, steps(2, 8), 'restores the COPY (the last snapshot before it), reruns the rest');

  repo.commit('a new file under the chowned directory', { 'own/new': 'n\n' });
  const third = await compare(e, repo, 'commit 3');
  assert.match(probe(third.run) ?? '', /\/app\/own\/new bob 644\n/, 'owned by bob, as after a fresh chown');
  assert.match(await reason(e.incremental, third.run, 2), /own/);

  repo.commit('a file no step read', { b: 'b2\n' });
  const fourth = await compare(e, repo, 'commit 4');
  assert.deepEqual(fourth.run.ran, [at(7), at(8)], 'only the probe');

  repo.commit('a new file in bob\'s copy', { 'extra/new': 'n\n' });
  const fifth = await compare(e, repo, 'commit 5, from CHECKPOINT tested', { fromCheckpoint: 'tested' });
  // Nothing between the COPY and the named CHECKPOINT kept a snapshot: the restore point is the COPY's.
  assert.deepEqual(fifth.run.ran, steps(2, 8), 'the cache up to the last snapshot before the named CHECKPOINT');
});

test('trap: RUN BACKGROUND writes into the COPY destination all the time; restores stay consistent', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const e = await engines(t);
  // conf-seen is replaced whole (cp to a temporary name, then rename): a step reading it mid-copy would
  // see it empty, in a fresh run as in a restored one.
  const loop = "bash -c 'while true; do echo tick >> /app/log; cp /app/conf /tmp/conf-seen.new && mv /tmp/conf-seen.new /tmp/conf-seen; sleep 0.05; done'";
  const layerfile = [
    'FROM vm/debian:12',
    'COPY . /app',
    `RUN BACKGROUND ${loop}`,
    'RUN cat /app/a',
    'RUN test -s /app/log && echo log-written',
    PROBE,
    // How many times the loop was started (a restore must not start it twice), compared with a fresh
    // run: processes running it whose parent does not, so a child forked a moment before its exec
    // (which still has the loop's command line) does not count.
    "RUN cat /app/a /tmp/conf-seen && ps -eo pid=,ppid=,args= | awk '/[e]cho tick/ { loop[$1] = $2 } END { n = 0; for (pid in loop) if (!(loop[pid] in loop)) n++; print n }' && test -s /app/log && echo log-written",
    '',
  ].join('\n');
  const repo = createGitRepo(t, { Layerfile: layerfile, a: 'a1\n', conf: 'c1\n', other: 'o1\n' });
  const first = await compare(e, repo, 'commit 1');
  const processes = /^a1\nc1\n(\d+)\nlog-written\n$/.exec(printed(first.run, 5) ?? '')?.[1];
  assert.ok(processes !== undefined && Number(processes) > 0, `the probe: ${printed(first.run, 5)}`);

  repo.commit('edit a', { a: 'a2\n' });
  const second = await compare(e, repo, 'commit 2');
  assert.deepEqual(second.run.ran, steps(2, 5), 'restored after the background step (re-launched), a\'s reader reruns');
  assert.equal(printed(second.run, 5), `a2\nc1\n${processes}\nlog-written\n`);

  repo.commit('edit the file the background loop reads', { conf: 'c2\n' });
  const third = await compare(e, repo, 'commit 3');
  assert.ok(third.run.ran.includes(at(1)), `the background step reruns: ${third.run.ran}`);
  assert.equal(printed(third.run, 5), `a2\nc2\n${processes}\nlog-written\n`);

  repo.commit('edit an unrelated file', { other: 'o2\n' });
  assert.equal(printed((await compare(e, repo, 'commit 4')).run, 5), `a2\nc2\n${processes}\nlog-written\n`);
});

test('trap: RUN REPEATABLE between other steps keeps its state over commits that do not rerun it', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  // State accumulates across runs of the REPEATABLE step only, so the oracle is the count of its runs.
  const layerfile = 'FROM vm/debian:12\nCOPY . /app\nRUN REPEATABLE cat /app/r >> /root/state; wc -l < /root/state\nRUN cat /app/x /root/state\n';
  const repo = createGitRepo(t, { Layerfile: layerfile, r: 'r1\n', x: 'x1\n', u: 'u1\n' });
  const run = async (what: string): Promise<Run> => {
    const result = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
    assert.equal(result.result.status, 'success', `${what}: ${failures(result)}`);
    return result;
  };
  assert.equal(printed(await run('commit 1'), 1), '1\n');

  repo.commit('edit the file the step after it reads', { x: 'x2\n' });
  const x = await run('commit 2');
  assert.deepEqual(x.ran, [at(2)]);
  assert.equal(printed(x, 2), 'x2\nr1\n');

  repo.commit('edit an unread file', { u: 'u2\n' });
  assert.deepEqual((await run('commit 3')).ran, []);

  repo.commit('edit the file it reads', { r: 'r2\n' });
  const r = await run('commit 4');
  assert.deepEqual(r.ran, [at(1), at(2)]);
  assert.equal(printed(r, 1), '2\n', 'runs on its previous state');
  assert.equal(printed(r, 2), 'x2\nr1\nr2\n');
});

test('trap: SKIP REMAINING IF toggled by an ENV line across commits, seen through a child; MEMORY changed', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const e = await engines(t);
  const layerfile = (memory: string, mode: string) =>
    `FROM vm/debian:12\nMEMORY ${memory}\nCOPY . /app\nRUN cat /app/a > /root/a\nENV MODE=${mode}\nSKIP REMAINING IF MODE=quick\nRUN cat /app/x > /root/x\n`;
  const child = `FROM ..\n${PROBE}\nRUN cat /root/a; cat /root/x 2>/dev/null || echo no-x; cat /app/x; echo "$MODE"\n`;
  const repo = createGitRepo(t, { Layerfile: layerfile('512M', 'quick'), 'child/Layerfile': child, a: 'a1\n', x: 'x1\n' });
  const probe = (run: Run) => printed(run, 1, 'child');
  assert.equal(probe((await compare(e, repo, 'commit 1')).run), 'a1\nno-x\nx1\nquick\n');

  repo.commit('full mode', { Layerfile: layerfile('512M', 'full') });
  const full = await compare(e, repo, 'commit 2');
  assert.equal(probe(full.run), 'a1\nx1\nx1\nfull\n');
  assert.ok(!full.run.ran.includes(at(1)), 'the steps before the ENV line are cached');

  repo.commit('quick mode again, and x edited', { Layerfile: layerfile('512M', 'quick'), x: 'x2\n' });
  assert.equal(probe((await compare(e, repo, 'commit 3')).run), 'a1\nno-x\nx2\nquick\n');

  repo.commit('full mode again', { Layerfile: layerfile('512M', 'full') });
  assert.equal(probe((await compare(e, repo, 'commit 4')).run), 'a1\nx2\nx2\nfull\n');

  repo.commit('another MEMORY', { Layerfile: layerfile('256M', 'full') });
  const memory = await compare(e, repo, 'commit 5');
  assert.deepEqual(memory.run.ran, [...steps(0, 1, 'child'), ...steps(0, 3)], 'MEMORY is in every key: the whole Layerfile reruns');
});

test('trap: directories a restore creates get the modes a fresh COPY gives them, whatever the umask of strata', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const e = await engines(t);
  // A fresh COPY extracts directories at 0755 (git archive, tar as root); a restore creates the
  // directories of new paths itself. Under umask 077 (hardened hosts, some sudo setups) they would be
  // 0700, and a non-root USER could not read them in the incremental run only.
  const umask = process.umask(0o077);
  t.after(() => process.umask(umask));
  const layerfile = ['FROM vm/debian:12', 'COPY . /app', 'USER bob', 'RUN cat /app/keep', PROBE, "RUN stat -c '%n %a' /app/sub /app/sub/* /app/new /app/new/* 2>&1; cat /app/new/deep/f 2>&1; true", ''].join('\n');
  const repo = createGitRepo(t, { Layerfile: layerfile, keep: 'k\n', 'sub/s': 's\n' });
  await compare(e, repo, 'commit 1');

  repo.commit('new directories', { 'new/deep/f': 'f\n', 'sub/inner/g': 'g\n' });
  const second = await compare(e, repo, 'commit 2');
  assert.deepEqual(second.run.ran, [at(3), at(4)], 'only the probe');
  assert.match(printed(second.run, 4) ?? '', /\/app\/new 755\n\/app\/new\/deep 755\nf\n$/);
});

test('trap: a script made executable by a commit and run directly; a symlink in the repo that points outside the copy', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const e = await engines(t);
  // sub/link -> ../outside.txt dangles in the machine (/outside.txt is not copied): editing outside.txt
  // changes nothing there; retargeting the link does.
  const layerfile = ['FROM vm/debian:12', 'COPY sub /app', 'RUN cd /app && (./run.sh 2>/dev/null || echo noexec)', 'RUN cat /app/link 2>/dev/null || echo dangling', PROBE, "RUN stat -c '%a' /app/run.sh && readlink /app/link", ''].join('\n');
  const repo = createGitRepo(t, { Layerfile: layerfile, 'sub/run.sh': '#!/bin/sh\necho ran\n', 'sub/in.txt': 'in1\n', 'outside.txt': 'out1\n' });
  symlinkSync('../outside.txt', join(repo.dir, 'sub/link'));
  repo.commit('the link');
  const first = await compare(e, repo, 'commit 1');
  assert.deepEqual([1, 2, 4].map((s) => printed(first.run, s)), ['noexec\n', 'dangling\n', '644\n../outside.txt\n']);

  chmodSync(join(repo.dir, 'sub/run.sh'), 0o755);
  repo.commit('chmod +x');
  const exec = await compare(e, repo, 'commit 2');
  assert.deepEqual(exec.run.ran, [at(1), at(2), at(3), at(4)]);
  assert.equal(printed(exec.run, 1), 'ran\n');

  repo.commit('edit the file outside the copy', { 'outside.txt': 'out2\n' });
  assert.deepEqual((await compare(e, repo, 'commit 3')).run.ran, [at(3), at(4)], 'only the probe');

  rmSync(join(repo.dir, 'sub/link'));
  symlinkSync('in.txt', join(repo.dir, 'sub/link'));
  repo.commit('retarget the link into the copy');
  const retarget = await compare(e, repo, 'commit 4');
  assert.deepEqual(retarget.run.ran, [at(2), at(3), at(4)]);
  assert.equal(printed(retarget.run, 2), 'in1\n');

  repo.commit('edit the file behind the link', { 'sub/in.txt': 'in2\n' });
  const behind = await compare(e, repo, 'commit 5');
  assert.deepEqual(behind.run.ran, [at(2), at(3), at(4)]);
  assert.equal(printed(behind.run, 2), 'in2\n');
});

test('trap: directories git does not track: a step makes them under the COPY destination, then commits add files there', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const e = await engines(t);
  const layerfile = [
    'FROM vm/debian:12',
    'COPY . /app',
    'RUN mkdir -p /app/empty /app/gen && echo generated > /app/gen/out',
    'RUN ls /app',
    PROBE,
    "RUN cd /app && find . -path ./.git -prune -o -print | sort && cat gen/out && stat -c '%n %a' empty",
    '',
  ].join('\n');
  const repo = createGitRepo(t, { Layerfile: layerfile, keep: 'k\n' });
  await compare(e, repo, 'commit 1');

  repo.commit('a file in the directory the step made', { 'empty/f': 'f\n' });
  const added = await compare(e, repo, 'commit 2');
  assert.deepEqual(added.run.ran, steps(1, 4), 'the step that made the directory reruns');

  repo.commit('a repo file at the path the step writes', { 'gen/out': 'from the repo\n' });
  const overwritten = await compare(e, repo, 'commit 3');
  assert.match(printed(overwritten.run, 4) ?? '', /\ngenerated\n/, "the step's output, not the repo file");

  repo.commit('delete both again', { 'empty/f': null, 'gen/out': null });
  const deleted = await compare(e, repo, 'commit 4');
  assert.match(printed(deleted.run, 4) ?? '', /\ngenerated\nempty 755\n$/);
});

test('trap: 300 copied files, one edited: a step that reads them all and one that only lists them', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const e = await engines(t);
  const files: Record<string, string> = {};
  for (let i = 0; i < 300; i++) files[`files/f${String(i).padStart(3, '0')}`] = `content ${i}\n`;
  // ls -l without the times: mode, links, owner, group, size, name.
  const list = "ls -l /app/files | awk 'NR > 1 {print $1, $2, $3, $4, $5, $9}'";
  const layerfile = ['FROM vm/debian:12', 'COPY . /app', 'RUN cat /app/files/* | md5sum', `RUN ${list} | md5sum`, 'RUN cat /app/keep', PROBE, `RUN cat /app/files/* | md5sum && ${list} | md5sum && cat /app/files/f150`, ''].join('\n');
  const repo = createGitRepo(t, { Layerfile: layerfile, keep: 'k\n', ...files });
  await compare(e, repo, 'commit 1');

  repo.commit('edit one file, same size', { 'files/f150': 'CONTENT 150\n' });
  const edited = await compare(e, repo, 'commit 2');
  assert.deepEqual(edited.run.ran, steps(1, 5), 'the reader and the lister (ls -l stats every file) rerun');
  assert.match(printed(edited.run, 5) ?? '', /\nCONTENT 150\n$/);

  chmodSync(join(repo.dir, 'files/f007'), 0o755);
  repo.commit('chmod one file');
  const mode = await compare(e, repo, 'commit 3');
  assert.ok(mode.run.ran.includes(at(2)), `the lister reruns: ${mode.run.ran}`);

  repo.commit('delete one file, add another', { 'files/f299': null, 'files/g000': 'new\n' });
  const membership = await compare(e, repo, 'commit 4');
  assert.deepEqual(membership.run.ran, steps(1, 5));
});

test('planner: what was in the machine before a directory COPY (preexisting), and a COPY that went through a symlink (requestedDest)', () => {
  // The pure rules behind the cases above, without machines. Steps: a RUN, two COPYs, a reader.
  const firstRerun = (copies: CopyRecord[], later: CopyRecord[], changes: SourceChange[]): number | null => {
    const steps = [
      { key: 'k0', line: 2 },
      { key: 'k1', line: 3, kind: 'copy' as const, copies },
      { key: 'k2', line: 4, kind: 'copy' as const, copies: later },
      { key: 'k3', line: 5, trace: trace({ read: ['/root/keep'] }) },
    ];
    const decision = plan({ steps: planSteps(steps), candidates: [{ chain: chain('c', steps), changes }] });
    assert.equal(decision.kind, 'restore');
    return decision.kind === 'restore' ? decision.firstRerun : -1;
  };
  const root: CopyRecord = { source: '', dest: '/root', preexisting: ['.bashrc', 'cache'] };
  // A deletion of a path that was in the machine before the copy (itself, or under an entry that was): the copy reruns.
  assert.equal(firstRerun([root], [], [deleted('.bashrc')]), 1);
  assert.equal(firstRerun([root], [], [deleted('cache/f')]), 1);
  // Other deletions, and additions, are re-applied.
  assert.equal(firstRerun([root], [], [deleted('other')]), null);
  assert.equal(firstRerun([root], [], [deleted('cachet')]), null);
  assert.equal(firstRerun([root], [], [added('.bashrc')]), null);
  // A later copy that went through /root/link: a change at the link reruns that copy.
  const retarget: SourceChange = { path: 'link', before: symlink('a'), after: symlink('b') };
  assert.equal(firstRerun([{ source: '', dest: '/root' }], [{ source: 'extra', dest: '/root/a', requestedDest: '/root/link' }], [retarget]), 2);
  assert.equal(firstRerun([{ source: '', dest: '/root' }], [{ source: 'extra', dest: '/root/a' }], [retarget]), null);
});
