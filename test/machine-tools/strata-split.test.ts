// strata-split (machine-tools/bin), run on the host with bash and awk like inside a machine.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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

test("strata-split: strata's stored timings ($STRATA_SPLIT_TIMINGS) are the default, a named file wins, an empty one means sizes", (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'strata-split-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // Sizes say big.js is heavy; strata's timings say small.js is.
  writeFileSync(join(dir, 'big.js'), 'x'.repeat(1000));
  writeFileSync(join(dir, 'small.js'), 'x');
  writeFileSync(join(dir, 'mid.js'), 'x'.repeat(500));
  writeFileSync(join(dir, 'stored'), 'small.js 30\n./big.js 1\nmid.js 2\n');
  writeFileSync(join(dir, 'named'), 'mid.js 50\nbig.js 1\nsmall.js 1\n');
  writeFileSync(join(dir, 'empty'), '');
  const files = ['big.js', 'small.js', 'mid.js'];
  const copy0 = (env: Record<string, string>, args: string[] = []) => split([...args, ...files], { SPLIT: '0', SPLIT_NUM: '2', ...env }, undefined, dir);
  assert.deepEqual(copy0({ STRATA_SPLIT_TIMINGS: 'stored' }).out, ['small.js'], 'by the stored times (./big.js is big.js)');
  assert.deepEqual(copy0({ STRATA_SPLIT_TIMINGS: 'stored' }, ['--timings', 'named']).out, ['mid.js'], 'the named file wins');
  assert.deepEqual(copy0({ STRATA_SPLIT_TIMINGS: 'empty' }).out, ['big.js'], 'no stored times: by size');
  assert.deepEqual(copy0({}).out, ['big.js'], 'none at all: by size');
});

test('strata-split: with any time known, sizes are not looked at (files without a time weigh the mean)', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'strata-split-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // a.js is by far the biggest, but only an unrelated file has a time: all three weigh the same (the
  // mean), so the order is by name: a -> 0, b -> 1, c -> 0 (loads equal: the lower copy).
  writeFileSync(join(dir, 'a.js'), 'x'.repeat(10_000));
  writeFileSync(join(dir, 'b.js'), 'x');
  writeFileSync(join(dir, 'c.js'), 'x');
  writeFileSync(join(dir, 'timings'), 'gone.js 4\n');
  const shares = [0, 1].map((i) => split(['--timings', 'timings', 'c.js', 'b.js', 'a.js'], { SPLIT: String(i), SPLIT_NUM: '2' }, undefined, dir).out);
  assert.deepEqual(shares, [['c.js', 'a.js'], ['b.js']]);
  // By size, a.js alone would be copy 0's share.
  assert.deepEqual(split(['c.js', 'b.js', 'a.js'], { SPLIT: '0', SPLIT_NUM: '2' }, undefined, dir).out, ['a.js']);
});

test('strata-split --run: runs the share one file at a time, reports each time to $STRATA_TIMINGS_OUT, fails if one failed', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'strata-split-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'ok.sh'), 'echo "ran ok.sh with $1"\n');
  writeFileSync(join(dir, 'bad.sh'), 'echo ran bad.sh; exit 3\n');
  writeFileSync(join(dir, 'other.sh'), 'echo ran other.sh\n');
  const out = join(dir, 'report');
  const list = 'ok.sh\nbad.sh\nother.sh\n';
  const shares = [0, 1].map((i) => split(['--run', 'bash'], { SPLIT: String(i), SPLIT_NUM: '2', STRATA_TIMINGS_OUT: out }, list, dir));
  const ran = shares.flatMap((s) => s.out).sort();
  assert.deepEqual(ran, ['ran bad.sh', 'ran ok.sh with ', 'ran other.sh'], 'every file ran once, with the file as the last argument');
  const failing = shares.find((s) => s.out.includes('ran bad.sh'));
  assert.equal(failing?.code, 1);
  assert.match(failing?.err ?? '', /bad\.sh failed \(exit 3\)/);
  assert.equal(shares.find((s) => !s.out.includes('ran bad.sh'))?.code, 0);
  const report = readFileSync(out, 'utf8').split('\n').filter(Boolean);
  assert.deepEqual(report.map((l) => l.split(' ')[0]).sort(), ['bad.sh', 'ok.sh', 'other.sh']);
  for (const line of report) assert.match(line, /^\S+ \d+\.\d{3}$/);
  // Files as arguments and --run do not mix.
  assert.equal(split(['ok.sh', '--run', 'bash'], { SPLIT: '0', SPLIT_NUM: '2' }, '', dir).code, 2);
});
