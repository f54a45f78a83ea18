// Machines with nestedContainers (the runc backend): a user namespace inside the machine may mount its
// own proc and sysfs (what dockerd/runc need), and nothing else changes for the machine itself: it
// still cannot mount, cannot reach the hidden proc, cannot map the host's root into a user namespace,
// and a user namespace's proc does not open the host's sysctls.
import { after, test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { createRuncSandbox } from '../../src/sandbox/runc/index.js';
import type { Machine } from '../../src/sandbox/types.js';
import { isRoot, requireRoot } from '../helpers/env.js';
import { makeTestRootfs } from './rootfs.js';

const prefix = `strata-test${process.pid}-`;
const stateRoot = mkdtempSync(join(tmpdir(), 'strata-sandbox-state-'));
const sandbox = createRuncSandbox({ prefix, stateRoot });

after(async () => {
  if (isRoot) await sandbox.reapLeftovers();
  await rm(stateRoot, { recursive: true, force: true });
});

async function startMachine(t: TestContext, nestedContainers: boolean): Promise<Machine> {
  let machine: Machine | undefined;
  t.after(() => machine?.destroy());
  const rootfs = await makeTestRootfs(t);
  // newuidmap/newgidmap (Debian's uidmap, not in the minimal image) map a range into a user namespace.
  for (const tool of ['newuidmap', 'newgidmap']) copyFileSync(`/usr/bin/${tool}`, join(rootfs, 'usr/bin', tool));
  machine = await sandbox.start({ id: `nested-${randomBytes(3).toString('hex')}`, rootfs, network: 'none', nestedContainers });
  return machine;
}

async function run(machine: Machine, command: string): Promise<string> {
  let output = '';
  await machine.exec({ command, onOutput: (chunk) => (output += chunk.data.toString()) });
  return output;
}

/** Whether the machine's root has CAP_SETFCAP (bit 31) in its bounding set. */
async function hasSetfcap(machine: Machine): Promise<boolean> {
  const bounding = /CapBnd:\s*([0-9a-f]+)/.exec(await run(machine, 'cat /proc/self/status'))?.[1];
  assert.ok(bounding);
  return (BigInt(`0x${bounding}`) & (1n << 31n)) !== 0n;
}

/** Runs `inner` as root of a user namespace (uids 100000+) with its own mount, pid and net namespaces. */
const inUserNamespace = (inner: string): string =>
  [
    'echo root:100000:65536 > /etc/subuid; echo root:100000:65536 > /etc/subgid',
    `unshare --user --map-users=100000,0,65536 --map-groups=100000,0,65536 --setuid 0 --setgid 0 --mount --pid --net --fork bash -c '${inner}'`,
  ].join('; ');

const probes = [
  'mount -t proc proc /proc 2>/dev/null && echo proc-mounted',
  'mount -t sysfs -o ro sysfs /sys 2>/dev/null && echo sysfs-mounted',
  // Writes the value back as it is: harmless to the host even if it got through.
  'cat /proc/sys/kernel/printk_ratelimit > /proc/sys/kernel/printk_ratelimit 2>/dev/null && echo host-sysctl-written',
  'umount /dev/.strata-nested 2>/dev/null && echo cover-removed',
  'ls -A /dev/.strata-nested',
].join('; ');

test('runc nestedContainers: a user namespace inside may mount proc and sysfs, and still cannot touch the host', { timeout: 60_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const machine = await startMachine(t, true);
  const inside = await run(machine, inUserNamespace(probes));
  assert.match(inside, /proc-mounted/);
  assert.match(inside, /sysfs-mounted/);
  assert.doesNotMatch(inside, /host-sysctl-written|cover-removed/);
  assert.doesNotMatch(inside, /^(proc|sys)$/m, 'the hidden mounts stay covered');

  const machineRoot = await run(machine, [
    'mount -t proc proc /mnt 2>/dev/null && echo machine-mounted',
    'unshare --user --map-root-user true 2>/dev/null && echo host-root-mapped',
    'unshare --user --map-users=0,0,65536 --map-groups=0,0,65536 true 2>/dev/null && echo host-root-range-mapped',
    'ls -A /dev/.strata-nested',
    'echo done',
  ].join('; '));
  assert.equal(machineRoot, 'done\n', 'the machine itself gains nothing: no mount, no host-root mapping');
  assert.equal(await hasSetfcap(machine), false);
});

test('runc without nestedContainers: a user namespace cannot mount proc (why the mode exists), the machine keeps CAP_SETFCAP', { timeout: 60_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const machine = await startMachine(t, false);
  const inside = await run(machine, inUserNamespace(probes));
  assert.doesNotMatch(inside, /proc-mounted|sysfs-mounted|host-sysctl-written/);
  assert.match(await run(machine, 'unshare --user --map-root-user true && echo host-root-mapped'), /host-root-mapped/);
  assert.equal(await hasSetfcap(machine), true);
});
