#!/usr/bin/env node
// Runs the whole suite: strict typecheck, then every test/**/*.test.ts under node's test runner
// (TypeScript loaded through tsx). Arguments filter test files by substring: `npm test -- parser`.
// Then the host check: whatever strata-made thing (mount, loop device, runc container, cgroup, network
// namespace, firewall rule, state or temp dir, process) is new since before the suite is listed, fails
// the run and is removed (test/harness/leftovers.ts). SIGINT/SIGTERM stop the tests and sweep the same way.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const filters = process.argv.slice(2);

function findTests(dir) {
  const found = [];
  for (const name of readdirSync(dir)) {
    const full = join(dir, name);
    if (name === 'fixtures' || name === 'node_modules') continue;
    if (statSync(full).isDirectory()) found.push(...findTests(full));
    else if (name.endsWith('.test.ts')) found.push(full);
  }
  return found;
}

// The engine/server/CLI project, then the web UI's (DOM, JSX) project.
const typecheck = spawnSync('npm', ['run', '--silent', 'typecheck'], { cwd: root, stdio: 'inherit' });
if (typecheck.status !== 0) {
  console.error('typecheck failed');
  process.exit(typecheck.status ?? 1);
}

const files = findTests(join(root, 'test'))
  .map((f) => relative(root, f))
  .filter((f) => filters.length === 0 || filters.some((p) => f.includes(p)))
  .sort();
if (files.length === 0) {
  console.error('no test files matched');
  process.exit(1);
}

const leftovers = (command, file) =>
  spawnSync(process.execPath, ['--import', 'tsx', 'test/harness/leftovers.ts', command, file], { cwd: root, stdio: 'inherit' }).status;
// Not under /tmp/strata-*: the inventory file must not count as a leftover of its own.
const inventoryDir = mkdtempSync(join(tmpdir(), 'test-inventory-'));
const inventory = join(inventoryDir, 'before.json');
leftovers('inventory', inventory);

const runner = spawn(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-reporter=spec', '--test-concurrency=2', ...files],
  { cwd: root, stdio: 'inherit' },
);
let interrupted = null;
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    if (interrupted) return;
    interrupted = signal;
    console.error(`\n${signal}: stopping the tests, then removing what they made`);
    runner.kill(signal);
    // A test file that does not stop within 20 s is killed; the sweep removes what it left.
    setTimeout(() => runner.kill('SIGKILL'), 20_000).unref();
  });
}
runner.on('exit', (code, signal) => {
  let status = code ?? (signal ? 1 : 0);
  if (interrupted) {
    leftovers('sweep', inventory);
    status = interrupted === 'SIGINT' ? 130 : 143;
  } else if (leftovers('check', inventory) !== 0) {
    console.error('leftovers: failing the run (a test did not clean up after itself)');
    status = status || 1;
  }
  rmSync(inventoryDir, { recursive: true, force: true });
  process.exit(status);
});
