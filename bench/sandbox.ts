// Sandbox benchmarks: per-exec overhead of `true` (goal < 50 ms median) and machine start (goal
// < 150 ms for a container machine; a system machine's start, which waits for systemd's boot, is measured
// beside it), plus the alternatives considered for exec (nsenter into the same machine, a fresh unshare).
// Needs root. Uses the dev rootfs of the sandbox tests under an overlay mount.
import { chmodSync, mkdirSync, mkdtempSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createRuncSandbox } from '../src/sandbox/runc/index.js';
import type { Machine, Sandbox } from '../src/sandbox/types.js';
import { snapshotKey } from '../src/snapshot/types.js';
import { exec, execOrThrow } from '../src/util/exec.js';
import { ensureDevRootfs } from '../test/sandbox/rootfs.js';
import { systemRootfsFactory } from '../test/sandbox/systemRootfs.js';
import type { BenchRow } from './types.js';
import { median } from './util.js';



async function timed(fn: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await fn();
  return performance.now() - start;
}

/**
 * System machines (what every vm/ image boots as): start is the idmapped btrfs root, `runc run` and
 * systemd's boot until `systemctl is-system-running` says running; each on a fresh writable snapshot.
 */
async function benchSystemStarts(sandbox: Sandbox): Promise<BenchRow[]> {
  const roots = systemRootfsFactory();
  try {
    const { store, image } = await roots.store();
    const starts: number[] = [];
    const destroys: number[] = [];
    for (let i = 0; i < 5; i++) {
      const key = snapshotKey(`bench-system-${i}`);
      const { path } = await store.clone(image, key);
      try {
        let machine: Machine | undefined;
        starts.push(await timed(async () => (machine = await sandbox.start({ id: `system-${i}`, rootfs: path, network: 'outbound', kind: 'system' }))));
        destroys.push(await timed(() => machine!.destroy()));
      } finally {
        await store.remove(key);
      }
    }
    return [
      { name: 'sandbox: system machine start, until systemd is running (network outbound)', medianMs: median(starts) },
      { name: 'sandbox: system machine destroy', medianMs: median(destroys) },
    ];
  } finally {
    await roots.close();
  }
}

export async function benchSandbox(): Promise<BenchRow[]> {
  const dir = mkdtempSync(join(tmpdir(), 'strata-bench-sandbox-'));
  chmodSync(dir, 0o711); // a system machine's root (an unprivileged host uid) must reach its state dir below
  const rootfs = join(dir, 'rootfs');
  for (const name of ['upper', 'work', 'rootfs']) mkdirSync(join(dir, name));
  const lower = await ensureDevRootfs();
  await execOrThrow('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lower},upperdir=${dir}/upper,workdir=${dir}/work`, rootfs]);
  const sandbox = createRuncSandbox({ prefix: `strata-bench${process.pid}-`, stateRoot: join(dir, 'state') });
  const rows: BenchRow[] = [];
  try {
    for (const network of ['none', 'outbound'] as const) {
      const starts: number[] = [];
      const destroys: number[] = [];
      for (let i = 0; i < 7; i++) {
        let machine: Awaited<ReturnType<typeof sandbox.start>> | undefined;
        starts.push(await timed(async () => (machine = await sandbox.start({ id: `start-${network}-${i}`, rootfs, network }))));
        destroys.push(await timed(() => machine!.destroy()));
      }
      rows.push({ name: `sandbox: machine start (network ${network})`, medianMs: median(starts), goalMs: 150 });
      rows.push({ name: `sandbox: machine destroy (network ${network})`, medianMs: median(destroys) });
    }

    rows.push(...(await benchSystemStarts(sandbox)));

    const machine = await sandbox.start({ id: 'exec', rootfs, network: 'outbound' });
    try {
      const execs: number[] = [];
      for (let i = 0; i < 30; i++) execs.push(await timed(() => machine.exec({ command: 'true' })));
      rows.push({ name: 'sandbox: exec `true` (runc exec)', medianMs: median(execs), goalMs: 50 });

      const freezes: number[] = [];
      for (let i = 0; i < 10; i++) freezes.push(await timed(async () => (await machine.freeze(), await machine.thaw())));
      rows.push({ name: 'sandbox: freeze + thaw', medianMs: median(freezes) });

      // Alternatives measured for the record: entering the same machine without runc, and a fresh sandbox.
      const nsenters: number[] = [];
      const nsenterArgs = [`--target=${machine.pid}`, '--mount', '--uts', '--ipc', '--net', '--pid', '--root', '--wd', 'true'];
      for (let i = 0; i < 30; i++) nsenters.push(await timed(() => exec('nsenter', nsenterArgs)));
      rows.push({ name: 'alternative: nsenter into the machine `true`', medianMs: median(nsenters) });
      const unshares: number[] = [];
      for (let i = 0; i < 30; i++) unshares.push(await timed(() => exec('unshare', ['-mpnui', '-f', 'true'])));
      rows.push({ name: 'alternative: fresh unshare -mpnui `true`', medianMs: median(unshares) });
    } finally {
      await machine.destroy();
    }
  } finally {
    await sandbox.reapLeftovers();
    if ((await exec('umount', [rootfs])).exitCode !== 0) await exec('umount', ['--lazy', rootfs]);
    await rm(dir, { recursive: true, force: true });
  }
  return rows;
}
