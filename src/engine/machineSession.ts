// One runner's machine for the steps that run: started on the active snapshot with its CACHE dirs and
// run dir mounted and its copies traced; every process it runs goes through here (secrets join the
// environment here), with each step's output capped. close() releases everything it holds, whatever
// happened: call it in a `finally`.
import { lstat } from 'node:fs/promises';
import { posix } from 'node:path';
import { StrataError } from '../errors.js';
import type { Instruction } from '../layerfile/types.js';
import { sha256Hex } from '../plan/definitionKey.js';
import { isSameOrUnder } from '../plan/paths.js';
import type { CopyRecord } from '../plan/types.js';
import type { SnapshotKey } from '../snapshot/types.js';
import type { BackgroundCommand } from '../store/cacheIndex.js';
import type { TraceSession } from '../trace/recorder.js';
import { emptyStepTrace, type StepTrace } from '../trace/types.js';
import { sleep } from '../util/sleep.js';
import { claimCacheDirs, machineCacheDirs, type CacheDirLease, type ResolvedCacheDir } from './cacheDirs.js';
import { machineDefaults } from './machineDefaults.js';
import type { EngineBackgroundProcess, EngineDeps, EngineMachine, StepExecResult } from './ports.js';
import type { OutputStream } from './reporter.js';
import { resolveInRoot } from './rootfs.js';
import { secretValuesFor, type Secrets } from './secrets.js';
import { createMachineRunDir, type MachineRunDir } from './splitTimings.js';
import type { ExecState } from './stepEnv.js';

/** A RUN BACKGROUND command that exits non-zero within this long fails its step (or its re-launch). */
export const BACKGROUND_CHECK_MS = 2000;

/** The re-launched background commands' check, still running while the first steps run. */
export interface RelaunchCheck {
  /** Settles when the last command's check ends; rejects with its failure. */
  done: Promise<void>;
  /** That failure once known (null until then): the runner fails at the next step boundary. */
  readonly failure: unknown;
}

export class MachineSession {
  private started: EngineMachine | null = null;
  private readonly tracers: Array<{ dir: string; session: TraceSession }> = [];
  private cacheLease: CacheDirLease | null = null;
  private runDir: MachineRunDir | null = null;
  private cacheDirs: ResolvedCacheDir[] = [];
  private splitTimingsProvided = false;
  private readonly outputUsed = new Map<number, number>();
  /** Frozen since the last freeze(), until thawIfFrozen(). */
  frozen = false;

  constructor(
    private readonly deps: EngineDeps,
    private readonly options: {
      runId: string;
      repo: string;
      layerfilePath: string;
      runner: string;
      /** The SPLIT copy this machine runs (0: the Layerfile's own runner). */
      copyIndex: number;
      /** The machine's writable root, removed by close(). */
      activeKey: SnapshotKey;
      rootfs: string;
      secrets: Secrets;
      /** Bytes of each step's output that reach the reporters. */
      outputLimit: number;
    },
  ) {}

  get rootfs(): string {
    return this.options.rootfs;
  }

  get machine(): EngineMachine {
    if (!this.started) throw new StrataError('STRATA_INTERNAL', `${this.options.layerfilePath}: the machine is not started`);
    return this.started;
  }

  /**
   * Starts the machine. CACHE dirs of the whole Layerfile (up to a SKIP that holds: `instructions`)
   * are mounted when the machine starts: see cacheDirs.ts for why, and for the lock held until the
   * machine is gone. Then every copy in `copies` is traced.
   */
  async start(request: {
    instructions: readonly Instruction[];
    startState: ExecState;
    /** The copy's post-SPLIT environment: a CACHE path depends on it only after the SPLIT. */
    splitEnv: Record<string, string>;
    memoryBytes: number | undefined;
    noCacheDirs: boolean;
    /** The step that gets the CACHE dirs' notes in its output. */
    firstStep: number;
    copies: readonly CopyRecord[];
  }): Promise<void> {
    const { deps, options } = this;
    const cacheDirs = await machineCacheDirs(request.instructions, request.startState, request.splitEnv, options.rootfs);
    this.cacheDirs = cacheDirs;
    if (cacheDirs.length > 0) {
      if (!deps.cacheDirs) throw new StrataError('STRATA_INTERNAL', `${options.layerfilePath}: CACHE needs a cache dir store and the engine has none`);
      this.cacheLease = await deps.cacheDirs.acquire({ repo: options.repo, layerfile: options.layerfilePath, paths: cacheDirs.map((d) => d.path), throwaway: request.noCacheDirs, copy: options.copyIndex });
      for (const note of this.cacheLease.notes) this.outputTo(request.firstStep)('stderr', `strata: ${note}\n`);
    }
    this.runDir = await createMachineRunDir();
    this.started = await deps.sandbox.start({
      id: `${options.runId}-${runnerToken(options.runner)}`,
      rootfs: options.rootfs,
      hostname: hostnameFor(options.runner),
      memoryBytes: request.memoryBytes,
      ...machineDefaults([...this.runDir.mounts, ...(this.cacheLease?.mounts ?? [])]),
    });
    // Users of CACHE lines already behind us exist in the restored machine; later ones are claimed by their CACHE step.
    await claimCacheDirs(this.started, cacheDirs, request.splitEnv);
    await this.traceCopies(request.copies);
  }

  /** Raises (or sets) the running machine's memory limit: a MEMORY line between steps. */
  async setMemoryLimit(bytes: number): Promise<void> {
    const machine = this.machine;
    if (!machine.setMemoryLimit) {
      throw new StrataError('STRATA_ENGINE', `${this.options.layerfilePath}: this sandbox cannot change a running machine's memory limit, so MEMORY after RUN cannot be honoured`);
    }
    await machine.setMemoryLimit(bytes);
  }

  /** The CACHE line's directories are mounted already; give them to its user, who may be new. */
  async claimCacheDirsOf(line: number, env: Record<string, string>): Promise<void> {
    await claimCacheDirs(this.machine, this.cacheDirs.filter((d) => d.line === line), env);
  }

  /** From the first step after the SPLIT line on, the machine sees its SPLIT's timings (once). */
  async provideSplitTimings(digest: string | null): Promise<void> {
    if (this.splitTimingsProvided || digest === null) return;
    const content = await this.deps.cacheIndex.splitTimings.content(digest);
    if (content === undefined) throw new StrataError('STRATA_STORE', `${this.options.layerfilePath}: the strata-split timings ${digest.slice(0, 12)} are gone from the database`, { hint: 'run again: the SPLIT then runs with new timings' });
    await (this.runDir as MachineRunDir).provideSplitTimings(content);
    this.splitTimingsProvided = true;
  }

  async traceCopies(records: readonly CopyRecord[]): Promise<void> {
    for (const record of records) await attachTracer(this.deps, this.machine, this.tracers, record, this.options.rootfs);
  }

  /**
   * Each step's log is capped (an output flood must not fill the disk or the UI); past the cap one
   * marker line says so, and the rest is read and dropped while the step runs on.
   */
  outputTo(step: number): (stream: OutputStream, data: string) => void {
    const { deps, options, outputUsed } = this;
    const outputLimit = options.outputLimit;
    const runner = options.runner;
    return (stream, data) => {
      const used = outputUsed.get(step) ?? 0;
      if (used > outputLimit) return;
      const bytes = Buffer.byteLength(data);
      if (used + bytes <= outputLimit) {
        outputUsed.set(step, used + bytes);
        deps.reporter.onStepOutput?.({ runner, step, stream, data, timeMs: deps.now() });
        return;
      }
      outputUsed.set(step, outputLimit + 1);
      const head = Buffer.from(data).subarray(0, outputLimit - used).toString();
      if (head) deps.reporter.onStepOutput?.({ runner, step, stream, data: head, timeMs: deps.now() });
      const marker = `\n[strata] output truncated: this step printed more than ${formatBytes(outputLimit)}; the rest is not shown (the step runs on)\n`;
      deps.reporter.onStepOutput?.({ runner, step, stream: 'stderr', data: marker, timeMs: deps.now() });
    };
  }

  /** Starts attributing what the traced copies see to `step`. */
  async beginStep(step: number): Promise<void> {
    await Promise.all(this.tracers.map((t) => t.session.beginStep(step)));
  }

  /** What the traced copies saw since the previous endStep. */
  async endStep(): Promise<StepTrace> {
    return mergeTraces(await Promise.all(this.tracers.map((t) => t.session.endStep())));
  }

  /** Runs a command to its end; its output goes to `step`'s log. */
  async exec(request: {
    command: string;
    env: Record<string, string>;
    /** SECRET ENV names whose values join `env`. */
    secrets: readonly string[] | undefined;
    workdir: string;
    user: string;
    step: number;
    signal: AbortSignal | undefined;
    timeoutMs: number | undefined;
  }): Promise<StepExecResult> {
    return this.machine.exec({
      command: request.command,
      env: this.withSecrets(request.env, request.secrets),
      workdir: request.workdir,
      user: request.user,
      onOutput: this.outputTo(request.step),
      signal: request.signal,
      timeoutMs: request.timeoutMs,
    });
  }

  /** Starts a background command; its output keeps going to `step`'s log after the step ended. */
  async startBackground(command: BackgroundCommand, step: number): Promise<EngineBackgroundProcess> {
    return this.machine.startBackground({ ...command, env: this.withSecrets(command.env, command.secrets), onOutput: this.outputTo(step) });
  }

  /**
   * Re-launches the background commands of the restored state, with the tracers attached: what the
   * commands touch now counts for the first step that runs, `step` (a session attributes touches
   * before a beginStep to that step).
   * Each command gets its ~2 s check before the next one starts (a later one may need an earlier
   * one up, as when they first ran). After the last one, the first step waits until the TCP ports
   * that listened when the restored snapshot was taken (`expectedPorts`) listen again, or until the
   * check ends, whichever comes first: later steps may rely on the services being up (the wait that
   * got them ready in the first run may be a cached step), but a restored database that is up in
   * 300 ms is used then, not 2 s later. A check still running fails the runner at the next step
   * boundary, before that step is recorded (or at the end).
   */
  async relaunch(background: readonly BackgroundCommand[], expectedPorts: readonly number[], step: number): Promise<RelaunchCheck> {
    const machine = this.machine;
    let relaunchCheck: Promise<void> = Promise.resolve();
    let relaunchFailure: unknown = null;
    for (const [i, command] of background.entries()) {
      const started = await this.startBackground(command, step);
      const check = started.exitedWithin(BACKGROUND_CHECK_MS).then((ended) => {
        if (ended && ended.exitCode !== 0) {
          throw new StrataError('STRATA_ENGINE', `${this.options.layerfilePath}: re-launching background command \`${command.command}\` failed: it ${describeFailure(ended)} within ${BACKGROUND_CHECK_MS / 1000} s`, {
            hint: 'the restored snapshot was taken while it ran; a command that cannot start again on its own files (stale pid or lock files) should clean them up first, or run with --no-cache',
          });
        }
      });
      if (i < background.length - 1) {
        await check;
        continue;
      }
      relaunchCheck = check;
      check.catch((error: unknown) => (relaunchFailure = error));
      if (expectedPorts.length === 0) {
        await check;
      } else {
        // Until the ports listen or the check period ends; a command that exits 0 at once (it forked
        // a daemon) does not end the wait, a failing one does.
        const ready = { done: false };
        await Promise.race([portsListening(machine, expectedPorts, ready), sleep(BACKGROUND_CHECK_MS, { unref: true }), check.then(() => new Promise<void>(() => {}), () => {})]);
        ready.done = true;
      }
    }
    if (relaunchFailure) throw relaunchFailure;
    return {
      done: relaunchCheck,
      get failure() {
        return relaunchFailure;
      },
    };
  }

  /**
   * Steps that change the machine end with it frozen: the trace is collected and the snapshot
   * taken while nothing inside can run, so whatever a background process does after the step's
   * command ended is either in this step's trace and snapshot or in the next step's, never split.
   */
  async freeze(): Promise<void> {
    await this.machine.freeze();
    this.frozen = true;
  }

  async thawIfFrozen(): Promise<void> {
    if (!this.frozen) return;
    await this.machine.thaw();
    this.frozen = false;
  }

  /** TCP ports listening in the machine now (none when it cannot tell). */
  async listeningPorts(): Promise<number[]> {
    return this.machine.listeningPorts ? await this.machine.listeningPorts() : [];
  }

  /** Releases everything the session holds; runs on every path (success, failure, error, cancel). */
  async close(): Promise<void> {
    const { deps, options } = this;
    for (const { session } of this.tracers) await session.detach().catch(() => {});
    if (this.started) await this.started.destroy().catch(() => {});
    await this.cacheLease?.release();
    if (this.runDir) {
      // What the steps reported, failed runs included (the tests that did run took that long).
      const reported = await this.runDir.collectReport().catch(() => []);
      if (reported.length > 0) await deps.cacheIndex.splitTimings.record(options.repo, options.layerfilePath, reported, deps.now());
      await this.runDir.remove().catch(() => {});
    }
    await deps.snapshots.remove(options.activeKey).catch(() => {});
  }

  // Secrets join a process's environment only here, at exec time: never the machine's files, the
  // ExecState or the stored background commands (those keep the names).
  private withSecrets(env: Record<string, string>, names: readonly string[] | undefined): Record<string, string> {
    return names && names.length > 0 ? { ...env, ...secretValuesFor(names, this.options.secrets, this.options.layerfilePath) } : env;
  }
}

export function describeFailure(result: Pick<StepExecResult, 'exitCode' | 'signal' | 'timedOut' | 'oomKilled' | 'pidsLimitHit'>): string {
  if (result.oomKilled) return 'was killed: out of memory (MEMORY limit reached)';
  if (result.timedOut) return 'timed out';
  const how = result.signal ? `was killed by ${result.signal}` : `exited with code ${result.exitCode}`;
  // Said with any ending: a fork bomb's step ends however its shell copes with failed forks.
  if (typeof result.pidsLimitHit === 'number') return `${how} after the machine reached its process limit (${result.pidsLimitHit} processes: forks failed)`;
  return how;
}

/** The runner id as it appears in snapshot names and the machine id. */
export function runnerToken(runner: string): string {
  const token = runner.replace(/[^A-Za-z0-9_-]/g, '_') || 'runner';
  // A long id keeps a digest of the whole id: `<id>` and its SPLIT copy `<id>-2` must not share a token.
  return token.length <= 60 ? token : `${token.slice(0, 51)}-${sha256Hex(runner).slice(0, 8)}`;
}

function hostnameFor(runner: string): string {
  return (runner.toLowerCase().replace(/[^a-z0-9-]/g, '-').replace(/^-+|-+$/g, '').slice(0, 63) || 'machine');
}

function formatBytes(bytes: number): string {
  return bytes >= 1024 * 1024 ? `${Math.round((bytes / 1024 / 1024) * 10) / 10} MiB` : bytes >= 1024 ? `${Math.round(bytes / 1024)} KiB` : `${bytes} bytes`;
}

/**
 * Resolves once every port in `ports` listens in the machine (polled every 20 ms); never when the
 * machine cannot tell. Stops polling once `until.done` is set.
 */
async function portsListening(machine: EngineMachine, ports: readonly number[], until: { done: boolean }): Promise<void> {
  if (!machine.listeningPorts) return new Promise<void>(() => {});
  while (!until.done) {
    const listening = new Set(await machine.listeningPorts());
    if (ports.every((port) => listening.has(port))) return;
    await sleep(20);
  }
  return new Promise<void>(() => {});
}

/** Traces the directory a copy landed in (or, for a single file, the directory holding it), once. */
async function attachTracer(deps: EngineDeps, machine: EngineMachine, sessions: Array<{ dir: string; session: TraceSession }>, record: CopyRecord, rootfs: string): Promise<void> {
  const isDir = await isDirectory(rootfs, record.dest);
  const dir = isDir ? record.dest : posix.dirname(record.dest);
  if (sessions.some((s) => isSameOrUnder(dir, s.dir))) return;
  if (dir === '/') {
    throw new StrataError('STRATA_ENGINE', 'COPY into / cannot be traced', { hint: 'copy into a directory such as /app or /root' });
  }
  const session = await deps.tracer.attach({ dir, machinePrefix: dir, mountNamespacePid: machine.pid });
  sessions.push({ dir, session });
}

async function isDirectory(rootfs: string, machinePath: string): Promise<boolean> {
  try {
    return (await lstat(await resolveInRoot(rootfs, machinePath))).isDirectory();
  } catch {
    return false;
  }
}

function mergeTraces(traces: StepTrace[]): StepTrace {
  const merged = emptyStepTrace();
  for (const t of traces) {
    merged.read.push(...t.read);
    merged.listed.push(...t.listed);
    merged.statted.push(...t.statted);
    merged.absent.push(...t.absent);
    merged.written.push(...t.written);
  }
  return merged;
}
