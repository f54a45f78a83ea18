// What a runc machine may leave behind on the host once destroyed: its cgroups in every hierarchy, its
// state dir, its runc container, its processes (slirp4netns included), mounts below its rootfs or naming
// it, a netns named after it. Shared by the conformance runs of both machine kinds.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { machineCgroupDirs } from '../../src/sandbox/runc/cgroups.js';
import type { Machine } from '../../src/sandbox/types.js';
import { exec } from '../../src/util/exec.js';

export async function runcMachineLeftovers(machine: Machine, place: { prefix: string; stateRoot: string }): Promise<string[]> {
  const name = place.prefix + machine.id;
  const found: string[] = [];
  found.push(...machineCgroupDirs((entry) => entry === name).map((dir) => `cgroup ${dir}`));
  if (existsSync(join(place.stateRoot, 'machines', name))) found.push(`state dir of ${name}`);
  const runcList = await exec('runc', ['--root', join(place.stateRoot, 'runc'), 'list', '--quiet']);
  if (runcList.stdout.split('\n').includes(name)) found.push(`runc container ${name}`);
  const ps = await exec('ps', ['-eo', 'pid,args']);
  for (const line of ps.stdout.split('\n')) {
    if (/slirp4netns/.test(line) && line.includes(` ${machine.pid} `)) found.push(`process ${line.trim()}`);
    if (line.includes(name)) found.push(`process ${line.trim()}`);
  }
  // Mounts below the rootfs or naming the machine (the rootfs itself may be a mount of its owner; a
  // system machine's host-side idmapped mounts live in its state dir, whose path names it).
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    if (line.includes(`${machine.rootfs}/`) || line.includes(name)) found.push(`mount ${line}`);
  }
  const netns = await exec('ip', ['netns', 'list']);
  if (netns.stdout.includes(name)) found.push(`netns ${name}`);
  return found;
}
