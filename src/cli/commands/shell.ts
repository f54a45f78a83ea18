// `strata shell [dir]`: a shell inside a machine restored from the last run's failure snapshot (or
// the snapshot after a given step), to look at the state a step failed in. The machine is a throwaway
// clone: nothing done in the shell reaches the cache.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { StrataError } from '../../errors.js';
import { snapshotKey, type SnapshotName } from '../../snapshot/types.js';
import { machineShellCommand, pickShellSnapshot } from '../../engine/debugShell.js';
import { machineDefaults } from '../../engine/machineDefaults.js';

export interface ShellOptions {
  store?: string;
  runner?: string;
  step?: string;
}

export async function shellCommand(dir: string, options: ShellOptions): Promise<number> {
  const { openEngine } = await import('../../compose/engine.js');
  const { repoRoot } = await import('../../source/git.js');
  const repo = await repoRoot(dir);
  const engine = await openEngine({ store: options.store, reporter: {} });
  const key = snapshotKey(`active.shell-${randomUUID()}`);
  let machine: Awaited<ReturnType<typeof engine.deps.sandbox.start>> | undefined;
  try {
    const run = await engine.deps.runLog.lastRun(repo);
    if (!run) throw new StrataError('STRATA_USAGE', `no run of ${repo} recorded yet`, { hint: `strata run ${dir}` });
    const chosen = pickShellSnapshot(run, { runner: options.runner, step: options.step ? Number(options.step) : undefined });
    if (!(await engine.deps.snapshots.has(chosen.snapshot as SnapshotName))) {
      throw new StrataError('STRATA_USAGE', `snapshot ${chosen.snapshot} is no longer in the store`);
    }
    const { path: rootfs } = await engine.deps.snapshots.clone(chosen.snapshot as SnapshotName, key);
    machine = await engine.deps.sandbox.start({ id: `shell-${randomUUID().slice(0, 8)}`, rootfs, hostname: chosen.runner.toLowerCase().replace(/[^a-z0-9-]/g, '-') || 'machine', ...machineDefaults() });
    process.stderr.write(`strata shell: ${chosen.runner}, machine state after step ${chosen.step + 1} (${chosen.snapshot}); exit to leave (changes are discarded)\n`);
    // The machine's namespaces and root, with a clean environment. Interactive when stdin is a terminal.
    const shell = machineShellCommand(machine.pid, process.env.TERM ?? 'xterm');
    const child = spawn(shell.file, shell.args, { stdio: 'inherit' });
    return await new Promise<number>((resolve) => child.on('close', (code, signal) => resolve(code ?? (signal ? 128 : 1))));
  } finally {
    await machine?.destroy().catch(() => {});
    await engine.deps.snapshots.remove(key).catch(() => {});
    await engine.close();
  }
}
