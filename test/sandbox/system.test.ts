// System-container machines (MachineSpec.kind 'system', docs/design/system-container.md) against the
// Sandbox conformance suite: the runc backend with its own user namespace, idmapped root and systemd as
// PID 1, on writable btrfs snapshots of vm/debian:12. Plus what is particular to the kind: the
// machine's root is an unprivileged host uid with a range of its own, and what a machine leaves.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import type { AddressInfo, Server } from 'node:net';
import { hostname, networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRuncSandbox } from '../../src/sandbox/runc/index.js';
import { defaultUidRangeRegistry, systemIdBase } from '../../src/sandbox/runc/system.js';
import type { Machine, Sandbox } from '../../src/sandbox/types.js';
import { exec } from '../../src/util/exec.js';
import { attachFuse } from '../../src/trace/fuse.js';
import { isRoot, requireRoot } from '../helpers/env.js';
import { runSandboxConformance } from './conformance.js';
import { runcMachineLeftovers } from './runcLeftovers.js';
import { systemRootfsFactory } from './systemRootfs.js';

const prefix = `strata-test${process.pid}-`;
const stateRoot = mkdtempSync(join(tmpdir(), 'strata-sandbox-state-'));
const runcSandbox = () => createRuncSandbox({ prefix, stateRoot });
/** The runc sandbox, every machine of which is a system machine. */
const sandbox = (): Sandbox => {
  const inner = runcSandbox();
  return { start: (spec) => inner.start({ ...spec, kind: 'system' }), reapLeftovers: () => inner.reapLeftovers() };
};
const roots = systemRootfsFactory();

after(async () => {
  if (isRoot) await runcSandbox().reapLeftovers();
  await rm(stateRoot, { recursive: true, force: true });
  await roots.close();
});

/** Uid-range claims (host-wide registry) that name a machine's state dir. */
function claimsOf(name: string): string[] {
  const stateDir = join(stateRoot, 'machines', name);
  if (!existsSync(defaultUidRangeRegistry)) return [];
  return readdirSync(defaultUidRangeRegistry).filter((entry) => {
    try {
      return readFileSync(join(defaultUidRangeRegistry, entry), 'utf8').includes(JSON.stringify(stateDir));
    } catch {
      return false;
    }
  });
}

async function leftovers(machine: Machine): Promise<string[]> {
  const found = await runcMachineLeftovers(machine, { prefix, stateRoot });
  found.push(...claimsOf(prefix + machine.id).map((claim) => `uid range claim ${claim}`));
  return found;
}

runSandboxConformance({
  name: 'runc system',
  sandbox,
  makeRootfs: (t) => roots.makeRootfs(t),
  leftovers,
});

test('runc system: root is an unprivileged host uid, each live machine has its own range, systemd runs as PID 1', { timeout: 120_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const machines: Machine[] = [];
  t.after(() => Promise.all(machines.map((machine) => machine.destroy())));
  for (const id of ['uid-a', 'uid-b']) {
    const rootfs = await roots.makeRootfs(t);
    machines.push(await sandbox().start({ id: `${id}-${process.pid}`, rootfs, network: 'none' }));
  }
  const hostUids = machines.map((machine) => Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${machine.pid}/status`, 'utf8'))?.[1]));
  for (const uid of hostUids) assert.ok(uid >= systemIdBase && (uid - systemIdBase) % 65536 === 0, `init runs as host uid ${uid}`);
  assert.notEqual(hostUids[0], hostUids[1], 'live machines have different ranges');
  for (const machine of machines) {
    assert.equal(machine.boot?.state, 'running', JSON.stringify(machine.boot));
    t.diagnostic(`${machine.id}: boot ${Math.round(machine.boot?.durationMs ?? 0)} ms, host uid of root ${hostUids[machines.indexOf(machine)]}`);
  }
  let output = '';
  const probe = [
    'cat /proc/1/comm',
    'id -u',
    'echo made > /root/owned; stat -c %u /root/owned',
    // writes the value back as it is: harmless even if it got through
    'cat /proc/sys/vm/swappiness > /proc/sys/vm/swappiness 2>/dev/null && echo host-sysctl-written',
    'cat /proc/sys/kernel/printk_ratelimit > /proc/sys/kernel/printk_ratelimit 2>/dev/null && echo host-sysctl-written',
    'echo 1 > /sys/kernel/mm/transparent_hugepage/khugepaged/defrag 2>/dev/null && echo host-sysfs-written',
    'mknod /tmp/sda b 8 0 2>/dev/null && echo mknod',
    'echo 1 > /sys/fs/cgroup/cgroup.kill 2>/dev/null; echo alive',
  ].join('; ');
  await machines[0]!.exec({ command: probe, onOutput: (chunk) => chunk.stream === 'stdout' && (output += chunk.data.toString()) });
  assert.equal(output, 'systemd\n0\n0\nalive\n');
  // On disk, through the idmapped mount, the machine's root is 0: snapshots keep 0-based ownership.
  const onDisk = await exec('stat', ['-c', '%u', join(machines[0]!.rootfs, 'root/owned')]);
  assert.equal(onDisk.stdout.trim(), '0');
});

test('runc system: the tracer (strata-tracefs --user-ns) traces a directory of a system machine; created files are the machine root\'s', { timeout: 60_000 }, async (t) => {
  if (!requireRoot(t)) return;
  let machine: Machine | undefined;
  let session: Awaited<ReturnType<typeof attachFuse>> | undefined;
  t.after(async () => {
    await session?.detach();
    await machine?.destroy();
  });
  const rootfs = await roots.makeRootfs(t);
  machine = await sandbox().start({ id: `trace-${process.pid}`, rootfs, network: 'none' });
  const run = async (command: string, user?: string) => {
    let output = '';
    const outcome = await machine!.exec({ command, workdir: '/', ...(user ? { user } : {}), onOutput: (chunk) => (output += chunk.data.toString()) });
    assert.equal(outcome.exitCode, 0, output);
    return output;
  };
  await run('mkdir -p /app && echo old > /app/f && chown nobody /app && chmod 777 /app');
  // fuse.ts sees the machine's own user namespace and passes --user-ns
  session = await attachFuse({ dir: '/app', machinePrefix: '/app', mountNamespacePid: machine.pid });
  await session.beginStep(1);
  await run('cat /app/f >/dev/null && echo new > /app/by-root && mkdir /app/d');
  await run('echo x > /app/by-nobody', 'nobody');
  const trace = await session.endStep();
  assert.deepEqual(trace.read, ['/app/f']);
  assert.deepEqual(trace.written, ['/app/by-nobody', '/app/by-root', '/app/d']);
  assert.match(await run('findmnt -n -o FSTYPE /app'), /fuse\.strata-tracefs/);
  await session.detach();
  session = undefined;
  // On disk (the raw subvolume) the ids are the machine's, 0-based: no host uid leaks into snapshots.
  const owners = await exec('stat', ['-c', '%n %u', ...['by-root', 'd', 'by-nobody'].map((name) => join(rootfs, 'app', name))]);
  assert.equal(owners.stdout.replaceAll(`${rootfs}/app/`, ''), 'by-root 0\nd 0\nby-nobody 65534\n');
  assert.equal(readFileSync(join(rootfs, 'app/by-root'), 'utf8'), 'new\n');
});

test('runc system: the machine cannot reach the host: its files, its loopback (10.0.2.2), its other addresses, its sysctls and hostname', { timeout: 60_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const servers: Server[] = [];
  let connections = 0;
  const listen = async (host: string): Promise<number> => {
    const server = createServer((socket) => {
      connections++;
      socket.end('host-secret\n');
    });
    servers.push(server);
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, host, resolve));
    return (server.address() as AddressInfo).port;
  };
  let machine: Machine | undefined;
  t.after(async () => {
    await machine?.destroy();
    for (const server of servers) await new Promise((resolve) => server.close(resolve));
  });
  const loopbackPort = await listen('127.0.0.1');
  const external = Object.values(networkInterfaces())
    .flat()
    .find((address) => address !== undefined && address.family === 'IPv4' && !address.internal);
  const externalPort = external ? await listen(external.address) : undefined;
  const swappiness = readFileSync('/proc/sys/vm/swappiness', 'utf8');
  const hostnameBefore = hostname();
  const rootfs = await roots.makeRootfs(t);
  machine = await sandbox().start({ id: `escape-${process.pid}`, rootfs, network: 'outbound' });
  const tcp = (host: string, port: number) => `timeout 5 bash -c 'exec 3<>/dev/tcp/${host}/${port} && head -c 100 <&3' 2>/dev/null | grep -q host-secret`;
  const attempts: Array<[string, string]> = [
    ['read-host-file', `test -e ${stateRoot}`],
    ['tcp-host-loopback-via-10.0.2.2', tcp('10.0.2.2', loopbackPort)],
    ...(external && externalPort ? [[`tcp-host-${external.address}`, tcp(external.address, externalPort)] as [string, string]] : []),
    ['write-host-sysctl', 'echo 17 > /proc/sys/vm/swappiness 2>/dev/null'],
    ['sethostname-host', `hostname escaped-${process.pid}; test "$(cat /proc/sys/kernel/hostname)" != escaped-${process.pid}`],
  ];
  let output = '';
  await machine.exec({
    command: attempts.map(([name, attempt]) => `if ${attempt}; then echo ESCAPED-${name}; else echo CONTAINED-${name}; fi`).join('\n'),
    timeoutMs: 40_000,
    onOutput: (chunk) => (output += chunk.data.toString()),
  });
  for (const [name] of attempts) assert.match(output, new RegExp(`CONTAINED-${name}`), output);
  assert.equal(connections, 0, 'no connection reached a host server');
  assert.equal(readFileSync('/proc/sys/vm/swappiness', 'utf8'), swappiness);
  assert.equal(hostname(), hostnameBefore, 'the host hostname is unchanged');
});

test('runc system: a unit that fails at boot leaves the machine usable: start() accepts `degraded` and names the unit', { timeout: 60_000 }, async (t) => {
  if (!requireRoot(t)) return;
  let machine: Machine | undefined;
  t.after(() => machine?.destroy());
  const rootfs = await roots.makeRootfs(t);
  const unit = join(rootfs, 'etc/systemd/system/strata-fails.service');
  writeFileSync(unit, '[Unit]\nDescription=fails at boot\n[Service]\nType=oneshot\nExecStart=/bin/false\n[Install]\nWantedBy=multi-user.target\n');
  symlinkSync('/etc/systemd/system/strata-fails.service', join(rootfs, 'etc/systemd/system/multi-user.target.wants/strata-fails.service'));
  machine = await sandbox().start({ id: `degraded-${process.pid}`, rootfs, network: 'none' });
  assert.equal(machine.boot?.state, 'degraded');
  assert.deepEqual(machine.boot?.failedUnits, ['strata-fails.service']);
  let output = '';
  await machine.exec({ command: 'echo usable', onOutput: (chunk) => (output += chunk.data.toString()) });
  assert.equal(output, 'usable\n');
});

// btrfs snapshots do not descend into subvolumes: one made inside a machine would be an empty directory
// in the next step's snapshot. Both kinds of machine, on a btrfs root (where, unfiltered, the ioctl
// succeeds: any user with write access may create a subvolume), are refused as on a filesystem without.
test('a machine of either kind cannot create a btrfs subvolume in its btrfs root (a snapshot would lose its content)', { timeout: 60_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const createSubvolume = (request: number) =>
    `perl -e 'use Fcntl; sysopen(my $d, "/root", O_RDONLY|O_DIRECTORY) or die "open: $!"; my $a = pack("q a4088", 0, "nested"); ` +
    `print ioctl($d, ${request}, $a) ? "created\\n" : "refused: $!\\n"'`;
  for (const kind of ['container', 'system'] as const) {
    let started: Machine | undefined;
    t.after(() => started?.destroy()); // before the root's removal is registered
    const rootfs = await roots.makeRootfs(t);
    const machine = (started = await runcSandbox().start({ id: `subvol-${kind}`, rootfs, network: 'none', ...(kind === 'system' ? { kind } : {}) }));
    // BTRFS_IOC_SUBVOL_CREATE and BTRFS_IOC_SUBVOL_CREATE_V2 (btrfs-progs uses the latter; same size of argument).
    for (const request of [0x5000940e, 0x50009418]) {
      let output = '';
      const outcome = await machine.exec({ command: createSubvolume(request), onOutput: (chunk) => (output += chunk.data.toString()) });
      assert.equal(outcome.exitCode, 0, output);
      assert.equal(output, 'refused: Inappropriate ioctl for device\n', `${kind} machine, ioctl ${request.toString(16)}`);
    }
    assert.equal(existsSync(join(rootfs, 'root', 'nested')), false);
  }
});
