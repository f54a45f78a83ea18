// The runc backend against the Sandbox conformance suite, plus its own leftovers: cgroups in every
// hierarchy, the slirp4netns helper, state directories, mounts.
import { after } from 'node:test';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRuncSandbox } from '../../src/sandbox/runc/index.js';
import { machineCgroupDirs } from '../../src/sandbox/runc/cgroups.js';
import { exec } from '../../src/util/exec.js';
import { isRoot } from '../helpers/env.js';
import { makeTestRootfs } from './rootfs.js';
import { runSandboxConformance } from './conformance.js';

// Names and state private to this test process, so that reapLeftovers never touches another run's machines.
const prefix = `strata-test${process.pid}-`;
const stateRoot = mkdtempSync(join(tmpdir(), 'strata-sandbox-state-'));
const sandbox = () => createRuncSandbox({ prefix, stateRoot });

after(async () => {
  if (isRoot) await sandbox().reapLeftovers();
  await rm(stateRoot, { recursive: true, force: true });
});

runSandboxConformance({
  name: 'runc',
  sandbox,
  makeRootfs: makeTestRootfs,
  async leftovers(machine) {
    const name = prefix + machine.id;
    const found: string[] = [];
    found.push(...machineCgroupDirs((entry) => entry === name).map((dir) => `cgroup ${dir}`));
    if (existsSync(join(stateRoot, 'machines', name))) found.push(`state dir of ${name}`);
    const runcList = await exec('runc', ['--root', join(stateRoot, 'runc'), 'list', '--quiet']);
    if (runcList.stdout.split('\n').includes(name)) found.push(`runc container ${name}`);
    const ps = await exec('ps', ['-eo', 'pid,args']);
    for (const line of ps.stdout.split('\n')) {
      if (/slirp4netns/.test(line) && line.includes(` ${machine.pid} `)) found.push(`process ${line.trim()}`);
      if (line.includes(name)) found.push(`process ${line.trim()}`);
    }
    // Mounts below the rootfs or naming the machine (the rootfs itself may be a mount of its owner).
    for (const line of readFileSync('/proc/mounts', 'utf8').split('\n')) {
      if (line.includes(`${machine.rootfs}/`) || line.includes(name)) found.push(`mount ${line}`);
    }
    const netns = await exec('ip', ['netns', 'list']);
    if (netns.stdout.includes(name)) found.push(`netns ${name}`);
    return found;
  },
});
