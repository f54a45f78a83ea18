// The recorder seam without a kernel: NullRecorder and the StepTrace normalisation.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NullRecorder, normalizeStepTrace } from '../../src/trace/recorder.js';

test('NullRecorder records nothing and detaches twice without error', async () => {
  const session = await new NullRecorder().attach({ dir: '/tmp', machinePrefix: '/root/app' });
  await session.beginStep(1);
  assert.deepEqual(await session.endStep(), { read: [], listed: [], statted: [], absent: [], written: [] });
  await session.detach();
  await session.detach();
});

test('normalizeStepTrace sorts and deduplicates every list', () => {
  const trace = normalizeStepTrace({
    read: ['/a/z', '/a/b', '/a/z'],
    listed: ['/a'],
    statted: ['/a/b', '/a', '/a/b'],
    absent: [],
    written: ['/a/y', '/a/x'],
  });
  assert.deepEqual(trace, {
    read: ['/a/b', '/a/z'],
    listed: ['/a'],
    statted: ['/a', '/a/b'],
    absent: [],
    written: ['/a/x', '/a/y'],
  });
});
