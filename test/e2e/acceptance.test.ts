// Acceptance: what a team migrating real Layerfiles from the hosted product expects, end to end through
// the real CLI as a process (the same entry as bin/strata.js, on the sources) on real git repos, real
// machines and snapshots. A web app with apt, a build, a running server and a preview; a base with two
// children and a WAIT; the error messages of common mistakes; the --json event stream.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createGitRepo } from '../helpers/engine.js';
import { jsonEvents as events, runStrata, startStrata, stopAfterTest, type JsonEvent } from '../helpers/cli.js';
import { requireRoot } from '../helpers/env.js';
import { temporaryStore } from '../helpers/store.js';

const webappExample = fileURLToPath(new URL('../../examples/webapp', import.meta.url));
const TIMEOUT = 300_000;
/** A stack frame line ("    at fn (file:1:2)"): a user must never see one. */
const STACK_FRAME = /^\s+at /m;

/** The "N step(s) ran, M cached" summary of a plain run. */
function summary(stdout: string): { ran: number; cached: number } {
  const match = /^success in \S+: (\d+) step\(s\) ran, (\d+) cached$/m.exec(stdout);
  assert.ok(match, `no success summary in:\n${stdout}`);
  return { ran: Number(match[1]), cached: Number(match[2]) };
}

/** `runner#step` (0-based) of the steps that ran, from JSON events. */
const ranSteps = (list: JsonEvent[]): string[] => list.filter((e) => e.type === 'step-status' && (e.status === 'done' || e.status === 'failed')).map((e) => `${e.runner}#${e.step}`);
const output = (list: JsonEvent[], runner: string, step: number): string =>
  list.filter((e) => e.type === 'step-output' && e.runner === runner && e.step === step).map((e) => e.data ?? '').join('');

test('a web app: apt, build, RUN BACKGROUND server, EXPOSE WEBSITE preview; README edits rerun nothing, source edits rerun from the build', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const processes = stopAfterTest(t);
  const store = await temporaryStore(t, 'strata-accept-web-');
  const repo = createGitRepo(t, {});
  cpSync(webappExample, repo.dir, { recursive: true });
  repo.commit('the web app');

  // First run: every step runs, the smoke test reaches the background server, and the final state is
  // served at the printed preview URL until `strata stop`.
  const serving = processes.track(startStrata(['run', '--plain', '--store', store, '--commit', 'HEAD', repo.dir]));
  const preview = await serving.waitFor(/^preview: (http:\/\/127\.0\.0\.1:\d+\/) -> main-layerfile localhost:8000$/m, 240_000);
  const first = serving.stdout();
  assert.deepEqual(summary(first), { ran: 7, cached: 0 });
  assert.match(first, /^\[main-layerfile:5\] built dist\/index\.html: Hello strata 1\.0\.0$/m, 'jq from apt ran in the build');
  assert.match(first, /^\[main-layerfile:7\] <h1>Hello strata 1\.0\.0<\/h1>$/m, 'the smoke test reached the server left by RUN BACKGROUND');
  assert.doesNotMatch(first, /no cached run of this Layerfile/, 'a first run does not explain every step with the same sentence');
  const page = await fetch(preview[1] as string);
  assert.equal(page.status, 200);
  assert.match(await page.text(), /<h1>Hello strata 1\.0\.0<\/h1>\n<p>built for ci<\/p>/, 'the preview serves the running machine');
  const stop = await runStrata(['stop', '--store', store]);
  assert.equal(stop.code, 0, stop.stderr);
  assert.equal(await serving.exited, 0, serving.stderr());

  // Only the README: nothing any step observed changed.
  repo.commit('docs', { 'README.md': 'a new README\n' });
  const docs = await runStrata(['run', '--plain', '--no-expose', '--store', store, '--commit', 'HEAD', repo.dir]);
  assert.equal(docs.code, 0, docs.stderr);
  assert.deepEqual(summary(docs.stdout), { ran: 0, cached: 7 });
  assert.match(docs.stdout, /^\[main-layerfile\] all 7 step\(s\) cached$/m);
  assert.equal((docs.stdout.match(/restored snapshot/g) ?? []).length, 1, `the restored snapshot is named once, not once per cached step:\n${docs.stdout}`);

  // The page source: the build step and what follows it rerun, apt and the COPY stay cached.
  repo.commit('new title', { 'src/index.html': readFileSync(join(webappExample, 'src/index.html'), 'utf8').replace('<h1>{{title}}', '<h1>New {{title}}') });
  const edited = await runStrata(['run', '--json', '--no-expose', '--store', store, '--commit', 'HEAD', repo.dir]);
  assert.equal(edited.code, 0, edited.stderr);
  const list = events(edited.stdout);
  assert.deepEqual(ranSteps(list), ['main-layerfile#4', 'main-layerfile#5', 'main-layerfile#6']);
  assert.deepEqual(list.filter((e) => e.type === 'step-status' && e.status === 'cached').map((e) => e.step), [0, 1, 2, 3]);
  assert.equal(output(list, 'main-layerfile', 6), '<h1>New Hello strata 1.0.0</h1>\n', 'the restarted server serves the rebuilt page');

  const why = await runStrata(['why', '--store', store, repo.dir]);
  assert.equal(why.code, 0, why.stderr);
  assert.match(why.stdout, /5\. line 13: RUN \.\/build\.sh — ran .*\n\s+because src\/index\.html content changed \(read by step 5, line 13\)/);
  assert.match(why.stdout, /6\. line 14: RUN BACKGROUND perl server\.pl "\$PORT" dist — ran .*\n\s+because step 5 \(line 13\) reruns/);
  assert.doesNotMatch(why.stdout, /because reruns because/);
});

test('a base and two children, one WAITing on the other: progress names each runner; why explains each rerun with a path', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const store = await temporaryStore(t, 'strata-accept-dag-');
  const repo = createGitRepo(t, {
    'base/Layerfile': 'FROM vm/debian:12\nENV APP=/srv\nRUN mkdir -p /srv && echo base > /srv/BASE\n',
    'api/Layerfile': 'FROM ../base\nWORKDIR /srv/api\nCOPY . .\nRUN cat main.txt > built.txt && cat /srv/BASE\nRUN cat built.txt test.txt\n',
    'api/main.txt': 'api v1\n',
    'api/test.txt': 'api tests\n',
    'web/Layerfile': 'FROM ../base\nWAIT ../api\nWORKDIR /srv/web\nCOPY . .\nRUN cat page.html\n',
    'web/page.html': '<p>web v1</p>\n',
    'README.md': 'three Layerfiles\n',
  });

  const first = await runStrata(['run', '--plain', '--store', store, '--commit', 'HEAD', repo.dir]);
  assert.equal(first.code, 0, first.stderr);
  assert.deepEqual(summary(first.stdout), { ran: 9, cached: 0 });
  for (const runner of ['base', 'api', 'web']) {
    assert.match(first.stdout, new RegExp(`^\\[${runner}\\] running all \\d step\\(s\\)$`, 'm'));
    assert.match(first.stdout, new RegExp(`^\\[${runner}\\] success$`, 'm'));
  }
  assert.match(first.stdout, /^\[api:3\] base$/m, 'the child sees its parent\'s machine');
  // FROM: the children start after base; WAIT: web starts only after api succeeded.
  const at = (line: string): number => first.stdout.indexOf(line);
  assert.ok(at('[base] success') < at('[api] running all'), first.stdout);
  assert.ok(at('[api] success') < at('[web] running all'), first.stdout);

  repo.commit('api source and docs', { 'api/main.txt': 'api v2\n', 'README.md': 'edited\n' });
  const second = await runStrata(['run', '--plain', '--store', store, '--commit', 'HEAD', repo.dir]);
  assert.equal(second.code, 0, second.stderr);
  assert.deepEqual(summary(second.stdout), { ran: 2, cached: 7 });
  assert.match(second.stdout, /^\[api\] restoring after step 2, rerunning from step 3$/m);
  assert.match(second.stdout, /^\[api\] step 3 line 4: RUN cat main\.txt > built\.txt && cat \/srv\/BASE — running \(api\/main\.txt content changed \(read by step 3, line 4\)\)$/m);
  assert.match(second.stdout, /^\[web\] all 3 step\(s\) cached$/m, 'WAIT orders, it does not invalidate');

  const why = await runStrata(['why', '--store', store, repo.dir]);
  assert.equal(why.code, 0, why.stderr);
  assert.match(why.stdout, /^base \(base\/Layerfile\) — success: all 2 step\(s\) cached$/m);
  assert.match(why.stdout, /^api \(api\/Layerfile\) — success: restoring after step 2, rerunning from step 3$/m);
  assert.match(why.stdout, /3\. line 4: RUN cat main\.txt .* — ran .*\n\s+because api\/main\.txt content changed \(read by step 3, line 4\)/);
  assert.match(why.stdout, /4\. line 5: RUN cat built\.txt test\.txt — ran .*\n\s+because step 3 \(line 4\) reruns\n/);
  assert.match(why.stdout, /^web \(web\/Layerfile\) — success: all 3 step\(s\) cached$/m);
  assert.doesNotMatch(why.stdout, /README/, 'the README change explains nothing: no step observed it');
});

test('common mistakes fail with the exit code, file:line and a hint, never a stack trace', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const store = await temporaryStore(t, 'strata-accept-errors-');
  const run = async (files: Record<string, string>, extra: string[] = []) => {
    const repo = createGitRepo(t, files);
    const result = await runStrata(['run', '--plain', '--store', store, ...extra, repo.dir]);
    assert.doesNotMatch(result.stderr, STACK_FRAME, result.stderr);
    assert.doesNotMatch(result.stdout, STACK_FRAME, result.stdout);
    return { ...result, repo };
  };

  const typo = await run({ Layerfile: 'FROM vm/debian:12\nRUN echo hi\nRUNN echo typo\n' });
  assert.equal(typo.code, 3);
  assert.match(typo.stderr, /^Layerfile:3:1: unknown directive "RUNN"\n  RUNN echo typo\n  \^\^\^\^\n  hint: did you mean "RUN"\?$/m);
  assert.equal(typo.stdout, '', 'nothing ran');

  const noFrom = await run({ Layerfile: '# CI\nRUN echo hi\n' });
  assert.equal(noFrom.code, 3);
  assert.match(noFrom.stderr, /^Layerfile:2:1: a Layerfile must start with FROM$/m);

  // Not buildable here (Ubuntu's keyring or archive): named with the image table, at the FROM line.
  const ubuntu = await run({ Layerfile: '# legacy\nFROM vm/ubuntu:18.04\nRUN echo hi\n' });
  assert.equal(ubuntu.code, 1);
  assert.match(ubuntu.stderr, /^strata: Layerfile:2: cannot build base image vm\/ubuntu:18\.04: .*image table .*images\.json/m);

  const cycle = await run({ 'a/Layerfile': 'FROM vm/debian:12\nWAIT ../b\n', 'b/Layerfile': 'FROM vm/debian:12\nWAIT ../a\n' });
  assert.equal(cycle.code, 3);
  assert.match(cycle.stderr, /^a\/Layerfile:2:1: dependency cycle: a\/Layerfile -> b\/Layerfile -> a\/Layerfile$/m);

  const secret = await run({ Layerfile: 'FROM vm/debian:12\nSECRET ENV API_TOKEN\nRUN test -n "$API_TOKEN"\n' });
  assert.equal(secret.code, 1);
  assert.match(secret.stderr, /^strata: Layerfile:2: SECRET ENV API_TOKEN has no value .*STRATA_SECRET_API_TOKEN/m);
  assert.equal(secret.stdout, '', 'nothing ran');

  // A COPY of a missing path fails at its line before anything runs (not after the steps before it).
  const missingCopy = await run({ Layerfile: 'FROM vm/debian:12\nRUN echo ran-before-the-copy\nCOPY nothere.txt /app/\nRUN ls /app\n' });
  assert.equal(missingCopy.code, 1);
  assert.match(missingCopy.stderr, /^strata: Layerfile:3: COPY source "nothere\.txt" does not exist in the commit/m);
  assert.doesNotMatch(missingCopy.stdout, /ran-before-the-copy/, 'no step ran');

  // A failing RUN: its exit code and line on stderr, and a `strata shell` command that opens the machine
  // as the step left it — run exactly as printed.
  const failing = await run({ Layerfile: 'FROM vm/debian:12\nRUN echo hi\nRUN echo state > /root/at-failure && exit 7\nRUN echo never\n' });
  assert.equal(failing.code, 1);
  assert.match(failing.stderr, /^strata: Layerfile:3: RUN echo state > \/root\/at-failure && exit 7 — exited with code 7/m);
  assert.doesNotMatch(failing.stdout, /never/);
  const hint = /^ {2}hint: `strata (shell .*)` opens a shell in the machine as the step left it$/m.exec(failing.stderr);
  assert.ok(hint, failing.stderr);
  const shellArgs = (hint[1] as string).split(' ');
  assert.deepEqual(shellArgs, ['shell', '--store', store, '--runner', 'main-layerfile', failing.repo.dir], 'the printed command names this store, runner and repo');
  const shell = await runStrata(shellArgs, 'cat /root/at-failure\n');
  assert.equal(shell.code, 0, shell.stderr);
  assert.equal(shell.stdout, 'state\n');
  const why = await runStrata(['why', '--store', store, failing.repo.dir]);
  assert.match(why.stdout, /3\. line 4: RUN echo never — not run \(step 2 failed\)\n?$/, 'a step after the failure never started: no rerun reason');
  assert.match(why.stdout, /machine at failure kept as snapshot \S+ \(look inside: strata shell --runner main-layerfile\)/);
});

test('--json: every line is an event; runner start, step status, output and end, in order; a closed stdout cancels cleanly', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const processes = stopAfterTest(t);
  const store = await temporaryStore(t, 'strata-accept-json-');
  const repo = createGitRepo(t, {
    'base/Layerfile': 'FROM vm/debian:12\nRUN echo from-base\n',
    'app/Layerfile': 'FROM ../base\nCOPY . /app\nRUN cat /app/data.txt && echo oops >&2\n',
    'app/data.txt': 'data v1\n',
  });

  const run = await runStrata(['run', '--json', '--store', store, '--commit', 'HEAD', repo.dir]);
  assert.equal(run.code, 0, run.stderr);
  const list = events(run.stdout);
  assert.equal(list[0]?.type, 'run-start');
  assert.equal(list.at(-1)?.type, 'run-end');
  assert.deepEqual(
    (list[0]?.runners as Array<{ runner: string; layerfile: string; level: number }>).map((r) => [r.runner, r.layerfile, r.level]),
    [['base', 'base/Layerfile', 1], ['app', 'app/Layerfile', 2]],
  );
  for (const runner of ['base', 'app']) {
    const mine = list.filter((e) => e.runner === runner);
    // (The base image's preparation is reported as output of step 0 before runner-start: see the report.)
    assert.equal(mine.filter((e) => e.type !== 'step-output')[0]?.type, 'runner-start', runner);
    assert.deepEqual(mine.at(-1), { type: 'runner-end', runner, status: 'success' });
    // Each step: running, then (its output, then) done.
    const statuses = mine.filter((e) => e.type === 'step-status').map((e) => `${e.step}:${e.status}`);
    const stepCount = runner === 'base' ? 1 : 2;
    assert.deepEqual(statuses, Array.from({ length: stepCount }, (_, i) => [`${i}:running`, `${i}:done`]).flat(), runner);
  }
  const appOutput = list.filter((e) => e.type === 'step-output' && e.runner === 'app');
  assert.deepEqual(appOutput.map((e) => [e.step, e.stream, e.data]), [[1, 'stdout', 'data v1\n'], [1, 'stderr', 'oops\n']]);
  const end = list.at(-1) as JsonEvent;
  assert.equal(end.status, 'success');
  assert.equal(end.stepsRan, 3);
  assert.equal(end.stepsCached, 0);

  // `strata run --json | head -1`: the reader goes away mid-run. The run is cancelled cleanly — no
  // EPIPE stack trace, nothing half-cached, no machine left — and the next run works normally.
  repo.commit('slow step', { 'app/Layerfile': 'FROM ../base\nCOPY . /app\nRUN for i in 1 2 3 4 5 6 7 8; do echo tick $i; sleep 0.5; done; cat /app/data.txt\n' });
  const reader = processes.track(startStrata(['run', '--json', '--store', store, '--commit', 'HEAD', repo.dir]));
  await reader.waitFor(/"type":"step-status","runner":"app","step":1,"status":"running"/, 120_000);
  reader.child.stdout?.destroy();
  assert.equal(await reader.exited, 130, reader.stderr());
  assert.doesNotMatch(reader.stderr(), STACK_FRAME, reader.stderr());
  assert.doesNotMatch(reader.stderr(), /EPIPE/);
  // The engine's machines are named after the store (compose.ts): their state dir goes with the last one.
  const storeTag = createHash('sha256').update(store).digest('hex').slice(0, 8);
  assert.ok(!existsSync(join('/run/strata', storeTag)), 'no machine left behind');
  const after = await runStrata(['run', '--json', '--store', store, '--commit', 'HEAD', repo.dir]);
  assert.equal(after.code, 0, after.stderr);
  assert.deepEqual(ranSteps(events(after.stdout)), ['app#1'], 'the cancelled step was not cached; the rest was');
  assert.match(output(events(after.stdout), 'app', 1), /tick 8\ndata v1\n$/);
});
