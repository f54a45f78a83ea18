// OCI runtime spec (config.json) for a machine, and process.json for each exec. Only what runc reads.
import type { MachineUser } from '../users.js';

/** Docker's default capability set: enough for apt, chown, ping, binding :80; no mount, no module loading. */
const rootCapabilities = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
];

/**
 * A machine with nested containers drops CAP_SETFCAP: without it no user namespace created in the
 * machine can map the host's uid 0 (the kernel's verify_root_map), and only such a namespace could
 * use the hidden /proc (see nestedContainerMounts) to write the host's sysctls.
 */
export function machineCapabilities(nestedContainers: boolean): string[] {
  return nestedContainers ? rootCapabilities.filter((cap) => cap !== 'CAP_SETFCAP') : rootCapabilities;
}

/**
 * Every capability runc 1.1 knows (41). A system machine's root gets them all: they are scoped to the
 * machine's own user namespace, where the host's uid 0 is not mapped at all.
 */
export const systemCapabilities = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_DAC_READ_SEARCH', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL', 'CAP_SETGID', 'CAP_SETUID',
  'CAP_SETPCAP', 'CAP_LINUX_IMMUTABLE', 'CAP_NET_BIND_SERVICE', 'CAP_NET_BROADCAST', 'CAP_NET_ADMIN', 'CAP_NET_RAW',
  'CAP_IPC_LOCK', 'CAP_IPC_OWNER', 'CAP_SYS_MODULE', 'CAP_SYS_RAWIO', 'CAP_SYS_CHROOT', 'CAP_SYS_PTRACE', 'CAP_SYS_PACCT',
  'CAP_SYS_ADMIN', 'CAP_SYS_BOOT', 'CAP_SYS_NICE', 'CAP_SYS_RESOURCE', 'CAP_SYS_TIME', 'CAP_SYS_TTY_CONFIG', 'CAP_MKNOD',
  'CAP_LEASE', 'CAP_AUDIT_WRITE', 'CAP_AUDIT_CONTROL', 'CAP_SETFCAP', 'CAP_MAC_OVERRIDE', 'CAP_MAC_ADMIN', 'CAP_SYSLOG',
  'CAP_WAKE_ALARM', 'CAP_BLOCK_SUSPEND', 'CAP_AUDIT_READ', 'CAP_PERFMON', 'CAP_BPF', 'CAP_CHECKPOINT_RESTORE',
];

/** The capability (bounding) set of a machine's processes: see machineCapabilities and systemCapabilities. */
export type CapabilityMode = { nestedContainers: boolean } | 'system';

function boundingSet(mode: CapabilityMode): string[] {
  return mode === 'system' ? systemCapabilities : machineCapabilities(mode.nestedContainers);
}

export const defaultPath = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface OciProcess {
  terminal: false;
  user: { uid: number; gid: number; additionalGids?: number[] };
  args: string[];
  env: string[];
  cwd: string;
  capabilities: Record<'bounding' | 'effective' | 'permitted' | 'inheritable' | 'ambient', string[]>;
  noNewPrivileges: false;
}

/** A process as `user`. Root gets the capability set; other users only keep it in the bounding set
 * (so setuid programs like sudo still work) — runc would otherwise hand them ambient capabilities. */
export function ociProcess(args: string[], env: Record<string, string>, cwd: string, user: MachineUser, capabilityMode: CapabilityMode = { nestedContainers: false }): OciProcess {
  const bounding = boundingSet(capabilityMode);
  const capabilities = user.uid === 0 ? bounding : [];
  const process: OciProcess = {
    terminal: false,
    user: { uid: user.uid, gid: user.gid },
    args,
    env: Object.entries(env).map(([key, value]) => `${key}=${value}`),
    cwd,
    capabilities: {
      bounding,
      effective: capabilities,
      permitted: capabilities,
      inheritable: capabilities,
      ambient: [],
    },
    noNewPrivileges: false,
  };
  if (user.additionalGids.length > 0) process.user.additionalGids = user.additionalGids;
  return process;
}

export interface MachineConfigInput {
  rootfs: string;
  hostname: string;
  cgroupsPath: string;
  memoryBytes?: number | undefined;
  /** Also limit memory+swap (v1 memsw) so that the limit cannot be dodged by swapping. */
  limitSwap: boolean;
  pidsLimit: number;
  /** Host files and directories bind-mounted over machine paths (resolv.conf, hosts, CACHE dirs), in order. */
  fileMounts: { source: string; destination: string; readOnly?: boolean }[];
  /** See MachineSpec.nestedContainers. */
  nestedContainers?: boolean;
  /** A system container (MachineSpec.kind 'system'); `rootfs` is then the idmapped mount of the machine's root. */
  system?: SystemMachineConfig;
}

export interface SystemMachineConfig {
  /** The host uid/gid of the machine's root; the machine maps 0..size-1 to hostId.. */
  hostId: number;
  size: number;
  /**
   * The machine's cgroup v2 directory on the host (/sys/fs/cgroup/unified/strata/<name> on a hybrid
   * host), delegated to the machine's root by a createRuntime hook.
   */
  unifiedCgroupDir: string;
  /** PID 1: /sbin/init (systemd), or today's bash reaper for a root without one. */
  init: 'systemd' | 'reaper';
}

/** Where the hidden proc and sysfs of a machine with nested containers are mounted (then covered). */
export const nestedHiddenDir = '/dev/.strata-nested';

/**
 * The kernel lets a user namespace mount its own proc (or sysfs) only if the mount namespace already
 * holds one that is "fully visible": none of its parts covered by other mounts. The machine's /proc
 * has runc's masks and read-only /proc/sys, so docker, podman or runc in a user namespace inside
 * the machine cannot start a container. These mounts add an unmasked proc (read-write, as container
 * runtimes mount theirs) and sysfs (read-only, as docker mounts it), then cover both with an empty
 * read-only tmpfs: no path leads to them, and the kernel forbids a less privileged (user) namespace to
 * unmount or bind a covered mount. What a user namespace's own proc lets it write is checked
 * against its uids (never the host's root: see machineCapabilities), so the host's sysctls stay shut.
 */
function nestedContainerMounts(): object[] {
  return [
    { destination: `${nestedHiddenDir}/proc`, type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: `${nestedHiddenDir}/sys`, type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    { destination: nestedHiddenDir, type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'noexec', 'nodev', 'ro', 'mode=000', 'size=4k'] },
  ];
}

/** PID 1 of the machine: bash reaps orphans (its SIGCHLD handler waits for any child) and exits on TERM. */
export const initArgs = ['/bin/bash', '-c', 'trap "exit 0" TERM; while :; do sleep 3600 & wait $!; done'];

const root: MachineUser = { name: 'root', uid: 0, gid: 0, additionalGids: [], home: '/root' };

/** Kernel files no machine may read (runc's defaults). */
const maskedPaths = [
  '/proc/acpi',
  '/proc/asound',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/proc/sched_debug',
  '/sys/firmware',
  '/proc/scsi',
];

/**
 * btrfs subvolumes and snapshots made inside a machine: a snapshot of the machine's root would hold an
 * empty directory where each was (btrfs snapshots do not descend into subvolumes), so the state a later
 * step restores would silently lack them. Their ioctls fail as on a filesystem without subvolumes (ENOTTY,
 * what the VMs' ext4 answered); tools that would use them (docker's btrfs driver, btrfs-progs) fall back or
 * say so. BTRFS_IOC_SNAP_CREATE, BTRFS_IOC_SUBVOL_CREATE and their _V2 forms.
 */
const subvolumeIoctls = [0x50009401, 0x5000940e, 0x50009417, 0x50009418];
const enotty = 25;
const seccomp = {
  defaultAction: 'SCMP_ACT_ALLOW',
  architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'],
  syscalls: subvolumeIoctls.map((request) => ({
    names: ['ioctl'],
    action: 'SCMP_ACT_ERRNO',
    errnoRet: enotty,
    args: [{ index: 1, value: 0xffffffff, valueTwo: request, op: 'SCMP_CMP_MASKED_EQ' }],
  })),
};

/** /proc and the /dev tree every machine gets, whatever its kind. */
function processAndDeviceMounts(): object[] {
  return [
    { destination: '/proc', type: 'proc', source: 'proc' },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    {
      destination: '/dev/pts',
      type: 'devpts',
      source: 'devpts',
      options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'],
    },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
  ];
}

/** Host files and directories bind-mounted over machine paths, in order. */
function bindMounts(fileMounts: MachineConfigInput['fileMounts']): object[] {
  return fileMounts.map((mount) => ({
    destination: mount.destination,
    type: 'bind',
    source: mount.source,
    options: mount.readOnly ? ['rbind', 'rprivate', 'ro'] : ['rbind', 'rprivate'],
  }));
}

export function machineConfig(input: MachineConfigInput): object {
  const memory =
    input.memoryBytes === undefined
      ? undefined
      : { limit: input.memoryBytes, ...(input.limitSwap ? { swap: input.memoryBytes } : {}) };
  if (input.system) return systemMachineConfig(input, input.system, memory);
  return {
    ociVersion: '1.0.2',
    process: ociProcess(initArgs, { PATH: defaultPath }, '/', root, { nestedContainers: input.nestedContainers ?? false }),
    root: { path: input.rootfs, readonly: false },
    hostname: input.hostname,
    mounts: [
      ...processAndDeviceMounts(),
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
      ...(input.nestedContainers ? nestedContainerMounts() : []),
      ...bindMounts(input.fileMounts),
    ],
    linux: {
      cgroupsPath: input.cgroupsPath,
      resources: {
        devices: [{ allow: false, access: 'rwm' }], // runc adds its default devices (null, zero, tty, ...)
        pids: { limit: input.pidsLimit },
        ...(memory ? { memory } : {}),
      },
      namespaces: [{ type: 'pid' }, { type: 'network' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }],
      maskedPaths,
      readonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
      seccomp,
    },
  };
}

/**
 * A system container (docs/design/system-container.md): its own user namespace (root = an unprivileged
 * host uid), systemd as PID 1 with a delegated cgroup2 view of its own, /sys read-write (a
 * read-only one makes the kernel refuse `docker run --privileged`'s sysfs; host-global sysfs files
 * stay unwritable: they belong to the initial namespace's root), /proc/sys writable (every sysctl a
 * user namespace may write is namespaced), /run on a tmpfs (a snapshot's stale pid files and sockets
 * vanish at boot, as on a VM), /dev/fuse and /dev/net/tun.
 */
function systemMachineConfig(input: MachineConfigInput, system: SystemMachineConfig, memory: object | undefined): object {
  const dir = system.unifiedCgroupDir;
  // cgroup v2 delegation: the directory and these three files, not cgroup.freeze/cgroup.kill.
  const delegate = 'chown "$1:$1" "$2" "$2/cgroup.procs" "$2/cgroup.threads" "$2/cgroup.subtree_control"';
  const env: Record<string, string> = system.init === 'systemd' ? { PATH: defaultPath, container: 'strata' } : { PATH: defaultPath };
  const range = [{ containerID: 0, hostID: system.hostId, size: system.size }];
  return {
    ociVersion: '1.0.2',
    process: ociProcess(system.init === 'systemd' ? ['/sbin/init'] : initArgs, env, '/', root, 'system'),
    root: { path: input.rootfs, readonly: false },
    hostname: input.hostname,
    mounts: [
      ...processAndDeviceMounts(),
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/sys/fs/cgroup', type: 'cgroup2', source: 'cgroup2', options: ['nosuid', 'noexec', 'nodev', 'rw'] },
      { destination: '/run', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=755', 'size=65536k'] },
      ...bindMounts(input.fileMounts),
    ],
    hooks: { createRuntime: [{ path: '/bin/sh', args: ['sh', '-c', delegate, 'strata-delegate-cgroup', String(system.hostId), dir] }] },
    linux: {
      cgroupsPath: input.cgroupsPath,
      uidMappings: range,
      gidMappings: range,
      devices: [
        { path: '/dev/fuse', type: 'c', major: 10, minor: 229, fileMode: 0o666, uid: 0, gid: 0 },
        { path: '/dev/net/tun', type: 'c', major: 10, minor: 200, fileMode: 0o666, uid: 0, gid: 0 },
      ],
      resources: {
        devices: [
          { allow: false, access: 'rwm' }, // runc adds its default devices (null, zero, tty, ...)
          { allow: true, type: 'c', major: 10, minor: 229, access: 'rwm' },
          { allow: true, type: 'c', major: 10, minor: 200, access: 'rwm' },
        ],
        pids: { limit: input.pidsLimit },
        ...(memory ? { memory } : {}),
      },
      namespaces: [{ type: 'pid' }, { type: 'network' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'user' }, { type: 'cgroup' }],
      maskedPaths,
      readonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sysrq-trigger'],
      seccomp,
    },
  };
}
