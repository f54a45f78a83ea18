// Outbound networking for a machine's network namespace through slirp4netns: a user-mode TCP/IP stack
// on a tap device, so the host needs no bridge and no routing change. Ports bound inside stay inside
// (two machines can both listen on :8080). --disable-host-loopback keeps the machine away from services
// on the host's 127.0.0.1; but slirp4netns connects from the host's own network namespace, so a service
// on any other address of the host (0.0.0.0, the LAN address) would be reachable. Every slirp4netns
// therefore runs in one cgroup v2 directory, and one host firewall rule rejects its connections to the
// host's own addresses (DNS excepted: slirp's resolver may forward to a local one).
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, openSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { createConnection } from 'node:net';
import type { Readable } from 'node:stream';
import { StrataError } from '../../errors.js';
import { exec } from '../../util/exec.js';
import { freeLocalPort } from '../../util/net.js';

/** slirp4netns's fixed addresses in its default 10.0.2.0/24 network. */
export const slirpDns = '10.0.2.3';

export interface Slirp {
  pid: number;
  /** Set when started with an API socket: forwards a free 127.0.0.1 port to guestPort, returns it. */
  forwardPort?(guestPort: number): Promise<number>;
  stop(): Promise<void>;
}

/** The cgroup v2 directory (relative to the v2 root) all of strata's slirp4netns processes run in. */
export const slirpCgroup = 'strata-net';

/** The iptables/ip6tables rules (without the chain verb) that keep machines off the host's addresses. */
export function hostIsolationRules(): string[][] {
  // NEW only: the replies slirp sends on connections the host opened to it (EXPOSE port forwards)
  // are to local addresses too and must pass.
  const match = ['-m', 'cgroup', '--path', slirpCgroup, '-m', 'conntrack', '--ctstate', 'NEW', '-m', 'addrtype', '--dst-type', 'LOCAL'];
  return ['tcp', 'udp'].map((proto) => [...match, '-p', proto, '!', '--dport', '53', '-j', 'REJECT']);
}

let isolation: Promise<string> | undefined;

/**
 * Once per process: creates the slirp cgroup and makes sure the host rules exist (added at the top of
 * OUTPUT when missing; they stay, like a container runtime's rules). Returns the cgroup's procs file.
 * Fails closed: without the rules a machine could reach every service the host listens on.
 */
export function ensureHostIsolation(): Promise<string> {
  isolation ??= (async () => {
    const root = existsSync('/sys/fs/cgroup/unified/cgroup.procs') ? '/sys/fs/cgroup/unified' : '/sys/fs/cgroup';
    if (!existsSync(join(root, 'cgroup.procs'))) {
      throw new StrataError('STRATA_SANDBOX_START', 'no cgroup v2 hierarchy to isolate machine networking from the host', { hint: 'mount cgroup2 (unified or hybrid mode)' });
    }
    const dir = join(root, slirpCgroup);
    mkdirSync(dir, { recursive: true });
    for (const tool of ['iptables', 'ip6tables']) {
      for (const rule of hostIsolationRules()) {
        if ((await exec(tool, ['-w', '-C', 'OUTPUT', ...rule])).exitCode === 0) continue;
        const added = await exec(tool, ['-w', '-I', 'OUTPUT', '1', ...rule]);
        if (added.exitCode !== 0 && tool === 'iptables') {
          throw new StrataError('STRATA_SANDBOX_START', `cannot add the host firewall rule that keeps machines off the host's addresses: ${added.stderr.trim() || added.spawnError?.message}`, {
            hint: 'strata needs iptables with the cgroup and addrtype matches (scripts/install.sh installs iptables)',
          });
        }
      }
    }
    return join(dir, 'cgroup.procs');
  })();
  isolation.catch(() => {
    isolation = undefined;
  });
  return isolation;
}

/**
 * Starts slirp4netns on the network namespace of `targetPid` and waits until the tap device is
 * configured. fd 3 is the exit fd: slirp4netns exits by itself when this process (the engine) dies.
 */
export async function startSlirp(targetPid: number, logFile: string, timeoutMs = 5000, apiSocket?: string): Promise<Slirp> {
  if (apiSocket !== undefined && Buffer.byteLength(apiSocket) > 107) {
    throw new StrataError('STRATA_SANDBOX_START', `slirp4netns API socket path is too long for a unix socket: ${apiSocket}`, { hint: 'use a shorter machine id' });
  }
  const procs = await ensureHostIsolation();
  const log = openSync(logFile, 'a');
  let child: ChildProcess;
  try {
    // Joins the isolation cgroup before it becomes slirp4netns, so no connection ever escapes the rule.
    child = spawn(
      'sh',
      ['-c', 'echo $$ > "$0" && exec slirp4netns "$@"', procs,
        '--configure', '--mtu=65520', '--disable-host-loopback', '--exit-fd=3', '--ready-fd=4',
        ...(apiSocket !== undefined ? ['--api-socket', apiSocket] : []), String(targetPid), 'tap0'],
      { stdio: ['ignore', log, log, 'pipe', 'pipe'] },
    );
  } finally {
    closeSync(log);
  }
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  const ready = child.stdio[4] as Readable;
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`not ready after ${timeoutMs} ms`)), timeoutMs);
      ready.once('data', () => {
        clearTimeout(timer);
        resolve();
      });
      child.once('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`exited with ${code} before the network was ready`));
      });
    });
  } catch (error) {
    child.kill('SIGKILL');
    await exited;
    throw new StrataError('STRATA_SANDBOX_START', `slirp4netns: ${(error as Error).message} (log: ${logFile})`, {
      cause: error,
      hint: 'is slirp4netns installed (apt-get install slirp4netns)?',
    });
  }
  ready.destroy();
  if (child.pid === undefined) throw new StrataError('STRATA_SANDBOX_START', 'slirp4netns has no pid');
  return {
    pid: child.pid,
    ...(apiSocket !== undefined ? { forwardPort: (guestPort: number) => forwardFreePort(apiSocket, guestPort) } : {}),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

/** One request on slirp4netns's JSON API socket; it answers and closes the connection. */
function slirpApi(apiSocket: string, request: object): Promise<{ return?: unknown; error?: { desc?: string } }> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(apiSocket);
    let answer = '';
    socket.on('data', (data: Buffer) => (answer += data.toString()));
    socket.once('error', reject);
    socket.once('close', () => {
      try {
        resolve(JSON.parse(answer) as { return?: unknown; error?: { desc?: string } });
      } catch {
        reject(new Error(`unreadable answer from slirp4netns: ${JSON.stringify(answer)}`));
      }
    });
    socket.end(JSON.stringify(request));
  });
}

/**
 * slirp4netns 1.2 refuses host_port 0, so strata picks a free port and asks for it; another process
 * may take it in between, hence the retries.
 */
async function forwardFreePort(apiSocket: string, guestPort: number): Promise<number> {
  let lastError = '';
  for (let attempt = 0; attempt < 5; attempt++) {
    const hostPort = await freeLocalPort();
    const answer = await slirpApi(apiSocket, { execute: 'add_hostfwd', arguments: { proto: 'tcp', host_addr: '127.0.0.1', host_port: hostPort, guest_port: guestPort } });
    if (answer.error === undefined) return hostPort;
    lastError = answer.error.desc ?? JSON.stringify(answer.error);
  }
  throw new StrataError('STRATA_SANDBOX_EXEC', `could not forward a host port to the machine's port ${guestPort}: ${lastError}`);
}
