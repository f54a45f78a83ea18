// Terminal progress. On a TTY: a live list of runners and steps (cached ✓ / spinner + elapsed / done +
// time / failed ✗) with the running step's latest log lines under it, redrawn by log-update; a step's
// log folds away when it finishes, and a failed step's full log is printed at the end. Not on a TTY:
// plain, append-only lines (one per state change, output lines prefixed with the runner and step).
import { createLogUpdate } from 'log-update';
import { colorsFor, type Colors } from './colors.js';
import type { Reporter, RunnerEndStatus, RunnerView, StepExplanation, StepStatus } from '../../engine/reporter.js';

interface StepState {
  line: number;
  text: string;
  status: StepStatus;
  startedAt?: number;
  durationMs?: number;
  explanation?: StepExplanation;
  log: string[];
  partial: string;
}

interface RunnerState {
  view: RunnerView;
  steps: StepState[];
  status: 'pending' | 'running' | RunnerEndStatus;
  plan?: string;
  message?: string;
  /** The last explanation printed in plain mode: consecutive steps sharing one are not repeated. */
  lastExplanation?: string;
}

const SPINNER = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
const TAIL_LINES = 8;
const MAX_LOG_LINES = 20_000;

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  const minutes = Math.floor(ms / 60_000);
  return `${minutes}m${Math.round((ms % 60_000) / 1000)}s`;
}

export interface TerminalReporterOptions {
  stream: NodeJS.WriteStream;
  /** Force plain line output even on a TTY. */
  plain?: boolean;
}

export class TerminalReporter implements Reporter {
  private readonly runners = new Map<string, RunnerState>();
  private readonly live: boolean;
  private readonly stream: NodeJS.WriteStream;
  private readonly update: ReturnType<typeof createLogUpdate> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private frame = 0;
  /** Once the run ended the live block is final: later lines go below it. */
  private finished = false;
  private readonly c: Colors;

  constructor(options: TerminalReporterOptions) {
    this.stream = options.stream;
    this.c = colorsFor(options.stream);
    this.live = Boolean(options.stream.isTTY) && !options.plain;
    this.update = this.live ? createLogUpdate(options.stream, { showCursor: true }) : undefined;
  }

  onRunStart(event: { runId: string; repo: string; runners: RunnerView[]; commit: string | null; tree: string }): void {
    for (const view of event.runners) {
      this.runners.set(view.runner, {
        view,
        status: 'pending',
        steps: view.steps.map((s) => ({ line: s.line, text: s.text, status: 'pending', log: [], partial: '' })),
      });
    }
    const source = event.commit ? `commit ${event.commit.slice(0, 12)}` : `working tree ${event.tree.slice(0, 12)}`;
    this.print(this.c.bold(`strata run ${event.runId}`) + this.c.dim(` — ${event.repo} @ ${source}`));
    if (this.live) this.timer = setInterval(() => this.render(), 100);
  }

  onRunnerStart(event: { runner: string; plan: string }): void {
    const runner = this.runners.get(event.runner);
    if (!runner) return;
    runner.status = 'running';
    runner.plan = event.plan;
    if (!this.live) this.print(`[${event.runner}] ${event.plan}`);
  }

  onStepStatus(event: { runner: string; step: number; status: StepStatus; durationMs?: number; explanation?: StepExplanation }): void {
    const runner = this.runners.get(event.runner);
    const step = runner?.steps[event.step];
    if (!runner || !step) return;
    step.status = event.status;
    if (event.explanation) step.explanation = event.explanation;
    if (event.status === 'running') step.startedAt = Date.now();
    if (event.durationMs !== undefined) step.durationMs = event.durationMs;
    if (!this.live) {
      const why = event.status === 'done' ? '' : plainExplanation(runner, event.explanation);
      const time = event.durationMs !== undefined && event.status !== 'cached' ? ` in ${formatDuration(event.durationMs)}` : '';
      this.print(`[${event.runner}] step ${event.step + 1} line ${step.line}: ${step.text} — ${event.status}${time}${why}`);
    }
  }

  onStepOutput(event: { runner: string; step: number; data: string }): void {
    const step = this.runners.get(event.runner)?.steps[event.step];
    if (!step) return;
    const text = step.partial + event.data;
    const lines = text.split('\n');
    step.partial = lines.pop() ?? '';
    for (const line of lines) {
      if (step.log.length < MAX_LOG_LINES) step.log.push(line);
      if (!this.live) this.print(this.c.dim(`[${event.runner}:${event.step + 1}] `) + line);
    }
  }

  onRunnerEnd(event: { runner: string; status: RunnerEndStatus; message?: string; failedStep?: number }): void {
    const runner = this.runners.get(event.runner);
    if (!runner) return;
    runner.status = event.status;
    if (event.message) runner.message = event.message;
    if (!this.live) this.print(`[${event.runner}] ${event.status}${event.message ? `: ${event.message}` : ''}`);
  }

  onRunEnd(event: { status: string; durationMs: number; stepsRan: number; stepsCached: number }): void {
    if (this.timer) clearInterval(this.timer);
    if (this.live) {
      this.render();
      this.update?.done();
      this.finished = true;
    }
    for (const [name, runner] of this.runners) {
      const failed = runner.steps.find((s) => s.status === 'failed');
      if (!failed) continue;
      if (failed.partial) failed.log.push(failed.partial);
      this.print(this.c.red(`\n── ${name}: step "${failed.text}" (line ${failed.line}) failed — full output ──`));
      for (const line of failed.log) this.print(line);
      if (runner.message) this.print(this.c.red(runner.message));
    }
    const colour = event.status === 'success' ? this.c.green : this.c.red;
    this.print(colour(`\n${event.status} in ${formatDuration(event.durationMs)}: ${event.stepsRan} step(s) ran, ${event.stepsCached} cached`));
  }

  /**
   * Runs `interaction` (a prompt) with the live display paused and cleared, so the question is not
   * redrawn over; the display comes back afterwards.
   */
  async pauseFor<T>(interaction: () => Promise<T>): Promise<T> {
    const wasLive = this.timer !== undefined;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (this.live && !this.finished) this.update?.clear();
    try {
      return await interaction();
    } finally {
      if (wasLive && !this.finished) this.timer = setInterval(() => this.render(), 100);
    }
  }

  private print(line: string): void {
    if (this.live && this.update && !this.finished) {
      this.update.clear();
      this.stream.write(line + '\n');
      this.render();
    } else {
      this.stream.write(line + '\n');
    }
  }

  private render(): void {
    if (!this.update) return;
    this.frame++;
    const out: string[] = [];
    for (const [name, runner] of this.runners) {
      const head = runner.status === 'success' ? this.c.green('✔') : runner.status === 'failure' || runner.status === 'error' ? this.c.red('✖') : runner.status === 'cancelled' ? this.c.yellow('⊘') : runner.status === 'running' ? this.c.cyan(SPINNER[this.frame % SPINNER.length] ?? '') : this.c.dim('·');
      out.push(`${head} ${this.c.bold(name)} ${this.c.dim(runner.view.layerfile)}${runner.plan ? this.c.dim(` — ${runner.plan}`) : ''}`);
      runner.steps.forEach((step, i) => {
        out.push('  ' + this.stepLine(i, step));
        if (step.status === 'running') {
          const tail = [...step.log, ...(step.partial ? [step.partial] : [])].slice(-TAIL_LINES);
          for (const line of tail) out.push(this.c.dim('      │ ' + line.slice(0, (this.stream.columns ?? 120) - 10)));
        }
      });
    }
    this.update(out.join('\n'));
  }

  private stepLine(index: number, step: StepState): string {
    const label = `${String(index + 1).padStart(2)} ${step.text}`;
    switch (step.status) {
      case 'cached':
        return `${this.c.green('✓')} ${this.c.dim(label)} ${this.c.dim('cached')}`;
      case 'running': {
        const elapsed = step.startedAt ? formatDuration(Date.now() - step.startedAt) : '';
        // "no cached run" would be said of every step of a first run: the runner's plan line says it once.
        const why = step.explanation && step.explanation.kind !== 'no-cache' ? this.c.dim(` ← ${step.explanation.message}`) : '';
        return `${this.c.cyan(SPINNER[this.frame % SPINNER.length] ?? '')} ${label} ${this.c.cyan(elapsed)}${why}`;
      }
      case 'done':
        return `${this.c.green('✔')} ${label} ${this.c.dim(formatDuration(step.durationMs ?? 0))}`;
      case 'failed':
        return `${this.c.red('✖')} ${label} ${this.c.red(formatDuration(step.durationMs ?? 0))}`;
      case 'skipped':
        return `${this.c.dim('-')} ${this.c.dim(label)} ${this.c.dim('skipped')}`;
      default:
        return `${this.c.dim('·')} ${this.c.dim(label)}`;
    }
  }
}

/**
 * A step's explanation for a plain progress line, ` (...)`, or '' when it would only repeat what the
 * runner's plan line or the previous step's line said: "no cached run" for every step of a first
 * run, the same restored snapshot for every cached step, the same "reruns because step 3 reruns".
 */
function plainExplanation(runner: RunnerState, explanation: StepExplanation | undefined): string {
  if (!explanation || explanation.kind === 'no-cache') return '';
  const message = explanation.message.replace(/^cached: /, '');
  if (message === runner.lastExplanation) return '';
  runner.lastExplanation = message;
  return ` (${message})`;
}

/** `--json`: one JSON object per event, one per line. */
export class JsonReporter implements Reporter {
  constructor(private readonly stream: NodeJS.WritableStream) {}
  private emit(type: string, event: object): void {
    this.stream.write(JSON.stringify({ type, ...event }) + '\n');
  }
  onRunStart(event: object): void { this.emit('run-start', event); }
  onRunnerStart(event: object): void { this.emit('runner-start', event); }
  onStepStatus(event: object): void { this.emit('step-status', event); }
  onStepOutput(event: object): void { this.emit('step-output', event); }
  onRunnerEnd(event: object): void { this.emit('runner-end', event); }
  onRunEnd(event: object): void { this.emit('run-end', event); }
}
