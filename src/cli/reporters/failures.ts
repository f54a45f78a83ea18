// What went wrong in a run, for stderr once it ended: one entry per runner that did not succeed, each
// pointing at file:line of the step that failed, with how to look inside the machine it failed in.
// The progress (terminal or --json) goes to stdout; this summary is what a person or a CI log scans for.
import type { Reporter, RunnerEndStatus, RunnerView } from '../../engine/reporter.js';
import type { TreeId } from '../../source/git.js';

export interface RunnerFailure {
  runner: string;
  layerfile: string;
  status: 'failure' | 'error' | 'cancelled' | 'skipped';
  /** The step that failed (0-based), its line and text, when a step failed. */
  step?: { index: number; line: number; text: string } | undefined;
  message: string;
  /** A step exited non-zero and the machine was kept as a snapshot: `strata shell` can open it. */
  shellable: boolean;
}

export class FailureCollector implements Reporter {
  private readonly views = new Map<string, RunnerView>();
  private readonly failedStep = new Map<string, number>();
  private readonly ended: RunnerFailure[] = [];
  private source: { repo: string; tree: string } | undefined;

  onRunStart(event: { repo: string; tree: string; runners: RunnerView[] }): void {
    this.source = { repo: event.repo, tree: event.tree };
    for (const view of event.runners) this.views.set(view.runner, view);
  }

  onStepStatus(event: { runner: string; step: number; status: string }): void {
    if (event.status === 'failed') this.failedStep.set(event.runner, event.step);
  }

  onRunnerEnd(event: { runner: string; status: RunnerEndStatus; message?: string }): void {
    if (event.status === 'success') return;
    const view = this.views.get(event.runner);
    const index = this.failedStep.get(event.runner);
    const step = index === undefined ? undefined : view?.steps[index];
    this.ended.push({
      runner: event.runner,
      layerfile: view?.layerfile ?? event.runner,
      status: event.status,
      step: step && index !== undefined ? { index, line: step.line, text: step.text } : undefined,
      message: event.message ?? event.status,
      shellable: event.status === 'failure' && step !== undefined,
    });
  }

  get failures(): readonly RunnerFailure[] {
    return this.ended;
  }

  /**
   * The summary lines, e.g.
   * ```
   * strata: api/Layerfile:5: RUN make test — exited with code 2 (runner api)
   *   hint: `strata shell --runner api .` opens a shell in the machine as the step left it
   * ```
   * `shellCommand(runner)` is the command line that opens a runner's failure snapshot.
   */
  async format(shellCommand: (runner: string) => string): Promise<string[]> {
    const lines: string[] = [];
    for (const failure of this.ended) {
      if (failure.status === 'cancelled') continue; // the run says so once
      // The engine's message repeats the step number and line the location already gives.
      const message = failure.message.replace(/^step \d+ \(line \d+\) /, '');
      let where: string;
      if (failure.step) where = `${failure.layerfile}:${failure.step.line}: ${failure.step.text} — `;
      else if (message.startsWith(`${failure.layerfile}:`)) where = ''; // located already (BUTTON, ...)
      else if (/base image/.test(message)) where = `${failure.layerfile}:${(await this.fromLine(failure.layerfile)) ?? 1}: `;
      else where = `${failure.layerfile}: `;
      lines.push(`strata: ${where}${message} (runner ${failure.runner})`);
      if (failure.shellable) lines.push(`  hint: \`${shellCommand(failure.runner)}\` opens a shell in the machine as the step left it`);
    }
    return lines;
  }

  /** The line of a Layerfile's FROM in the source the run used (a base image failure happens there). */
  private async fromLine(layerfile: string): Promise<number | undefined> {
    if (!this.source) return undefined;
    try {
      const { readLayerfilesFromTree } = await import('../../source/git.js');
      const { parseLayerfile } = await import('../../layerfile/index.js');
      const text = (await readLayerfilesFromTree(this.source.repo, this.source.tree as TreeId)).find((l) => l.path === layerfile)?.text;
      return text === undefined ? undefined : parseLayerfile(text, layerfile).layerfile.instructions.find((i) => i.kind === 'from')?.range.line;
    } catch {
      return undefined; // only a nicer location is lost
    }
  }
}

/** Quotes a word for a POSIX shell when it needs it. */
export function shellWord(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}
