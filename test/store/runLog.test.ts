// The run log's conformance suite, run against every implementation (backends.ts): over SQLite, over
// Postgres, and through a server's worker API.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { eachStoreBackend } from './backends.js';

eachStoreBackend((fresh) => {
  test('records runners and steps with reasons and returns the last run', async (t) => {
    const database = await fresh(t);
    const log = (await database.open()).runLog;
    await log.createRun({ id: 'r1', repo: '/r', commit: 'c1', tree: 't1', branch: 'main', startedAt: 1 });
    await log.createRun({ id: 'r2', repo: '/r', commit: null, tree: 't2', branch: 'main', startedAt: 2 });
    await log.createRun({ id: 'r2', repo: '/r', commit: null, tree: 't2', branch: 'main', startedAt: 2 }); // a retried call: no error, no change
    await log.setRunner('r2', { runner: 'main-layerfile', layerfile: 'Layerfile', status: 'running', plan: 'restore after step 2' });
    await log.setRunner('r2', { runner: 'b-layerfile', layerfile: 'b/Layerfile', status: 'running' });
    await log.setStep('r2', { runner: 'main-layerfile', index: 1, line: 3, text: 'RUN cat file1', status: 'pending', reason: null, durationMs: null, snapshot: null });
    await log.setStep('r2', { runner: 'main-layerfile', index: 0, line: 2, text: 'COPY . .', status: 'cached', reason: null, durationMs: null, snapshot: 's0' });
    await log.setStep('r2', { runner: 'main-layerfile', index: 1, line: 3, text: 'RUN cat file1', status: 'ran', reason: { message: 'file1 content changed (read by step 2)', path: 'file1', kind: 'content-changed' }, durationMs: 12, snapshot: 's1' });
    await log.setRunner('r2', { runner: 'main-layerfile', layerfile: 'Layerfile', status: 'success' });
    await log.finishRun('r2', 'success', 3);

    const last = await (await database.open()).runLog.lastRun('/r');
    assert.equal(last?.id, 'r2');
    assert.deepEqual([last?.status, last?.commit, last?.tree, last?.branch, last?.startedAt, last?.finishedAt], ['success', null, 't2', 'main', 2, 3]);
    assert.deepEqual(last?.runners.map((r) => r.runner), ['main-layerfile', 'b-layerfile'], 'runners in the order they were added');
    assert.equal(last?.runners[0]?.status, 'success');
    assert.equal(last?.runners[0]?.plan, 'restore after step 2', 'a later status update keeps the plan');
    assert.deepEqual(last?.runners[0]?.steps.map((s) => [s.index, s.status, s.durationMs, s.snapshot]), [[0, 'cached', null, 's0'], [1, 'ran', 12, 's1']], 'a step recorded again replaces it');
    assert.deepEqual(last?.runners[0]?.steps[1]?.reason, { message: 'file1 content changed (read by step 2)', path: 'file1', kind: 'content-changed' });
    assert.deepEqual(last?.runners[1]?.steps, []);
    const first = await log.getRun('r1');
    assert.deepEqual([first?.status, first?.finishedAt, first?.commit], ['running', null, 'c1']);
    assert.equal(await log.lastRun('/other'), undefined);
    assert.equal(await log.getRun('nope'), undefined);
  });

  test('runs started in the same millisecond: the last one started is the last run', async (t) => {
    const log = (await (await fresh(t)).open()).runLog;
    for (const id of ['a', 'b', 'c']) await log.createRun({ id, repo: '/r', commit: null, tree: 't', branch: '', startedAt: 7 });
    assert.equal((await log.lastRun('/r'))?.id, 'c');
  });
});
