// The composition root, shared by the CLI (`strata run`, `shell`, ...) and the server (src/server/
// compose.ts builds the web app around it): the one place that picks the real implementations (btrfs
// snapshot store, runc sandbox, FUSE tracer, SQLite) and wires them into the engine.
import { createHash } from 'node:crypto';
import { mkdir, rm, rmdir } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import type { EngineDeps, EngineImages, EngineMachine, EngineSandbox, StepExecResult } from '../engine/ports.js';
import type { Reporter } from '../engine/reporter.js';
import { cacheDirsRoot, createCacheDirStore } from '../engine/cacheDirs.js';
import { ensureImage } from '../images/ensure.js';
import { hostConfigPath, loadHostConfig, type HostConfig } from '../config/hostConfig.js';
import { prepareHostCaTrust, type HostCaTrust } from '../config/hostCa.js';
import { StrataError } from '../errors.js';
import { createRemoteCache } from '../source/remote.js';
import { listeningTcpPorts } from '../sandbox/listening.js';
import type { ExecOutcome, Sandbox } from '../sandbox/types.js';
import type { SnapshotStore } from '../snapshot/types.js';
import { openDatabase, openPostgres, type StoreDatabase } from '../store/database.js';
import { reapMachineRunDirs, removeRunDirsIfEmpty } from '../engine/splitTimings.js';
import { createCacheIndex } from '../store/sql/cacheIndex.js';
import { lockStore } from '../store/lock.js';
import { createRunLog } from '../store/sql/runLog.js';
import type { CacheIndex } from '../store/cacheIndex.js';
import type { RunLog } from '../store/runs.js';

export interface StorePaths {
  root: string;
  snapshots: string;
  database: string;
}

/** Where strata keeps its state: --store, else $STRATA_STORE, else /var/lib/strata. */
export function storePaths(explicit?: string): StorePaths {
  const root = resolve(explicit ?? process.env.STRATA_STORE ?? '/var/lib/strata');
  return { root, snapshots: join(root, 'snapshots'), database: join(root, 'strata.db') };
}

/**
 * The database of a store: Postgres when a URL is given (the server's --database), else the store's own
 * SQLite file. Migrated to the current schema before it is returned.
 */
export async function openStoreDatabase(options: { store?: string | undefined; databaseUrl?: string | undefined }): Promise<StoreDatabase> {
  const { databaseUrl } = options;
  return databaseUrl !== undefined && databaseUrl !== '' ? openPostgres(databaseUrl) : openDatabase(storePaths(options.store).database);
}

export interface Engine {
  deps: EngineDeps;
  /** The host's settings (/etc/strata/config.json) this engine was opened with. */
  hostConfig: HostConfig;
  /** The database (the store's SQLite, or Postgres): the cache index, the run log, the server's tables. */
  database: StoreDatabase;
  close(): Promise<void>;
}

export interface OpenEngineOptions {
  store?: string | undefined;
  reporter: Reporter;
  /** The host's settings; default read from /etc/strata/config.json ($STRATA_CONFIG). */
  hostConfig?: HostConfig | undefined;
  /** `strata run --trust-host-ca`: overrides the host config's trust_host_ca. */
  trustHostCa?: boolean | undefined;
  /** A Postgres URL (`strata serve --database`): the database instead of the store's own SQLite file. */
  databaseUrl?: string | undefined;
}

/** An engine whose cache index and run log are given (a `strata worker`'s: its server's); it opens no database. */
export type WorkerEngine = Omit<Engine, 'database'>;

export function openEngine(options: OpenEngineOptions): Promise<Engine> {
  return openEngineParts(options, undefined) as Promise<Engine>;
}

export function openWorkerEngine(options: Omit<OpenEngineOptions, 'databaseUrl'>, stores: { cacheIndex: CacheIndex; runLog: RunLog }): Promise<WorkerEngine> {
  return openEngineParts(options, stores);
}

async function openEngineParts(options: OpenEngineOptions, given: { cacheIndex: CacheIndex; runLog: RunLog } | undefined): Promise<WorkerEngine & { database: StoreDatabase | undefined }> {
  const paths = storePaths(options.store);
  const hostConfig = options.hostConfig ?? (await loadHostConfig(hostConfigPath()));
  const { openBtrfsStore } = await import('../snapshot/btrfs.js');
  const { createRuncSandbox } = await import('../sandbox/runc/index.js');
  const { FuseRecorder } = await import('../trace/fuse.js');
  await mkdir(paths.root, { recursive: true });
  const lock = await lockStore(paths.root, {
    onWait: (pid) => process.stderr.write(`strata: waiting for process ${pid}, which is using the store ${paths.root}\n`),
  });
  let snapshots: SnapshotStore;
  try {
    snapshots = await openBtrfsStore({ root: paths.snapshots });
  } catch (error) {
    await lock.release();
    throw error;
  }
  let database: StoreDatabase | undefined;
  try {
    database = given ? undefined : await openStoreDatabase({ store: paths.root, databaseUrl: options.databaseUrl });
    const stores = given ?? { cacheIndex: createCacheIndex(database as StoreDatabase), runLog: createRunLog(database as StoreDatabase) };
    // Machines are named after the store, so reaping leftovers of a crashed run never touches the
    // machines of another store's run on the same host.
    const storeTag = createHash('sha256').update(paths.root).digest('hex').slice(0, 8);
    const stateRoot = join('/run/strata', storeTag);
    const runc = createRuncSandbox({ prefix: `strata-${storeTag}-`, stateRoot });
    await runc.reapLeftovers();
    // Every machine trusts the host's CAs (src/config/hostCa.ts), prepared once per engine in its state
    // root (removed with it at close).
    const hostCa = (options.trustHostCa ?? hostConfig.trust_host_ca)
      ? await prepareHostCaTrust({ bundle: hostConfig.host_ca_bundle, workRoot: join(stateRoot, 'host-ca') })
      : undefined;
    await reapMachineRunDirs();
    const { cacheIndex } = stores;
    // Retention: the newest chains of each runner (default 10, $STRATA_KEEP_CHAINS); the snapshots of
    // forgotten chains go with the crash orphans just below.
    await cacheIndex.pruneChains(Number(process.env.STRATA_KEEP_CHAINS ?? 10) || 10);
    await removeOrphanSnapshots(snapshots, await cacheIndex.referencedSnapshots());
    const sandbox = adaptSandbox(runc, hostCa);
    const images: EngineImages = {
      async ensure(name, onProgress) {
        const image = await ensureImage(snapshots, name, { onProgress: (p) => onProgress?.(`${p.image}: ${p.message}`) });
        // Chains built in system machines are never restored into container machines, nor the other
        // way: where machines do not boot (see machineKindOf), every image's identity says so.
        return { snapshot: image.snapshot, identity: (await systemMachinesEnabled()) ? image.recipeHash : `${image.recipeHash}+container` };
      },
    };
    const deps: EngineDeps = {
      snapshots,
      sandbox,
      tracer: new FuseRecorder(),
      images,
      cacheIndex,
      runLog: stores.runLog,
      reporter: options.reporter,
      cacheDirs: createCacheDirStore(cacheDirsRoot(paths.root)),
      remotes: createRemoteCache(join(paths.root, 'remotes')),
      // Steps mostly wait (network, sleeps, I/O), and SPLIT copies exist to run side by side: more
      // machines at once than cores (measured: SPLIT 8 fans out in 762 ms two at a time, 274 ms all
      // at once; a 3-package monorepo's children ran 1.7x slower than BuildKit two at a time).
      parallelism: Number(process.env.STRATA_PARALLELISM) || Math.max(8, 2 * availableParallelism()),
      now: () => Date.now(),
    };
    const openedDb = database;
    return {
      deps,
      hostConfig,
      database: openedDb,
      async close() {
        // Each part is undone even when an earlier one fails (the first failure is still thrown).
        try {
          await openedDb?.close();
          await snapshots.close();
        } finally {
          // The sandbox's state dirs are empty once every machine is destroyed; leave nothing behind.
          await rm(join(stateRoot, 'host-ca'), { recursive: true, force: true });
          for (const dir of [join(stateRoot, 'machines'), join(stateRoot, 'runc'), stateRoot]) await rmdir(dir).catch(() => {});
          await removeRunDirsIfEmpty();
          await lock.release();
        }
      },
    };
  } catch (error) {
    await database?.close();
    await snapshots.close();
    await lock.release();
    throw error;
  }
}

/**
 * With the store locked, every active snapshot is a leftover of a crashed run (machines are gone), and
 * a committed snapshot no chain names was committed by a run that crashed before its index row was
 * written (snapshot first, index second). Base images are kept: they are named by recipe, not indexed.
 */
async function removeOrphanSnapshots(snapshots: SnapshotStore, referenced: Set<string>): Promise<void> {
  for (const info of await snapshots.list()) {
    const orphan = info.kind === 'active' || (!referenced.has(info.id) && !info.id.startsWith('image.'));
    if (orphan) await snapshots.remove(info.id);
  }
}

function stepResult(outcome: ExecOutcome): StepExecResult {
  return { exitCode: outcome.exitCode, signal: outcome.signal, durationMs: outcome.durationMs, timedOut: outcome.timedOut, oomKilled: outcome.oomKilled, pidsLimitHit: outcome.pidsLimitHit };
}

/** Decodes a process's output chunks as UTF-8, per stream, without splitting a character between chunks. */
function utf8Output(onOutput: (stream: 'stdout' | 'stderr', text: string) => void) {
  const decoders = { stdout: new StringDecoder('utf8'), stderr: new StringDecoder('utf8') };
  return {
    write(chunk: { stream: 'stdout' | 'stderr'; data: Buffer }): void {
      const text = decoders[chunk.stream].write(chunk.data);
      if (text) onOutput(chunk.stream, text);
    },
    end(): void {
      for (const stream of ['stdout', 'stderr'] as const) {
        const rest = decoders[stream].end();
        if (rest) onOutput(stream, rest);
      }
    },
  };
}

/**
 * A root whose /sbin/init is an executable (systemd, from an image recipe with `system: true` or a
 * package a step installed) boots as a system machine, as a VM would from that disk: its own user
 * namespace, systemd as PID 1, services that start on install and come back after a restore
 * (docs/design/system-container.md). Others are today's container machines. The choice follows the
 * snapshot's content, so steps, previews, shells and debug terminals of one state all agree. Hosts
 * without the hybrid cgroup layout system machines need (and STRATA_SYSTEM_MACHINES=0) keep containers.
 */
async function machineKindOf(rootfs: string): Promise<'system' | 'container'> {
  if (!(await systemMachinesEnabled())) return 'container';
  const { hasInit } = await import('../sandbox/runc/system.js');
  return (await hasInit(rootfs)) ? 'system' : 'container';
}

/** Whether roots with an init boot as system machines here (the host's cgroup layout, STRATA_SYSTEM_MACHINES). */
async function systemMachinesEnabled(): Promise<boolean> {
  if (process.env.STRATA_SYSTEM_MACHINES === '0') return false;
  const { systemMachinesSupported } = await import('../sandbox/runc/system.js');
  return systemMachinesSupported();
}

/**
 * The runc sandbox as the engine's narrow machine port: outbound network, output decoded as UTF-8. With
 * `hostCa`, every machine (steps, previews, shells) trusts the host's CAs: their mount, their merge into
 * the system store at start, and their environment under every process's own.
 */
function adaptSandbox(sandbox: Sandbox, hostCa?: HostCaTrust): EngineSandbox {
  const withHostCaEnv = (env: Record<string, string>): Record<string, string> => (hostCa ? { ...hostCa.env, ...env } : env);
  return {
    async start(request) {
      const mounts = [...(request.mounts ?? []), ...(hostCa ? [hostCa.mount] : [])];
      const kind = await machineKindOf(request.rootfs);
      const machine = await sandbox.start({
        id: request.id,
        rootfs: request.rootfs,
        hostname: request.hostname,
        network: 'outbound',
        ...(kind === 'system' ? { kind } : {}),
        ...(request.memoryBytes !== undefined ? { memoryBytes: request.memoryBytes } : {}),
        ...(mounts.length > 0 ? { mounts } : {}),
        ...(request.portForwarding ? { portForwarding: true } : {}),
        ...(request.nestedContainers ? { nestedContainers: true } : {}),
      });
      if (hostCa) await trustHostCa(machine, hostCa);
      const adapted: EngineMachine = {
        pid: machine.pid,
        async exec(exec) {
          const output = utf8Output(exec.onOutput);
          const outcome = await machine.exec({
            command: exec.command,
            env: withHostCaEnv(exec.env),
            workdir: exec.workdir,
            user: exec.user,
            ...(exec.signal ? { signal: exec.signal } : {}),
            ...(exec.timeoutMs !== undefined ? { timeoutMs: exec.timeoutMs } : {}),
            onOutput: output.write,
          });
          output.end();
          return stepResult(outcome);
        },
        async startBackground(request) {
          const background = await machine.startBackground({
            command: request.command,
            env: withHostCaEnv(request.env),
            workdir: request.workdir,
            user: request.user,
            onOutput: utf8Output(request.onOutput).write,
          });
          return {
            exitedWithin: async (ms) => {
              const outcome = await background.exitedWithin(ms);
              return outcome === undefined ? undefined : stepResult(outcome);
            },
            kill: () => background.kill(),
          };
        },
        freeze: () => machine.freeze(),
        thaw: () => machine.thaw(),
        destroy: () => machine.destroy(),
        setMemoryLimit: (bytes) => machine.setMemoryLimit(bytes),
        listeningPorts: () => listeningTcpPorts(machine.pid),
        ...(machine.forwardPort ? { forwardPort: machine.forwardPort.bind(machine) } : {}),
      };
      return adapted;
    },
  };
}

/** Merges the host's CAs into a machine's system store (idempotent; at every start, so never stale). */
async function trustHostCa(machine: Awaited<ReturnType<Sandbox['start']>>, hostCa: HostCaTrust): Promise<void> {
  let output = '';
  const outcome = await machine.exec({
    command: hostCa.startScript,
    env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' },
    workdir: '/',
    user: 'root',
    timeoutMs: 60_000,
    onOutput: (chunk) => {
      output += chunk.data.toString('utf8');
    },
  });
  if (outcome.exitCode !== 0) {
    await machine.destroy().catch(() => {});
    throw new StrataError('STRATA_SANDBOX_START', `trust_host_ca: adding the host's CA certificates to the machine failed (exit ${outcome.exitCode}): ${output.trim().slice(-500)}`, {
      hint: 'turn trust_host_ca off in /etc/strata/config.json (or drop --trust-host-ca) to run without it',
    });
  }
}
