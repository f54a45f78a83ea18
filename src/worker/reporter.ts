// A worker's Reporter: the engine's events, in order, to the server (POST /api/worker/jobs/:id/events),
// in batches a quarter second apart (output can be chatty). A batch the server refuses (the job was
// cancelled or its lease ran out) stops the job: `onRefused`.
import type { Reporter } from '../engine/reporter.js';
import type { WorkerEvent } from '../server/workers/protocol.js';
import type { WorkerClient } from './client.js';

const BATCH_MS = 250;
/** How long a batch of events is retried while the server does not answer. */
const EVENTS_RETRY_MS = 60_000;

export class ForwardingReporter implements Reporter {
  private pending: WorkerEvent[] = [];
  private timer: NodeJS.Timeout | undefined;
  private sending: Promise<void> = Promise.resolve();
  /** Called once the engine has read the commit (its run started). */
  onRunStarted: () => void = () => {};

  constructor(
    private readonly client: WorkerClient,
    private readonly jobId: string,
    private readonly onRefused: (error: unknown) => void,
  ) {}

  send(event: WorkerEvent): void {
    this.pending.push(event);
    this.timer ??= setTimeout(() => void this.flush(), BATCH_MS);
  }

  /** Sends what is pending (after what is being sent); resolves once the server has it. */
  flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const events = this.pending;
    this.pending = [];
    if (events.length > 0) {
      // Retried while the server restarts (a batch is recorded once: the server answers after recording,
      // so only a lost answer repeats one, and its events then appear twice in the log: rare, visible).
      const path = `/api/worker/jobs/${encodeURIComponent(this.jobId)}/events`;
      this.sending = this.sending.then(() => this.client.post<unknown>(path, { events }, { retryForMs: EVENTS_RETRY_MS }).then(() => {}, this.onRefused));
    }
    return this.sending;
  }

  onRunStart: NonNullable<Reporter['onRunStart']> = (event) => {
    this.onRunStarted();
    this.send({ kind: 'runStart', event });
  };
  onRunnerStart: NonNullable<Reporter['onRunnerStart']> = (event) => this.send({ kind: 'runnerStart', event });
  onStepStatus: NonNullable<Reporter['onStepStatus']> = (event) => this.send({ kind: 'stepStatus', event });
  onStepOutput: NonNullable<Reporter['onStepOutput']> = (event) => this.send({ kind: 'stepOutput', event });
  onRunnerEnd: NonNullable<Reporter['onRunnerEnd']> = (event) => {
    this.send({ kind: 'runnerEnd', event });
    void this.flush();
  };
}
