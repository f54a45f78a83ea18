// A shell inside a machine restored from a run's snapshot (the failed step's, or the one after a given
// step), to look at the state a step ended in: shared by `strata shell` (src/cli/commands/shell.ts) and
// the server's debug terminal (src/server/terminal/). The machine is a throwaway clone: nothing done in
// the shell reaches the cache.
import { StrataError } from '../errors.js';
import type { RunRecord } from '../store/runs.js';
import { hasOwnUserNamespace } from '../util/process.js';

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
