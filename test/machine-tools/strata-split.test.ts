// strata-split (machine-tools/bin), run on the host with bash and awk like inside a machine.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const script = fileURLToPath(new URL('../../machine-tools/bin/strata-split', import.meta.url));

function split(args: string[], env: Record<string, string>, input?: string, cwd?: string) {
  const result = spawnSync('bash', [script, ...args], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env }, input: input ?? '', encoding: 'utf8', cwd });
  return { code: result.status, out: result.stdout.split('\n').filter(Boolean), err: result.stderr };
}

test('strata-split: the copies partition the files, each file once, in the given order', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'strata-split-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const names = ['b.js', 'a.js', 'c.js', 'd js.js', 'e.js'];
  names.forEach((n, i) => writeFileSync(join(dir, n), 'x'.repeat((i + 1) * 10)));
  const shares = [0, 1].map((i) => split(names, { SPLIT: String(i), SPLIT_NUM: '2' }, undefined, dir));
  for (const share of shares) assert.equal(share.code, 0, share.err);
  assert.deepEqual(shares.flatMap((s) => s.out).sort(), [...names].sort());
  // Sizes 10..50: 50 -> 0, 40 -> 1, 30 -> 1, 20 -> 0, 10 -> 0 (loads 80 / 70).
  assert.deepEqual(shares[0]?.out, ['b.js', 'a.js', 'e.js']);
  assert.deepEqual(shares[1]?.out, ['c.js', 'd js.js']);
  // stdin and --index/--count give the same.
  assert.deepEqual(split(['--index', '1', '--count', '2'], {}, names.join('\n') + '\n', dir).out, ['c.js', 'd js.js']);
});

test('strata-split: timings weigh files; unknown files weigh the mean of the known ones', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'strata-split-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'timings'), 'slow.js 30\nfast.js 10\n');
  const files = ['fast.js', 'slow.js', 'new.js'];
  // Weights 10, 30, 20 (mean): slow -> 0, new -> 1, fast -> 1.
  assert.deepEqual(split(['--timings', 'timings', ...files], { SPLIT: '0', SPLIT_NUM: '2' }, undefined, dir).out, ['slow.js']);
  assert.deepEqual(split(['--timings', 'timings', ...files], { SPLIT: '1', SPLIT_NUM: '2' }, undefined, dir).out, ['fast.js', 'new.js']);
});

test('strata-split: clear errors without a SPLIT index, for a copy that does not exist, or unreadable timings', () => {
  const unordered = split(['a'], { SPLIT_NUM: '2' });
  assert.equal(unordered.code, 2);
  assert.match(unordered.err, /SPLIT UNORDERED copies have none/);
  assert.match(split(['a'], {}).err, /no SPLIT_NUM/);
  assert.match(split(['a'], { SPLIT: '3', SPLIT_NUM: '3' }).err, /copy 3 of 3 does not exist/);
  assert.match(split(['--timings', '/nonexistent', 'a'], { SPLIT: '0', SPLIT_NUM: '1' }).err, /cannot read timings file/);
  assert.deepEqual(split([], { SPLIT: '0', SPLIT_NUM: '2' }), { code: 0, out: [], err: '' });
});
