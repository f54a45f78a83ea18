// strata's lasting changes to the host, made once by the install step (and again lazily by the first
// machine after a reboot, which clears both): the firewall rules that keep machines off the host's own
// addresses (slirp.ts), and the `strata` parent cgroup in every hierarchy, under which each machine's
// cgroups come and go. Made up front, so that machines of concurrent engines never race over creating or
// removing the shared parent, and so that a run (or a test suite) leaves the host exactly as it found it.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cgroupHierarchies, cgroupParent } from './cgroups.js';
import { ensureHostIsolation } from './slirp.js';

/** Creates /sys/fs/cgroup/<hierarchy>/strata where missing (a v1 cpuset parent gets its parent's cpus and mems). */
export function ensureCgroupParents(): string[] {
  const made: string[] = [];
  for (const hierarchy of cgroupHierarchies()) {
    const dir = join(hierarchy, cgroupParent);
    if (existsSync(dir)) continue;
    mkdirSync(dir);
    made.push(dir);
    for (const file of ['cpuset.cpus', 'cpuset.mems']) {
      const own = join(dir, file);
      if (existsSync(own) && readFileSync(own, 'utf8').trim() === '') writeFileSync(own, readFileSync(join(hierarchy, file), 'utf8'));
    }
  }
  return made;
}

/** Everything strata keeps on the host between runs. Idempotent. */
export async function prepareHost(): Promise<void> {
  await ensureHostIsolation();
  ensureCgroupParents();
}
