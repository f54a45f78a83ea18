// What the engine needs from the machine, image and tracing layers, as narrow interfaces. The
// composition root (src/compose/engine.ts, shared by the CLI and the server) adapts the real
// implementations to these; tests may give fakes.
import type { CacheIndex } from '../store/cacheIndex.js';
import type { RunLog } from '../store/runs.js';
import type { SnapshotName, SnapshotStore } from '../snapshot/types.js';
import type { TraceRecorder } from '../trace/recorder.js';
import type { RemoteCache } from '../source/remote.js';
import type { CacheDirStore } from './cacheDirs.js';
import type { OutputStream, Reporter } from './reporter.js';

export interface StepExecResult {
  exitCode: number | null;
  signal: string | null;
  durationMs: number;
  timedOut: boolean;
  oomKilled: boolean;
  /** A fork in the machine failed at its process limit during the step: that limit (else null/absent). */
  pidsLimitHit?: number | null;
}

/** A process started by RUN BACKGROUND; it runs until it ends or the machine is destroyed. */
export interface EngineBackgroundProcess {
  /** How it ended if it ended within `ms`, else undefined (RUN BACKGROUND's ~2 s check). */
  exitedWithin(ms: number): Promise<StepExecResult | undefined>;
  /** Kills it and everything it started. */
  kill(): Promise<void>;
}

export interface EngineMachine {
  /** A process inside the machine (its mount namespace is where tracers mount). */
  readonly pid: number;
  exec(request: {
    command: string;
    env: Record<string, string>;
    workdir: string;
    user: string;
    onOutput: (stream: OutputStream, data: string) => void;
    signal?: AbortSignal | undefined;
    /** Kill the command (and everything it started) after this long: a timed-out result. */
    timeoutMs?: number | undefined;
  }): Promise<StepExecResult>;
  /** Starts `command` (bash) and returns at once; its output keeps flowing to `onOutput` while it runs. */
  startBackground(request: {
    command: string;
    env: Record<string, string>;
    workdir: string;
    user: string;
    onOutput: (stream: OutputStream, data: string) => void;
  }): Promise<EngineBackgroundProcess>;
  freeze(): Promise<void>;
  thaw(): Promise<void>;
  destroy(): Promise<void>;
  /** TCP ports listening inside the machine now (for re-launching services after a restore). */
  listeningPorts?(): Promise<number[]>;
  /** Forwards a free 127.0.0.1 host port to the machine's TCP guestPort; machines started with portForwarding only. */
  forwardPort?(guestPort: number): Promise<number>;
  /** Sets the whole machine's memory limit while it runs (a MEMORY line after RUN lines raises it). */
  setMemoryLimit?(bytes: number): Promise<void>;
}

export interface EngineSandbox {
  start(request: {
    id: string;
    rootfs: string;
    hostname: string;
    memoryBytes?: number | undefined;
    /** Host directories bind-mounted at machine paths for the machine's life (CACHE dirs), parents first. */
    mounts?: ReadonlyArray<{ source: string; destination: string; readOnly?: boolean }> | undefined;
    /** EXPOSE: allow forwardPort() (keep the id short: see MachineSpec.portForwarding). */
    portForwarding?: boolean | undefined;
    /** Container runtimes may run inside, in a user namespace (see MachineSpec.nestedContainers). */
    nestedContainers?: boolean | undefined;
  }): Promise<EngineMachine>;
}

export interface EngineImages {
  /** The committed snapshot holding the image's root, and an identity that changes with its recipe. */
  ensure(name: string, onProgress?: (line: string) => void): Promise<{ snapshot: SnapshotName; identity: string }>;
}

export interface EngineDeps {
  snapshots: SnapshotStore;
  sandbox: EngineSandbox;
  tracer: TraceRecorder;
  images: EngineImages;
  cacheIndex: CacheIndex;
  runLog: RunLog;
  reporter: Reporter;
  /** Persistent CACHE directories; a Layerfile with CACHE lines cannot run without it. */
  cacheDirs?: CacheDirStore | undefined;
  /** Cache repositories of CLONEd remotes; a Layerfile with CLONE lines cannot run without it. */
  remotes?: RemoteCache | undefined;
  /** How many Layerfiles may run at once. */
  parallelism: number;
  /** The memory limit of a machine without MEMORY lines (here or inherited); default DEFAULT_MACHINE_MEMORY_BYTES (memory.ts). */
  defaultMemoryBytes?: number | undefined;
  now: () => number;
}
