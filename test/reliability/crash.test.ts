// kill -9 of `strata run` at many points of a 4-step run (base image extraction, COPY, inside a RUN,
// right after a step's "done" line, random moments): each time a fresh engine takes the store over,
// no active snapshot, machine, runc state, cgroup, mount or process of the dead run survives, and the
// next run's outputs are those of a from-scratch run (a wrong cache hit would show stale contents).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { requireRoot } from '../helpers/env.js';
import { createGitRepo } from '../helpers/engine.js';
import { Random } from '../helpers/random.js';
import { temporaryStore } from '../helpers/store.js';
import { openEngine } from '../../src/compose/engine.js';
import { runRepository } from '../../src/engine/runRepository.js';
import { RUN_DIRS } from '../../src/engine/splitTimings.js';
import { findLeaks, killHard, recordingReporter, startCliRun, type CliProcess } from './harness.js';

const seed = Number(process.env.STRATA_TEST_SEED ?? 1812);
const runner = 'main-layerfile';

const layerfile = (round: number | string): string =>
  [
    'FROM vm/debian:12',
    'COPY . .',
    'RUN cat file1 > out1 && echo s1-running && sleep 0.6',
    'RUN cat file2 out1 > out2 && echo s2-running && sleep 0.6',
    `RUN echo round-${round} >/dev/null && sha256sum file1 file2 out1 out2`,
    '',
  ].join('\n');

const sha = (text: string): string => createHash('sha256').update(text).digest('hex');

/** What the last step prints when run from scratch on these files. */
function expectedDigests(file1: string, file2: string): string {
  return [`${sha(file1)}  file1`, `${sha(file2)}  file2`, `${sha(file1)}  out1`, `${sha(file2 + file1)}  out2`, ''].join('\n');
}

/** Where to kill: on an output line, or after a delay. `edit` forces steps 2-4 to rerun; `noCache` makes COPY run. */
type KillPoint = ({ name: string; when: RegExp } | { name: string; afterMs: number }) & { edit?: boolean; noCache?: boolean };

test('reliability: kill -9 of the CLI at 20 points, each followed by a clean recovery', { timeout: 480_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const random = new Random(seed);
  const store = await temporaryStore(t, 'strata-rel-crash-');
  let current: CliProcess | undefined;
  // The CLI process is killed in `finally` below, before the store's cleanup hook (registered by
  // temporaryStore) unmounts and deletes the store.
  const big = 'x'.repeat(1023) + '\n';
  const files = { file1: `one ${random.word()}\n`, file2: `two ${random.word()}\n`, 'big.txt': big.repeat(24 * 1024) };
  const repo = createGitRepo(t, { Layerfile: layerfile(0), ...files });

  const points: KillPoint[] = [
    { name: 'extracting the base image', when: /extracting into snapshot/ },
    { name: 'during COPY (--no-cache)', when: /step 1 line 2: COPY \. \. — running/, noCache: true },
    { name: 'inside RUN (step 2)', when: /\[main-layerfile:2\] s1-running/, edit: true },
    { name: 'right after step 2 done', when: /step 2 line 3: .* — done/, edit: true },
    { name: 'inside RUN (step 3)', when: /\[main-layerfile:3\] s2-running/, edit: true },
    { name: 'right after step 3 done', when: /step 3 line 4: .* — done/, edit: true },
    { name: 'restoring and updating the copied sources', when: /restoring after step 1/, edit: true },
  ];
  while (points.length < 20) points.push({ name: 'random', afterMs: random.int(300, 2000) });

  const leaks: string[] = [];
  let kills = 0;
  try {
    for (const [round, point] of points.entries()) {
      // Each round edits the last step (so it always runs and prints the machine's state) and, at
      // random, the sources the first steps read.
      const changes: Record<string, string> = { Layerfile: layerfile(round + 1) };
      if (point.edit || (round > 0 && random.chance(0.5))) changes.file1 = files.file1 = `one ${random.word()}\n`;
      if (round > 0 && random.chance(0.5)) changes.file2 = files.file2 = `two ${random.word()}\n`;
      repo.commit(`round ${round}`, changes);

      const run = (current = startCliRun(store, repo.dir, ['--commit', 'HEAD', ...(point.noCache ? ['--no-cache'] : [])]));
      if ('when' in point) await run.waitFor(point.when);
      else await Promise.race([new Promise((r) => setTimeout(r, point.afterMs)), run.exited]);
      const wasRunning = run.child.exitCode === null;
      const killedPid = run.child.pid;
      await killHard(run);
      current = undefined;
      if (wasRunning) kills++;
      const where = `round ${round} (${'when' in point ? point.name : `random ${point.afterMs} ms`})`;

      // Edit the last step once more, so that it runs (and prints the machine's state) on top of
      // whatever the killed run left cached. A fresh engine takes the stale lock over, reaps, and
      // finds no active snapshot.
      repo.commit(`verify ${round}`, { Layerfile: layerfile(`${round + 1}-verify`) });
      const reporter = recordingReporter();
      const engine = await openEngine({ store, reporter });
      try {
        const active = (await engine.deps.snapshots.list()).filter((s) => s.kind === 'active').map((s) => s.id);
        if (active.length > 0) leaks.push(`${where}: active snapshots after reopening: ${active.join(', ')}`);
        const result = await runRepository({ repoDir: repo.dir, commit: 'HEAD' }, engine.deps);
        assert.equal(result.status, 'success', `${where}: the run after the kill failed: ${[...reporter.output.values()].join('')}`);
        assert.equal(reporter.statuses.get(`${runner}#3`), 'done', `${where}: the edited last step ran`);
        assert.equal(reporter.output.get(`${runner}#3`), expectedDigests(files.file1, files.file2), `${where}: outputs equal a from-scratch run`);
      } finally {
        await engine.close();
      }
      assert.ok(!existsSync(join(store, 'lock')), `${where}: lock released`);
      for (const leak of await findLeaks(store)) leaks.push(`${where}: ${leak}`);
      // The killed engine's per-machine run dirs (strata-split timings) went with the recovery.
      const runDirs = existsSync(RUN_DIRS) ? readdirSync(RUN_DIRS).filter((d) => d.startsWith(`${killedPid}-`)) : [];
      if (runDirs.length > 0) leaks.push(`${where}: machine run dirs left: ${runDirs.join(', ')}`);
    }

    // And a real from-scratch run of the final commit prints the same.
    const reporter = recordingReporter();
    const engine = await openEngine({ store, reporter });
    try {
      const result = await runRepository({ repoDir: repo.dir, commit: 'HEAD', noCache: true }, engine.deps);
      assert.equal(result.status, 'success');
      assert.equal(reporter.output.get(`${runner}#3`), expectedDigests(files.file1, files.file2));
    } finally {
      await engine.close();
    }
  } finally {
    if (current) await killHard(current);
  }
  console.log(`reliability crash: ${kills} kills, ${leaks.length} leaks found (seed ${seed})`);
  assert.deepEqual(leaks, [], 'nothing of a killed run survives recovery');
});
