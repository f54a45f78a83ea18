// The runc backend against the Sandbox conformance suite, plus its own leftovers: cgroups in every
// hierarchy, the slirp4netns helper, state directories, mounts.
import { after } from 'node:test';
import { mkdtempSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRuncSandbox } from '../../src/sandbox/runc/index.js';
import { isRoot } from '../helpers/env.js';
import { makeTestRootfs } from './rootfs.js';
import { runSandboxConformance } from './conformance.js';
import { runcMachineLeftovers } from './runcLeftovers.js';

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
  leftovers: (machine) => runcMachineLeftovers(machine, { prefix, stateRoot }),
});
