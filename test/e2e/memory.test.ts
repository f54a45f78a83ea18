// MEMORY end to end (layer-devops/docs layerfile-reference/memory.md: MEMORY *reserves* memory, from
// its line on, and may stand anywhere). Real machines with a small default limit (256 MiB, set on the
// engine) and a step that needs ~400 MiB: it is OOM-killed without MEMORY, and succeeds when a
// `MEMORY 1G` written after earlier RUN lines raised the running machine's limit; a child Layerfile
// starts with the raised limit; a restored run (second commit) gets the limit in force at its restore
// point, MEMORY lines before it included.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { requireRoot } from '../helpers/env.js';
import { createGitRepo, createTestEngine, stepId, type TestEngine, type TestRun } from '../helpers/engine.js';

const TIMEOUT = 300_000;
const MiB = 1024 ** 2;
const SMALL_DEFAULT = 256 * MiB;
/** Holds ~400 MiB at once: /dev/zero has no newline, so `tail` keeps everything it read. pipefail: an OOM-killed tail fails the step. */
const HOG = 'set -o pipefail; head -c 400m /dev/zero | tail | wc -c';
const HOG_OUTPUT = `${400 * MiB}\n`;

const failures = (run: TestRun): string => [...run.result.outcomes.values()].map((o) => o.message).filter(Boolean).join('; ');

async function smallEngine(t: Parameters<typeof createTestEngine>[0]): Promise<TestEngine> {
  const engine = await createTestEngine(t);
  engine.engine.deps.defaultMemoryBytes = SMALL_DEFAULT;
  return engine;
}

/** What a step printed, without the base image's preparation lines. */
function printed(run: TestRun, step: number, runner?: string): string | undefined {
  return run.output.get(stepId(step, runner))?.split(/(?<=\n)/).filter((line) => !line.startsWith('vm/debian:12: ')).join('');
}

test('without MEMORY, a step that needs more than the default limit is killed: out of memory', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await smallEngine(t);
  const repo = createGitRepo(t, { Layerfile: `FROM vm/debian:12\nRUN echo small\nRUN ${HOG}\n` });
  const run = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(run.result.status, 'failure');
  assert.equal(printed(run, 0), 'small\n');
  assert.deepEqual(run.ran, [stepId(0), stepId(1)]);
  assert.match(run.result.outcomes.get('Layerfile')?.message ?? '', /out of memory/);
});

test('MEMORY after RUN raises the running machine, a child inherits it, a restored run gets it', { timeout: TIMEOUT }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await smallEngine(t);
  const repo = createGitRepo(t, {
    Layerfile: `FROM vm/debian:12
COPY . .
RUN cat a.txt
MEMORY 1G
RUN cat b.txt
RUN ${HOG}
`,
    'a.txt': 'a1\n',
    'b.txt': 'b1\n',
    'child/Layerfile': `FROM ..\nRUN ${HOG}\n`,
  });

  // Steps: 0 COPY, 1 RUN cat a.txt, (MEMORY), 2 RUN cat b.txt, 3 the hog. The machine starts with the
  // small default; the MEMORY line raises it between steps 1 and 2.
  const first = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(first.result.status, 'success', failures(first));
  assert.equal(printed(first, 1), 'a1\n');
  assert.equal(printed(first, 3), HOG_OUTPUT);
  assert.equal(first.result.outcomes.get('Layerfile')?.memoryBytes, 1024 * MiB);
  // The child starts from the parent's final limit (a fresh machine on the parent's final state).
  assert.equal(printed(first, 0, 'child'), HOG_OUTPUT, failures(first));

  // Second commit: b.txt changed, so the run restores after step 1 (`cat a.txt`, before the MEMORY
  // line) and reruns steps 2 and 3 in a machine that must get 1G before step 2.
  repo.commit('change b', { 'b.txt': 'b2\n' });
  const second = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(second.result.status, 'success', failures(second));
  assert.deepEqual(second.ran.filter((id) => id.startsWith('main-layerfile#')), [stepId(2), stepId(3)]);
  assert.equal(printed(second, 2), 'b2\n');
  assert.equal(printed(second, 3), HOG_OUTPUT);
  assert.equal(printed(second, 0, 'child'), HOG_OUTPUT, failures(second));

  // Third commit: only the last line changes, so the run restores after step 2 (after the MEMORY
  // line) and the machine must start with 1G: nothing raises it between steps this time.
  repo.commit('edit the last step', {
    Layerfile: `FROM vm/debian:12
COPY . .
RUN cat a.txt
MEMORY 1G
RUN cat b.txt
RUN echo again && ${HOG}
`,
  });
  const third = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(third.result.status, 'success', failures(third));
  assert.deepEqual(third.ran.filter((id) => id.startsWith('main-layerfile#')), [stepId(3)]);
  assert.equal(printed(third, 3), `again\n${HOG_OUTPUT}`);
});
