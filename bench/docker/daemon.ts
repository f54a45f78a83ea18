// A private Docker daemon for the BuildKit benchmark: its own data root, exec root and socket in
// temporary directories, no iptables, no bridge, and the host's net.ipv4.ip_forward left alone (dockerd
// switches it on otherwise, even without a bridge) — a system dockerd or /var/lib/docker is never touched.
// Clients are Debian's /usr/bin/docker (docker.io) with DOCKER_HOST at our socket and DOCKER_BUILDKIT=1.
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { spawn, type ChildProcess } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { exec, execOrThrow, type ExecResult } from '../../src/util/exec.js';

const dockerd = '/usr/sbin/dockerd';
const dockerClient = '/usr/bin/docker';

/** Installs Debian's docker.io when dockerd or its client is missing (root; says what it does). */
export async function ensureDockerInstalled(log: (line: string) => void): Promise<void> {
  if (existsSync(dockerd) && existsSync(dockerClient)) return;
  if (process.getuid?.() !== 0) throw new Error(`bench buildkit: ${dockerd} is missing and installing docker.io needs root`);
  log('bench buildkit: dockerd missing, running `apt-get install -y --no-install-recommends docker.io`');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  await execOrThrow('apt-get', ['install', '-y', '--no-install-recommends', 'docker.io'], { env, timeoutMs: 10 * 60_000 });
  if (!existsSync(dockerd) || !existsSync(dockerClient)) throw new Error(`bench buildkit: docker.io installed but ${dockerd} or ${dockerClient} is missing`);
}

export interface DockerDaemon {
  /** Runs the docker client against this daemon; never throws for a non-zero exit. */
  docker(args: readonly string[], options?: { cwd?: string; timeoutMs?: number }): Promise<ExecResult & { ms: number }>;
  /** Like `docker`, but throws (with stderr) unless it exits 0. */
  dockerOrThrow(args: readonly string[], options?: { cwd?: string; timeoutMs?: number }): Promise<ExecResult & { ms: number }>;
  /** Stops the daemon (SIGTERM, then SIGKILL) and removes its directories. Safe to call twice. */
  stop(): Promise<void>;
}

export async function startDockerDaemon(): Promise<DockerDaemon> {
  const dataDir = await mkdtemp(join(tmpdir(), 'strata-bench-docker-'));
  // Short, separate exec root: containerd's socket paths under it must stay below the 108-byte limit.
  const execDir = await mkdtemp(join(tmpdir(), 'strata-bdx-'));
  const socket = join(dataDir, 'docker.sock');
  const pidFile = join(dataDir, 'docker.pid');
  const clientEnv = { ...process.env, DOCKER_HOST: `unix://${socket}`, DOCKER_BUILDKIT: '1', DOCKER_CONFIG: join(dataDir, 'client-config') };
  let daemonLog = '';
  let daemon: ChildProcess | undefined;
  let stopped = false;

  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    try {
      if (daemon && daemon.exitCode === null && daemon.signalCode === null) {
        const exited = new Promise<void>((resolve) => daemon!.once('exit', () => resolve()));
        daemon.kill('SIGTERM');
        // dockerd stops its containerd and unmounts its layers on SIGTERM; give it time to.
        const gracefully = await Promise.race([exited.then(() => true), sleep(30_000).then(() => false)]);
        if (!gracefully) {
          daemon.kill('SIGKILL');
          await exited;
        }
      }
    } finally {
      // Whatever a killed daemon left mounted under its directories goes before the files do.
      await unmountUnder(dataDir);
      await unmountUnder(execDir);
      await rm(dataDir, { recursive: true, force: true });
      await rm(execDir, { recursive: true, force: true });
    }
  };

  const docker: DockerDaemon['docker'] = async (args, options = {}) => {
    const start = performance.now();
    const result = await exec(dockerClient, args, { env: clientEnv, cwd: options.cwd, timeoutMs: options.timeoutMs ?? 10 * 60_000 });
    return { ...result, ms: performance.now() - start };
  };
  const dockerOrThrow: DockerDaemon['dockerOrThrow'] = async (args, options) => {
    const result = await docker(args, options);
    if (result.exitCode !== 0) {
      throw new Error(`bench buildkit: \`docker ${args.join(' ')}\` failed (exit ${result.exitCode}${result.timedOut ? ', timed out' : ''}):\n${(result.stderr || result.stdout).slice(-3000)}`);
    }
    return result;
  };

  try {
    daemon = spawn(
      dockerd,
      ['--iptables=false', '--ip-forward=false', '--bridge=none', '--data-root', join(dataDir, 'data'), '--exec-root', execDir, '--host', `unix://${socket}`, '--pidfile', pidFile],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const keepLog = (chunk: Buffer) => {
      daemonLog = (daemonLog + chunk.toString('utf8')).slice(-4000);
    };
    daemon.stdout!.on('data', keepLog);
    daemon.stderr!.on('data', keepLog);
    const spawnError = new Promise<never>((_, reject) => daemon!.once('error', reject));
    spawnError.catch(() => {}); // raced below; an unobserved rejection must not crash the process
    const deadline = performance.now() + 60_000;
    for (;;) {
      if (daemon.exitCode !== null || daemon.signalCode !== null) throw new Error(`bench buildkit: dockerd exited early:\n${daemonLog}`);
      const ping = await Promise.race([docker(['version', '--format', '{{.Server.Version}}'], { timeoutMs: 5000 }), spawnError]);
      if (ping.exitCode === 0) break;
      if (performance.now() > deadline) throw new Error(`bench buildkit: dockerd did not answer within 60 s:\n${daemonLog}`);
      await sleep(250);
    }
    // The pid file is dockerd's own; it must be the process we started (no system daemon answered).
    const pid = Number((await readFile(pidFile, 'utf8')).trim());
    if (pid !== daemon.pid) throw new Error(`bench buildkit: ${pidFile} names pid ${pid}, not our dockerd ${daemon.pid}`);
  } catch (error) {
    await stop();
    throw error;
  }
  return { docker, dockerOrThrow, stop };
}

/** Unmounts (lazily, deepest first) every mount point under `dir`, e.g. overlay layers of a killed dockerd. */
async function unmountUnder(dir: string): Promise<void> {
  const mounts = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  const points = mounts
    .split('\n')
    .map((line) => line.split(' ')[4] ?? '')
    .filter((point) => point === dir || point.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const point of points) await exec('umount', ['-l', point]);
}
