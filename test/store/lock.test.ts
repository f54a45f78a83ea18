import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { lockStore } from '../../src/store/lock.js';

test('store lock: exclusive while held, released, and a dead holder is taken over', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'strata-lock-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const first = await lockStore(dir);
  await assert.rejects(lockStore(dir, { waitMs: 300 }), /already holds the lock/);
  await first.release();
  // A live holder (another process) makes a taker wait, then give up with its pid in the message.
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
