import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { FIRST_SCHEMA, openDatabase } from '../../src/store/database.js';
import { createCacheIndex, type ChainStepRecord } from '../../src/store/cacheIndex.js';
import { createRunLog } from '../../src/store/runs.js';

const trace = { read: ['/root/file1'], listed: [], statted: [], absent: ['/root/x'], written: [] };
const step = (index: number, key: string, snapshot: string | null): ChainStepRecord => ({
  index, definitionKey: key, snapshot, stateId: `state-${key}`, trace, copies: [{ source: '', dest: '/root' }], repeatable: false, succeeded: true, background: [],
});

test('cache index stores chains and finds candidates by first key, newest first, across reopen', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'strata-db-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'strata.db');
  let db = openDatabase(file);
  let index = createCacheIndex(db);
  const base = { repo: '/r', runner: 'main-layerfile', layerfile: 'Layerfile', runId: 'run1' };
  const older = index.startChain({ ...base, tree: 'tree1' }, 1000);
  index.addStep(older, step(0, 'k0', 'snap-a0'));
  index.addStep(older, step(1, 'k1', null));
  index.completeChain(older);
  const newer = index.startChain({ ...base, tree: 'tree2' }, 2000);
  index.addStep(newer, step(0, 'k0', 'snap-b0'));
  const other = index.startChain({ ...base, tree: 'tree3' }, 3000);
  index.addStep(other, step(0, 'different', 'snap-c0'));
  db.close();

  db = openDatabase(file);
  index = createCacheIndex(db);
  const found = index.candidates('/r', 'main-layerfile', 'k0');
  assert.deepEqual(found.map((c) => c.tree), ['tree2', 'tree1']);
  assert.equal(found[1]?.complete, true);
  assert.equal(found[0]?.complete, false);
  assert.deepEqual(found[1]?.steps.map((s) => [s.index, s.snapshot, s.stateId]), [[0, 'snap-a0', 'state-k0'], [1, null, 'state-k1']]);
  assert.deepEqual(found[1]?.steps[0]?.trace, trace);
  assert.deepEqual(index.candidates('/r', 'other-runner', 'k0'), []);
  assert.deepEqual([...index.referencedSnapshots()].sort(), ['snap-a0', 'snap-b0', 'snap-c0']);
  db.close();
});

test('cache index keeps each step\'s background commands; a database from before the column reads them as none', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'strata-db-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'strata.db');
  // A database as the first schema version left it: no background column, one step row.
  const memory = openDatabase(':memory:');
  const latest = memory.pragma('user_version', { simple: true }) as number;
  memory.close();
  let db = new Database(file);
  db.exec(FIRST_SCHEMA);
  db.pragma('user_version = 1');
  db.prepare("INSERT INTO chains (id, repo, runner, layerfile, tree, run_id, created_at) VALUES ('old', '/r', 'main', 'Layerfile', 't0', 'r0', 1)").run();
  db.prepare("INSERT INTO chain_steps (chain_id, idx, definition_key, state_id, trace) VALUES ('old', 0, 'k0', 's', NULL)").run();
  db.close();

  db = openDatabase(file);
  assert.equal(db.pragma('user_version', { simple: true }), latest, 'the migration adding the column ran');
  const index = createCacheIndex(db);
  assert.deepEqual(index.candidates('/r', 'main', 'k0')[0]?.steps[0]?.background, []);

  const server = { command: 'perl server.pl', env: { PATH: '/usr/bin', CI: 'true' }, workdir: '/root/app', user: 'app' };
  const worker = { command: '. /etc/setup && ./worker', env: {}, workdir: '/', user: 'root' };
  const chain = index.startChain({ repo: '/r', runner: 'main', layerfile: 'Layerfile', tree: 't1', runId: 'r1' }, 2);
  index.addStep(chain, { ...step(0, 'k0', 'snap-0'), background: [server] });
  index.addStep(chain, { ...step(1, 'k1', 'snap-1'), background: [server, worker] });
  db.close();
  db = openDatabase(file);
  t.after(() => db.close());
  const found = createCacheIndex(db).candidates('/r', 'main', 'k0')[0];
  assert.equal(found?.tree, 't1');
  assert.deepEqual(found?.steps.map((s) => s.background), [[server], [server, worker]], 'kept in start order, values as given');
});

test('run log records runners and steps with reasons and returns the last run', () => {
  const db = openDatabase(':memory:');
  const log = createRunLog(db);
  log.createRun({ id: 'r1', repo: '/r', commit: 'c1', tree: 't1', branch: 'main', startedAt: 1 });
  log.createRun({ id: 'r2', repo: '/r', commit: 'c2', tree: 't2', branch: 'main', startedAt: 2 });
  log.setRunner('r2', { runner: 'main-layerfile', layerfile: 'Layerfile', status: 'running', plan: 'restore after step 2' });
  log.setStep('r2', { runner: 'main-layerfile', index: 0, line: 2, text: 'COPY . .', status: 'cached', reason: null, durationMs: null, snapshot: 's0' });
  log.setStep('r2', { runner: 'main-layerfile', index: 1, line: 3, text: 'RUN cat file1', status: 'ran', reason: { message: 'file1 content changed (read by step 2)', path: 'file1', kind: 'content-changed' }, durationMs: 12, snapshot: 's1' });
  log.setRunner('r2', { runner: 'main-layerfile', layerfile: 'Layerfile', status: 'success' });
  log.finishRun('r2', 'success', 3);
  const last = log.lastRun('/r');
  assert.equal(last?.id, 'r2');
  assert.equal(last?.status, 'success');
  assert.equal(last?.runners[0]?.status, 'success');
  assert.equal(last?.runners[0]?.plan, 'restore after step 2', 'a later status update keeps the plan');
  assert.deepEqual(last?.runners[0]?.steps.map((s) => s.status), ['cached', 'ran']);
  assert.equal(last?.runners[0]?.steps[1]?.reason?.path, 'file1');
  assert.equal(log.getRun('r1')?.status, 'running');
  assert.equal(log.lastRun('/other'), undefined);
});

test('store lock: exclusive while held, released, and a dead holder is taken over', async (t) => {
  const { lockStore } = await import('../../src/store/lock.js');
  const { writeFileSync } = await import('node:fs');
  const dir = mkdtempSync(join(tmpdir(), 'strata-lock-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const first = await lockStore(dir);
  await assert.rejects(lockStore(dir, { waitMs: 300 }), /already holds the lock/);
  await first.release();
  // A live holder (another process) makes a taker wait, then give up with its pid in the message.
  const { spawn } = await import('node:child_process');
  const holder = spawn('sleep', ['30']);
  t.after(() => holder.kill());
  writeFileSync(join(dir, 'lock'), String(holder.pid));
  let waitedFor = 0;
  await assert.rejects(lockStore(dir, { waitMs: 300, onWait: (pid) => (waitedFor = pid) }), new RegExp(`in use by process ${holder.pid}`));
  assert.equal(waitedFor, holder.pid);
  holder.kill();
  await new Promise((resolve) => holder.once('exit', resolve));
  const second = await lockStore(dir, { waitMs: 1000 });
  await second.release();
  writeFileSync(join(dir, 'lock'), '999999999'); // no such process
  const third = await lockStore(dir, { waitMs: 300 });
  await third.release();
});

test('pruneChains keeps the newest chains of every runner and forgets the rest with their steps', () => {
  const db = openDatabase(':memory:');
  const index = createCacheIndex(db);
  const base = { layerfile: 'Layerfile', runId: 'run' };
  for (let i = 0; i < 5; i++) {
    const id = index.startChain({ ...base, repo: '/r', runner: 'a', tree: `t${i}` }, 1000 + i);
    index.addStep(id, step(0, 'k0', `snap-a${i}`));
  }
  const other = index.startChain({ ...base, repo: '/r', runner: 'b', tree: 'tb' }, 1);
  index.addStep(other, step(0, 'k0', 'snap-b'));
  assert.equal(index.pruneChains(2), 3);
  assert.deepEqual(index.candidates('/r', 'a', 'k0').map((c) => c.tree), ['t4', 't3']);
  assert.deepEqual(index.candidates('/r', 'b', 'k0').map((c) => c.tree), ['tb'], 'other runners keep their own newest');
  assert.deepEqual([...index.referencedSnapshots()].sort(), ['snap-a3', 'snap-a4', 'snap-b']);
  assert.equal((db.prepare('SELECT COUNT(*) AS n FROM chain_steps').get() as { n: number }).n, 3, 'forgotten chains lose their steps');
  assert.equal(index.pruneChains(2), 0);
});
