// What a test run may leave on the host, and how to remove it. The test command (scripts/test.mjs)
// takes an inventory before the suite and compares after: anything strata-made that is new is a
// leftover, listed and failing the run, then removed so the host is as it was. A suite interrupted by
// SIGINT/SIGTERM is swept the same way. Only things that are new since the first inventory are ever
// touched, and only strata's (by name, path or cgroup), so a user's own store and machines are safe.
//
//   node --import tsx test/harness/leftovers.ts inventory FILE   # writes the inventory
//   node --import tsx test/harness/leftovers.ts check FILE       # lists + sweeps leftovers; exit 1 if any
//   node --import tsx test/harness/leftovers.ts sweep FILE       # sweeps without failing (interrupted run)
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export type LeftoverKind = 'process' | 'runc' | 'mount' | 'loop' | 'cgroup' | 'netns' | 'iptables' | 'state' | 'temp';

export interface Leftover {
  kind: LeftoverKind;
  /** What identifies it across inventories (a path, a rule, a container name; processes by pid+start time). */
  id: string;
  /** Shown to a person. */
  label: string;
  /** Needed to remove it. */
  detail?: Record<string, string>;
}

const tempRoots = ['/tmp', '/var/tmp'];
const stateRoot = '/run/strata';
const cgroupRoot = '/sys/fs/cgroup';
const processNames = new Set(['runc', 'slirp4netns', 'strata-tracefs']);

function run(command: string, args: string[]): string {
  try {
    return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    return '';
  }
}

function entries(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

function isDir(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** Processes of strata's kinds, or in a cgroup of strata's. */
function processes(): Leftover[] {
  const found: Leftover[] = [];
  for (const pid of entries('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
      const cgroup = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
      // Machines' cgroups are /strata/<machine> in every hierarchy (slirp4netns's /strata-net is not one).
      const inStrataCgroup = /:\/strata\//.test(cgroup);
      // Postgres servers of the tests' throwaway clusters (test/helpers/pgServer.ts).
      const testPostgres = comm === 'postgres' && readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('/strata-pg-');
      if (!processNames.has(comm) && !inStrataCgroup && !testPostgres) continue;
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
      // A zombie is dead already; it only waits for its parent (often the host's init) to reap it.
      if (stat[0] === 'Z') continue;
      const startTime = stat[19] ?? '';
      found.push({ kind: 'process', id: `${pid}@${startTime}`, label: `process ${pid} (${comm})`, detail: { pid } });
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

/** runc containers under any of strata's state roots (/run/strata/<tag>/runc, /run/strata/runc). */
function runcContainers(): Leftover[] {
  const roots = [join(stateRoot, 'runc'), ...entries(stateRoot).map((tag) => join(stateRoot, tag, 'runc'))].filter(isDir);
  return roots.flatMap((root) =>
    run('runc', ['--root', root, 'list', '--quiet'])
      .split('\n')
      .filter(Boolean)
      .map((name) => ({ kind: 'runc' as const, id: `${root}:${name}`, label: `runc container ${name} (${root})`, detail: { root, name } })),
  );
}

/** State directories engines make under /run/strata (one per store). */
function stateDirs(): Leftover[] {
  return entries(stateRoot).map((name) => ({ kind: 'state' as const, id: join(stateRoot, name), label: `state dir ${join(stateRoot, name)}` }));
}

/** Mounts of strata's stores and tracers in the host's mount namespace. */
function mounts(): Leftover[] {
  const found: Leftover[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const fields = line.split(' ');
    const target = (fields[4] ?? '').replace(/\\040/g, ' ');
    const dash = fields.indexOf('-');
    const fstype = fields[dash + 1] ?? '';
    if (!target) continue;
    const ours = /\/strata/.test(target) || fstype === 'fuse.strata-tracefs';
    if (ours) found.push({ kind: 'mount', id: target, label: `mount ${target} (${fstype})` });
  }
  return found;
}

/** Loop devices backed by strata's store images. */
function loops(): Leftover[] {
  return run('losetup', ['--list', '--noheadings', '--output', 'NAME,BACK-FILE'])
    .split('\n')
    .map((line) => line.trim().split(/\s+/))
    .filter(([device, file]) => device && file && /strata/.test(file))
    .map(([device, file]) => ({ kind: 'loop' as const, id: `${device}:${file}`, label: `loop device ${device} (${file})`, detail: { device: device! } }));
}

/** Machine cgroups (and strata's parent cgroups) in every v1 controller and the v2 tree. */
function cgroups(): Leftover[] {
  const found: Leftover[] = [];
  const hierarchies = entries(cgroupRoot)
    .map((name) => join(cgroupRoot, name))
    .filter((dir) => isDir(dir) && existsSync(join(dir, 'cgroup.procs')));
  if (existsSync(join(cgroupRoot, 'cgroup.procs'))) hierarchies.push(cgroupRoot);
  const walk = (dir: string, depth: number): void => {
    for (const name of entries(dir)) {
      const child = join(dir, name);
      if (!isDir(child)) continue;
      found.push({ kind: 'cgroup', id: child, label: `cgroup ${child}` });
      if (depth < 4) walk(child, depth + 1);
    }
  };
  for (const hierarchy of hierarchies) {
    for (const name of entries(hierarchy)) {
      // strata-net (v2) holds slirp4netns processes; it is made with the host firewall rules (see below).
      if (!name.startsWith('strata') || name === 'strata-net') continue;
      const dir = join(hierarchy, name);
      if (!isDir(dir)) continue;
      found.push({ kind: 'cgroup', id: dir, label: `cgroup ${dir}` });
      walk(dir, 0);
    }
  }
  return found;
}

function netns(): Leftover[] {
  return run('ip', ['netns', 'list'])
    .split('\n')
    .map((line) => line.split(' ')[0] ?? '')
    .filter(Boolean)
    .map((name) => ({ kind: 'netns' as const, id: name, label: `network namespace ${name}` }));
}

/** Firewall rules that name strata (the machines' host isolation rules, or a test's own). */
function firewallRules(): Leftover[] {
  const found: Leftover[] = [];
  for (const tool of ['iptables', 'ip6tables']) {
    for (const table of ['filter', 'nat']) {
      for (const rule of run(tool, ['-w', '-t', table, '-S']).split('\n')) {
        if (!rule.startsWith('-A ') || !/strata/.test(rule)) continue;
        found.push({ kind: 'iptables', id: `${tool} -t ${table} ${rule}`, label: `${tool} -t ${table} ${rule}`, detail: { tool, table, rule } });
      }
    }
  }
  return found;
}

/** Temporary stores, repos and machine dirs (every test temp name starts with strata). */
function temps(): Leftover[] {
  return tempRoots.flatMap((root) =>
    entries(root)
      .filter((name) => name.startsWith('strata'))
      .map((name) => ({ kind: 'temp' as const, id: join(root, name), label: `temp ${join(root, name)}` })),
  );
}

export function inventory(): Leftover[] {
  return [...processes(), ...runcContainers(), ...mounts(), ...loops(), ...cgroups(), ...netns(), ...firewallRules(), ...stateDirs(), ...temps()];
}

/** What is in `now` but not in `before`. */
export function newSince(before: Leftover[], now: Leftover[] = inventory()): Leftover[] {
  const known = new Set(before.map((item) => `${item.kind} ${item.id}`));
  return now.filter((item) => !known.has(`${item.kind} ${item.id}`));
}

function killProcess(pid: string): void {
  try {
    process.kill(Number(pid), 'SIGKILL');
  } catch {
    // gone
  }
}

/** Kills every task of a cgroup (v1 freezer cgroups are thawed first so the kill is delivered). */
function killCgroup(dir: string): void {
  const freezer = join(dir, 'freezer.state');
  if (existsSync(freezer)) {
    try {
      writeFileSync(freezer, 'THAWED');
    } catch {
      // not a freezer cgroup after all
    }
  }
  if (existsSync(join(dir, 'cgroup.kill'))) {
    try {
      writeFileSync(join(dir, 'cgroup.kill'), '1');
    } catch {
      // fall through to per-pid kills
    }
  }
  for (const pid of readFileSyncSafe(join(dir, 'cgroup.procs')).split('\n').filter(Boolean)) killProcess(pid);
}

function readFileSyncSafe(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

const pause = (ms: number): void => void Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

/** Removes the given leftovers, in the order that lets each go: processes, containers, mounts, devices, cgroups, files. */
export function sweep(items: Leftover[]): void {
  const of = (kind: LeftoverKind) => items.filter((item) => item.kind === kind);
  const groups = of('cgroup').map((item) => item.id).sort((a, b) => b.length - a.length);
  for (let attempt = 0; attempt < 3; attempt++) {
    for (const dir of groups) killCgroup(dir);
    for (const item of of('process')) killProcess(item.detail!.pid!);
    pause(100);
  }
  for (const item of of('runc')) run('runc', ['--root', item.detail!.root!, 'delete', '--force', item.detail!.name!]);
  for (const item of of('mount').sort((a, b) => b.id.length - a.id.length)) run('umount', ['-l', item.id]);
  for (const item of of('loop')) run('losetup', ['--detach', item.detail!.device!]);
  for (let attempt = 0; attempt < 20; attempt++) {
    let remaining = 0;
    for (const dir of groups) {
      if (!existsSync(dir)) continue;
      try {
        rmdirSync(dir);
      } catch {
        remaining++;
      }
    }
    if (remaining === 0) break;
    pause(100);
  }
  for (const item of of('netns')) run('ip', ['netns', 'delete', item.id]);
  for (const item of of('iptables')) {
    const { tool, table, rule } = item.detail!;
    run(tool!, ['-w', '-t', table!, ...rule!.replace(/^-A /, '-D ').split(' ').map((word) => word.replace(/^"(.*)"$/, '$1'))]);
  }
  for (const item of [...of('state'), ...of('temp')]) rmSync(item.id, { recursive: true, force: true, maxRetries: 3 });
}

function main(argv: string[]): number {
  const [command, file] = argv;
  if (!file || !['inventory', 'check', 'sweep'].includes(command ?? '')) {
    console.error('usage: leftovers.ts inventory|check|sweep FILE');
    return 2;
  }
  if (command === 'inventory') {
    writeFileSync(file, JSON.stringify(inventory()));
    return 0;
  }
  const before = JSON.parse(readFileSync(file, 'utf8')) as Leftover[];
  // A process that is still ending may hold a mount or a cgroup for a moment: look twice.
  let left = newSince(before);
  if (left.length > 0) {
    pause(2000);
    left = newSince(before);
  }
  if (command === 'check' && left.length > 0) {
    console.error(`leftovers: the test run left ${left.length} thing(s) on this host (removing them now):`);
    for (const item of left) console.error(`  ${item.label}`);
  } else if (left.length > 0) {
    console.error(`leftovers: removing ${left.length} thing(s) the interrupted run made (${[...new Set(left.map((item) => item.kind))].join(', ')})`);
  }
  // STRATA_TEST_LEFTOVERS=list: report only (a developer running other work on the host beside the suite).
  if (process.env.STRATA_TEST_LEFTOVERS === 'list') return left.length > 0 && command === 'check' ? 1 : 0;
  sweep(left);
  pause(500); // processes killed by the sweep take a moment to disappear from /proc
  const stubborn = newSince(before);
  if (stubborn.length > 0) {
    console.error(`leftovers: ${stubborn.length} could not be removed:`);
    for (const item of stubborn) console.error(`  ${item.label}`);
  }
  return command === 'check' && left.length > 0 ? 1 : stubborn.length > 0 ? 1 : 0;
}

if (import.meta.url === `file://${process.argv[1]}`) process.exitCode = main(process.argv.slice(2));
