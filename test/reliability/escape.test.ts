// Ways out of a machine that must all be closed: the host's files by absolute path, new mounts, the
// host's kernel settings, devices, and TCP servers listening on the host (loopback, and its other
// addresses). A system machine (every vm/ image) is root of namespaces of its own: it may mount and set
// its hostname there, as a VM may (docker needs it), so for those the test checks that nothing reaches
// the host's: its mount table and its hostname.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import type { TestContext } from 'node:test';
import { hostname, networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireRoot } from '../helpers/env.js';
import { createGitRepo, createTestEngine } from '../helpers/engine.js';

const runner = 'main-layerfile';

/** A TCP server on `host` that counts the connections it accepts. */
async function listen(host: string): Promise<{ server: Server; port: number; connections: () => number }> {
  let count = 0;
  const server = createServer((socket) => {
    count++;
    socket.end('host-secret\n');
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, host, resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return { server, port: address.port, connections: () => count };
}

/** Runs a Layerfile of checks; each prints ESCAPED-<name> if the attempt worked, CONTAINED-<name> if not. */
async function runChecks(t: TestContext, checks: Array<[string, string]>): Promise<{ escaped: string[]; all: string }> {
  const layerfile = ['FROM vm/debian:12', ...checks.map(([name, attempt]) => `RUN if ${attempt}; then echo ESCAPED-${name}; else echo CONTAINED-${name}; fi`), ''].join('\n');
  const repo = createGitRepo(t, { Layerfile: layerfile });
  const engine = await createTestEngine(t);
  const { result, output } = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  const all = [...output.values()].join('');
  assert.equal(result.status, 'success', all);
  const escaped = checks
    .filter(([name], i) => {
      const text = output.get(`${runner}#${i}`) ?? '';
      return !text.includes(`CONTAINED-${name}`) || text.includes(`ESCAPED-${name}`);
    })
    .map(([name]) => name);
  return { escaped, all };
}

/** Connects to host:port from inside the machine and succeeds if the host server's greeting arrives. */
const tcp = (host: string, port: number): string => `timeout 5 bash -c 'exec 3<>/dev/tcp/${host}/${port} && head -c 100 <&3' 2>/dev/null | grep -q host-secret`;

test('reliability: a machine cannot reach the host (files, mounts, sysctls, loopback TCP)', { timeout: 180_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const markerDir = mkdtempSync(join(tmpdir(), 'strata-rel-marker-'));
  const secret = randomBytes(16).toString('hex');
  const marker = join(markerDir, 'host-marker');
  writeFileSync(marker, `${secret}\n`);
  const loopback = await listen('127.0.0.1');
  t.after(async () => {
    await new Promise((resolve) => loopback.server.close(resolve));
    rmSync(markerDir, { recursive: true, force: true });
  });
  const hostnameBefore = hostname();
  const probe = `strata-escape-${randomBytes(4).toString('hex')}`;
  // Allowed in a system machine's own namespaces, harmless there; their effect must not reach the host.
  const namespaced = [
    `mkdir -p /tmp/m && mount -t tmpfs ${probe} /tmp/m 2>/dev/null`,
    `hostname ${probe} 2>/dev/null`,
    `echo ${probe} > /proc/sys/kernel/hostname 2>/dev/null`,
  ];
  const checks: Array<[string, string]> = [
    ['read-host-file', `cat ${marker} 2>/dev/null | grep -q ${secret}`],
    // A host-wide kernel setting (written with its own value: harmless if it ever worked).
    ['write-host-sysctl', 'cat /proc/sys/vm/swappiness > /proc/sys/vm/swappiness 2>/dev/null'],
    ['mknod-block-device', 'mknod /tmp/disk b 7 0 2>/dev/null && head -c 512 /tmp/disk >/dev/null 2>&1'],
    ['sysrq-trigger', 'echo h > /proc/sysrq-trigger 2>/dev/null'],
    ['tcp-host-127.0.0.1', tcp('127.0.0.1', loopback.port)],
    // slirp4netns maps its gateway 10.0.2.2 to the host's loopback unless --disable-host-loopback.
    ['tcp-host-loopback-via-10.0.2.2', tcp('10.0.2.2', loopback.port)],
    ...namespaced.map((attempt, i): [string, string] => [`namespaced-${i}`, `{ ${attempt}; false; }`]),
  ];
  const { escaped, all } = await runChecks(t, checks);
  console.log(`reliability escape: ${checks.length} attempts, ${checks.length - escaped.length} contained, escaped: ${escaped.join(', ') || 'none'}`);
  assert.ok(!all.includes(secret), 'the host marker never shows up in the output');
  assert.equal(loopback.connections(), 0, 'no connection reached the host loopback server');
  assert.equal(hostname(), hostnameBefore, 'the host hostname is unchanged');
  // A mount that propagated out of the machine would outlive it in the host's mount table.
  assert.ok(!readFileSync('/proc/self/mountinfo', 'utf8').includes(probe), 'no mount made in the machine is on the host');
  assert.deepEqual(escaped, []);
});

// slirp4netns opens the machine's outbound connections from the host's network namespace, and
// --disable-host-loopback only blocks 10.0.2.2 -> 127.0.0.1: the host's own non-loopback addresses
// are plain outbound destinations, so every host service bound to 0.0.0.0 or a LAN address is open
// to every Layerfile.
test('reliability: a machine cannot reach a TCP server on the host\'s non-loopback address', { timeout: 180_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const external = Object.values(networkInterfaces())
    .flat()
    .find((a) => a !== undefined && a.family === 'IPv4' && !a.internal);
  if (!external) {
    t.skip('the host has no non-loopback IPv4 address');
    return;
  }
  const server = await listen(external.address);
  t.after(() => new Promise((resolve) => server.server.close(resolve)));
  const name = `tcp-host-${external.address}`;
  const { escaped } = await runChecks(t, [[name, tcp(external.address, server.port)]]);
  console.log(`reliability escape (host address): ${external.address} ${escaped.length ? 'REACHABLE' : 'contained'}`);
  assert.equal(server.connections(), 0, `no connection reached the server on ${external.address}`);
  assert.deepEqual(escaped, []);
});
