import { test } from 'node:test';
import assert from 'node:assert/strict';
import { exec, execOrThrow } from '../../src/util/exec.js';
import { isStrataError } from '../../src/errors.js';

test('exec captures stdout, stderr and the exit code as a value', async () => {
  const result = await exec('bash', ['-c', 'echo out; echo err >&2; exit 3']);
  assert.equal(result.exitCode, 3);
  assert.equal(result.stdout, 'out\n');
  assert.equal(result.stderr, 'err\n');
  assert.equal(result.timedOut, false);
});

test('exec passes arguments without a shell and feeds input', async () => {
  const result = await exec('cat', [], { input: 'a $HOME `x`' });
  assert.equal(result.stdout, 'a $HOME `x`');
  const args = await exec('printf', ['%s|', 'a b', '$x']);
  assert.equal(args.stdout, 'a b|$x|');
});

test('exec kills on timeout and on abort', async () => {
  const timed = await exec('sleep', ['10'], { timeoutMs: 100 });
  assert.equal(timed.timedOut, true);
  assert.equal(timed.signal, 'SIGKILL');
  const controller = new AbortController();
  setTimeout(() => controller.abort(), 50);
  const canceled = await exec('sleep', ['10'], { signal: controller.signal });
  assert.equal(canceled.canceled, true);
  assert.equal(canceled.exitCode, null);
});

test('exec reports a program that cannot start', async () => {
  const result = await exec('/nonexistent/program', []);
  assert.ok(result.spawnError);
  assert.equal(result.exitCode === 0, false);
});

test('execOrThrow raises a StrataError carrying stderr', async () => {
  await assert.rejects(
    execOrThrow('bash', ['-c', 'echo boom >&2; exit 1'], { errorCode: 'STRATA_SANDBOX_EXEC' }),
    (error: unknown) => isStrataError(error) && error.code === 'STRATA_SANDBOX_EXEC' && error.message.includes('boom'),
  );
  const ok = await execOrThrow('true', []);
  assert.equal(ok.exitCode, 0);
});
