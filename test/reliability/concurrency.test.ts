// Six `strata run` processes started at once on the same repo and store: they serialize on the store
// lock, every one succeeds, and the index they wrote is intact (a final run is fully cached).
import { test } from 'node:test';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { requireRoot } from '../helpers/env.js';
import { createGitRepo } from '../helpers/engine.js';
import { temporaryStore } from '../helpers/store.js';
import { openEngine, type Engine } from '../../src/compose/engine.js';
import { runRepository } from '../../src/engine/runRepository.js';
import { findLeaks, killHard, recordingReporter, startCliRun, type CliProcess } from './harness.js';

const processes = 6;

test('reliability: 6 concurrent CLI runs on one store all succeed and leave an intact index', { timeout: 300_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const store = await temporaryStore(t, 'strata-rel-concurrency-');
  const repo = createGitRepo(t, {
    Layerfile: 'FROM vm/debian:12\nCOPY . .\nRUN cat a.txt > copy.txt && sleep 0.5\nRUN wc -c copy.txt b.txt\n',
    'a.txt': 'alpha\n',
    'b.txt': 'beta\n',
  });
  const runs: CliProcess[] = [];
  try {
    for (let i = 0; i < processes; i++) runs.push(startCliRun(store, repo.dir, ['--commit', 'HEAD']));
    const codes = await Promise.all(runs.map((r) => r.exited));
    const outputs = runs.map((r) => r.output());
    assert.deepEqual(codes, Array(processes).fill(0), `every run succeeded:\n${outputs.join('\n-----\n')}`);
    const waited = outputs.filter((o) => o.includes('waiting for process')).length;
    const ranSteps = outputs.filter((o) => /[1-9]\d* step\(s\) ran/.test(o)).length;
    console.log(`reliability concurrency: ${processes} runs, ${codes.filter((c) => c === 0).length} succeeded, ${waited} waited for the lock, ${ranSteps} ran steps`);
    assert.ok(waited >= processes - 1, 'all but the first waited for the store lock');
  } finally {
    for (const r of runs) await killHard(r);
  }
  const reporter = recordingReporter();
  const engine = await openEngine({ store, reporter });
  try {
    const result = await runRepository({ repoDir: repo.dir, commit: 'HEAD' }, engine.deps);
    assert.equal(result.status, 'success');
    assert.deepEqual([...reporter.statuses.values()], ['cached', 'cached', 'cached'], 'the final run is fully cached');
  } finally {
    await engine.close();
  }
  assert.deepEqual(await findLeaks(store), []);
});

// What the server does: many runs of one repo at once in ONE engine (one store lock), at two commits,
// with a CACHE directory. Every run must see its own commit's files (a run must never take a step from
// the other commit's chain), the CACHE dir must be whole (one run at a time holds it; the others get a
// throwaway one), and afterwards both commits are fully cached.
test('reliability: 20 concurrent runs in one engine, at two commits, all succeed with the right files', { timeout: 600_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const runs = 20;
  // Hooks run in registration order: close the engine before the store is removed.
  let engine: Engine | undefined;
  t.after(() => engine?.close());
  const store = await temporaryStore(t, 'strata-rel-concurrent-engine-');
  const repo = createGitRepo(t, {
    Layerfile: [
      'FROM vm/debian:12',
      'CACHE /var/cache/strata-test',
      'COPY . .',
      // The cache dir gets one whole line per run that held it; a torn or mixed write would show.
      'RUN line="$(cat version.txt) $(head -c 64 /dev/zero | tr "\\0" x)"; echo "$line" >> /var/cache/strata-test/log; echo "version $(cat version.txt)"',
      'RUN sleep 0.2; cat version.txt',
    ].join('\n') + '\n',
    'version.txt': 'A\n',
  });
  const commitA = repo.commit('A');
  const commitB = repo.commit('B', { 'version.txt': 'B\n' });
  // The first run of each commit starts at once; the others once both have committed their first
  // RUN's snapshot (so there is a chain to reuse, however slowly machines boot under this load), then
  // staggered: later runs plan while earlier ones are still writing their chains.
  let firstLinks = 0;
  let bothFirstLinks: () => void = () => {};
  const firstLinksWritten = new Promise<void>((resolve) => (bothFirstLinks = resolve));
  const reporters = Array.from({ length: runs }, (_, i) => {
    const reporter = recordingReporter();
    if (i > 1) return reporter;
    return {
      ...reporter,
      onStepStatus(e: Parameters<NonNullable<typeof reporter.onStepStatus>>[0]) {
        reporter.onStepStatus?.(e);
        if (e.step === 2 && e.status === 'done' && ++firstLinks === 2) bothFirstLinks();
      },
    };
  });
  engine = await openEngine({ store, reporter: {} });
  const deps = engine.deps;
  const results = await Promise.all(
    reporters.map(async (reporter, i) => {
      if (i > 1) {
        await firstLinksWritten;
        await new Promise((resolve) => setTimeout(resolve, (i - 2) * 400));
      }
      const run = runRepository({ repoDir: repo.dir, commit: i % 2 === 0 ? commitA : commitB }, { ...deps, reporter });
      // A first run that fails early must not leave the others waiting (its failure is reported below).
      return i > 1 ? run : run.finally(bothFirstLinks);
    }),
  );
  const failed = results.flatMap((r, i) => (r.status === 'success' ? [] : [`run ${i}: ${r.status} ${[...r.outcomes.values()].map((o) => o.message).join('; ')}`]));
  assert.deepEqual(failed, [], 'every run succeeds');
  reporters.forEach((reporter, i) => {
    const expected = i % 2 === 0 ? 'A' : 'B';
    // A step taken from the cache prints nothing; one that ran must print its own commit's file.
    // (Without strata's own notes, e.g. that the CACHE dir was busy and this run got an empty one.)
    const own = (text: string | undefined) => text?.replace(/^strata: .*\n/gm, '');
    const first = own(reporter.output.get('main-layerfile#2'));
    const last = own(reporter.output.get('main-layerfile#3'));
    if (first !== undefined) assert.equal(first, `version ${expected}\n`, `run ${i} (commit ${expected}) printed another commit's file`);
    if (last !== undefined) assert.equal(last, `${expected}\n`, `run ${i} (commit ${expected}) printed another commit's file`);
  });
  // The kept CACHE dir (throwaway ones are gone): whole lines only, one per run that held it.
  const kept = execFileSync('find', [join(store, 'cache-dirs'), '-name', 'log', '-not', '-path', '*/throwaway/*'], { encoding: 'utf8' }).split('\n').filter(Boolean);
  assert.equal(kept.length, 1, `one kept cache dir log: ${kept.join(', ')}`);
  const lines = readFileSync(kept[0] as string, 'utf8').split('\n').filter(Boolean);
  assert.ok(lines.length >= 1 && lines.length <= runs, `${lines.length} lines`);
  for (const line of lines) assert.match(line, /^[AB] x{64}$/, 'a whole line');
  const ranSteps = results.reduce((n, r) => n + r.stepsRan, 0);
  const cachedSteps = results.reduce((n, r) => n + r.stepsCached, 0);
  console.log(`reliability concurrency: ${runs} runs in one engine, ${results.filter((r) => r.status === 'success').length} succeeded, ${ranSteps} steps ran, ${cachedSteps} cached`);
  assert.ok(cachedSteps > 0, 'later runs reused what earlier ones were still writing, or this proves little about interleaving');

  for (const [commit, version] of [[commitA, 'A'], [commitB, 'B']] as const) {
    const reporter = recordingReporter();
    const result = await runRepository({ repoDir: repo.dir, commit }, { ...deps, reporter });
    assert.equal(result.status, 'success');
    assert.deepEqual([...reporter.statuses.values()], ['cached', 'cached', 'cached', 'cached'], `commit ${version} is fully cached afterwards`);
  }
});
