// The kind of machine is part of what a cached state means: a snapshot taken in a system machine (systemd
// booted, its services started) is never restored into a container machine, nor the other way. Where
// machines do not boot (STRATA_SYSTEM_MACHINES=0 here; a host without the hybrid cgroup layout), the
// image's identity differs, so the same Layerfile runs again instead of reusing the other kind's chain.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { requireRoot } from '../helpers/env.js';
import { createGitRepo, createTestEngine, stepId } from '../helpers/engine.js';

test('chains of system machines and of container machines are kept apart in one store', { timeout: 300_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const previous = process.env.STRATA_SYSTEM_MACHINES;
  t.after(() => {
    if (previous === undefined) delete process.env.STRATA_SYSTEM_MACHINES;
    else process.env.STRATA_SYSTEM_MACHINES = previous;
  });
  const repo = createGitRepo(t, { Layerfile: 'FROM vm/debian:12\nRUN echo "pid1=$(cat /proc/1/comm)"\n' });
  const engine = await createTestEngine(t);
  const run = async (systemMachines: boolean) => {
    if (systemMachines) delete process.env.STRATA_SYSTEM_MACHINES;
    else process.env.STRATA_SYSTEM_MACHINES = '0';
    const result = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
    assert.equal(result.result.status, 'success', [...result.output.values()].join(''));
    return result;
  };

  const system = await run(true);
  assert.match(system.output.get(stepId(0)) ?? '', /pid1=systemd/);
  const container = await run(false);
  assert.deepEqual(container.ran, [stepId(0)], 'the container machine does not reuse the system machine\'s step');
  assert.doesNotMatch(container.output.get(stepId(0)) ?? '', /pid1=systemd/);
  assert.deepEqual((await run(true)).ran, [], 'each kind keeps its own chain');
  assert.deepEqual((await run(false)).ran, []);
});
