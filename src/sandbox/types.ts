// The machine seam: a long-lived Linux sandbox per runner whose root is a writable directory (in
// production a btrfs subvolume). Steps run inside it one after another; background processes keep
// running between steps. Implementations live in one folder each (src/sandbox/runc/), and all of them
// pass test/sandbox/conformance.ts.

export type NetworkMode =
  /** Own network namespace with outbound access to whatever the host reaches; ports are private. */
  | 'outbound'
  /** Own network namespace with only a loopback interface. */
  | 'none';

export interface MachineSpec {
  /** Unique among running machines; [A-Za-z0-9_.-], becomes part of container/cgroup names. */
  id: string;
  /** Absolute path of the writable root directory. The machine never deletes it. */
  rootfs: string;
  /** Defaults to the id. */
  hostname?: string;
  /** Memory limit of the whole machine (all processes together). Unlimited when absent. */
  memoryBytes?: number;
  /** Maximum number of processes/threads in the machine. Default 4096. */
  pidsLimit?: number;
  network: NetworkMode;
  /**
   * Host directories bind-mounted at machine paths when the machine starts (CACHE dirs), in order
   * (parents before children). A missing mountpoint is created in the rootfs (an empty directory,
   * root-owned); what is written there goes to the host directory, never into the rootfs.
   */
  mounts?: readonly DirectoryMount[];
  /**
   * With network 'outbound': allow forwardPort() (EXPOSE WEBSITE/TCP). Keep the machine id short then:
   * the forwarding control socket lives in its state dir, and a unix socket path has at most 107 bytes.
   */
  portForwarding?: boolean;
  /**
   * Let container runtimes run inside the machine in a user namespace of their own (dockerd started by
   * strata-dockerd, podman, rootless runc): the machine gets a hidden, unmasked proc and sysfs that
   * the kernel requires before a user namespace may mount its own, and loses CAP_SETFCAP (so that no
   * user namespace can map the host's root). The machine itself gains no privilege.
   */
  nestedContainers?: boolean;
  /**
   * 'container' (the default): today's machine, a bash reaper as PID 1 in the host's user namespace.
   * 'system' (opt-in; docs/design/system-container.md): a system container — its own user namespace
   * whose root is an unprivileged host uid (a range per machine), the rootfs and writable `mounts`
   * mounted idmapped (ownership on disk stays 0-based), a delegated cgroup2 view, and systemd as PID 1
   * (`/sbin/init` of the rootfs; images without it get the bash reaper). start() returns once systemd
   * reports `running` or `degraded` (see Machine.boot). nestedContainers is implied: container runtimes
   * run inside as in a VM.
   */
  kind?: MachineKind;
}

export type MachineKind = 'container' | 'system';

/** How a system machine's boot ended (start() waited for it). */
export interface MachineBoot {
  /** systemd's `is-system-running`: 'degraded' means some units failed (listed), the machine is usable. */
  state: 'running' | 'degraded' | 'no-init';
  failedUnits: string[];
  /** From `runc run` until the state was reached. */
  durationMs: number;
}

export interface DirectoryMount {
  /** Absolute host path of a directory. */
  source: string;
  /** Absolute machine path. */
  destination: string;
  /** Mounted read-only (the machine cannot change the host directory). */
  readOnly?: boolean;
}

export interface OutputChunk {
  stream: 'stdout' | 'stderr';
  data: Buffer;
  /** Milliseconds since the exec (or background process) started; monotonic. */
  timeMs: number;
}

export interface ExecRequest {
  /** Run as `bash -c command`. */
  command: string;
  /** The complete environment of the command (PATH, HOME, USER, LOGNAME get defaults if absent). */
  env?: Record<string, string>;
  /** Absolute machine path; must exist. Default '/root' (or the user's home directory). */
  workdir?: string;
  /** A name or uid in the machine's /etc/passwd. Default root. */
  user?: string | number;
  /** Kill the exec's whole process tree after this long; the outcome has timedOut: true. */
  timeoutMs?: number;
  /** Kill the exec's whole process tree when aborted; the outcome has canceled: true. */
  signal?: AbortSignal;
  /** Live output, in order per stream. */
  onOutput?: (chunk: OutputChunk) => void;
}

/** How an exec ended. A non-zero exit is an outcome, not an exception. */
export interface ExecOutcome {
  /** Exit status of the command; null when strata killed it (timeout, cancel). 128+n means signal n. */
  exitCode: number | null;
  /** The signal strata sent when it killed the process tree, else null. */
  signal: NodeJS.Signals | null;
  durationMs: number;
  timedOut: boolean;
  canceled: boolean;
  /** The kernel's OOM killer killed a process of the machine while this exec ran. */
  oomKilled: boolean;
  /** A fork in the machine failed at its process limit while this exec ran: that limit; else null. */
  pidsLimitHit: number | null;
}

export type BackgroundRequest = Omit<ExecRequest, 'timeoutMs' | 'signal'>;

export interface BackgroundProcess {
  /** Host pid of the process (bash -c command). */
  pid: number;
  /** Settles when the process ends (or is killed with the machine). */
  exited: Promise<ExecOutcome>;
  /** The outcome if the process ended within `ms`, else undefined (RUN BACKGROUND's ~2 s check). */
  exitedWithin(ms: number): Promise<ExecOutcome | undefined>;
  /** Kills the process and everything it started. */
  kill(): Promise<void>;
}

export interface Machine {
  readonly id: string;
  readonly rootfs: string;
  /**
   * Host pid of a process inside the machine (its init). Its /proc/<pid>/ns/{mnt,net,pid,...} are the
   * machine's namespaces: mounts made after `setns` into ns/mnt are seen by every later exec.
   */
  readonly pid: number;
  /** System machines (MachineSpec.kind 'system'): how systemd's boot went. Absent for other machines. */
  readonly boot?: MachineBoot;
  exec(request: ExecRequest): Promise<ExecOutcome>;
  startBackground(request: BackgroundRequest): Promise<BackgroundProcess>;
  /** Stops every process of the machine (they keep existing) so its root can be snapshotted. */
  freeze(): Promise<void>;
  thaw(): Promise<void>;
  /** Kills everything and removes what start() created (not the rootfs). Idempotent. */
  destroy(): Promise<void>;
  /**
   * Sets the memory limit of the whole machine while it runs (MEMORY after RUN lines raises it before
   * the next step). Fails with STRATA_SANDBOX_EXEC if the kernel refuses (e.g. below current use).
   */
  setMemoryLimit(bytes: number): Promise<void>;
  /**
   * Forwards a free host port on 127.0.0.1 to the machine's guestPort (TCP) for the machine's life and
   * returns it. Only on a machine started with portForwarding; the process inside must listen on
   * 0.0.0.0 (or the machine's address), not only on its 127.0.0.1. Optional: implementations without
   * it cannot expose.
   */
  forwardPort?(guestPort: number): Promise<number>;
}

export interface ReapReport {
  /** Names of machines (or their remains) removed. */
  machines: string[];
}

export interface Sandbox {
  start(spec: MachineSpec): Promise<Machine>;
  /** Removes machines, cgroups and helper processes left by a crashed predecessor (same name prefix). */
  reapLeftovers(): Promise<ReapReport>;
}
