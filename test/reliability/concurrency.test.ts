// Six `strata run` processes started at once on the same repo and store: they serialize on the store
// lock, every one succeeds, and the index they wrote is intact (a final run is fully cached).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { requireRoot } from '../helpers/env.js';
import { createGitRepo } from '../helpers/engine.js';
import { temporaryStore } from '../helpers/store.js';
import { openEngine } from '../../src/cli/compose.js';
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
