// System-container machines doing what a VM does (docs/design/system-container.md): packages start
// their services, systemctl works, docker runs containers with published ports, and a machine restored
// from a btrfs snapshot boots with its services answering again, nobody restarting them by hand. Needs
// root and the network (Debian's archive). The apt archive is a CACHE-style host directory, mounted
// writable (idmapped) at /var/cache/apt/archives.
import { after, test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createRuncSandbox } from '../../src/sandbox/runc/index.js';
import { systemIdBase } from '../../src/sandbox/runc/system.js';
import type { Machine, MachineSpec } from '../../src/sandbox/types.js';
import { snapshotName } from '../../src/snapshot/types.js';
import { exec } from '../../src/util/exec.js';
import { isRoot, requireRoot } from '../helpers/env.js';
import { systemRootfsFactory } from './systemRootfs.js';

const prefix = `strata-test${process.pid}-`;
const stateRoot = mkdtempSync(join(tmpdir(), 'strata-sandbox-state-'));
const sandbox = () => createRuncSandbox({ prefix, stateRoot });
const roots = systemRootfsFactory();
const aptArchives = mkdtempSync(join(tmpdir(), 'strata-system-apt-'));

after(async () => {
  if (isRoot) await sandbox().reapLeftovers();
  await rm(stateRoot, { recursive: true, force: true });
  await roots.close();
  await rm(aptArchives, { recursive: true, force: true });
});

const env = { DEBIAN_FRONTEND: 'noninteractive', PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' };

async function run(machine: Machine, command: string, timeoutMs = 60_000): Promise<{ exitCode: number | null; stdout: string; output: string }> {
  let stdout = '';
  let output = '';
  const outcome = await machine.exec({
    command,
    env,
    timeoutMs,
    onOutput: (chunk) => {
      if (chunk.stream === 'stdout') stdout += chunk.data.toString();
      output += chunk.data.toString();
    },
  });
  return { exitCode: outcome.exitCode, stdout, output };
}

async function ok(machine: Machine, command: string, timeoutMs = 60_000): Promise<string> {
  const result = await run(machine, command, timeoutMs);
  assert.equal(result.exitCode, 0, `${command}\n${result.output.slice(-3000)}`);
  return result.stdout;
}

/**
 * Milliseconds since `since` when the machine's 127.0.0.1:port first answers, polled from the host in
 * its netns: a TCP connect, or with `expect` an HTTP GET whose answer contains it (docker-proxy accepts
 * connections before the container behind it serves).
 */
async function answersAfter(pid: number, port: number, since: number, expect?: string, timeoutMs = 60_000): Promise<number> {
  const deadline = performance.now() + timeoutMs;
  const probeScript =
    expect === undefined
      ? `exec 3<>/dev/tcp/127.0.0.1/${port}`
      : `exec 3<>/dev/tcp/127.0.0.1/${port} && printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3 && timeout 2 cat <&3 | grep -q '${expect}'`;
  while (performance.now() < deadline) {
    const probe = await exec('nsenter', [`--target=${pid}`, '--net', '--', 'bash', '-c', probeScript]);
    if (probe.exitCode === 0) return Math.round(performance.now() - since);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`nothing answered on port ${port} within ${timeoutMs} ms`);
}

test('system machine: services from packages, systemctl, docker with -p; restored from a snapshot, they answer again by themselves', { timeout: 300_000 }, async (t: TestContext) => {
  if (!requireRoot(t)) return;
  const started: Machine[] = [];
  t.after(async () => {
    for (const machine of started.reverse()) await machine.destroy();
  });
  const start = async (spec: Omit<MachineSpec, 'kind' | 'network'>) => {
    const machine = await sandbox().start({ ...spec, kind: 'system', network: 'outbound', portForwarding: true });
    started.push(machine);
    return machine;
  };
  const { store } = await roots.store();
  const first = await roots.prepareRootfs(t);
  const machine = await start({ id: `vm1-${process.pid}`, rootfs: first.path, mounts: [{ source: aptArchives, destination: '/var/cache/apt/archives' }] });
  t.diagnostic(`boot of the image: ${Math.round(machine.boot?.durationMs ?? 0)} ms (${machine.boot?.state})`);

  // The machine's root is an unprivileged host uid and cannot write host sysctls.
  const hostUid = Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${machine.pid}/status`, 'utf8'))?.[1]);
  assert.ok(hostUid >= systemIdBase, `machine root is host uid ${hostUid}`);
  const sysctl = await run(machine, 'cat /proc/sys/vm/swappiness > /proc/sys/vm/swappiness && echo written');
  assert.notEqual(sysctl.exitCode, 0);
  assert.match(sysctl.output, /Permission denied/);

  // Packages start their services.
  let t0 = performance.now();
  await ok(machine, 'apt-get update -q && apt-get install -y -q postgresql nginx curl', 240_000);
  t.diagnostic(`apt-get install postgresql nginx curl: ${Math.round(performance.now() - t0)} ms`);
  assert.equal(await ok(machine, 'systemctl is-active postgresql@15-main nginx'), 'active\nactive\n');
  assert.equal(await ok(machine, "su postgres -c \"psql -tAc 'select 1'\""), '1\n');
  assert.match(await ok(machine, 'curl -sI http://localhost/'), /^HTTP\/1\.1 200 OK/);
  // The archive is a writable host directory, idmapped: apt could chown its partial dir to _apt, and
  // on the host the downloaded packages are root's (0-based, as the machine sees them).
  assert.equal((await exec('stat', ['-c', '%u', join(aptArchives, 'partial')])).stdout.trim(), String(Number(await ok(machine, 'id -u _apt'))));
  const nginxPid = await ok(machine, 'systemctl show -p MainPID --value nginx');
  await ok(machine, 'systemctl restart nginx');
  assert.notEqual(await ok(machine, 'systemctl show -p MainPID --value nginx'), nginxPid, 'nginx was restarted');
  assert.match(await ok(machine, 'curl -sI http://localhost/'), /^HTTP\/1\.1 200 OK/);

  // Docker: a FROM-scratch busybox httpd, published on the machine's :8000.
  t0 = performance.now();
  await ok(machine, 'apt-get install -y -q docker.io docker-compose busybox-static', 240_000);
  t.diagnostic(`apt-get install docker.io docker-compose busybox-static: ${Math.round(performance.now() - t0)} ms`);
  const build = [
    'set -e',
    'mkdir -p /root/img/www && cd /root/img',
    'cp /bin/busybox . && echo "hello from docker" > www/index.html',
    'printf "FROM scratch\\nCOPY busybox /bin/busybox\\nCOPY www /www\\nCMD [\\"/bin/busybox\\", \\"httpd\\", \\"-f\\", \\"-p\\", \\"80\\", \\"-h\\", \\"/www\\"]\\n" > Dockerfile',
    'docker build -q -t strata-busybox .',
    'docker run -d --restart always -p 8000:80 --name web strata-busybox',
    'for i in $(seq 100); do curl -sf http://localhost:8000/ && exit 0; sleep 0.1; done; exit 1',
  ].join('\n');
  assert.match(await ok(machine, build, 120_000), /hello from docker/);
  assert.match(await ok(machine, 'docker info --format "{{.Driver}} {{.CgroupVersion}}"'), /^overlay2 2\n$/);
  // EXPOSE's path: a host port forwarded by slirp4netns to the machine's :8000, then docker's DNAT.
  const hostPort = await machine.forwardPort!(8000);
  const fromHost = await exec('curl', ['-sf', '--max-time', '10', `http://127.0.0.1:${hostPort}/`]);
  assert.equal(fromHost.stdout, 'hello from docker\n');

  // Snapshot (frozen), destroy, start a new machine from a writable copy of the snapshot.
  const snapshot = snapshotName(`system-vm-${process.pid}`);
  t.after(() => store.remove(snapshot));
  t0 = performance.now();
  await machine.freeze();
  await store.commit(first.key, snapshot);
  t.diagnostic(`freeze + snapshot: ${Math.round(performance.now() - t0)} ms`);
  await machine.destroy();
  started.splice(started.indexOf(machine), 1);

  const restoreStart = performance.now();
  const second = await roots.prepareRootfs(t, snapshot);
  const restoredId = `vm2-${process.pid}`;
  // The ports are polled while start() still waits for the boot: from the moment runc wrote the pid.
  const initPidFile = join(stateRoot, 'machines', prefix + restoredId, 'init.pid');
  const answered = (async () => {
    let pid = 0;
    while (pid === 0 && performance.now() - restoreStart < 60_000) {
      pid = Number(await readFile(initPidFile, 'utf8').catch(() => '')) || 0;
      if (pid === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    }
    return Promise.all([answersAfter(pid, 80, restoreStart, 'nginx'), answersAfter(pid, 5432, restoreStart), answersAfter(pid, 8000, restoreStart, 'hello from docker')]);
  })();
  const restored = await start({ id: restoredId, rootfs: second.path });
  const startedAfter = Math.round(performance.now() - restoreStart);
  const [nginx, postgres, docker] = await answered;
  t.diagnostic(
    `restore: writable snapshot + start() (until systemd's ${restored.boot?.state}) ${startedAfter} ms; ` +
      `nginx :80 (HTTP) answered at ${nginx} ms, postgres :5432 (TCP) at ${postgres} ms, docker container :8000 (HTTP) at ${docker} ms, from the restore's start`,
  );
  assert.equal(restored.boot?.state, 'running', JSON.stringify(restored.boot));
  assert.equal(await ok(restored, "su postgres -c \"psql -tAc 'select 1'\""), '1\n');
  assert.match(await ok(restored, 'curl -sI http://localhost/'), /^HTTP\/1\.1 200 OK/);
  assert.match(await ok(restored, 'curl -sf http://localhost:8000/'), /hello from docker/);
});
