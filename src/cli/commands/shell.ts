// `strata shell [dir]`: a shell inside a machine restored from the last run's failure snapshot (or
// the snapshot after a given step), to look at the state a step failed in. The machine is a throwaway
// clone: nothing done in the shell reaches the cache.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { StrataError } from '../../errors.js';
import { hasOwnUserNamespace } from '../../util/process.js';
import { snapshotKey, type SnapshotName } from '../../snapshot/types.js';
import type { RunRecord } from '../../store/runs.js';
import { machineDefaults } from '../../engine/machineDefaults.js';

export interface ShellOptions {
  store?: string;
  runner?: string;
  step?: string;
}

/** The snapshot to open: the failed step's, or the one after `--step N` (1-based) of the last run. */
export function pickShellSnapshot(run: RunRecord, options: { runner?: string | undefined; step?: number | undefined }): { runner: string; step: number; snapshot: string } {
  const runners = run.runners.filter((r) => options.runner === undefined || r.runner === options.runner);
  if (runners.length === 0) throw new StrataError('STRATA_USAGE', `no runner ${JSON.stringify(options.runner)} in ${run.id}`, { hint: `runners: ${run.runners.map((r) => r.runner).join(', ')}` });
  for (const runner of runners) {
    const candidates = runner.steps.filter((s) => s.snapshot !== null && (options.step === undefined ? s.status === 'failed' : s.index + 1 === options.step));
    const chosen = candidates.at(-1);
    if (chosen?.snapshot) return { runner: runner.runner, step: chosen.index, snapshot: chosen.snapshot };
  }
  const what = options.step === undefined ? 'no failed step' : `no snapshot after step ${options.step} (steps restored from the cache have none in this run)`;
  throw new StrataError('STRATA_USAGE', `the last run ${run.id} has ${what}`, { hint: 'use --step N for a step that ran, or --runner R' });
}

/**
 * A login shell inside a machine: its namespaces and root (nsenter), a clean environment, in /root.
 * Shared by `strata shell` and the server's debug terminal.
 */
export function machineShellCommand(machinePid: number, term: string): { file: string; args: string[] } {
  // A system machine has a user namespace of its own: the shell joins it too, as the machine's root (the
  // host's root could not create files in the idmapped root otherwise).
  return {
    file: 'nsenter',
    args: ['--target', String(machinePid), ...(hasOwnUserNamespace(machinePid) ? ['--user'] : []), '--mount', '--uts', '--ipc', '--net', '--pid', '--root', '--wd', '--',
      '/usr/bin/env', '-i', `TERM=${term}`, 'HOME=/root', 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      '/bin/bash', '-c', 'cd /root 2>/dev/null || cd /; exec /bin/bash -l'],
  };
}

export async function shellCommand(dir: string, options: ShellOptions): Promise<number> {
  const { openEngine } = await import('../compose.js');
  const { repoRoot } = await import('../../source/git.js');
  const repo = await repoRoot(dir);
  const engine = await openEngine({ store: options.store, reporter: {} });
  const key = snapshotKey(`active.shell-${randomUUID()}`);
  let machine: Awaited<ReturnType<typeof engine.deps.sandbox.start>> | undefined;
  try {
    const run = engine.deps.runLog.lastRun(repo);
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
