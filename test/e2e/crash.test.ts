// Killing the engine (SIGKILL) in the middle of a step loses nothing that was finished: the next start
// takes over the stale store lock, reaps the dead run's machine and half-made snapshots, keeps the
// steps whose snapshots and index rows were written, and the next run is correct.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireRoot } from '../helpers/env.js';
import { createGitRepo } from '../helpers/engine.js';
import { openEngine } from '../../src/compose/engine.js';
import { runRepository } from '../../src/engine/runRepository.js';
import type { StepStatus } from '../../src/engine/reporter.js';
import { removeStore } from '../helpers/store.js';

const cli = join(import.meta.dirname, '..', 'cli', 'strata.ts');

test('a run killed mid-step leaves a store the next run recovers and reuses', { timeout: 300_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const store = mkdtempSync(join(tmpdir(), 'strata-crash-store-'));
  let child: ReturnType<typeof spawn> | undefined;
  // One cleanup, in order (Node 20 runs t.after hooks in registration order): the CLI process first,
  // then the store it used.
  t.after(async () => {
    child?.kill('SIGKILL');
    // The killed process mounted the store's image; the engine that reopened it found it mounted and
    // so leaves it mounted on close.
    await removeStore(store);
  });
  const layerfile = (last: string) => `FROM vm/debian:12\nCOPY . .\nRUN cat file1\n${last}\n`;
  const repo = createGitRepo(t, { Layerfile: layerfile('RUN echo started && sleep 600'), file1: 'one\n' });

  // Run the CLI in its own process and kill it once the last step is running.
  const cliRun = spawn(process.execPath, ['--import', 'tsx', cli, 'run', '--plain', '--store', store, '--commit', 'HEAD', repo.dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  child = cliRun;
  let output = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the run never reached its last step:\n${output}`)), 240_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('started')) {
        clearTimeout(timer);
        resolve();
      }
    };
    cliRun.stdout.on('data', onData);
    cliRun.stderr.on('data', onData);
  });
  cliRun.kill('SIGKILL');
  await new Promise((resolve) => cliRun.once('exit', resolve));
  assert.ok(existsSync(join(store, 'lock')), 'the dead run left its lock behind');

  // A new engine on the same store recovers, and the steps finished before the crash are reused.
  repo.commit('make the last step quick', { Layerfile: layerfile('RUN echo quick') });
  const statuses = new Map<number, StepStatus>();
  const engine = await openEngine({ store, reporter: { onStepStatus: (e) => void statuses.set(e.step, e.status) } });
  try {
    const leftovers = (await engine.deps.snapshots.list()).filter((s) => s.kind === 'active');
    assert.deepEqual(leftovers, [], 'no active snapshot of the dead run survives the restart');
    const result = await runRepository({ repoDir: repo.dir, commit: 'HEAD' }, engine.deps);
    assert.equal(result.status, 'success');
    assert.deepEqual([...statuses.entries()].sort(), [[0, 'cached'], [1, 'cached'], [2, 'done']]);
  } finally {
    await engine.close();
  }
  assert.ok(!existsSync(join(store, 'lock')), 'the lock is released on close');
  // The dead run's machine (runc state, cgroups, processes) was reaped: nothing of this store is left.
  const storeTag = createHash('sha256').update(store).digest('hex').slice(0, 8);
  assert.ok(!existsSync(join('/run/strata', storeTag)), 'no runc or machine state of this store is left');
  const processes = readdirSync('/proc').filter((p) => /^\d+$/.test(p)).map((p) => {
    try {
      return readFileSync(join('/proc', p, 'cmdline'), 'utf8');
    } catch {
      return '';
    }
  });
  assert.ok(!processes.some((cmd) => cmd.includes(`strata-${storeTag}-`)), 'no process of the dead run is left');
});
