// The machine's cgroups, as runc lays them out with the cgroupfs driver and cgroupsPath
// `/<parent>/<name>`. On a hybrid or v1 host runc uses the v1 hierarchies (memory, pids, freezer, ...);
// on a pure v2 host the unified tree. Each exec runs in its own child cgroup (`runc exec --cgroup`) so
// that a timeout can kill exactly that exec's process tree, including daemons it started with setsid,
// without touching background processes started by other execs.
import { existsSync, readdirSync, readFileSync, rmdirSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { sleep } from '../../util/sleep.js';

const cgroupRoot = '/sys/fs/cgroup';
export const cgroupParent = 'strata';

export type CgroupVersion = 'v1' | 'v2';

/** A pure v2 host has cgroup.controllers at the root; hybrid and v1 hosts do not (runc uses v1 there). */
export function detectCgroupVersion(): CgroupVersion {
  return existsSync(join(cgroupRoot, 'cgroup.controllers')) ? 'v2' : 'v1';
}


export class MachineCgroups {
  constructor(
    readonly version: CgroupVersion,
    readonly name: string,
  ) {}

  /** The value for the OCI spec's linux.cgroupsPath. */
  get cgroupsPath(): string {
    return `/${cgroupParent}/${this.name}`;
  }

  /** The machine's cgroup in the hierarchy that freezes and holds the per-exec child cgroups. */
  get controlDir(): string {
    return this.version === 'v2'
      ? join(cgroupRoot, cgroupParent, this.name)
      : join(cgroupRoot, 'freezer', cgroupParent, this.name);
  }

  /** Creates the child cgroup for one exec and returns the `runc exec --cgroup` argument. */
  createExecCgroup(execName: string): { runcArg: string; dir: string } {
    const dir = join(this.controlDir, execName);
    mkdirSync(dir);
    return { runcArg: this.version === 'v2' ? execName : `freezer:${execName}`, dir };
  }

  /** Removes an exec's child cgroup; false while processes (e.g. setsid daemons) still live in it. */
  removeExecCgroup(dir: string): boolean {
    try {
      rmdirSync(dir);
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return true;
      return false;
    }
  }

  /** SIGKILLs every process in a cgroup; freezing first so that nothing can fork while we kill. */
  async killAll(dir: string): Promise<void> {
    if (!existsSync(dir)) return;
    if (this.version === 'v2' && existsSync(join(dir, 'cgroup.kill'))) {
      writeFileSync(join(dir, 'cgroup.kill'), '1');
      return;
    }
    const freezeFile = this.version === 'v2' ? 'cgroup.freeze' : 'freezer.state';
    const [frozen, thawed] = this.version === 'v2' ? ['1', '0'] : ['FROZEN', 'THAWED'];
    writeFileSync(join(dir, freezeFile), frozen);
    await this.waitFrozen(dir);
    for (const pid of readPids(dir)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    writeFileSync(join(dir, freezeFile), thawed); // SIGKILL is only delivered once thawed
  }

  /**
   * Freezes the whole machine through its cgroup, waiting up to `timeoutMs` for every task to stop.
   * runc pause gives up after ~1000 quick polls, which a machine full of forking processes (a fork bomb
   * at its pids limit) on a busy host can outlast; the kernel does converge, given time. Returns
   * whether it froze (if not, the machine is left thawed).
   */
  async freezeMachine(timeoutMs: number): Promise<boolean> {
    const dir = this.controlDir;
    const freezeFile = this.version === 'v2' ? 'cgroup.freeze' : 'freezer.state';
    const [frozen, thawed] = this.version === 'v2' ? ['1', '0'] : ['FROZEN', 'THAWED'];
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      writeFileSync(join(dir, freezeFile), frozen);
      if (this.isFrozen(dir)) return true;
      await sleep(10);
    }
    writeFileSync(join(dir, freezeFile), thawed);
    return false;
  }

  private isFrozen(dir: string): boolean {
    return this.version === 'v2'
      ? /frozen 1/.test(readFileSync(join(dir, 'cgroup.events'), 'utf8'))
      : readFileSync(join(dir, 'freezer.state'), 'utf8').trim() === 'FROZEN';
  }

  private async waitFrozen(dir: string): Promise<void> {
    for (let attempt = 0; attempt < 200; attempt++) {
      if (this.isFrozen(dir)) return;
      await sleep(attempt < 20 ? 1 : 10);
    }
    // Not frozen after ~2 s: kill anyway; a process forked meanwhile is caught by the caller's retry.
  }

  /**
   * Sets the machine's memory limit (all its processes together) while it runs: v2 memory.max; v1
   * memory.limit_in_bytes and, when the host accounts swap, memory.memsw.limit_in_bytes set to the
   * same value (as at start, so the limit cannot be dodged by swapping). The kernel refuses a memory
   * limit above the memsw limit, so memsw is raised first and lowered last. Lowering below what the
   * machine uses makes the kernel reclaim or fail (EBUSY), which is reported.
   */
  setMemoryLimit(bytes: number): void {
    if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new RangeError(`invalid memory limit ${bytes}`);
    const value = String(bytes);
    if (this.version === 'v2') {
      writeFileSync(join(cgroupRoot, cgroupParent, this.name, 'memory.max'), value);
      return;
    }
    const dir = join(cgroupRoot, 'memory', cgroupParent, this.name);
    const limitFile = join(dir, 'memory.limit_in_bytes');
    const swapFile = join(dir, 'memory.memsw.limit_in_bytes');
    if (!existsSync(swapFile)) {
      writeFileSync(limitFile, value);
      return;
    }
    const current = Number.parseInt(readFileSync(limitFile, 'utf8'), 10);
    const raising = !Number.isSafeInteger(current) || bytes >= current;
    const order = raising ? [swapFile, limitFile] : [limitFile, swapFile];
    for (const file of order) writeFileSync(file, value);
  }

  /** The kernel's count of OOM kills in the machine so far (v1 memory.oom_control, v2 memory.events). */
  oomKillCount(): number {
    const file =
      this.version === 'v2'
        ? join(cgroupRoot, cgroupParent, this.name, 'memory.events')
        : join(cgroupRoot, 'memory', cgroupParent, this.name, 'memory.oom_control');
    try {
      const match = /^oom_kill (\d+)$/m.exec(readFileSync(file, 'utf8'));
      return match?.[1] === undefined ? 0 : Number(match[1]);
    } catch {
      return 0;
    }
  }

  /**
   * How often a fork in the machine failed at its process limit so far (pids.events `max`), and that
   * limit. v1: the pids hierarchy; v2: the machine's own cgroup.
   */
  pidsLimitHits(): { hits: number; limit: number | null } {
    const dir = this.version === 'v2' ? join(cgroupRoot, cgroupParent, this.name) : join(cgroupRoot, 'pids', cgroupParent, this.name);
    try {
      const hits = Number(/^max (\d+)$/m.exec(readFileSync(join(dir, 'pids.events'), 'utf8'))?.[1] ?? 0);
      const limit = Number.parseInt(readFileSync(join(dir, 'pids.max'), 'utf8'), 10);
      return { hits, limit: Number.isInteger(limit) ? limit : null };
    } catch {
      return { hits: 0, limit: null };
    }
  }

  /** Pids of every process in the machine, sub-cgroups included. */
  allPids(): number[] {
    return collectPids(this.controlDir);
  }

  /** Every directory runc (or we) created for this machine, in all hierarchies. */
  directories(): string[] {
    return machineCgroupDirs((entry) => entry === this.name);
  }
}

function readPids(dir: string): number[] {
  try {
    return readFileSync(join(dir, 'cgroup.procs'), 'utf8')
      .split('\n')
      .filter((line) => line !== '')
      .map(Number);
  } catch {
    return [];
  }
}

function collectPids(dir: string): number[] {
  if (!existsSync(dir)) return [];
  const pids = readPids(dir);
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) pids.push(...collectPids(join(dir, entry.name)));
  }
  return pids;
}

/** The mounted cgroup hierarchies: each v1 controller dir and the v2 tree (the root on a pure v2 host). */
export function cgroupHierarchies(): string[] {
  if (existsSync(join(cgroupRoot, 'cgroup.controllers'))) return [cgroupRoot];
  return readdirSync(cgroupRoot)
    .map((controller) => join(cgroupRoot, controller))
    .filter((dir) => existsSync(join(dir, 'cgroup.procs')));
}

/** Machine cgroup directories (/sys/fs/cgroup[/<controller>]/strata/<name>) whose name matches. */
export function machineCgroupDirs(matches: (name: string) => boolean): string[] {
  const found: string[] = [];
  for (const hierarchy of cgroupHierarchies()) {
    const parent = join(hierarchy, cgroupParent);
    let entries: string[];
    try {
      entries = readdirSync(parent, { withFileTypes: true })
        .filter((entry) => entry.isDirectory())
        .map((entry) => entry.name);
    } catch {
      continue;
    }
    for (const entry of entries) if (matches(entry)) found.push(join(parent, entry));
  }
  return found;
}

/** Removes a cgroup directory and its children, deepest first. Fails (returns false) while non-empty. */
export function removeCgroupTree(dir: string): boolean {
  if (!existsSync(dir)) return true;
  let ok = true;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) ok = removeCgroupTree(join(dir, entry.name)) && ok;
  }
  try {
    rmdirSync(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') ok = false;
  }
  return ok;
}
