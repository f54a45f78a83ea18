// `strata shell`: a shell in a throwaway machine restored from the last run's failure snapshot.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { pickShellSnapshot } from '../../src/engine/debugShell.js';
import type { RunRecord } from '../../src/store/runs.js';
import { createGitRepo } from '../helpers/engine.js';
import { requireRoot } from '../helpers/env.js';
import { temporaryStore } from '../helpers/store.js';

const entry = fileURLToPath(new URL('./strata.ts', import.meta.url));

function strata(args: string[], input = ''): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', entry, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input);
  });
}

const run = (steps: RunRecord['runners'][number]['steps']): RunRecord => ({
  id: 'run-1', repo: '/r', commit: null, tree: 't', branch: 'main', startedAt: 0, finishedAt: 1, status: 'failure',
  runners: [{ runner: 'main-layerfile', layerfile: 'Layerfile', status: 'failure', plan: null, steps }],
});
const step = (index: number, status: 'ran' | 'failed' | 'cached', snapshot: string | null) =>
  ({ runner: 'main-layerfile', index, line: index + 2, text: 'RUN x', status, reason: null, durationMs: 1, snapshot });

test('pickShellSnapshot: the failed step by default, a given step on request, clear errors otherwise', () => {
  const record = run([step(0, 'cached', null), step(1, 'ran', 's1'), step(2, 'failed', 's2')]);
  assert.deepEqual(pickShellSnapshot(record, {}), { runner: 'main-layerfile', step: 2, snapshot: 's2' });
  assert.deepEqual(pickShellSnapshot(record, { step: 2 }), { runner: 'main-layerfile', step: 1, snapshot: 's1' });
  assert.throws(() => pickShellSnapshot(record, { step: 1 }), /no snapshot after step 1 \(steps restored from the cache/);
  assert.throws(() => pickShellSnapshot(record, { runner: 'other' }), /no runner "other"/);
  assert.throws(() => pickShellSnapshot(run([step(0, 'ran', 's0')]), {}), /has no failed step/);
});

test('strata shell opens the machine as the failed step left it, and discards what the shell does', { timeout: 300_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const store = await temporaryStore(t, 'strata-cli-shell-');
  const repo = createGitRepo(t, { Layerfile: 'FROM vm/debian:12\nRUN echo state-at-failure > /root/marker && exit 3\n' });
  const failed = await strata(['run', '--plain', '--store', store, repo.dir]);
  assert.equal(failed.code, 1, failed.stderr);

  const shell = await strata(['shell', '--store', store, repo.dir], 'cat /root/marker; pwd; touch /root/made-in-shell; exit 5\n');
  assert.equal(shell.code, 5, shell.stderr);
  assert.equal(shell.stdout, 'state-at-failure\n/root\n');
  assert.match(shell.stderr, /state after step 1/);
  const again = await strata(['shell', '--store', store, repo.dir], 'test -e /root/made-in-shell && echo kept || echo discarded\n');
  assert.equal(again.stdout, 'discarded\n');
});
