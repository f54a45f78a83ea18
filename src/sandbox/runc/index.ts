// Sandbox on runc (Debian's runc 1.1): `runc run -d` starts a long-lived machine whose PID 1 is a tiny
// bash reaper; every step is `runc exec` into it (~26 ms per `true` here, against ~4 ms for nsenter —
// but runc also applies capabilities, the device cgroup, masked paths and the user, which nsenter
// would not). Each exec runs in its own child freezer cgroup: a timeout or cancel freezes and kills
// exactly that exec's process tree, daemons it started with setsid included, and leaves background
// processes of other execs alone. State for crash recovery lives in <stateRoot>/machines/<name>/.
// MachineSpec.kind 'system' starts a system container instead (system.ts, spec.ts): same runc, same
// execs and cgroups, plus a user namespace, idmapped mounts and systemd as PID 1.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, openSync, closeSync, readFileSync, readdirSync } from 'node:fs';
import { readFile, rm, writeFile, unlink } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import { StrataError } from '../../errors.js';
import { exec, execOrThrow } from '../../util/exec.js';
import type {
  BackgroundProcess,
  BackgroundRequest,
  ExecOutcome,
  ExecRequest,
  Machine,
  MachineBoot,
  MachineSpec,
  OutputChunk,
  ReapReport,
  Sandbox,
} from '../types.js';
import { resolveMachineUser } from '../users.js';
import { EndMarkerScanner } from './endMarker.js';
import { MachineCgroups, detectCgroupVersion, removeCgroupTree } from './cgroups.js';
import { startSlirp, slirpDns } from './slirp.js';
import type { Slirp } from './slirp.js';
import { defaultPath, machineConfig, ociProcess } from './spec.js';
import type { CapabilityMode, MachineConfigInput, SystemMachineConfig } from './spec.js';
import {
  claimUidRange,
  defaultIdmountBinary,
  defaultUidRangeRegistry,
  hasInit,
  idmapMount,
  makeSearchable,
  releaseDeadUidRanges,
  releaseUidRange,
  systemMachinesSupported,
  unmountBelow,
} from './system.js';
import type { UidRangeClaim } from './system.js';
import { sleep } from '../../util/sleep.js';

export interface RuncSandboxOptions {
  /** Every container, cgroup and state dir is named <prefix><machine id>. Default 'strata-'. */
  prefix?: string;
  /** Default /run/strata: runc state in <stateRoot>/runc, ours in <stateRoot>/machines. */
  stateRoot?: string;
  /** System machines: where uid ranges are claimed. Host-wide by default, whatever the state root. */
  uidRangeRegistry?: string;
  /** System machines: the idmapped-mount helper (default native/build/strata-idmount). */
  idmountBinary?: string;
  /** System machines: how long start() waits for systemd's boot. Default 120 s (a busy 2-core host boots in ~1 s). */
  bootTimeoutMs?: number;
}

interface MachineRecord {
  name: string;
  rootfs: string;
  pid: number;
  slirpPid?: number;
  /** System machines: the uid range claim to release. */
  uidRangeClaim?: string;
}

/** How long an exec's output is still forwarded after its shell exited while a daemon it started keeps the pipe. */
const outputGraceMs = 50;
/** How long to wait for the end markers after runc exits; they are already in the pipes, so only a pathological host needs long. */
const markerWaitMs = 30_000;

export function createRuncSandbox(options: RuncSandboxOptions = {}): Sandbox {
  const prefix = options.prefix ?? 'strata-';
  const stateRoot = options.stateRoot ?? '/run/strata';
  const runcRoot = join(stateRoot, 'runc');
  const machinesDir = join(stateRoot, 'machines');
  const runc = (args: string[]) => exec('runc', ['--root', runcRoot, ...args]);
  const uidRangeRegistry = options.uidRangeRegistry ?? defaultUidRangeRegistry;
  const idmountBinary = options.idmountBinary ?? defaultIdmountBinary();
  const bootTimeoutMs = options.bootTimeoutMs ?? 120_000;

  async function start(spec: MachineSpec): Promise<Machine> {
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(spec.id)) {
      throw new StrataError('STRATA_SANDBOX_START', `invalid machine id ${JSON.stringify(spec.id)}`);
    }
    for (const mount of spec.mounts ?? []) {
      if (!mount.destination.startsWith('/') || mount.destination.split('/').includes('..')) {
        throw new StrataError('STRATA_SANDBOX_START', `invalid mount destination ${JSON.stringify(mount.destination)}`);
      }
    }
    const name = prefix + spec.id;
    const stateDir = join(machinesDir, name);
    mkdirSync(machinesDir, { recursive: true });
    try {
      mkdirSync(stateDir);
    } catch (error) {
      throw new StrataError('STRATA_SANDBOX_START', `machine ${name} already exists (${stateDir})`, {
        cause: error,
        hint: 'destroy it, or call reapLeftovers() after a crash',
      });
    }
    const cgroups = new MachineCgroups(detectCgroupVersion(), name);
    const hostname = spec.hostname ?? spec.id;
    // resolv.conf and hosts are bind-mounted from the state dir rather than written into the rootfs:
    // they describe this machine's network, not the snapshot's.
    const fileMounts: MachineConfigInput['fileMounts'] = [{ source: join(stateDir, 'hosts'), destination: '/etc/hosts' }];
    await writeFile(join(stateDir, 'hosts'), `127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n127.0.1.1\t${hostname}\n`);
    if (spec.network === 'outbound') {
      await writeFile(join(stateDir, 'resolv.conf'), `nameserver ${slirpDns}\n`);
      fileMounts.push({ source: join(stateDir, 'resolv.conf'), destination: '/etc/resolv.conf' });
    }
    const kind = spec.kind ?? 'container';
    let claim: UidRangeClaim | undefined;
    let system: SystemMachineConfig | undefined;
    let rootfs = spec.rootfs;
    try {
      if (kind === 'system') {
        if (!systemMachinesSupported()) {
          throw new StrataError('STRATA_SANDBOX_START', 'system machines need a hybrid cgroup host (cgroup v1 controllers plus the unified v2 tree) for now', {
            hint: 'on a pure cgroup v2 host the machine would need a delegated child cgroup (docs/design/system-container.md, risks); use the default machine kind',
          });
        }
        await makeSearchable(stateRoot, stateDir);
        claim = await claimUidRange(uidRangeRegistry, name, stateDir);
        // systemd sets the hostname from /etc/hostname (overriding runc's): give it this machine's.
        await writeFile(join(stateDir, 'hostname'), `${hostname}\n`);
        fileMounts.push({ source: join(stateDir, 'hostname'), destination: '/etc/hostname' });
        // The idmapped mounts live in the state dir only until runc has cloned them (see below).
        rootfs = join(stateDir, 'rootfs');
        mkdirSync(rootfs);
        await idmapMount(idmountBinary, spec.rootfs, rootfs, claim);
        let index = 0;
        for (const mount of spec.mounts ?? []) {
          // Writable host directories must be idmapped, or the machine sees them as nobody's (apt's
          // chown in /var/cache/apt/archives fails). Read-only ones are fine as they are.
          if (mount.readOnly) fileMounts.push({ source: mount.source, destination: mount.destination, readOnly: true });
          else {
            const mapped = join(stateDir, `mnt-${index++}`);
            mkdirSync(mapped);
            await idmapMount(idmountBinary, mount.source, mapped, claim);
            fileMounts.push({ source: mapped, destination: mount.destination });
          }
        }
        system = {
          hostId: claim.hostId,
          size: claim.size,
          unifiedCgroupDir: join('/sys/fs/cgroup/unified', cgroups.cgroupsPath),
          init: (await hasInit(spec.rootfs)) ? 'systemd' : 'reaper',
        };
      } else {
        for (const mount of spec.mounts ?? []) fileMounts.push({ source: mount.source, destination: mount.destination, ...(mount.readOnly ? { readOnly: true } : {}) });
      }
    } catch (error) {
      await unmountBelow(stateDir);
      if (claim) await releaseUidRange(claim.path, stateDir);
      await rm(stateDir, { recursive: true, force: true });
      throw error;
    }
    const config = machineConfig({
      rootfs,
      hostname,
      cgroupsPath: cgroups.cgroupsPath,
      memoryBytes: spec.memoryBytes,
      limitSwap: cgroups.version === 'v1' && existsSync('/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes'),
      pidsLimit: spec.pidsLimit ?? 4096,
      fileMounts,
      nestedContainers: spec.nestedContainers ?? false,
      ...(system ? { system } : {}),
    });
    await writeFile(join(stateDir, 'config.json'), JSON.stringify(config, null, 1));
    const record: MachineRecord = { name, rootfs: spec.rootfs, pid: 0, ...(claim ? { uidRangeClaim: claim.path } : {}) };
    // A system machine's record is written before runc runs: a crash from here on leaves the claim to reap.
    if (claim) await writeFile(join(stateDir, 'machine.json'), JSON.stringify(record));
    const capabilityMode: CapabilityMode = system ? 'system' : { nestedContainers: spec.nestedContainers ?? false };

    let machine: RuncMachine | undefined;
    try {
      // runc hands its stdio to the machine's init: give it a log file, never a pipe we wait on.
      const logPath = join(stateDir, 'runc.log');
      const log = openSync(logPath, 'a');
      const runStartedAt = performance.now();
      const started = await new Promise<number | null>((resolve) => {
        const child = spawn(
          'runc',
          ['--root', runcRoot, 'run', '--detach', '--pid-file', join(stateDir, 'init.pid'), '--bundle', stateDir, name],
          { stdio: ['ignore', log, log] },
        );
        child.once('error', () => resolve(null));
        child.once('exit', (code) => resolve(code));
      });
      closeSync(log);
      // runc cloned the idmapped mounts into the machine's mount namespace: the host's copies can go.
      if (system) await unmountBelow(stateDir);
      if (started !== 0) {
        throw new StrataError('STRATA_SANDBOX_START', `runc run ${name} failed: ${readFileSync(logPath, 'utf8').trim()}`, {
          hint: 'is runc installed, and is the rootfs a Debian-like tree with /bin/bash?',
        });
      }
      const pid = Number(readFileSync(join(stateDir, 'init.pid'), 'utf8'));
      machine = new RuncMachine(spec.id, name, spec.rootfs, pid, stateDir, cgroups, runcRoot, capabilityMode, claim?.path);
      record.pid = pid;
      await writeFile(join(stateDir, 'machine.json'), JSON.stringify(record));
      if (spec.network === 'outbound') {
        machine.slirp = await startSlirp(pid, join(stateDir, 'slirp.log'), undefined, spec.portForwarding ? join(stateDir, 'slirp.sock') : undefined);
        record.slirpPid = machine.slirp.pid;
        await writeFile(join(stateDir, 'machine.json'), JSON.stringify(record));
      }
      if (system) machine.boot = await waitForBoot(machine, system.init === 'systemd', runStartedAt, bootTimeoutMs);
      return machine;
    } catch (error) {
      if (machine) await machine.destroy();
      else await removeMachine(name);
      throw error;
    }
  }

  /** Removes every trace of a machine by name, whatever state it was left in. */
  async function removeMachine(name: string): Promise<void> {
    const stateDir = join(machinesDir, name);
    let claimPath: string | undefined;
    try {
      const record = JSON.parse(await readFile(join(stateDir, 'machine.json'), 'utf8')) as MachineRecord;
      if (record.slirpPid !== undefined) killIfCommand(record.slirpPid, 'slirp4netns');
      claimPath = record.uidRangeClaim;
    } catch {
      // no record: nothing but cgroups and runc state to remove
    }
    const cgroups = new MachineCgroups(detectCgroupVersion(), name);
    await killEverything(cgroups);
    await runc(['delete', '--force', name]);
    await removeCgroups(cgroups);
    // Idmapped mounts of a system machine's start that crashed before runc took them (before its
    // record was written, too): never rm -r through them into the machine's root or a CACHE dir.
    await unmountBelow(stateDir);
    if (claimPath !== undefined) await releaseUidRange(claimPath, stateDir);
    await rm(stateDir, { recursive: true, force: true });
  }

  async function reapLeftovers(): Promise<ReapReport> {
    const names = new Set<string>();
    const listed = await runc(['list', '--quiet']);
    if (listed.exitCode === 0) for (const line of listed.stdout.split('\n')) if (line.startsWith(prefix)) names.add(line);
    if (existsSync(machinesDir)) for (const entry of readdirSync(machinesDir)) if (entry.startsWith(prefix)) names.add(entry);
    // Cgroups are found through these names only, never by scanning for the prefix: another engine
    // (or test run) with its own state root may use a longer name with the same prefix.
    for (const name of names) await removeMachine(name);
    // Uid ranges of these machines (a claim made before its record was written), and claims anyone left
    // whose machine's state dir is gone.
    await releaseDeadUidRanges(uidRangeRegistry, new Set([...names].map((name) => join(machinesDir, name))));
    return { machines: [...names].sort() };
  }

  return { start, reapLeftovers };
}

function killIfCommand(pid: number, command: string): void {
  try {
    if (readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === command) process.kill(pid, 'SIGKILL');
  } catch {
    // gone already
  }
}

/** Kills every process of the machine, in all its sub-cgroups, until none is left (or ~5 s passed). */
async function killEverything(cgroups: MachineCgroups): Promise<void> {
  for (let attempt = 0; attempt < 100; attempt++) {
    if (cgroups.allPids().length === 0) return;
    await cgroups.killAll(cgroups.controlDir);
    await sleep(attempt < 10 ? 5 : 50);
  }
}

async function removeCgroups(cgroups: MachineCgroups): Promise<void> {
  for (let attempt = 0; attempt < 100; attempt++) {
    // A killed process leaves its cgroup only once the kernel has finished tearing it down.
    if (cgroups.directories().map(removeCgroupTree).every(Boolean)) return;
    await sleep(attempt < 10 ? 5 : 50);
  }
  throw new StrataError('STRATA_SANDBOX_START', `could not remove cgroups of ${cgroups.name}: ${cgroups.directories().join(', ')}`);
}

interface RunningProcess {
  child: ChildProcess;
  cgroupDir: string;
  startedAt: number;
  /** Resolves with runc's exit status once the command has exited. */
  exited: Promise<number | null>;
  /** Resolves when stdout/stderr are closed, or `outputGraceMs` after the exit if a daemon holds them. */
  outputDone: Promise<void>;
}

/**
 * Polls `systemctl is-system-running` until systemd says `running` or `degraded` (right after `runc
 * run` it cannot even connect to its bus yet). `degraded` is accepted: the machine is usable, and the
 * failed units are reported in Machine.boot.
 */
async function waitForBoot(machine: RuncMachine, systemd: boolean, startedAt: number, timeoutMs: number): Promise<MachineBoot> {
  if (!systemd) return { state: 'no-init', failedUnits: [], durationMs: performance.now() - startedAt };
  const deadline = startedAt + timeoutMs;
  let state = '';
  while (performance.now() < deadline) {
    let output = '';
    await machine.exec({ command: 'systemctl is-system-running 2>/dev/null', timeoutMs: 30_000, onOutput: (chunk) => (output += chunk.data.toString()) });
    state = output.trim();
    if (state === 'running' || state === 'degraded') {
      const durationMs = performance.now() - startedAt;
      return { state, failedUnits: state === 'degraded' ? await failedUnits(machine) : [], durationMs };
    }
    if (state === 'maintenance' || state === 'stopping') break;
    await sleep(20);
  }
  const failed = await failedUnits(machine).catch(() => []);
  throw new StrataError('STRATA_SANDBOX_START', `machine ${machine.id}: systemd did not finish booting (state ${JSON.stringify(state || 'unknown')}${failed.length > 0 ? `, failed units: ${failed.join(', ')}` : ''})`, {
    hint: `waited ${Math.round(timeoutMs / 1000)} s; look at journalctl -b inside the machine`,
  });
}

async function failedUnits(machine: RuncMachine): Promise<string[]> {
  let output = '';
  await machine.exec({ command: 'systemctl list-units --failed --plain --no-legend 2>/dev/null', timeoutMs: 30_000, onOutput: (chunk) => (output += chunk.data.toString()) });
  return output
    .split('\n')
    .map((line) => line.trim().split(/\s+/)[0] ?? '')
    .filter((unit) => unit !== '');
}

class RuncMachine implements Machine {
  slirp: Slirp | undefined;
  boot: MachineBoot | undefined;
  private execCounter = 0;
  /** Exec cgroups that still held processes (setsid daemons) when their exec ended. */
  private readonly lingeringCgroups = new Set<string>();
  private readonly attached = new Set<ChildProcess>();
  private destroying: Promise<void> | undefined;
  private frozen = false;

  constructor(
    readonly id: string,
    private readonly name: string,
    readonly rootfs: string,
    readonly pid: number,
    private readonly stateDir: string,
    private readonly cgroups: MachineCgroups,
    private readonly runcRoot: string,
    private readonly capabilityMode: CapabilityMode,
    private readonly uidRangeClaim?: string,
  ) {}

  /**
   * Starts the command via runc exec in a fresh child cgroup. runc (without a tty) copies the
   * command's stdout/stderr until every holder closes them, so a daemon started with `setsid cmd &`
   * would keep runc, and an exit code, waiting forever. Hence the command runs under a wrapper shell
   * that reports `$?` on fd 3 (a pipe of its own, closed for the command) as soon as it finishes.
   */
  private async spawnInMachine(request: BackgroundRequest, pidFile?: string): Promise<RunningProcess> {
    if (this.destroying) throw new StrataError('STRATA_SANDBOX_EXEC', `machine ${this.name} is destroyed`);
    if (this.frozen) throw new StrataError('STRATA_SANDBOX_EXEC', `machine ${this.name} is frozen`, { hint: 'thaw() it first' });
    const user = await resolveMachineUser(this.rootfs, request.user ?? 0);
    const env: Record<string, string> = { PATH: defaultPath, HOME: user.home, USER: user.name, LOGNAME: user.name, ...request.env };
    // The wrapper's own stderr goes to /dev/null so that its job reports ("Killed") do not mix with the output.
    // After the command: the end marker on both streams (see endMarker.ts), then the status on fd 3.
    const marker = `\x1estrata-end-${randomBytes(12).toString('hex')}\x1e`;
    const wrapperScript = 'exec 4>&2 2>/dev/null; bash -c "$1" 2>&4 3>&- 4>&-; s=$?; printf %s "$2"; printf %s "$2" >&4; echo $s >&3';
    const wrapper = ['/bin/bash', '-c', wrapperScript, 'strata-exec', request.command, marker];
    const processSpec = ociProcess(wrapper, env, request.workdir ?? user.home, user, this.capabilityMode);
    const execName = `exec-${++this.execCounter}`;
    const processFile = join(this.stateDir, `${execName}.json`);
    await writeFile(processFile, JSON.stringify(processSpec));
    const cgroup = this.cgroups.createExecCgroup(execName);
    const args = ['--root', this.runcRoot, 'exec', '--preserve-fds', '1', '--cgroup', cgroup.runcArg, '--process', processFile];
    if (pidFile) args.push('--pid-file', pidFile);
    const child = spawn('runc', [...args, this.name], { stdio: ['ignore', 'pipe', 'pipe', 'pipe'] });
    const startedAt = performance.now();
    this.attached.add(child);
    const runcExited = new Promise<number | null>((resolve) => {
      child.once('error', () => resolve(null));
      child.once('exit', (code) => resolve(code));
    });
    void runcExited.then(() => this.attached.delete(child));

    const forward = (stream: 'stdout' | 'stderr') => (data: Buffer) =>
      request.onOutput?.({ stream, data, timeMs: performance.now() - startedAt } satisfies OutputChunk);
    const stdout = child.stdout as Readable;
    const stderr = child.stderr as Readable;
    const markerBytes = Buffer.from(marker);
    const scanners = [new EndMarkerScanner(markerBytes, forward('stdout')), new EndMarkerScanner(markerBytes, forward('stderr'))] as const;
    // Resolves once both streams reached their marker or closed; reading continues after that (a daemon
    // holding the pipes would die of SIGPIPE on its next write if we closed them), but is not forwarded.
    let wakeEnd: () => void = () => {};
    const ended = new Promise<void>((resolve) => (wakeEnd = resolve));
    const streamEnded = [false, false];
    const watch = (stream: Readable, index: 0 | 1): void => {
      const scanner = scanners[index];
      stream.on('data', (data: Buffer) => {
        scanner.push(data);
        if (scanner.ended && !streamEnded[index]) {
          streamEnded[index] = true;
          if (streamEnded.every(Boolean)) wakeEnd();
        }
      });
      stream.once('close', () => {
        scanner.finish();
        if (!streamEnded[index]) {
          streamEnded[index] = true;
          if (streamEnded.every(Boolean)) wakeEnd();
        }
      });
    };
    watch(stdout, 0);
    watch(stderr, 1);

    // The status line, or, if the wrapper was killed (or runc failed to start it), runc's own status.
    const statusPipe = child.stdio[3] as Readable;
    let status = '';
    statusPipe.on('data', (data: Buffer) => (status += data.toString()));
    const exited = new Promise<number | null>((resolve) => {
      statusPipe.on('data', () => {
        if (status.includes('\n')) resolve(Number(status.trim()));
      });
      statusPipe.once('close', () => resolve(runcExited));
    });
    const outputDone = exited.then(async () => {
      const wrapperReported = status.includes('\n');
      // The wrapper wrote both markers before its status, so they are in the pipes: wait for them however
      // long that takes. If the wrapper was killed (timeout, cancel) there are none: the pipes close when
      // the last process holding them ends, and a daemon holding them gets a short grace after runc exits.
      if (!wrapperReported) await Promise.race([ended, runcExited.then(() => sleep(outputGraceMs))]);
      else {
        // The markers come in microseconds; this timer is only a backstop and must not hold the process open.
        let backstop: NodeJS.Timeout | undefined;
        const timedOut = runcExited.then(() => new Promise<void>((resolve) => (backstop = setTimeout(resolve, markerWaitMs).unref())));
        await Promise.race([ended, timedOut]);
        clearTimeout(backstop);
      }
      for (const scanner of scanners) scanner.finish();
      await unlink(processFile).catch(() => {});
      this.lingeringCgroups.add(cgroup.dir);
      this.removeEmptyExecCgroups();
    });
    return { child, cgroupDir: cgroup.dir, startedAt, exited, outputDone };
  }

  /** Exec cgroups are removed once their last process (e.g. a daemon) is gone. */
  private removeEmptyExecCgroups(): void {
    for (const dir of this.lingeringCgroups) if (this.cgroups.removeExecCgroup(dir)) this.lingeringCgroups.delete(dir);
  }

  /** Kills an exec's process tree, repeating until runc reports its end (its process may not have joined the cgroup yet). */
  private async killTree(running: RunningProcess): Promise<void> {
    let done = false;
    void running.exited.then(() => (done = true));
    while (!done) {
      await this.cgroups.killAll(running.cgroupDir);
      await Promise.race([running.exited, sleep(100)]);
    }
  }

  /** The process limit if forks failed at it since `before` (a pidsLimitHits() reading), else null. */
  private pidsLimitHitSince(before: { hits: number }): number | null {
    const now = this.cgroups.pidsLimitHits();
    return now.hits > before.hits ? now.limit : null;
  }

  async exec(request: ExecRequest): Promise<ExecOutcome> {
    const oomBefore = this.cgroups.oomKillCount();
    const pidsBefore = this.cgroups.pidsLimitHits();
    if (request.signal?.aborted) {
      return { exitCode: null, signal: null, durationMs: 0, timedOut: false, canceled: true, oomKilled: false, pidsLimitHit: null };
    }
    const running = await this.spawnInMachine(request);
    let timedOut = false;
    let canceled = false;
    let killing: Promise<void> | undefined;
    const timer =
      request.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            timedOut = true;
            killing ??= this.killTree(running);
          }, request.timeoutMs);
    const onAbort = () => {
      canceled = true;
      killing ??= this.killTree(running);
    };
    request.signal?.addEventListener('abort', onAbort, { once: true });
    const exitCode = await running.exited;
    const durationMs = performance.now() - running.startedAt;
    if (timer) clearTimeout(timer);
    request.signal?.removeEventListener('abort', onAbort);
    await killing;
    await running.outputDone;
    const killed = timedOut || canceled;
    return {
      exitCode: killed ? null : exitCode,
      signal: killed ? 'SIGKILL' : null,
      durationMs,
      timedOut,
      canceled,
      oomKilled: this.cgroups.oomKillCount() > oomBefore,
      pidsLimitHit: this.pidsLimitHitSince(pidsBefore),
    };
  }

  async startBackground(request: BackgroundRequest): Promise<BackgroundProcess> {
    const pidFile = join(this.stateDir, `background-${this.execCounter + 1}.pid`);
    const oomBefore = this.cgroups.oomKillCount();
    const pidsBefore = this.cgroups.pidsLimitHits();
    const running = await this.spawnInMachine(request, pidFile);
    let ended = false;
    void running.exited.then(() => (ended = true));
    // runc writes the pid file once the process runs; a process that fails at once may exit first.
    let pid = 0;
    while (pid === 0 && !ended) {
      pid = Number(await readFile(pidFile, 'utf8').catch(() => '0')) || 0;
      if (pid === 0) await sleep(2);
    }
    await unlink(pidFile).catch(() => {});
    let killed = false;
    const exited = running.exited.then(async (exitCode): Promise<ExecOutcome> => {
      const durationMs = performance.now() - running.startedAt;
      // Its last output first: a command that fails at once must have said why before its end is reported.
      await running.outputDone;
      return {
        exitCode: killed ? null : exitCode,
        signal: killed ? 'SIGKILL' : null,
        durationMs,
        timedOut: false,
        canceled: killed,
        oomKilled: this.cgroups.oomKillCount() > oomBefore,
        pidsLimitHit: this.pidsLimitHitSince(pidsBefore),
      };
    });
    return {
      pid,
      exited,
      exitedWithin: (ms) => Promise.race([exited, sleep(ms).then(() => undefined)]),
      kill: async () => {
        killed = true;
        await this.killTree(running);
      },
    };
  }

  async forwardPort(guestPort: number): Promise<number> {
    if (!this.slirp?.forwardPort) {
      throw new StrataError('STRATA_SANDBOX_EXEC', `machine ${this.name} was not started with port forwarding`, { hint: "start it with network 'outbound' and portForwarding: true" });
    }
    return this.slirp.forwardPort(guestPort);
  }

  async freeze(): Promise<void> {
    // A task blocked uninterruptibly (e.g. on a stuck FUSE request) cannot be frozen: bound the wait.
    const paused = await exec('runc', ['--root', this.runcRoot, 'pause', this.name], { timeoutMs: 30_000 });
    // runc gives up quickly ("unable to freeze") on a machine whose processes keep forking; the
    // machine's own freezer cgroup gets there given longer (runc then sees it paused, so resume works).
    if (paused.exitCode !== 0 && !paused.timedOut && (await this.cgroups.freezeMachine(30_000))) {
      this.frozen = true;
      return;
    }
    if (paused.exitCode !== 0) {
      await exec('runc', ['--root', this.runcRoot, 'resume', this.name]);
      throw new StrataError('STRATA_SANDBOX_EXEC', `could not freeze machine ${this.name}: ${paused.timedOut ? 'timed out' : paused.stderr.trim()}`, {
        hint: 'a process of the machine may be blocked in the kernel (D state)',
      });
    }
    this.frozen = true;
  }

  async thaw(): Promise<void> {
    await execOrThrow('runc', ['--root', this.runcRoot, 'resume', this.name], {
      errorCode: 'STRATA_SANDBOX_EXEC',
    });
    this.frozen = false;
  }

  async setMemoryLimit(bytes: number): Promise<void> {
    try {
      this.cgroups.setMemoryLimit(bytes);
    } catch (error) {
      throw new StrataError('STRATA_SANDBOX_EXEC', `could not set the memory limit of machine ${this.name} to ${bytes} bytes: ${error instanceof Error ? error.message : String(error)}`, {
        cause: error,
      });
    }
  }

  destroy(): Promise<void> {
    this.destroying ??= this.teardown();
    return this.destroying;
  }

  private async teardown(): Promise<void> {
    await this.slirp?.stop();
    await killEverything(this.cgroups); // thaws as it kills, so a frozen machine is destroyed too
    const attached = [...this.attached].map(
      (child) => new Promise<void>((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve() : child.once('exit', () => resolve()))),
    );
    await Promise.all(attached);
    await exec('runc', ['--root', this.runcRoot, 'delete', '--force', this.name]);
    await removeCgroups(this.cgroups);
    if (this.uidRangeClaim !== undefined) {
      await unmountBelow(this.stateDir);
      await releaseUidRange(this.uidRangeClaim, this.stateDir);
    }
    await rm(this.stateDir, { recursive: true, force: true });
  }
}
