// The cache index's conformance suite, run against every implementation (backends.ts): over SQLite,
// over Postgres, and through a server's worker API.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChainStepRecord } from '../../src/store/cacheIndex.js';
import { eachStoreBackend } from './backends.js';

const trace = { read: ['/root/file1'], listed: [], statted: [], absent: ['/root/x'], written: [] };
const step = (index: number, key: string, snapshot: string | null): ChainStepRecord => ({
  index, definitionKey: key, snapshot, stateId: `state-${key}`, trace, copies: [{ source: '', dest: '/root' }], repeatable: false, succeeded: true, background: [],
});
const base = { repo: '/r', runner: 'main-layerfile', layerfile: 'Layerfile', runId: 'run1' };

eachStoreBackend((fresh) => {
  test('stores chains and finds candidates by first key, newest first, across reopen', async (t) => {
    const database = await fresh(t);
    let index = (await database.open()).cacheIndex;
    const older = await index.startChain({ ...base, tree: 'tree1' }, 1000);
    await index.addStep(older, step(0, 'k0', 'snap-a0'));
    await index.addStep(older, step(1, 'k1', null));
    await index.completeChain(older);
    const newer = await index.startChain({ ...base, tree: 'tree2' }, 2000);
    await index.addStep(newer, step(0, 'k0', 'snap-b0'));
    const other = await index.startChain({ ...base, tree: 'tree3' }, 3000);
    await index.addStep(other, step(0, 'different', 'snap-c0'));

    index = (await database.open()).cacheIndex;
    const found = await index.candidates('/r', 'main-layerfile', 'k0');
    assert.deepEqual(found.map((c) => c.tree), ['tree2', 'tree1']);
    assert.deepEqual(found.map((c) => [c.complete, c.createdAt, c.runId, c.layerfile]), [[false, 2000, 'run1', 'Layerfile'], [true, 1000, 'run1', 'Layerfile']]);
    assert.deepEqual(found[1]?.steps.map((s) => [s.index, s.snapshot, s.stateId]), [[0, 'snap-a0', 'state-k0'], [1, null, 'state-k1']]);
    assert.deepEqual(found[1]?.steps[0]?.trace, trace);
    assert.deepEqual(found[1]?.steps[0]?.copies, [{ source: '', dest: '/root' }]);
    assert.deepEqual(await index.candidates('/r', 'other-runner', 'k0'), []);
    assert.deepEqual(await index.candidates('/other-repo', 'main-layerfile', 'k0'), []);
    assert.deepEqual([...(await index.referencedSnapshots())].sort(), ['snap-a0', 'snap-b0', 'snap-c0']);
    assert.equal((await index.candidates('/r', 'main-layerfile', 'k0', 1)).length, 1, 'limit');
  });

  test('chains started in the same millisecond come back newest (last started) first', async (t) => {
    const index = (await (await fresh(t)).open()).cacheIndex;
    for (const tree of ['t1', 't2', 't3']) {
      const id = await index.startChain({ ...base, tree }, 5000);
      await index.addStep(id, step(0, 'k0', `snap-${tree}`));
    }
    assert.deepEqual((await index.candidates('/r', 'main-layerfile', 'k0')).map((c) => c.tree), ['t3', 't2', 't1']);
  });

  test('keeps every field of a step: background commands, ports, flags, timings, a trace-less step; a step recorded again replaces it', async (t) => {
    const index = (await (await fresh(t)).open()).cacheIndex;
    const server = { command: 'perl server.pl', env: { PATH: '/usr/bin', CI: 'true' }, workdir: '/root/app', user: 'app', secrets: ['TOKEN'] };
    const worker = { command: '. /etc/setup && ./worker', env: {}, workdir: '/', user: 'root' };
    const chain = await index.startChain({ ...base, tree: 't1', clones: [{ namespace: '.git/clone/1a2b3c4d', url: 'https://example.test/x.git', branch: 'main', commit: 'c0ffee', tree: 'beef' }] }, 2);
    await index.addStep(chain, { ...step(0, 'k0', 'snap-0'), background: [server], listening: [5432], repeatable: true });
    await index.addStep(chain, { ...step(1, 'k1', 'snap-1'), background: [server, worker], succeeded: false, trace: null, splitTimings: 'digest-1' });
    await index.addStep(chain, { ...step(2, 'k2', 'snap-2-first') });
    await index.addStep(chain, { ...step(2, 'k2', 'snap-2-again') });
    const [found] = await index.candidates('/r', 'main-layerfile', 'k0');
    assert.deepEqual(found?.clones, [{ namespace: '.git/clone/1a2b3c4d', url: 'https://example.test/x.git', branch: 'main', commit: 'c0ffee', tree: 'beef' }]);
    assert.deepEqual(found?.steps.map((s) => s.background), [[server], [server, worker], []], 'kept in start order, values as given');
    assert.deepEqual(found?.steps.map((s) => s.listening), [[5432], [], []]);
    assert.deepEqual(found?.steps.map((s) => [s.repeatable, s.succeeded, s.trace === null, s.splitTimings ?? null]), [[true, true, false, null], [false, false, true, 'digest-1'], [false, true, false, null]]);
    assert.deepEqual(found?.steps.map((s) => s.snapshot), ['snap-0', 'snap-1', 'snap-2-again'], 'the later record of step 2 replaced the first');
  });

  test('chainOfRun: the chain a runner recorded in a run, with its steps', async (t) => {
    const index = (await (await fresh(t)).open()).cacheIndex;
    const a = await index.startChain({ ...base, runId: 'run-a', tree: 'ta' }, 1);
    await index.addStep(a, step(0, 'k0', 'snap-a'));
    const b = await index.startChain({ ...base, runId: 'run-b', tree: 'tb' }, 2);
    await index.addStep(b, step(0, 'k0', 'snap-b'));
    await index.addStep(b, step(1, 'k1', null));
    const copy = await index.startChain({ ...base, runner: 'main-layerfile-1', runId: 'run-b', tree: 'tb' }, 3);
    await index.addStep(copy, step(0, 'k0', 'snap-copy'));
    const found = await index.chainOfRun('run-b', 'main-layerfile');
    assert.equal(found?.id, b);
    assert.deepEqual(found?.steps.map((s) => s.snapshot), ['snap-b', null]);
    assert.equal((await index.chainOfRun('run-b', 'main-layerfile-1'))?.id, copy);
    assert.equal(await index.chainOfRun('run-c', 'main-layerfile'), undefined);
  });

  test('pruneChains keeps the newest chains of every runner and forgets the rest with their steps', async (t) => {
    const index = (await (await fresh(t)).open()).cacheIndex;
    const other = { layerfile: 'Layerfile', runId: 'run' };
    for (let i = 0; i < 5; i++) {
      const id = await index.startChain({ ...other, runId: `run${i}`, repo: '/r', runner: 'a', tree: `t${i}` }, 1000 + i);
      await index.addStep(id, step(0, 'k0', `snap-a${i}`));
    }
    const b = await index.startChain({ ...other, repo: '/r', runner: 'b', tree: 'tb' }, 1);
    await index.addStep(b, step(0, 'k0', 'snap-b'));
    const elsewhere = await index.startChain({ ...other, repo: '/s', runner: 'a', tree: 'ts' }, 1);
    await index.addStep(elsewhere, step(0, 'k0', 'snap-s'));
    assert.equal(await index.pruneChains(2), 3);
    assert.deepEqual((await index.candidates('/r', 'a', 'k0')).map((c) => c.tree), ['t4', 't3']);
    assert.deepEqual((await index.candidates('/r', 'b', 'k0')).map((c) => c.tree), ['tb'], 'other runners keep their own newest');
    assert.deepEqual((await index.candidates('/s', 'a', 'k0')).map((c) => c.tree), ['ts'], 'so do other repositories');
    assert.deepEqual([...(await index.referencedSnapshots())].sort(), ['snap-a3', 'snap-a4', 'snap-b', 'snap-s']);
    // referencedSnapshots reads the step rows: the forgotten chains' steps are gone with them.
    assert.equal(await index.chainOfRun('run0', 'a'), undefined, 'a forgotten chain is not found by its run');
    assert.deepEqual((await index.chainOfRun('run4', 'a'))?.steps.map((s) => s.snapshot), ['snap-a4'], 'kept chains keep their steps');
    assert.equal(await index.pruneChains(2), 0);
  });
});
