// `strata why [dir] [--step N]`: for the last run of a repo, each Layerfile's steps with cached/ran and
// the reason: the snapshot a cached step came from, the first invalidating path of a rerun.
import pc from 'picocolors';
import { wantsColor } from '../reporters/colors.js';
import type { RunRecord } from '../../store/runs.js';
import { formatDuration } from '../reporters/terminal.js';

export function formatWhy(run: RunRecord, options: { step?: number | undefined; colour?: boolean } = {}): string {
  const c = options.colour ? pc : pc.createColors(false);
  const lines: string[] = [];
  const source = run.commit ? `commit ${run.commit.slice(0, 12)}` : `working tree ${run.tree.slice(0, 12)}`;
  lines.push(c.bold(`${run.id}`) + ` — ${run.status} — ${source}${run.branch ? ` on ${run.branch}` : ''}`);
  for (const runner of run.runners) {
    lines.push('');
    lines.push(`${c.bold(runner.runner)} (${runner.layerfile}) — ${runner.status}${runner.plan ? `: ${runner.plan}` : ''}`);
    // Steps after a failed one never started: their planned reason ("reruns because ...") would mislead.
    let failedAt: number | undefined;
    for (const step of runner.steps) {
      const notRun = failedAt !== undefined && step.status === 'pending';
      if (step.status === 'failed') failedAt ??= step.index;
      if (options.step !== undefined && step.index + 1 !== options.step) continue;
      const head = `  ${String(step.index + 1).padStart(2)}. line ${step.line}: ${step.text}`;
      const time = step.durationMs !== null ? ` (${formatDuration(step.durationMs)})` : '';
      const label =
        notRun ? c.dim(`not run (step ${(failedAt ?? 0) + 1} failed)`) : step.status === 'cached' ? c.green('cached') : step.status === 'ran' ? c.yellow('ran') + time : step.status === 'failed' ? c.red('failed') + time : c.dim(step.status);
      lines.push(`${head} — ${label}`);
      if (step.reason && !notRun) lines.push(c.dim(`      ${reasonText(step.status, step.reason.message)}`));
      if (step.status === 'failed' && step.snapshot) lines.push(c.dim(`      machine at failure kept as snapshot ${step.snapshot} (look inside: strata shell --runner ${runner.runner})`));
    }
  }
  return lines.join('\n');
}

/** "because <cause>" for a step that ran; the planner's "reruns because ..." must not read "because reruns because". */
function reasonText(status: string, message: string): string {
  if (status === 'cached') return message;
  return `because ${message.replace(/^reruns because /, '')}`;
}

export async function whyCommand(dir: string, options: { step?: string; store?: string; json?: boolean }): Promise<number> {
  const { openDatabase } = await import('../../store/database.js');
  const { createRunLog } = await import('../../store/sql/runLog.js');
  const { repoRoot } = await import('../../source/git.js');
  const { storePaths } = await import('../../compose/engine.js');
  const repo = await repoRoot(dir);
  const db = await openDatabase(storePaths(options.store).database);
  try {
    const run = await createRunLog(db).lastRun(repo);
    if (!run) {
      process.stderr.write(`strata why: no run of ${repo} recorded yet\n  hint: strata run ${dir}\n`);
      return 1;
    }
    if (options.json) process.stdout.write(JSON.stringify(run, null, 2) + '\n');
    else process.stdout.write(formatWhy(run, { step: options.step ? Number(options.step) : undefined, colour: wantsColor(process.stdout) }) + '\n');
    return 0;
  } finally {
    await db.close();
  }
}
