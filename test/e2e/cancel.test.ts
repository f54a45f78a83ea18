// Cancelling a run (RunOptions.signal, Ctrl-C in the CLI) and the step timeout: the running step is
// killed, nothing of it is cached, its machine is destroyed, Layerfiles not started are skipped.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { requireRoot } from '../helpers/env.js';
import { createGitRepo, createTestEngine } from '../helpers/engine.js';
import { runRepository } from '../../src/engine/runRepository.js';
import type { Reporter } from '../../src/engine/reporter.js';
import { storeTag } from '../reliability/harness.js';

/** The runc containers of a store's engine (its machines are named strata-<tag>-..., state under /run/strata/<tag>). */
function machinesOf(store: string): string[] {
  const root = join('/run/strata', storeTag(store), 'runc');
  if (!existsSync(root)) return [];
  return execFileSync('runc', ['--root', root, 'list', '-q'], { encoding: 'utf8' }).split('\n').filter(Boolean);
}

test('cancel: the running step is killed and not cached, children are skipped, no machine is left', { timeout: 120_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const te = await createTestEngine(t);
  const repo = createGitRepo(t, {
    Layerfile: 'FROM vm/debian:12\nRUN echo one > /one\nRUN echo started && sleep 60 && echo finished\n',
    'child/Layerfile': 'FROM ..\nRUN echo child\n',
  });
  repo.commit('first');
  const cancel = new AbortController();
  const ends: Array<{ runner: string; status: string }> = [];
  const reporter: Reporter = {
    onStepOutput: (e) => {
      if (e.data.includes('started')) cancel.abort();
    },
    onRunnerEnd: (e) => ends.push({ runner: e.runner, status: e.status }),
  };
  const startedAt = Date.now();
  const result = await runRepository({ repoDir: repo.dir, commit: 'HEAD', signal: cancel.signal }, { ...te.engine.deps, reporter });
  assert.equal(result.status, 'cancelled');
  assert.ok(Date.now() - startedAt < 50_000, 'the sleep was killed, not waited for');
  assert.deepEqual(ends.sort((a, b) => a.runner.localeCompare(b.runner)), [
    { runner: 'child', status: 'skipped' },
    { runner: 'main-layerfile', status: 'cancelled' },
  ]);
  assert.equal((await te.engine.deps.runLog.lastRun(repo.dir))?.status, 'cancelled');
  assert.deepEqual(machinesOf(te.store), [], 'no machine is left running');

  // The next run of the same commit: step 1 (done before the cancel) is reused; the cancelled step was
  // never recorded, so it starts again (and is cancelled again, to keep this test short).
  const again = new AbortController();
  const statuses: string[] = [];
  const second = await runRepository(
    { repoDir: repo.dir, commit: 'HEAD', signal: again.signal },
    {
      ...te.engine.deps,
      reporter: {
        onStepOutput: (e) => {
          if (e.data.includes('started')) again.abort();
        },
        onStepStatus: (e) => statuses.push(`${e.runner}#${e.step}:${e.status}`),
      },
    },
  );
  assert.equal(second.status, 'cancelled');
  assert.deepEqual(statuses.filter((s) => s.startsWith('main-layerfile')), ['main-layerfile#0:cached', 'main-layerfile#1:running', 'main-layerfile#1:failed']);
});

test('step timeout: a RUN step over the limit fails as timed out and is not cached', { timeout: 120_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const te = await createTestEngine(t);
  const repo = createGitRepo(t, { Layerfile: 'FROM vm/debian:12\nRUN echo quick\nRUN sleep 30\n' });
  repo.commit('first');
  const timedOut = await te.run({ repoDir: repo.dir, commit: 'HEAD', stepTimeoutMs: 1500 });
  assert.equal(timedOut.result.status, 'failure');
  const outcome = [...timedOut.result.outcomes.values()][0];
  assert.match(outcome?.message ?? '', /step 2 \(line 3\) timed out after 1\.5 s/);
  // A failed step is never a cache hit: the same commit reruns it (and the quick one is reused).
  const again = await te.run({ repoDir: repo.dir, commit: 'HEAD', stepTimeoutMs: 1500 });
  assert.deepEqual(again.ran, ['main-layerfile#1']);
});
